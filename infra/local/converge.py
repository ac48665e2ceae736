"""``tunestack up SPEC --local`` and ``down SPEC --local``: converge a spec on the local API.

The same client layer the Pulumi providers use (:mod:`infra.vertex`) does the Vertex
calls, against the local API found in ``$TUNESTACK_HOME/local/api.json``; buckets and dataset
uploads go to the GCS emulator with google-cloud-storage. Every step is idempotent, so a
re-run changes nothing and an interrupted run (Ctrl-C, kill -9) converges when re-run:

- buckets: created when missing; ``create: false`` ones must exist (checked first, as the
  cloud would: nothing is created or uploaded otherwise);
- datasets: content-addressed object names from the plan (``.../<sha256[:16]>/train.jsonl``),
  uploaded only when the object is missing;
- tuning jobs: one at a time in plan order; each carries the deterministic ``tunestack-key``
  label and an existing queued/running/succeeded job with that key is adopted, never
  duplicated (the detached server keeps training while ``up`` is gone);
- endpoints: found by the key in their display name (adopted), else deployed; an endpoint
  keeps its name for life, and a changed model behind it (new job, checkpoint, weights,
  machine) is swapped blue/green onto it, replicas changed in place, a canary split kept
  (:func:`infra.vertex.swaps.converge`, as the Pulumi provider does).

What ``up`` touched is also recorded in ``local/applied/<spec>.json`` so that ``down`` finds
it even after the spec or its data changed.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from google.api_core import exceptions as gexc
from google.cloud import aiplatform_v1beta1 as aip
from google.protobuf import json_format, struct_pb2
from rich.console import Console
from rich.status import Status

from infra import catalog, checkpoint_selection, checks, gcs
from infra.local import buckets, daemon, home
from infra.local.outcome import Changes, UpError
from infra.local.progress import JobView
from infra.plan import EndpointPlan, JobPlan, Plan, build_plan, keys
from infra.vertex import checkpoints, deployments, swaps
from infra.vertex import jobs as vertex_jobs
from infra.vertex import progress as job_progress
from infra.vertex.errors import JobFailed
from infra.vertex.target import Target, client

#: Image URI recorded on custom jobs run locally (the local API runs the trainer natively).
LOCAL_IMAGE = "local/tunestack-trainer:native"
#: Longest wait for one tuning job or deployment.
JOB_DEADLINE_S = 6 * 3600.0
DEPLOY_DEADLINE_S = 1800.0
#: Fast polling: the server is on this machine.
POLL: dict[str, Any] = {"initial_delay": 0.5, "max_delay": 3.0}
SAMPLE_PROMPT = "What is a car?"


def up(spec_path: Path, smoke: bool, console: Console, predict: bool = True) -> Changes:
    """Converges a spec on the local API (started in the background when not running).

    Args:
        spec_path: The YAML spec.
        smoke: Start the server with ``--smoke`` (tiny random base models) when it is not running.
        console: Where progress and the summary go.
        predict: Send a sample prediction to each endpoint at the end.

    Returns:
        What was created and adopted.

    Raises:
        UpError: invalid spec or dataset (diagnostics printed, nothing uploaded), a failed
            job or deployment, or a server that cannot start.
    """
    plan = _validated_plan(spec_path, console)
    changes = Changes()
    with console.status("starting the local API", spinner="dots") as status:
        try:
            api, started = daemon.ensure(smoke)
        except daemon.DaemonError as e:
            raise UpError(str(e)) from None
        smoke_server = bool((daemon.status(api) or {}).get("smoke"))
        console.print(
            f"local API {'started' if started else 'reused'}: {api.api_url} (storage {api.storage_url})"
        )
        target = Target.local(plan.project.project_id, plan.project.region)
        record = _Record(spec_path)
        buckets_api = gcs.client(plan.project.project_id, api.storage_url, token=api.token)
        buckets.check_adopted_buckets(buckets_api, plan, api.storage_url, status)
        buckets.ensure_buckets(buckets_api, plan, changes, console, status)
        buckets.upload_datasets(buckets_api, plan, changes, console, status)
        record.meta(project=plan.project.project_id, region=plan.project.region)
        for job in plan.jobs:
            _job(target, plan, job, changes, record, console, status)
        endpoints = [
            _endpoint(target, plan, ep, changes, record, console, status) for ep in plan.endpoints
        ]
    for (endpoint, _model), ep in zip(endpoints, plan.endpoints, strict=True):
        changes.endpoints[ep.endpoint] = endpoint
        console.print(f"endpoint [bold]{ep.endpoint}[/]: {endpoint}")
        if predict:
            text = sample_prediction(target, endpoint)
            console.print(f"  sample prediction for {SAMPLE_PROMPT!r}: {text!r}", markup=False)
    if predict and smoke_server and plan.endpoints:
        console.print(
            "  (smoke mode: the base model was a tiny random-initialised one, so its answers are noise)"
        )
    _summary(changes, console)
    return changes


def down(spec_path: Path, delete_buckets: bool, console: Console, force: bool = False) -> Changes:
    """Undeploys and deletes the spec's endpoints and models, cancels its running jobs.

    Buckets (and their data) are kept unless ``delete_buckets``; even then ``create: false``
    buckets are never deleted (tunestack does not own them), and ``protect: true`` ones only
    with ``force`` (otherwise nothing at all is removed). The background server is stopped when
    nothing is left running on it.

    Raises:
        UpError: the local API cannot be reached, or a protected bucket would be deleted
            without ``force`` (before anything is removed).
    """
    changes = Changes()
    found = daemon.running()
    record = _Record(spec_path)
    if found is None and daemon.has_state():
        # Its state survives a stop and would be served again at the next start: start the
        # server to undeploy and cancel what the state holds, then stop it again (below).
        console.print("the local API is stopped but its state holds resources: starting it")
        daemon.ensure(smoke=False)
        found = daemon.running()
    if found is None:
        console.print("no local API is running and no state is left: nothing is deployed")
        return changes
    api, _ = found
    report = checks.validate(spec_path)
    plan = build_plan(report.spec, report, spec_path) if report.ok and report.spec else None
    project = plan.project.project_id if plan else record.data.get("project", "local-project")
    region = plan.project.region if plan else record.data.get("region", "us-central1")
    target = Target.local(project, region)
    if delete_buckets and plan is not None:
        buckets.check_may_delete(plan, force)
    with console.status("removing", spinner="dots") as status:
        endpoints = dict(record.data.get("endpoints", {}))
        if plan is not None:
            for ep in plan.endpoints:
                key = keys.deployment_key(_deploy_inputs(plan, ep))
                hit = deployments.find_deployment(target, key)
                if hit is not None:
                    endpoints[ep.endpoint] = {"endpoint": hit[0], "model": hit[1]}
                for orphan in deployments.find_models(target, key):
                    endpoints.setdefault(
                        f"{ep.endpoint} (orphan model)", {"endpoint": None, "model": orphan}
                    )
        for label, ids in endpoints.items():
            status.update(f"undeploying {label}")
            gone_before = (
                ids.get("endpoint") is None
                or deployments.get_endpoint(target, ids["endpoint"]) is None
            ) and (not ids.get("model") or not deployments.model_exists(target, ids["model"]))
            deployments.undeploy_and_delete(
                target, ids.get("endpoint"), ids.get("model"), DEPLOY_DEADLINE_S, **POLL
            )
            if not gone_before:
                changes.deleted.append(f"endpoint {label}")
                console.print(f"[red]-[/] endpoint {label} undeployed and deleted (with its model)")
        jobs = dict(record.data.get("jobs", {}))
        if plan is not None:
            for job in plan.jobs:
                inputs = _job_inputs(plan, job)
                key = keys.job_key(inputs)
                hit = (
                    vertex_jobs.find_custom_job(target, key)
                    if job.engine == "trainer_image"
                    else vertex_jobs.find_tuning_job(target, key)
                )
                if hit is not None:
                    jobs[job.job] = hit.name
        for label, name in jobs.items():
            try:
                state = vertex_jobs.state_name(vertex_jobs.get_job(target, name))
            except gexc.NotFound:
                continue
            if state in catalog.TERMINAL_JOB_STATES:
                continue
            status.update(f"cancelling job {label}")
            final = vertex_jobs.cancel_and_wait(target, name, 120, **POLL)
            changes.deleted.append(f"job {label}")
            console.print(f"[red]-[/] job {label} cancelled ({final})")
        if delete_buckets and plan is not None:
            buckets.delete_buckets(
                gcs.client(project, api.storage_url, token=api.token), plan, changes, console
            )
    record.clear()
    if _server_idle(target):
        pid = daemon.stop()
        console.print(f"local API stopped (pid {pid}): nothing left running on it")
    if not changes.changed:
        console.print("nothing to remove")
    return changes


def sample_prediction(target: Target, endpoint: str, prompt: str = SAMPLE_PROMPT) -> str:
    """One prediction through the GAPIC client (the instance fields of Google's sample)."""
    instance = json_format.ParseDict(
        {
            "prompt": prompt,
            "max_tokens": 32,
            "temperature": 1.0,
            "top_p": 1.0,
            "top_k": 1,
            "raw_response": True,
        },
        struct_pb2.Value(),
    )
    svc = client(aip.PredictionServiceClient, target)
    response = svc.predict(endpoint=endpoint, instances=[instance])
    return str(response.predictions[0]) if response.predictions else ""


# -- steps ----------------------------------------------------------------------------------


def _validated_plan(spec_path: Path, console: Console) -> Plan:
    report = checks.validate(spec_path)
    for d in report.diagnostics:
        console.print(d.format(), markup=False, highlight=False)
    if not report.ok or report.spec is None:
        raise UpError(f"{spec_path}: invalid; nothing was uploaded or submitted")
    return build_plan(report.spec, report, spec_path)


def _job_inputs(plan: Plan, job: JobPlan) -> dict[str, Any]:
    """The providers' job inputs, as the Pulumi program builds them: the same job key."""
    inputs = job.provider_inputs(plan.project.project_id, plan.project.region)
    if job.engine == "trainer_image":
        inputs.update(image_uri=LOCAL_IMAGE, replicas=job.replicas, machine_type=job.machine_type)
    return inputs


def _job(
    target: Target,
    plan: Plan,
    job: JobPlan,
    changes: Changes,
    record: _Record,
    console: Console,
    status: Status,
) -> None:
    """Adopts or submits one job, then waits for it (jobs run one at a time, in plan order)."""
    inputs = _job_inputs(plan, job)
    status.update(f"job {job.job}: looking for it")
    if job.engine == "trainer_image":
        name, adopted = vertex_jobs.ensure_custom_job(target, inputs)
    else:
        name, adopted = vertex_jobs.ensure_tuning_job(target, inputs)
    record.set("jobs", job.job, name)
    state = vertex_jobs.state_name(vertex_jobs.get_job(target, name))
    if adopted:
        changes.adopted.append(f"job {job.job}")
        console.print(f"[yellow]=[/] job {job.job}: adopted {name} ({state})")
    else:
        changes.created.append(f"job {job.job}")
        console.print(f"[green]+[/] job {job.job}: submitted {name}")
    collection = "customJobs" if vertex_jobs.is_custom_job(name) else "tuningJobs"
    rid = name.rsplit("/", 1)[-1]
    view = JobView(console, job.job)
    status.stop()  # one live display at a time: the job's bar replaces the spinner

    def progress(current: Any) -> None:
        view.update(
            job_progress.read_progress(target, job.run_uri, vertex_jobs.state_name(current))
        )

    try:
        done = vertex_jobs.wait_for_job(target, name, JOB_DEADLINE_S, progress, **POLL)
    finally:
        status.start()
    final = job_progress.read_progress(target, job.run_uri, vertex_jobs.state_name(done))
    try:
        vertex_jobs.raise_for_job(done)
    except JobFailed as e:
        view.finish(final, None)
        log = home.local_dir() / "logs" / f"{collection}-{rid}.log"
        raise UpError(f"{e}\n  trainer log: {log}\n  (a re-run submits it again)") from None
    curve = _local_loss_curve(target, final.loss_curve, rid)
    if curve:
        changes.loss_curves[job.job] = curve
    if not adopted or state not in catalog.TERMINAL_JOB_STATES:
        view.finish(final, curve)


def _local_loss_curve(target: Target, uri: str | None, rid: str) -> str | None:
    """Copies a job's loss_curve.png out of the emulator to ``local/jobs/<id>/`` (a path the
    user can open); None when the job wrote none."""
    if not uri:
        return None
    dest = home.local_dir() / "jobs" / rid / "loss_curve.png"
    try:
        bucket, name = gcs.split(uri)
        client_ = target.storage_client()
        dest.parent.mkdir(parents=True, exist_ok=True)
        client_.bucket(bucket).blob(name).download_to_filename(str(dest))
    except (gexc.GoogleAPIError, OSError, ValueError):
        return uri
    return str(dest)


def _endpoint(
    target: Target,
    plan: Plan,
    ep: EndpointPlan,
    changes: Changes,
    record: _Record,
    console: Console,
    status: Status,
) -> tuple[str, str]:
    """Adopts or deploys one endpoint, swaps in the wanted model, waits until it serves."""
    uri = _checkpoint_uri(target, plan, ep, record)
    inputs = ep.provider_inputs(plan.project.project_id, plan.project.region, uri)
    status.update(f"endpoint {ep.endpoint}: deploying {uri}")
    endpoint, _first, adopted = deployments.ensure_endpoint(
        target, inputs, DEPLOY_DEADLINE_S, **POLL
    )
    record.set("endpoints", ep.endpoint, {"endpoint": endpoint, "model": _first})
    status.update(f"endpoint {ep.endpoint}: serving {ep.model_uri}")
    serving = swaps.converge(target, endpoint, inputs, DEPLOY_DEADLINE_S, **POLL)
    record.set("endpoints", ep.endpoint, {"endpoint": endpoint, "model": serving.model})
    if not adopted:
        changes.created.append(f"endpoint {ep.endpoint}")
        console.print(f"[green]+[/] endpoint {ep.endpoint}: deployed {uri}")
    elif serving.steps:
        changes.updated.append(f"endpoint {ep.endpoint}")
        split = ", ".join(f"{k}: {v}%" for k, v in serving.traffic_split.items())
        console.print(
            f"[yellow]~[/] endpoint {ep.endpoint}: {' '.join(dict.fromkeys(serving.steps))} "
            f"(serving {uri}; traffic {split})"
        )
    else:
        changes.adopted.append(f"endpoint {ep.endpoint}")
    return endpoint, serving.model


def _checkpoint_uri(target: Target, plan: Plan, ep: EndpointPlan, record: _Record) -> str:
    """The weights an endpoint serves: its ``checkpoint:`` resolved among the job's checkpoints
    (``final``, ``epoch-N``, ``best``, ``checkpoint-<step>``) once the job has trained."""
    job = next((j for j in plan.jobs if j.job == ep.job), None)
    if job is None or ep.checkpoint == catalog.FINAL_CHECKPOINT:
        return ep.model_uri
    done = vertex_jobs.get_job(target, record.data["jobs"][job.job])
    tuned = [
        {"epoch": str(c.epoch), "step": str(c.step), "checkpointId": c.checkpoint_id}
        for c in getattr(getattr(done, "tuned_model", None), "checkpoints", [])
    ]
    found = checkpoints.job_checkpoints(target, job.run_uri, tuned)
    try:
        return checkpoints.resolve_checkpoint(ep.checkpoint, found)
    except checkpoint_selection.CheckpointNotFound as e:
        raise UpError(f"endpoint {ep.endpoint}: {e}") from None


def _deploy_inputs(plan: Plan, ep: EndpointPlan) -> dict[str, Any]:
    """The providers' deployment inputs, as the Pulumi program builds them."""
    return ep.provider_inputs(plan.project.project_id, plan.project.region, ep.model_uri)


def _server_idle(target: Target) -> bool:
    """True when the server has no endpoint and no unfinished job in any project."""
    data = home.local_dir() / "state"
    for collection in ("endpoints",):
        if any((data / collection).glob("*.json")):
            return False
    for collection in ("tuningJobs", "customJobs"):
        for path in (data / collection).glob("*.json"):
            state = json.loads(path.read_text())["resource"].get("state")
            if state not in catalog.TERMINAL_JOB_STATES:
                return False
    return True


def _summary(changes: Changes, console: Console) -> None:
    if not changes.changed:
        console.print(
            f"[bold]up to date[/]: nothing to change ({len(changes.adopted)} resources already in place)"
        )
    else:
        updated = f"{len(changes.updated)} updated, " if changes.updated else ""
        console.print(
            f"[bold]done[/]: {len(changes.created)} created, {updated}{len(changes.adopted)} unchanged"
        )


class _Record:
    """``local/applied/<hash of the spec path>.json``: job and endpoint names ``up`` used."""

    def __init__(self, spec_path: Path) -> None:
        digest = hashlib.sha256(str(spec_path.resolve()).encode()).hexdigest()[:16]
        self.path = home.local_dir() / "applied" / f"{digest}.json"
        try:
            self.data: dict[str, Any] = json.loads(self.path.read_text())
        except (OSError, ValueError):
            self.data = {}
        if not isinstance(self.data, dict):  # `[]`, `null`: start afresh (it is a cache)
            self.data = {}
        self.data.setdefault("spec", str(spec_path.resolve()))

    def set(self, section: str, key: str, value: Any) -> None:
        self.data.setdefault(section, {})[key] = value
        home.write_json_atomic(self.path, self.data)

    def meta(self, **values: str) -> None:
        self.data.update(values)
        home.write_json_atomic(self.path, self.data)

    def clear(self) -> None:
        self.path.unlink(missing_ok=True)
