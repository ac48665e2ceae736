"""What a spec change does: every resource classified as create, update, replace or delete.

Pure: :func:`diff_plans` compares two ``tunestack plan --format json`` documents. A resource
of ours (a dynamic provider's) is classified from its ``Args`` declaration in
:mod:`infra.plan.inputs` (:func:`~infra.plan.inputs.change_of`), the very declaration the
providers' ``diff`` reads, so the plan and ``pulumi up`` cannot disagree. pulumi-gcp resources
use :data:`GCP_REPLACES`, the inputs terraform-provider-google marks ForceNew.

A replacement also changes what depends on it: a new job has a new resource name (its
completion waits for the new job) and new weights (its endpoints redeploy them blue/green on
the same endpoint). :data:`CONSUMES` names the inputs that carry those outputs, and the
dependents are classified from the same declarations with those inputs changed.
"""

from __future__ import annotations

from typing import Any

from infra.plan import inputs
from infra.plan.names import job_names

CREATE, UPDATE, REPLACE, DELETE = "create", "update", "replace", "delete"

#: Type token prefix of our dynamic providers' resources.
DYNAMIC = "pulumi-python:dynamic/tunestack:"

#: Our resource types (the token's last part) and their declared inputs.
ARGS: dict[str, type] = {
    "ServiceAgents": inputs.ServiceAgentsArgs,
    "TuningJob": inputs.TuningJobArgs,
    "CustomTrainingJob": inputs.CustomTrainingJobArgs,
    "TuningJobCompletion": inputs.TuningJobCompletionArgs,
    "TrainerImage": inputs.TrainerImageArgs,
    "ModelDeployment": inputs.ModelDeploymentArgs,
}

#: Job types: creating or replacing one submits a billed job.
JOBS = frozenset({"TuningJob", "CustomTrainingJob"})

#: pulumi-gcp inputs (wire names) whose change replaces the resource (ForceNew); any other
#: input changes in place. A type missing here is assumed replaced on any change.
GCP_REPLACES: dict[str, frozenset[str]] = {
    "gcp:organizations/project:Project": frozenset({"projectId"}),
    "gcp:projects/service:Service": frozenset({"project", "service"}),
    "gcp:projects/serviceIdentity:ServiceIdentity": frozenset({"project", "service"}),
    "gcp:storage/bucket:Bucket": frozenset({"name", "location", "project"}),
    "gcp:storage/bucketObject:BucketObject": frozenset({"bucket", "name", "source"}),
    "gcp:storage/bucketIAMMember:BucketIAMMember": frozenset(
        {"bucket", "member", "role", "condition"}
    ),
    "gcp:artifactregistry/repository:Repository": frozenset(
        {"project", "location", "repositoryId", "format"}
    ),
}

#: Inputs left out of change detection: a BucketObject's ``source`` is the local path, which
#: differs between checkouts; its content hash is already in the object ``name``.
UNCOMPARED: dict[str, tuple[str, ...]] = {"gcp:storage/bucketObject:BucketObject": ("source",)}

#: Dependent type -> dependency type -> the dependent's inputs computed from that
#: dependency's outputs (they change when the dependency is replaced).
CONSUMES: dict[str, dict[str, tuple[str, ...]]] = {
    "TuningJobCompletion": {"TuningJob": ("job_name",), "CustomTrainingJob": ("job_name",)},
    "ModelDeployment": {"TuningJobCompletion": ("gcs_uri",)},
    "CustomTrainingJob": {"TrainerImage": ("image_uri",)},
}


