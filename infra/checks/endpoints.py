"""The endpoint rules: what an endpoint serves, its checkpoint, replicas, machine and fit.

Fit is checked against the catalog: the model's bf16 weights must fit the machine's
accelerator memory (an error) and should leave room for the KV cache (a warning).
"""

from __future__ import annotations

from infra import catalog, checkpoint_selection, gcs
from infra.checks.names import check_duplicates, check_gs_uri
from infra.diagnostics import Reporter, did_you_mean
from infra.spec import Spec

#: The selections offered in "did you mean" hints.
_SELECTIONS = (
    catalog.FINAL_CHECKPOINT,
    checkpoint_selection.BEST_CHECKPOINT,
    "epoch-1",
    "checkpoint-1",
)


def check_endpoints(r: Reporter, spec: Spec) -> None:
    """Records every problem of ``spec.endpoints`` on ``r``."""
    check_duplicates(r, [e.name for e in spec.endpoints], "endpoints", "endpoint")
    job_names = [j.name for j in spec.tuning_jobs]
    for i, e in enumerate(spec.endpoints):
        base = f"endpoints[{i}]"
        if e.model.startswith(gcs.SCHEME):
            check_gs_uri(
                r, spec, e.model, f"{base}.model", f"endpoint {e.name!r} weights", need_object=True
            )
        elif gcs.is_remote(e.model):
            r.error(
                "invalid-uri",
                f"{base}.model",
                f"{e.model!r}: weights must be in Cloud Storage (gs://)",
            )
        elif e.model not in job_names:
            r.error(
                "unknown-reference",
                f"{base}.model",
                f"{e.model!r} is neither a tuning job of this spec nor a gs:// URI{did_you_mean(e.model, job_names)}",
            )
        _checkpoint(r, spec, i)
        if e.base_model is not None and catalog.model(e.base_model) is None:
            r.error(
                "unsupported-model",
                f"{base}.base_model",
                f"{e.base_model!r} is not in the catalog{did_you_mean(e.base_model, catalog.MODELS)}",
            )
        if e.min_replicas > e.max_replicas:
            r.error(
                "invalid-value",
                f"{base}.max_replicas",
                f"max_replicas ({e.max_replicas}) is below min_replicas ({e.min_replicas})",
            )
        machine = catalog.machine(e.machine_type)
        if machine is None:
            r.error(
                "accelerator-mismatch",
                f"{base}.machine_type",
                f"{e.machine_type!r} is not a G2 machine type ({', '.join(catalog.MACHINES)}){did_you_mean(e.machine_type, catalog.MACHINES)}",
            )
            continue
        if e.accelerator_type != machine.accelerator_type:
            r.error(
                "accelerator-mismatch",
                f"{base}.accelerator_type",
                f"{e.machine_type} carries {machine.accelerator_type}, not {e.accelerator_type}",
            )
            continue
        if e.accelerator_count != machine.accelerator_count:
            r.error(
                "accelerator-mismatch",
                f"{base}.accelerator_count",
                f"{e.machine_type} has {machine.accelerator_count} {machine.accelerator_type}, not {e.accelerator_count}",
            )
            continue
        _fit(r, spec, i, machine)


def endpoint_model(spec: Spec, index: int) -> catalog.Model | None:
    """The catalog model an endpoint serves: its job's base model, or ``base_model`` for gs://."""
    ep = spec.endpoints[index]
    if ep.base_model:
        return catalog.model(ep.base_model)
    job = next((j for j in spec.tuning_jobs if j.name == ep.model), None)
    return catalog.model(job.base_model) if job else None


def _checkpoint(r: Reporter, spec: Spec, index: int) -> None:
    """``checkpoint:`` names a checkpoint the job will have, checked before any training."""
    e = spec.endpoints[index]
    field = f"endpoints[{index}].checkpoint"
    sel = checkpoint_selection.parse_checkpoint(e.checkpoint)
    if sel is None:
        shown = e.checkpoint[: checkpoint_selection.MAX_SELECTION_CHARS]
        r.error(
            "invalid-checkpoint",
            field,
            f"checkpoint {shown!r} must be final, best, epoch-N (N >= 1) or checkpoint-STEP (STEP >= 1){did_you_mean(shown, _SELECTIONS)}",
        )
        return
    job = next((j for j in spec.tuning_jobs if j.name == e.model), None)
    if job is None:
        if e.model.startswith(gcs.SCHEME) and sel.kind != "final":
            r.error(
                "invalid-checkpoint",
                field,
                f"checkpoint {e.checkpoint!r} only applies to an endpoint of a tuning job; gs:// weights are served as they are (remove checkpoint)",
            )
        return
    if sel.kind == "epoch":
        kept = catalog.checkpoint_epochs(job.epochs)
        if sel.number not in kept:
            which = (
                f"trains {job.epochs} epoch(s): epoch-1 .. epoch-{job.epochs}"
                if job.epochs <= catalog.MAX_CHECKPOINTS
                else f"trains {job.epochs} epochs and keeps {catalog.MAX_CHECKPOINTS} checkpoints: {', '.join(f'epoch-{n}' for n in kept)}"
            )
            r.error(
                "invalid-checkpoint",
                field,
                f"{e.checkpoint}: job {job.name!r} keeps no checkpoint of epoch {sel.number}; it {which}",
            )
    elif sel.kind == "best":
        ds = next((d for d in spec.datasets if d.name == job.dataset), None)
        if ds is not None and ds.validation is None:
            r.error(
                "best-needs-validation",
                field,
                f"checkpoint best is the lowest validation loss, but job {job.name!r} trains on dataset {ds.name!r}, which has no validation file (add datasets[].validation, or pick final or epoch-N)",
            )
    elif sel.kind == "step":
        r.warning(
            "checkpoint-step-unchecked",
            field,
            f"{e.checkpoint} names a training step of job {job.name!r}: steps depend on the batch size and are known only after training, so it is resolved then (and fails if absent); epoch-N picks an epoch's checkpoint and is checked now",
        )


def _fit(r: Reporter, spec: Spec, index: int, machine: catalog.Machine) -> None:
    model = endpoint_model(spec, index)
    if model is None:
        return
    acc = catalog.ACCELERATORS[machine.accelerator_type]
    memory = acc.memory_gb * machine.accelerator_count
    weights = model.bf16_weights_gb
    base = f"endpoints[{index}].machine_type"
    smallest = catalog.smallest_machine(model)
    # The suggestion names every field it changes, so applying it as given validates.
    hint = (
        f"; try machine_type: {smallest.name} (accelerator_count: {smallest.accelerator_count})"
        if smallest
        else "; no G2 machine is large enough"
    )
    if weights > memory:
        r.error(
            "endpoint-too-small",
            base,
            f"{model.display_name} weights need {weights:.1f} GB in bf16 but {machine.name} has {memory:.0f} GB of accelerator memory{hint}",
        )
    elif memory - weights < catalog.KV_CACHE_HEADROOM * memory:
        free = (memory - weights) / memory
        r.warning(
            "kv-cache-headroom",
            base,
            f"{model.display_name} weights ({weights:.1f} GB bf16) leave {free:.0%} of {memory:.0f} GB for the KV cache (under {catalog.KV_CACHE_HEADROOM:.0%}){hint}",
        )
