"""``tunestack chat ENDPOINT`` and ``tunestack predict ENDPOINT --prompt ...``.

``chat`` talks to an endpoint's OpenAI-compatible chat completions (the model's own chat
template is applied by the server, as in training), streaming the answer as it is generated:
interactively, or once with ``--message``. ``predict`` sends one prompt instance to
``:predict``. With ``--local`` they call the local API (``tunestack serve``) with its token;
without it, Vertex AI in the endpoint's region with Application Default Credentials: the same
calls.

ENDPOINT is the resource name (``projects/P/locations/L/endpoints/ID``, as ``status`` prints
it) or, with ``--spec SPEC``, the spec's endpoint name: the spec gives the project and
region, and the endpoint is found by its display name as ``status`` finds it (the newest).

Only the standard library is imported at start (these commands must start fast); google-auth
is imported for the cloud only.
"""

from __future__ import annotations

import argparse
import http.client
import json
import re
import sys
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from infra.spec import Spec

#: ``projects/P/locations/L/endpoints/ID``.
ENDPOINT_NAME = re.compile(r"projects/[^/]+/locations/([^/]+)/endpoints/[^/:]+")
#: Seconds to wait for a server's answer (a generation may take long; the server bounds it).
TIMEOUT_S = 600.0
#: Longest line of an error answer quoted.
MAX_ERROR_CHARS = 500
#: Pages of ``endpoints.list`` read to find a spec endpoint by name (100 endpoints a page).
MAX_LIST_PAGES = 20


class CliError(Exception):
    """A failure reported as one line, exit 1."""


@dataclass(frozen=True)
class Target:
    """Where the endpoint's calls go."""

    base: str  # scheme://host[:port]
    endpoint: str
    token: str


ENDPOINT_HELP = (
    "the endpoint: projects/P/locations/L/endpoints/ID, or with --spec the spec's endpoint name"
)


def register(sub: Any) -> None:
    """Adds ``chat`` and ``predict`` to the parser."""
    c = sub.add_parser(
        "chat",
        help="chat with a deployed endpoint (streaming; the model's chat template)",
        description=(
            "Chat with a deployed endpoint through its OpenAI-compatible chat completions. "
            "Interactive (Ctrl-D to end) unless --message is given. The server applies the "
            "model's chat template, as the trainer did."
        ),
    )
    c.add_argument("endpoint", help=ENDPOINT_HELP)
    _common(c)
    c.add_argument("--message", help="send this one message, print the answer and exit")
    c.add_argument("--system", help="a system message starting the conversation")
    c.add_argument("--no-stream", action="store_true", help="wait for whole answers")
    c.set_defaults(func=cmd_chat)
    p = sub.add_parser(
        "predict",
        help="send one prompt to a deployed endpoint's :predict",
        description="Send one prompt instance to an endpoint's :predict and print the prediction.",
    )
    p.add_argument("endpoint", help=ENDPOINT_HELP)
    p.add_argument("--prompt", required=True, help="the prompt")
    p.add_argument("--raw", action="store_true", help="the output only (raw_response)")
    _common(p)
    p.set_defaults(func=cmd_predict)


def cmd_chat(args: argparse.Namespace) -> int:
    """Runs ``tunestack chat``."""
    return _guard(lambda: _chat(args), "chat")


def cmd_predict(args: argparse.Namespace) -> int:
    """Runs ``tunestack predict``."""
    return _guard(lambda: _predict(args), "predict")


def _chat(args: argparse.Namespace) -> int:
    target = _target(args)
    messages: list[dict[str, str]] = []
    if args.system:
        messages.append({"role": "system", "content": args.system})
    if args.message is not None:
        messages.append({"role": "user", "content": args.message})
        _reply(target, args, messages)
        return 0
    interactive = sys.stdin.isatty()
    while True:
        try:
            line = input("you> " if interactive else "")
        except EOFError:
            if interactive:
                print()
            return 0
        if not line.strip():
            continue
        messages.append({"role": "user", "content": line})
        messages.append({"role": "assistant", "content": _reply(target, args, messages)})


