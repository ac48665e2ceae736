"""Semantic rules of a spec that loaded: catalog lookups, names, references, URIs, fit.

Pure: a spec and the positions of its keys in, diagnostics out. Each rule names the field it
is about, so every diagnostic points at the key's line. The project rules live in
:mod:`infra.checks.project`, the endpoint rules in :mod:`infra.checks.endpoints`, and the
naming and reference rules they share in :mod:`infra.checks.names`; the buckets, datasets,
tuning jobs and IAM grants are checked here.
"""

from __future__ import annotations

from infra import catalog, gcs
from infra.checks.endpoints import check_endpoints
from infra.checks.names import (
    bucket_name_problem,
    check_bucket_ref,
    check_duplicates,
    check_gs_uri,
    check_labels,
)
from infra.checks.project import check_project
from infra.diagnostics import Diagnostic, Positions, Reporter, did_you_mean
from infra.spec import Spec

_MEMBER_PREFIXES = ("user:", "group:", "serviceAccount:", "domain:", "principal:", "principalSet:")
_PUBLIC_MEMBERS = ("allUsers", "allAuthenticatedUsers")


def check_spec(spec: Spec, positions: Positions, file: str) -> list[Diagnostic]:
    """Every semantic problem of a spec whose shape is valid.

    Args:
        spec: The loaded spec.
        positions: Key positions from :func:`infra.load.load_spec`.
        file: The spec file as the user named it.

    Returns:
        Diagnostics in no particular order (callers sort).
    """
    r = Reporter(file, positions)
    check_project(r, spec)
    _buckets(r, spec)
    _datasets(r, spec)
    _jobs(r, spec)
    check_endpoints(r, spec)
    _iam(r, spec)
    return r.diagnostics


# --- helpers -------------------------------------------------------------------------------


def _buckets(r: Reporter, spec: Spec) -> None:
    check_duplicates(r, [b.name for b in spec.buckets], "buckets", "bucket")
    for i, b in enumerate(spec.buckets):
        problem = bucket_name_problem(b.name)
        if problem:
            r.error(
                "invalid-bucket-name", f"buckets[{i}].name", f"bucket name {b.name!r} {problem}"
            )


def _datasets(r: Reporter, spec: Spec) -> None:
    check_duplicates(r, [d.name for d in spec.datasets], "datasets", "dataset")
    for i, d in enumerate(spec.datasets):
        base = f"datasets[{i}]"
        local = False
        for key in ("train", "validation"):
            uri = getattr(d, key)
            if uri is None:
                continue
            if uri.startswith(gcs.SCHEME):
                check_gs_uri(
                    r, spec, uri, f"{base}.{key}", f"dataset {d.name!r} {key}", need_object=True
                )
            elif gcs.is_remote(uri):
                r.error(
                    "invalid-uri",
                    f"{base}.{key}",
                    f"{uri!r}: datasets are local paths or gs:// URIs (Vertex reads only Cloud Storage)",
                )
            elif not uri.strip():
                r.error("invalid-uri", f"{base}.{key}", "empty path")
            else:
                local = True
        if d.bucket is not None:
            check_bucket_ref(r, spec, d.bucket, f"{base}.bucket", f"dataset {d.name!r}")
        elif local:
            r.error(
                "missing-field",
                f"{base}.bucket",
                f"dataset {d.name!r} has local files, so it needs 'bucket' to upload them to",
            )


def _jobs(r: Reporter, spec: Spec) -> None:
    check_duplicates(r, [j.name for j in spec.tuning_jobs], "tuning_jobs", "tuning job")
    dataset_names = [d.name for d in spec.datasets]
    for i, j in enumerate(spec.tuning_jobs):
        base = f"tuning_jobs[{i}]"
        model = catalog.model(j.base_model)
        if model is None:
            r.error(
                "unsupported-model",
                f"{base}.base_model",
                f"{j.base_model!r} is not an open model Vertex can tune{did_you_mean(j.base_model, catalog.MODELS)}",
            )
        elif j.tuning_mode not in model.tuning_modes:
            r.error(
                "unsupported-tuning-mode",
                f"{base}.tuning_mode",
                f"{model.display_name} supports {' and '.join(model.tuning_modes)} tuning, not {j.tuning_mode}",
            )
        if j.adapter_size is not None:
            if j.tuning_mode == catalog.FULL:
                r.error(
                    "invalid-adapter-size",
                    f"{base}.adapter_size",
                    "adapter_size is for PEFT_ADAPTER tuning only; remove it for FULL",
                )
            elif j.adapter_size not in catalog.ADAPTER_SIZES:
                r.error(
                    "invalid-adapter-size",
                    f"{base}.adapter_size",
                    f"adapter_size {j.adapter_size} is not one of {', '.join(map(str, catalog.ADAPTER_SIZES))}",
                )
        if j.learning_rate is not None and j.learning_rate_multiplier is not None:
            r.error(
                "learning-rate-conflict",
                f"{base}.learning_rate",
                "set learning_rate or learning_rate_multiplier, not both",
            )
        if j.dataset not in dataset_names:
            r.error(
                "unknown-reference",
                f"{base}.dataset",
                f"dataset {j.dataset!r} is not defined in datasets:{did_you_mean(j.dataset, dataset_names)}",
            )
        check_gs_uri(
            r, spec, j.output_uri, f"{base}.output_uri", f"job {j.name!r} output", need_object=False
        )
        if j.custom_base_model is not None:
            check_gs_uri(
                r,
                spec,
                j.custom_base_model,
                f"{base}.custom_base_model",
                f"job {j.name!r} custom_base_model",
                need_object=True,
            )
        check_labels(r, j.labels, f"{base}.labels")
        if j.engine == "trainer_image" and spec.trainer_image is None:
            r.error(
                "missing-field",
                f"{base}.engine",
                "engine: trainer_image needs a top-level trainer_image: section (where the image is built)",
            )
        if j.engine == "managed":
            for key in ("machine_type", "replicas"):
                if f"{base}.{key}" in (r.positions or {}):  # written, not defaulted
                    r.error(
                        "invalid-value",
                        f"{base}.{key}",
                        f"{key} applies to engine: trainer_image only; the managed service picks its own machines",
                    )


def _iam(r: Reporter, spec: Spec) -> None:
    for i, g in enumerate(spec.iam):
        base = f"iam[{i}]"
        check_bucket_ref(r, spec, g.bucket, f"{base}.bucket", "iam grant")
        if g.member in _PUBLIC_MEMBERS:
            r.error(
                "public-member",
                f"{base}.member",
                f"{g.member} would make the bucket public; grant a user, group or service account",
            )
        elif not g.member.startswith(_MEMBER_PREFIXES):
            r.error(
                "invalid-value",
                f"{base}.member",
                f"{g.member!r} is not an IAM member (user:, group:, serviceAccount:, domain:, ...)",
            )
        if not g.role.startswith(("roles/", "projects/", "organizations/")):
            r.error(
                "invalid-value",
                f"{base}.role",
                f"{g.role!r} is not a role name like roles/storage.objectViewer",
            )
