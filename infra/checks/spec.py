"""Semantic rules of a spec that loaded: catalog lookups, names, references, URIs, fit.

Pure: a spec and the positions of its keys in, diagnostics out. Each rule names the field it
is about, so every diagnostic points at the key's line.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass

from infra import catalog
from infra.diagnostics import Diagnostic, Severity, did_you_mean
from infra.load import Positions, locate
from infra.spec import Spec

_PROJECT_ID = re.compile(r"[a-z][a-z0-9-]{4,28}[a-z0-9]")
_PROJECT_NUMBER = re.compile(r"[0-9]{1,20}")
_BILLING_ACCOUNT = re.compile(r"[0-9A-F]{6}-[0-9A-F]{6}-[0-9A-F]{6}")
_BUCKET_CHARS = re.compile(r"[a-z0-9][a-z0-9._-]*[a-z0-9]")
_LABEL_KEY = re.compile(r"[a-z][a-z0-9_-]{0,62}")
_LABEL_VALUE = re.compile(r"[a-z0-9_-]{0,63}")
_API = re.compile(r"[a-z0-9-]+(\.[a-z0-9-]+)*\.googleapis\.com")
_CHECKPOINT = re.compile(r"final|checkpoint-[0-9]+")
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
    c = _Checker(positions, file)
    c.project(spec)
    c.buckets(spec)
    c.datasets(spec)
    c.jobs(spec)
    c.endpoints(spec)
    c.iam(spec)
    return c.out


def bucket_name_problem(name: str) -> str | None:
    """Why ``name`` is not a valid Cloud Storage bucket name, or None when it is."""
    if not 3 <= len(name) <= 63:
        return f"must be 3-63 characters (is {len(name)})"
    if not _BUCKET_CHARS.fullmatch(name):
        return "may only hold lowercase letters, digits, '-', '_' and '.', and must start and end with a letter or digit"
    if ".." in name or ".-" in name or "-." in name:
        return "must not hold '..', '.-' or '-.'"
    try:
        ipaddress.ip_address(name)
        return "must not be an IP address"
    except ValueError:
        pass
    if name.startswith("goog"):
        return "must not start with 'goog'"
    if "google" in name or "g00gle" in name:
        return "must not contain 'google'"
    return None


@dataclass(frozen=True)
class GsUri:
    """A parsed ``gs://bucket/object`` URI."""

    bucket: str
    object: str


def parse_gs(uri: str) -> GsUri | None:
    """Splits a gs:// URI into bucket and object; None when it is not one."""
    if not uri.startswith("gs://"):
        return None
    bucket, _, obj = uri[5:].partition("/")
    return GsUri(bucket, obj)


def is_remote(uri: str) -> bool:
    """True for anything with a URI scheme (gs://, http://, ...), False for local paths."""
    return "://" in uri


def endpoint_model(spec: Spec, index: int) -> catalog.Model | None:
    """The catalog model an endpoint serves: its job's base model, or ``base_model`` for gs://."""
    ep = spec.endpoints[index]
    if ep.base_model:
        return catalog.model(ep.base_model)
    job = next((j for j in spec.tuning_jobs if j.name == ep.model), None)
    return catalog.model(job.base_model) if job else None


# --- helpers -------------------------------------------------------------------------------


