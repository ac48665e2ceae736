"""The tuning nodes of a plan: the trainer image (engine ``trainer_image``) and the jobs.

Jobs run in ``max_concurrent_tuning_jobs`` lanes in spec order (a job waits for the one that
many places before it), and continued training waits for the job whose output it starts from.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from infra import catalog
from infra.checks.report import JobSummary, Report
from infra.plan import derive
from infra.plan.keys import run_output_uri
from infra.plan.model import DatasetPlan, ImagePlan, JobPlan, ProjectPlan, UploadPlan
from infra.plan.names import IMAGE, MANAGED_BY, REPOSITORY, TRAINER_IMAGE_APIS, job_names
from infra.spec.models import Spec


def plan_image(spec: Spec, project: ProjectPlan, api: dict[str, str]) -> ImagePlan | None:
    """The trainer image and its repository, when any job uses engine ``trainer_image``."""
    if not any(j.engine == "trainer_image" for j in spec.tuning_jobs):
        return None
    settings = spec.trainer_image
    repository = settings.repository if settings else "tunestack"
    location = (settings.location if settings and settings.location else None) or project.region
    return ImagePlan(
        repository_name=REPOSITORY,
        image_name=IMAGE,
        repository=repository,
        location=location,
        image_uri=f"{location}-docker.pkg.dev/{project.project_id}/{repository}/trainer",
        labels=dict(sorted({**MANAGED_BY, **project.labels}.items())),
        depends_on=tuple(api[s] for s in TRAINER_IMAGE_APIS),
    )


def plan_jobs(
    spec: Spec,
    report: Report,
    spec_dir: Path,
    datasets: dict[str, DatasetPlan],
    uploads: tuple[UploadPlan, ...],
    grants_by_bucket: dict[str, list[str]],
    image: ImagePlan | None,
    api: dict[str, str],
) -> tuple[JobPlan, ...]:
    """The tuning jobs in spec order, with their order, dependencies and estimates.

    Args:
        spec: The validated spec.
        report: Its validation report (token estimates, file hashes, image buckets).
        spec_dir: The spec's folder; local paths are relative to it.
        datasets: Each dataset's URIs, by name.
        uploads: The dataset uploads.
        grants_by_bucket: Bucket -> the names of its service-agent grants.
        image: The trainer image, if any job builds one.
        api: Service name -> the API node's logical name.
    """
    summaries = {s.name: s for s in report.jobs}
    lanes = spec.project.max_concurrent_tuning_jobs
    names = {j.name: job_names(j.name) for j in spec.tuning_jobs}
    position = {j.name: i for i, j in enumerate(spec.tuning_jobs)}
    outputs = {j.name: j.output_uri.rstrip("/") + "/" for j in spec.tuning_jobs}
    ds_specs = {d.name: d for d in spec.datasets}
    jobs: list[JobPlan] = []
    for i, job in enumerate(spec.tuning_jobs):
        ds = datasets[job.dataset]
        after: list[str] = []
        # The quota: N lanes; a job waits for the job N places before it in spec order.
        if i >= lanes:
            after.append(spec.tuning_jobs[i - lanes].name)
        # Continued training from an earlier job's output needs that output to exist.
        if job.custom_base_model:
            after += [
                n
                for n, prefix in outputs.items()
                if n != job.name and job.custom_base_model.startswith(prefix)
            ]
        after = sorted(set(after), key=position.__getitem__)

        buckets = {
            derive.bucket_of(u)
            for u in (ds.train_uri, ds.validation_uri, job.output_uri, job.custom_base_model)
            if u
        }
        buckets |= derive.image_buckets(report, ds_specs[job.dataset], spec_dir)
        deps = [api["aiplatform.googleapis.com"]]
        deps += sorted(
            g for b in sorted(b for b in buckets if b) for g in grants_by_bucket.get(b, ())
        )
        deps += [u.name for u in uploads if u.dataset == job.dataset]
        if job.engine == "trainer_image" and image is not None:
            deps.append(image.image_name)
        deps += [names[a][1] for a in after]

        identity = []
        for split, ref in (
            ("train", ds_specs[job.dataset].train),
            ("validation", ds_specs[job.dataset].validation),
        ):
            read = derive.file_summary(report, ref, spec_dir / ref) if ref else None
            if read and read.sha256:
                identity.append(f"{split}:{read.sha256}")
        summary: JobSummary | None = summaries.get(job.name)
        train = ds_specs[job.dataset].train
        trained = derive.file_summary(report, train, spec_dir / train)
        if not (trained and trained.checked):
            # The training file was not read (gs:// without access): counts are unknown, not 0.
            summary = None
        name, completion = names[job.name]
        planned = JobPlan(
            name=name,
            completion_name=completion,
            job=job.name,
            engine=job.engine,
            base_model=job.base_model,
            custom_base_model=job.custom_base_model,
            tuning_mode=job.tuning_mode,
            epochs=job.epochs,
            learning_rate=job.learning_rate,
            learning_rate_multiplier=job.learning_rate_multiplier,
            adapter_size=job.adapter_size,
            train_uri=ds.train_uri,
            validation_uri=ds.validation_uri,
            output_uri=job.output_uri.rstrip("/"),
            labels=dict(sorted({**MANAGED_BY, **spec.project.labels, **job.labels}.items())),
            replicas=job.replicas,
            machine_type=job.machine_type,
            dataset_identity=";".join(identity) or None,
            after=tuple(after),
            depends_on=tuple(dict.fromkeys(deps)),
            examples=summary.examples if summary else None,
            tokens=summary.tokens if summary else None,
            tokens_exact=bool(summary and summary.tokens_exact),
            training_tokens=summary.training_tokens if summary else None,
            checkpoints=catalog.checkpoints_kept(job.epochs),
        )
        inputs = planned.provider_inputs(spec.project.id, spec.project.region)
        jobs.append(replace(planned, run_uri=run_output_uri(inputs)))
    return tuple(jobs)
