"""One home per rule: every spec ``tunestack plan`` refuses, ``tunestack validate`` refuses too.

Run over every shipped spec, the golden copies, and the bad-spec fixtures of the loader, the
semantic checks, the CLI and the plan tests (plus the project bootstrap cases). The planner
may refuse a spec only with exactly the diagnostics (codes, lines, messages) that ``validate``
reports, and must plan every spec that ``validate`` accepts.
"""

from __future__ import annotations

import importlib.util
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

from infra.checks import validate
from infra.cli import main
from infra.cli.plan import plan_document

ROOT = Path(__file__).resolve().parents[2]
TESTS = ROOT / "tests"
SHIPPED = sorted((ROOT / "specs").glob("*.yaml")) + sorted((TESTS / "golden").glob("*/spec.yaml"))
DIAGNOSTIC = re.compile(r"^[^\s:][^:]*:\d+:\d+: (error|warning)\[[a-z-]+\]: ")
CHAT_ROW = (
    '{"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]}\n'
)


def _module(relative: str) -> ModuleType:
    """A test module of this suite by path (the suite uses ``--import-mode=importlib``)."""
    path = TESTS / relative
    spec = importlib.util.spec_from_file_location(f"_agree_{path.stem}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@dataclass(frozen=True)
class Case:
    """A spec text and the dataset files beside it (relative path -> content)."""

    id: str
    text: str
    files: tuple[tuple[str, str], ...] = ()

    def write(self, folder: Path) -> Path:
        for name, content in self.files:
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            (folder / name).write_text(content)
        spec = folder / "spec.yaml"
        spec.write_text(self.text)
        return spec


def _spec_check_cases() -> list[Case]:
    m = _module("checks/test_spec_checks.py")
    files = (("data/train.jsonl", m.TRAIN),)
    out = [Case("spec-checks-base", m.BASE, files)]
    for i, (code, old, new, _) in enumerate(m.CASES):
        out.append(Case(f"spec-checks-{i}-{code}", m.BASE.replace(old, new, 1), files))
    big = m.BASE.replace(
        "meta/llama3_1@llama-3.1-8b-instruct", "meta/llama3-3@llama-3.3-70b-instruct"
    )
    out.append(Case("spec-checks-endpoint-too-small", big, files))
    out.append(
        Case(
            "spec-checks-all-at-once",
            m.BASE.replace("region: us-central1", "region: mars-north1")
            .replace("adapter_size: 16", "adapter_size: 7")
            .replace("    dataset: chat", "    dataset: nope")
            .replace("accelerator_count: 1", "accelerator_count: 4"),
            files,
        )
    )
    return out


def _load_cases() -> list[Case]:
    good = _module("load/test_load.py").GOOD
    edits: list[tuple[str, Callable[[str], str]]] = [
        ("unknown-field", lambda t: t.replace("    epochs: 2", "    epohcs: 2")),
        ("unknown-top-level", lambda t: t + "zzz: 1\n"),
        ("missing-field", lambda t: t.replace("    dataset: d\n", "")),
        (
            "literal",
            lambda t: t.replace("tuning_mode: FULL", "tuning_mode: PEFT").replace(
                "epochs: 2", "epochs: many"
            ),
        ),
        (
            "every-error",
            lambda t: (
                t.replace("  region: us-central1\n", "  regoin: us-central1\n")
                .replace("epochs: 2", "epochs: 0")
                .replace(
                    "  - name: acme-ml-dev-tuning\n", "  - name: acme-ml-dev-tuning\n    nmae: x\n"
                )
            ),
        ),
        ("duplicate-key", lambda t: t.replace("    epochs: 2\n", "    epochs: 2\n    epochs: 3\n")),
        ("second-document", lambda t: t + "---\nproject: {}\n"),
        (
            "unquoted-number",
            lambda t: t.replace(
                "  region: us-central1\n", "  region: us-central1\n  number: 123\n"
            ),
        ),
    ]
    out = [Case("load-good", good)] + [Case(f"load-{n}", e(good)) for n, e in edits]
    out += [
        Case("load-invalid-yaml", "project:\n  id: [unclosed\n"),
        Case("load-not-a-mapping", "- a\n- b\n"),
        Case("load-empty", ""),
    ]
    return out


def _cli_cases() -> list[Case]:
    bad = _module("cli/test_validate.py").BAD
    two_rows = CHAT_ROW.replace("Hi", "a").replace("Hello", "b") + '{"prompt": "x"}\n'
    return [
        Case("cli-bad", bad, (("train.jsonl", two_rows),)),
        Case(
            "cli-unknown-keys-and-more",
            bad.replace("epochs: 2", "epoch: 2").replace("region: us-central1", "region: us-west9"),
            (("train.jsonl", CHAT_ROW.replace('"assistant"', '"gpt"')),),
        ),
        Case(
            "cli-tokenizer-warning",
            bad.replace("    adapter_size: 8\n", "").replace(
                "train: train.jsonl", "train: t.jsonl\n    tokenizer: ./nope"
            ),
            (("t.jsonl", '{"prompt": "a", "completion": "b"}\n'),),
        ),
    ]


def _dev(**project: Any) -> str:
    data = yaml.safe_load((TESTS / "golden" / "dev" / "spec.yaml").read_text())
    data["project"].update(project)
    return yaml.safe_dump(data, sort_keys=False)


def _dev_files() -> tuple[tuple[str, str], ...]:
    data = TESTS / "golden" / "dev" / "data"
    return tuple(
        (str(p.relative_to(data.parent)), p.read_text()) for p in sorted(data.rglob("*.jsonl"))
    )


BILLING = "0A1B2C-3D4E5F-6A7B8C"

#: The project bootstrap rules (create / billing_account / folder_id / org_id), on the dev spec.
BOOTSTRAP: dict[str, dict[str, Any]] = {
    "adopted-folder-id": {"folder_id": "abc"},
    "adopted-numeric-folder-id": {"folder_id": "1234"},
    "adopted-org-id": {"org_id": "organizations/42"},
    "adopted-billing-and-org": {"billing_account": BILLING, "org_id": "1234"},
    "adopted-bad-billing": {"billing_account": "bad"},
    "create-folder-word": {"create": True, "billing_account": BILLING, "folder_id": "engineering"},
    "create-folder-prefixed": {
        "create": True,
        "billing_account": BILLING,
        "folder_id": "folders/42",
    },
    "create-org-word": {"create": True, "billing_account": BILLING, "org_id": "orgs/1"},
    "create-both": {"create": True, "billing_account": BILLING, "folder_id": "x", "org_id": "9"},
    "create-neither": {"create": True, "billing_account": BILLING},
    "create-no-billing": {"create": True, "org_id": "organizations/y"},
}


def _plan_cases() -> list[Case]:
    m = _module("plan/test_build.py")
    rows = "".join(json.dumps(m.ROW) + "\n" for _ in range(4))
    files = (("train.jsonl", rows),)
    out = [Case("plan-base", yaml.safe_dump(m.base(), sort_keys=False), files)]
    for name, project in (
        ("need-create", {"billing_account": BILLING, "org_id": "1234"}),
        ("numeric", {"create": True, "billing_account": BILLING, "folder_id": "engineering"}),
        ("numeric-ok", {"create": True, "billing_account": BILLING, "folder_id": "folders/42"}),
    ):
        spec = m.base(jobs=0)
        spec["project"].update(project)
        out.append(Case(f"plan-bootstrap-{name}", yaml.safe_dump(spec, sort_keys=False), files))
    dev = _dev_files()
    out += [Case(f"bootstrap-{n}", _dev(**p), dev) for n, p in BOOTSTRAP.items()]
    data = yaml.safe_load(_dev())
    data["tuning_jobs"][0]["adapter_size"] = 3
    data["project"]["billing_account"] = BILLING
    out.append(Case("cli-plan-invalid", yaml.safe_dump(data, sort_keys=False), dev))
    return out


FIXTURES = _spec_check_cases() + _load_cases() + _cli_cases() + _plan_cases()


def _plan_refusal(spec: Path, capsys: pytest.CaptureFixture[str]) -> list[str] | None:
    """The diagnostics ``tunestack plan`` refuses ``spec`` with, or None when it plans it."""
    capsys.readouterr()
    doc = plan_document(spec)
    err = capsys.readouterr().err
    if doc is not None:
        return None
    return [line for line in err.splitlines() if DIAGNOSTIC.match(line)]


def _agree(spec: Path, capsys: pytest.CaptureFixture[str]) -> None:
    report = validate(spec)
    refused = _plan_refusal(spec, capsys)
    validated = [d.format() for d in report.diagnostics]
    if refused is None:
        assert report.ok, f"plan accepted a spec validate refuses: {validated}"
        return
    assert not report.ok, f"plan refused a spec validate accepts: {refused}"
    assert refused == validated


@pytest.mark.parametrize("spec", SHIPPED, ids=[str(p.relative_to(ROOT)) for p in SHIPPED])
def test_shipped_specs_agree(spec: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _agree(spec, capsys)


@pytest.mark.parametrize("case", FIXTURES, ids=[c.id for c in FIXTURES])
def test_bad_spec_fixtures_agree(
    case: Case, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _agree(case.write(tmp_path), capsys)


def test_the_fixtures_cover_every_bootstrap_rule(tmp_path: Path) -> None:
    found: set[tuple[str, str]] = set()
    for case in (c for c in FIXTURES if c.id.startswith("bootstrap-")):
        folder = tmp_path / case.id
        folder.mkdir()
        found |= {(d.field, d.message) for d in validate(case.write(folder)).diagnostics}
    for field, fragment in (
        ("project.billing_account", "billing_account only applies with create: true"),
        ("project.folder_id", "folder_id only applies with create: true"),
        ("project.org_id", "org_id only applies with create: true"),
        ("project.folder_id", "is not a numeric folder id"),
        ("project.org_id", "is not a numeric org id"),
        ("project.create", "create: true needs exactly one of folder_id and org_id"),
        ("project.billing_account", "create: true needs billing_account"),
    ):
        assert any(f == field and fragment in m for f, m in found), (field, fragment)
    assert len(FIXTURES) >= 50


def test_cli_validate_refuses_an_adopted_projects_folder_id(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = Case("folder", _dev(folder_id="abc"), _dev_files()).write(tmp_path)
    assert main(["validate", str(spec)]) == 1
    validated = [line for line in capsys.readouterr().out.splitlines() if DIAGNOSTIC.match(line)]
    assert main(["plan", str(spec)]) == 1
    planned = [line for line in capsys.readouterr().err.splitlines() if DIAGNOSTIC.match(line)]
    line = next(i for i, t in enumerate(spec.read_text().splitlines(), 1) if "folder_id" in t)
    assert (
        planned
        == validated
        == [
            f"{spec}:{line}:3: error[invalid-value]: project.folder_id: folder_id only applies with "
            "create: true; an adopted project keeps its own (remove it, or set create: true)",
            f"{spec}:{line}:3: error[invalid-value]: project.folder_id: 'abc' is not a numeric "
            "folder id (e.g. 123456789012)",
        ]
    )