def _reply(target: Target, args: argparse.Namespace, messages: list[dict[str, str]]) -> str:
    body: dict[str, Any] = {"messages": messages, "stream": not args.no_stream}
    for key in ("max_tokens", "temperature", "top_p", "seed"):
        if getattr(args, key) is not None:
            body[key] = getattr(args, key)
    path = f"/v1beta1/{target.endpoint}/chat/completions"
    if args.no_stream:
        answer = _json(target, path, body)
        text = str(answer["choices"][0]["message"]["content"])
        print(text, flush=True)
        return text
    pieces = []
    for event in _events(target, path, body):
        if "error" in event:
            raise CliError(str(event["error"].get("message", event["error"])))
        for choice in event.get("choices", []):
            piece = choice.get("delta", {}).get("content") or ""
            pieces.append(piece)
            print(piece, end="", flush=True)
    print(flush=True)
    return "".join(pieces)


def _predict(args: argparse.Namespace) -> int:
    target = _target(args)
    instance: dict[str, Any] = {"prompt": args.prompt, "raw_response": args.raw}
    for key in ("max_tokens", "temperature", "top_p"):
        if getattr(args, key) is not None:
            instance[key] = getattr(args, key)
    answer = _json(target, f"/v1/{target.endpoint}:predict", {"instances": [instance]})
    for prediction in answer.get("predictions", []):
        print(prediction if isinstance(prediction, str) else json.dumps(prediction))
    return 0


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--local", action="store_true", help="call the local API (tunestack serve)")
    p.add_argument(
        "--spec",
        help="the YAML spec whose endpoint ENDPOINT names (project and region from it)",
    )
    p.add_argument("--max-tokens", dest="max_tokens", type=int, help="tokens to generate at most")
    p.add_argument("--temperature", type=float, help="sampling temperature (0: greedy)")
    p.add_argument("--top-p", dest="top_p", type=float, help="nucleus sampling mass")
    if p.prog.endswith("chat"):
        p.add_argument("--seed", type=int, help="sampling seed")


def _target(args: argparse.Namespace) -> Target:
    name = args.endpoint.strip().strip("/")
    name = re.sub(r"^(v1|v1beta1)/", "", name)
    m = ENDPOINT_NAME.fullmatch(name)
    if m is None and not args.spec:
        raise CliError(
            f"{args.endpoint!r} is not an endpoint resource name "
            "(projects/P/locations/L/endpoints/ID); to use the spec's endpoint name, "
            "add --spec SPEC"
        )
    spec: Spec | None = None
    if m is not None:
        region = m[1]
    else:
        spec = _spec(args.spec)
        region = spec.project.region
    if args.local:
        from infra.local import home  # stdlib-only module: keeps start-up fast

        api = home.discover()
        if api is None:
            raise CliError("no local API is running: start it with `tunestack serve`")
        target = Target(api.api_url, name, api.token)
    else:
        target = Target(f"https://{region}-aiplatform.googleapis.com", name, _adc_token())
    if spec is not None:
        target = Target(target.base, _find_endpoint(target, spec, name), target.token)
    return target


def _spec(path: str) -> Spec:
    """The validated spec at ``path`` (datasets unread); its diagnostics then an error if not."""
    import importlib  # noqa: PLC0415 - only with --spec

    report = importlib.import_module("infra.checks").validate(path, check_datasets=False)
    if not report.ok or report.spec is None:
        for d in report.diagnostics:
            print(d.format(), file=sys.stderr)
        raise CliError(f"{path}: invalid spec")
    spec: Spec = report.spec
    return spec