def diff_plans(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """What applying ``new`` over ``old`` does (two plan JSON documents).

    Returns:
        ``{"changes": [{"name", "type", "action", "fields", "effects"}], "training_tokens_delta",
        "billed_training_tokens", "billed_jobs", "training_tokens": {"old", "new", "delta"},
        "jobs": [{"name", "old", "new", "delta"}]}``: changes in dependency order (what ``pulumi up``
        does first comes first), then deletes; unchanged resources are left
        out. ``billed_training_tokens`` is what the new or replaced jobs train on (None when a
        count is unknown); token deltas count an unknown side as 0.
    """
    before = {r["name"]: r for r in old.get("resources", [])}
    after = {r["name"]: r for r in new.get("resources", [])}
    old_eps = {_endpoint_name(e): e for e in old.get("endpoints", [])}
    new_eps = {_endpoint_name(e): e for e in new.get("endpoints", [])}
    found: dict[str, dict[str, Any]] = {}
    for name in sorted(after):
        r = after[name]
        if name not in before:
            found[name] = _change(r, CREATE, [])
            continue
        action, fields = classify(before[name], r)
        if action != "none":
            found[name] = _change(r, action, fields)
    _propagate(after, found)
    for name, c in found.items():
        c["effects"] = _effects(c, after[name], before.get(name), old_eps, new_eps, new)
    rank = {n: i for i, n in enumerate(_order(after))}
    changes = sorted(found.values(), key=lambda c: rank[c["name"]])
    for name in sorted(set(before) - set(after)):
        c = _change(before[name], DELETE, [])
        c["effects"] = _effects(c, before[name], None, old_eps, new_eps, old)
        changes.append(c)
    tokens = _tokens(old, new)
    billed = [
        c["name"] for c in changes if _kind(c["type"]) in JOBS and c["action"] in (CREATE, REPLACE)
    ]
    return {"changes": changes, **tokens, **_billed(new, billed)}


def classify(old: dict[str, Any], new: dict[str, Any]) -> tuple[str, list[str]]:
    """The action and the changed fields (``inputs.<name>``, ``type``, ``parent``,
    ``protect``) between two versions of one resource; action ``none`` when nothing differs.

    A new type or parent is a new URN: replace. Our resources follow their declaration.
    """
    fields = [k for k in ("type", "parent") if old.get(k) != new.get(k)]
    changed = changed_inputs(new["type"], old.get("inputs", {}), new.get("inputs", {}))
    protect = ["protect"] if bool(old.get("protect")) != bool(new.get("protect")) else []
    all_fields = fields + [f"inputs.{k}" for k in changed] + protect
    if fields:
        return REPLACE, all_fields
    if not changed:
        return (UPDATE, all_fields) if protect else ("none", [])
    return input_action(new["type"], changed), all_fields


def changed_inputs(type_: str, old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """The compared inputs whose values differ, sorted (2 and 2.0 are equal, as on the wire)."""
    skip = UNCOMPARED.get(type_, ())
    names = sorted(set(old) | set(new))
    return inputs.changed_inputs(names, old, new, skip)


def input_action(type_: str, changed: list[str]) -> str:
    """``replace`` or ``update`` for changing ``changed`` inputs of a resource of ``type_``."""
    args = ARGS.get(_kind(type_)) if type_.startswith(DYNAMIC) else None
    if args is not None:
        return inputs.change_of(args, changed)
    if type_.startswith(DYNAMIC) or type_ not in GCP_REPLACES:
        return REPLACE
    return REPLACE if set(changed) & GCP_REPLACES[type_] else UPDATE


# --- helpers -------------------------------------------------------------------------------


def _order(resources: dict[str, dict[str, Any]]) -> list[str]:
    """Names with every dependency before its dependents (ties by name)."""
    seen: set[str] = set()
    out: list[str] = []

    def visit(name: str, path: frozenset[str]) -> None:
        if name in seen or name in path or name not in resources:
            return
        for dep in sorted(resources[name].get("depends_on", [])):
            visit(dep, path | {name})
        seen.add(name)
        out.append(name)

    for name in sorted(resources):
        visit(name, frozenset())
    return out


def _change(r: dict[str, Any], action: str, fields: list[str]) -> dict[str, Any]:
    return {"name": r["name"], "type": r["type"], "action": action, "fields": fields, "effects": []}


def _propagate(after: dict[str, dict[str, Any]], found: dict[str, dict[str, Any]]) -> None:
    """Dependents of replaced resources, in dependency order (a fixpoint over the graph)."""
    done: set[str] = set()
    order = _order(after)  # dependencies first, so a root cause is known before its dependents
    while True:
        replaced = {n for n, c in found.items() if c["action"] == REPLACE} - done
        if not replaced:
            return
        done |= replaced
        for name in order:
            r = after[name]
            consumes = CONSUMES.get(_kind(r["type"]), {})
            extra: list[str] = []
            for dep in r.get("depends_on", []):
                if dep in replaced and dep in after:
                    extra += [f for f in consumes.get(_kind(after[dep]["type"]), ()) if f]
            if not extra:
                continue
            c = found.get(name)
            if c is not None and c["action"] in (CREATE, DELETE):
                continue
            fields = [f"inputs.{f}" for f in extra]
            if c is None:
                c = found[name] = _change(r, "none", [])
            c["fields"] = sorted(set(c["fields"]) | set(fields))
            changed = [f.removeprefix("inputs.") for f in c["fields"] if f.startswith("inputs.")]
            action = input_action(r["type"], changed)
            c["action"] = REPLACE if REPLACE in (action, c["action"]) else action
            for dep in (d for d in r["depends_on"] if d in replaced):
                # Name the root cause (the job), not the completion in between.
                c.setdefault("because", set()).update(found[dep].get("because") or {dep})


def _effects(
    c: dict[str, Any],
    r: dict[str, Any],
    old_r: dict[str, Any] | None,
    old_eps: dict[str, dict[str, Any]],
    new_eps: dict[str, dict[str, Any]],
    doc: dict[str, Any],
) -> list[str]:
    kind, action = _kind(r["type"]), c["action"]
    because = sorted(c.pop("because", set()))
    out = [f"because {', '.join(because)} is replaced"] if because else []
    if kind in JOBS:
        tokens = _job_tokens(doc, r["name"])
        billed = f" ({tokens:,} training tokens)" if tokens is not None else ""
        if action in (CREATE, REPLACE):
            new = "a NEW BILLED job" if action == REPLACE else "a billed job"
            out.append(f"submits {new}{billed}; the previous job's checkpoints stay")
        elif action == DELETE:
            out.append("cancels the job if it still runs; its checkpoints stay")
        else:
            out.append("recorded in place (no new job)")
    elif kind == "TuningJobCompletion" and action == REPLACE:
        out.append("waits for the new job")
    elif kind == "ModelDeployment":
        out += _endpoint_effects(c, r, old_r, old_eps, new_eps, bool(because))
    elif action == DELETE and r.get("protect"):
        out.append("protected: Pulumi refuses to delete it (retained)")
    return out


def _endpoint_effects(
    c: dict[str, Any],
    r: dict[str, Any],
    old_r: dict[str, Any] | None,
    old_eps: dict[str, dict[str, Any]],
    new_eps: dict[str, dict[str, Any]],
    new_weights: bool,
) -> list[str]:
    name = r["name"].removeprefix("endpoint-")
    old, new = old_eps.get(name, {}), new_eps.get(name, {})
    action = c["action"]
    if action == CREATE:
        return [f"creates the endpoint and deploys {new.get('serves') or 'its model'}"]
    if action == DELETE:
        return ["undeploys the model and deletes the endpoint and its model"]
    if action == REPLACE:
        return ["deletes the endpoint and creates a new one (a new endpoint resource name)"]
    changed = {f.removeprefix("inputs.") for f in c["fields"]}
    out = []
    redeploy = sorted(changed & inputs.redeploying(inputs.ModelDeploymentArgs))
    if redeploy:
        serves = new.get("serves")
        what = ""
        if new_weights:
            what = (
                f" to serve the new job's weights ({serves})"
                if serves
                else " to serve the new job's weights"
            )
        elif serves and serves != old.get("serves"):
            what = f" to serve {serves}"
        out.append(f"redeploys blue/green on the same endpoint{what} ({', '.join(redeploy)})")
    was = (old_r or {}).get("inputs", {})
    now = r.get("inputs", {})
    if changed & {"min_replicas", "max_replicas"}:
        out.append(f"scales in place, no redeploy (replicas {_range(was)} -> {_range(now)})")
    if "canary_percent" in changed:
        share = _int(now.get("canary_percent"))
        if isinstance(share, int) and share:
            out.append(
                f"canary: the new model gets {share}%, the previous one stays with {100 - share}%"
            )
        elif was.get("canary_percent"):
            out.append("canary ends: the new model takes 100%, the previous one is undeployed")
    return out


def _range(values: dict[str, Any]) -> str:
    low, high = values.get("min_replicas", 1), values.get("max_replicas", 1)
    return f"{_int(low)}..{_int(high)}"


def _int(value: Any) -> Any:
    return int(value) if isinstance(value, float) and value.is_integer() else value


def _endpoint_name(e: dict[str, Any]) -> str:
    return str(e.get("name", ""))


def _job_tokens(doc: dict[str, Any], resource: str) -> int | None:
    for j in doc.get("jobs", []):
        if job_names(str(j.get("name")))[0] == resource:
            value = j.get("training_tokens")
            return value if isinstance(value, int) else None
    return None


def _tokens(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    old_jobs = {j["name"]: j.get("training_tokens") for j in old.get("jobs", [])}
    new_jobs = {j["name"]: j.get("training_tokens") for j in new.get("jobs", [])}
    jobs = []
    for name in list(new_jobs) + [n for n in old_jobs if n not in new_jobs]:
        o, n = old_jobs.get(name), new_jobs.get(name)
        if o != n:
            jobs.append({"name": name, "old": o, "new": n, "delta": (n or 0) - (o or 0)})
    old_total, new_total = _total(old_jobs.values()), _total(new_jobs.values())
    delta = sum(j["delta"] for j in jobs)
    return {
        "training_tokens_delta": delta,
        "training_tokens": {"old": old_total, "new": new_total, "delta": delta},
        "jobs": jobs,
    }


def _billed(new: dict[str, Any], billed: list[str]) -> dict[str, Any]:
    counts = [_job_tokens(new, name) for name in billed]
    total = None if any(c is None for c in counts) else sum(c for c in counts if c is not None)
    return {"billed_jobs": billed, "billed_training_tokens": total}


def _total(values: Any) -> int | None:
    values = list(values)
    return None if any(v is None for v in values) else sum(values)


def _kind(type_: str) -> str:
    return type_.rsplit(":", 1)[-1]