class _Checker:
    def __init__(self, positions: Positions, file: str) -> None:
        self.positions = positions
        self.file = file
        self.out: list[Diagnostic] = []

    def add(self, code: str, field: str, message: str, severity: Severity = "error") -> None:
        line, col = locate(self.positions, field)
        self.out.append(Diagnostic(severity, code, self.file, line, col, field, message))

    # project and apis

    def project(self, spec: Spec) -> None:
        p = spec.project
        if not _PROJECT_ID.fullmatch(p.id) or p.id.endswith("-"):
            self.add(
                "invalid-project-id",
                "project.id",
                f"{p.id!r} is not a project id: 6-30 characters, a lowercase letter first, then lowercase letters, digits or '-', not ending in '-'",
            )
        if p.number is not None and not _PROJECT_NUMBER.fullmatch(p.number):
            self.add(
                "invalid-value",
                "project.number",
                f"{p.number!r} is not a project number (digits only; quote it in YAML)",
            )
        if p.region not in catalog.TUNING_REGIONS:
            self.add(
                "unsupported-region",
                "project.region",
                f"{p.region!r} does not run open-model tuning; use one of {', '.join(catalog.TUNING_REGIONS)}{did_you_mean(p.region, catalog.TUNING_REGIONS)}",
            )
        self.labels(p.labels, "project.labels")
        if p.create:
            if not p.billing_account:
                self.add(
                    "missing-field", "project.billing_account", "create: true needs billing_account"
                )
            if (p.folder_id is None) == (p.org_id is None):
                self.add(
                    "missing-field" if p.folder_id is None else "invalid-value",
                    "project.create",
                    "create: true needs exactly one of folder_id and org_id",
                )
        if p.billing_account is not None and not _BILLING_ACCOUNT.fullmatch(p.billing_account):
            self.add(
                "invalid-value",
                "project.billing_account",
                f"{p.billing_account!r} is not a billing account id (XXXXXX-XXXXXX-XXXXXX, hex digits)",
            )
        for i, api in enumerate(spec.apis):
            if not _API.fullmatch(api):
                self.add(
                    "invalid-value",
                    f"apis[{i}]",
                    f"{api!r} is not a service name like aiplatform.googleapis.com",
                )

    def labels(self, labels: dict[str, str], path: str) -> None:
        for k, v in labels.items():
            if not _LABEL_KEY.fullmatch(k):
                self.add(
                    "invalid-value",
                    f"{path}.{k}",
                    f"label key {k!r} must start with a lowercase letter and hold at most 63 lowercase letters, digits, '_' or '-'",
                )
            if not _LABEL_VALUE.fullmatch(v):
                self.add(
                    "invalid-value",
                    f"{path}.{k}",
                    f"label value {v!r} may hold at most 63 lowercase letters, digits, '_' or '-'",
                )

    # buckets

    def buckets(self, spec: Spec) -> None:
        self.duplicates([b.name for b in spec.buckets], "buckets", "bucket")
        for i, b in enumerate(spec.buckets):
            problem = bucket_name_problem(b.name)
            if problem:
                self.add(
                    "invalid-bucket-name", f"buckets[{i}].name", f"bucket name {b.name!r} {problem}"
                )

    def bucket_ref(self, spec: Spec, name: str, field: str, what: str) -> None:
        names = [b.name for b in spec.buckets]
        if name not in names:
            self.add(
                "unknown-reference",
                field,
                f"{what} bucket {name!r} is not declared in buckets: (add it, with create: false for an existing bucket, so its IAM grants can be derived){did_you_mean(name, names)}",
            )

    def gs_uri(self, spec: Spec, uri: str, field: str, what: str, *, need_object: bool) -> None:
        """A gs:// URI: well formed, and its bucket declared."""
        gs = parse_gs(uri)
        if gs is None:
            self.add("invalid-uri", field, f"{uri!r} is not a gs://bucket/path URI")
            return
        problem = bucket_name_problem(gs.bucket)
        if problem:
            self.add("invalid-uri", field, f"{uri!r}: bucket name {gs.bucket!r} {problem}")
            return
        if need_object and (not gs.object or gs.object.endswith("/")):
            self.add(
                "invalid-uri",
                field,
                f"{uri!r} names no object; give the file, e.g. gs://{gs.bucket}/data/train.jsonl",
            )
            return
        if "//" in gs.object:
            self.add("invalid-uri", field, f"{uri!r} holds an empty path segment ('//')")
            return
        self.bucket_ref(spec, gs.bucket, field, what)

    # datasets

    def datasets(self, spec: Spec) -> None:
        self.duplicates([d.name for d in spec.datasets], "datasets", "dataset")
        for i, d in enumerate(spec.datasets):
            base = f"datasets[{i}]"
            local = False
            for key in ("train", "validation"):
                uri = getattr(d, key)
                if uri is None:
                    continue
                if uri.startswith("gs://"):
                    self.gs_uri(
                        spec, uri, f"{base}.{key}", f"dataset {d.name!r} {key}", need_object=True
                    )
                elif is_remote(uri):
                    self.add(
                        "invalid-uri",
                        f"{base}.{key}",
                        f"{uri!r}: datasets are local paths or gs:// URIs (Vertex reads only Cloud Storage)",
                    )
                elif not uri.strip():
                    self.add("invalid-uri", f"{base}.{key}", "empty path")
                else:
                    local = True
            if d.bucket is not None:
                self.bucket_ref(spec, d.bucket, f"{base}.bucket", f"dataset {d.name!r}")
            elif local:
                self.add(
                    "missing-field",
                    f"{base}.bucket",
                    f"dataset {d.name!r} has local files, so it needs 'bucket' to upload them to",
                )

    # tuning jobs

    def jobs(self, spec: Spec) -> None:
        self.duplicates([j.name for j in spec.tuning_jobs], "tuning_jobs", "tuning job")
        dataset_names = [d.name for d in spec.datasets]
        for i, j in enumerate(spec.tuning_jobs):
            base = f"tuning_jobs[{i}]"
            model = catalog.model(j.base_model)
            if model is None:
                self.add(
                    "unsupported-model",
                    f"{base}.base_model",
                    f"{j.base_model!r} is not an open model Vertex can tune{did_you_mean(j.base_model, catalog.MODELS)}",
                )
            elif j.tuning_mode not in model.tuning_modes:
                self.add(
                    "unsupported-tuning-mode",
                    f"{base}.tuning_mode",
                    f"{model.display_name} supports {' and '.join(model.tuning_modes)} tuning, not {j.tuning_mode}",
                )
            if j.adapter_size is not None:
                if j.tuning_mode == catalog.FULL:
                    self.add(
                        "invalid-adapter-size",
                        f"{base}.adapter_size",
                        "adapter_size is for PEFT_ADAPTER tuning only; remove it for FULL",
                    )
                elif j.adapter_size not in catalog.ADAPTER_SIZES:
                    self.add(
                        "invalid-adapter-size",
                        f"{base}.adapter_size",
                        f"adapter_size {j.adapter_size} is not one of {', '.join(map(str, catalog.ADAPTER_SIZES))}",
                    )
            if j.learning_rate is not None and j.learning_rate_multiplier is not None:
                self.add(
                    "learning-rate-conflict",
                    f"{base}.learning_rate",
                    "set learning_rate or learning_rate_multiplier, not both",
                )
            if j.dataset not in dataset_names:
                self.add(
                    "unknown-reference",
                    f"{base}.dataset",
                    f"dataset {j.dataset!r} is not defined in datasets:{did_you_mean(j.dataset, dataset_names)}",
                )
            self.gs_uri(
                spec,
                j.output_uri,
                f"{base}.output_uri",
                f"job {j.name!r} output",
                need_object=False,
            )
            if j.custom_base_model is not None:
                self.gs_uri(
                    spec,
                    j.custom_base_model,
                    f"{base}.custom_base_model",
                    f"job {j.name!r} custom_base_model",
                    need_object=True,
                )
            self.labels(j.labels, f"{base}.labels")
            if j.engine == "trainer_image" and spec.trainer_image is None:
                self.add(
                    "missing-field",
                    f"{base}.engine",
                    "engine: trainer_image needs a top-level trainer_image: section (where the image is built)",
                )
            if j.engine == "managed":
                for key in ("machine_type", "replicas"):
                    if f"{base}.{key}" in self.positions:  # written, not defaulted
                        self.add(
                            "invalid-value",
                            f"{base}.{key}",
                            f"{key} applies to engine: trainer_image only; the managed service picks its own machines",
                        )

    # endpoints

    def endpoints(self, spec: Spec) -> None:
        self.duplicates([e.name for e in spec.endpoints], "endpoints", "endpoint")
        job_names = [j.name for j in spec.tuning_jobs]
        for i, e in enumerate(spec.endpoints):
            base = f"endpoints[{i}]"
            if e.model.startswith("gs://"):
                self.gs_uri(
                    spec, e.model, f"{base}.model", f"endpoint {e.name!r} weights", need_object=True
                )
            elif is_remote(e.model):
                self.add(
                    "invalid-uri",
                    f"{base}.model",
                    f"{e.model!r}: weights must be in Cloud Storage (gs://)",
                )
            elif e.model not in job_names:
                self.add(
                    "unknown-reference",
                    f"{base}.model",
                    f"{e.model!r} is neither a tuning job of this spec nor a gs:// URI{did_you_mean(e.model, job_names)}",
                )
            if not _CHECKPOINT.fullmatch(e.checkpoint):
                self.add(
                    "invalid-value",
                    f"{base}.checkpoint",
                    f"checkpoint {e.checkpoint!r} must be 'final' or 'checkpoint-N'",
                )
            if e.base_model is not None and catalog.model(e.base_model) is None:
                self.add(
                    "unsupported-model",
                    f"{base}.base_model",
                    f"{e.base_model!r} is not in the catalog{did_you_mean(e.base_model, catalog.MODELS)}",
                )
            if e.min_replicas > e.max_replicas:
                self.add(
                    "invalid-value",
                    f"{base}.max_replicas",
                    f"max_replicas ({e.max_replicas}) is below min_replicas ({e.min_replicas})",
                )
            machine = catalog.machine(e.machine_type)
            if machine is None:
                self.add(
                    "accelerator-mismatch",
                    f"{base}.machine_type",
                    f"{e.machine_type!r} is not a G2 machine type ({', '.join(catalog.MACHINES)}){did_you_mean(e.machine_type, catalog.MACHINES)}",
                )
                continue
            if e.accelerator_type != machine.accelerator_type:
                self.add(
                    "accelerator-mismatch",
                    f"{base}.accelerator_type",
                    f"{e.machine_type} carries {machine.accelerator_type}, not {e.accelerator_type}",
                )
                continue
            if e.accelerator_count != machine.accelerator_count:
                self.add(
                    "accelerator-mismatch",
                    f"{base}.accelerator_count",
                    f"{e.machine_type} has {machine.accelerator_count} {machine.accelerator_type}, not {e.accelerator_count}",
                )
                continue
            self.fit(spec, i, machine)

    def fit(self, spec: Spec, index: int, machine: catalog.Machine) -> None:
        model = endpoint_model(spec, index)
        if model is None:
            return
        acc = catalog.ACCELERATORS[machine.accelerator_type]
        memory = acc.memory_gb * machine.accelerator_count
        weights = model.bf16_weights_gb
        base = f"endpoints[{index}].machine_type"
        bigger = [
            m.name
            for m in catalog.MACHINES.values()
            if catalog.ACCELERATORS[m.accelerator_type].memory_gb
            * m.accelerator_count
            * (1 - catalog.KV_CACHE_HEADROOM)
            >= weights
        ]
        hint = f"; try {bigger[0]}" if bigger else "; no G2 machine is large enough"
        if weights > memory:
            self.add(
                "endpoint-too-small",
                base,
                f"{model.display_name} weights need {weights:.1f} GB in bf16 but {machine.name} has {memory:.0f} GB of accelerator memory{hint}",
            )
        elif memory - weights < catalog.KV_CACHE_HEADROOM * memory:
            free = (memory - weights) / memory
            self.add(
                "kv-cache-headroom",
                base,
                f"{model.display_name} weights ({weights:.1f} GB bf16) leave {free:.0%} of {memory:.0f} GB for the KV cache (under {catalog.KV_CACHE_HEADROOM:.0%}){hint}",
                "warning",
            )

    # iam

    def iam(self, spec: Spec) -> None:
        for i, g in enumerate(spec.iam):
            base = f"iam[{i}]"
            self.bucket_ref(spec, g.bucket, f"{base}.bucket", "iam grant")
            if g.member in _PUBLIC_MEMBERS:
                self.add(
                    "public-member",
                    f"{base}.member",
                    f"{g.member} would make the bucket public; grant a user, group or service account",
                )
            elif not g.member.startswith(_MEMBER_PREFIXES):
                self.add(
                    "invalid-value",
                    f"{base}.member",
                    f"{g.member!r} is not an IAM member (user:, group:, serviceAccount:, domain:, ...)",
                )
            if not g.role.startswith(("roles/", "projects/", "organizations/")):
                self.add(
                    "invalid-value",
                    f"{base}.role",
                    f"{g.role!r} is not a role name like roles/storage.objectViewer",
                )

    def duplicates(self, names: Iterable[str], list_path: str, what: str) -> None:
        first: dict[str, int] = {}
        for i, name in enumerate(names):
            if name in first:
                line = locate(self.positions, f"{list_path}[{first[name]}].name")[0]
                self.add(
                    "duplicate-name",
                    f"{list_path}[{i}].name",
                    f"{what} name {name!r} is already used (line {line})",
                )
            else:
                first[name] = i