def _find_endpoint(target: Target, spec: Spec, name: str) -> str:
    """The resource name of the spec endpoint ``name``: the newest endpoint whose display
    name is the spec's (``status``'s rule)."""
    from infra.plan.keys import is_spec_endpoint  # noqa: PLC0415 - only with --spec

    names = [e.name for e in spec.endpoints]
    if name not in names:
        raise CliError(
            f"the spec has no endpoint {name!r}; its endpoints: {', '.join(names) or 'none'}"
        )
    parent = f"projects/{spec.project.id}/locations/{spec.project.region}"
    found: list[tuple[str, str]] = []
    token = ""
    for _ in range(MAX_LIST_PAGES):
        query = urllib.parse.urlencode({"pageSize": 100, **({"pageToken": token} if token else {})})
        page = _json(target, f"/v1/{parent}/endpoints?{query}")
        for ep in page.get("endpoints", []):
            if is_spec_endpoint(str(ep.get("displayName", "")), name):
                found.append((str(ep.get("createTime", "")), str(ep["name"])))
        token = str(page.get("nextPageToken") or "")
        if not token:
            break
    if not found:
        raise CliError(
            f"endpoint {name!r} of the spec is not deployed in {parent} "
            "(apply the spec first; `tunestack status SPEC` shows what exists)"
        )
    return max(found, key=lambda f: _timestamp(f[0]))[1]


def _timestamp(value: str) -> float:
    """RFC 3339 (``...T10:19:57.025373123Z``) as seconds; 0 when unreadable."""
    from datetime import datetime  # noqa: PLC0415

    head, _, frac = value.rstrip("Z").partition(".")
    try:
        seconds = datetime.fromisoformat(head + "+00:00").timestamp()
    except ValueError:
        return 0.0
    return seconds + (float(f"0.{frac}") if frac.isdigit() else 0.0)


def _adc_token() -> str:
    try:
        import google.auth
        import google.auth.transport.requests
    except ImportError as e:  # pragma: no cover - installed with the package
        raise CliError(f"google-auth is needed for the cloud: {e}") from None
    try:
        creds, _ = google.auth.default(scopes=["https://www.googleapis.com/auth/cloud-platform"])
        creds.refresh(google.auth.transport.requests.Request())
    except Exception as e:
        raise CliError(f"no Application Default Credentials: {e}") from None
    return str(creds.token)


def _connection(target: Target) -> http.client.HTTPConnection:
    url = urllib.parse.urlparse(target.base)
    cls = http.client.HTTPSConnection if url.scheme == "https" else http.client.HTTPConnection
    return cls(url.hostname or "", url.port, timeout=TIMEOUT_S)


def _send(target: Target, path: str, body: Any = None) -> tuple[http.client.HTTPConnection, Any]:
    """POSTs ``body`` as JSON (GET when None); a non-200 answer is a CliError with its message."""
    conn = _connection(target)
    headers = {"Authorization": f"Bearer {target.token}"}
    if body is not None:
        headers["Content-Type"] = "application/json"
    try:
        conn.request(
            "GET" if body is None else "POST",
            path,
            None if body is None else json.dumps(body),
            headers,
        )
        resp = conn.getresponse()
    except OSError as e:
        conn.close()
        raise CliError(f"cannot reach {target.base}: {e}") from None
    if resp.status != 200:
        raw = resp.read().decode(errors="replace")
        conn.close()
        try:
            message = json.loads(raw)["error"]["message"]
        except (ValueError, KeyError, TypeError):
            message = raw.strip()[:MAX_ERROR_CHARS] or resp.reason
        raise CliError(f"{resp.status}: {message}")
    return conn, resp


def _json(target: Target, path: str, body: Any = None) -> Any:
    """The JSON answer of a POST of ``body`` (a GET when None)."""
    conn, resp = _send(target, path, body)
    try:
        return json.loads(resp.read())
    finally:
        conn.close()


def _events(target: Target, path: str, body: Any) -> Iterator[dict[str, Any]]:
    conn, resp = _send(target, path, body)
    try:
        for raw in resp:
            line = raw.decode(errors="replace").strip()
            if not line.startswith("data:"):
                continue
            data = line[len("data:") :].strip()
            if data == "[DONE]":
                return
            yield json.loads(data)
    finally:
        conn.close()


def _guard(run: Any, name: str) -> int:
    try:
        return int(run())
    except CliError as e:
        print(f"tunestack {name}: {e}", file=sys.stderr)
        return 1
