"""What ``tunestack status`` asks Vertex AI (or the local API): imported after the first line,
as the GAPIC client takes about a second and a half to import."""

from __future__ import annotations

from typing import Any

import google.auth.exceptions
from google.api_core import exceptions as gexc
from google.cloud import aiplatform_v1beta1 as aip

from infra.plan import keys
from infra.spec import Spec
from infra.vertex import jobs as vertex_jobs
from infra.vertex.progress import read_progress
from infra.vertex.target import Target, client

#: Most jobs and endpoints read per collection (a project holds far fewer of ours).
MAX_LISTED = 2000


class StatusError(Exception):
    """The API cannot be asked (credentials, permissions, unreachable): one line, exit 1."""


def collect(spec: Spec, local: bool) -> dict[str, Any]:
    """The spec's jobs and endpoints as JSON-able data.

    Raises:
        StatusError: the API refused or could not be reached.
    """
    project, region = spec.project.id, spec.project.region
    target = Target.local(project, region) if local else Target(project=project, location=region)
    try:
        jobs = _jobs(target, spec)
        endpoints = _endpoints(target, spec)
    except google.auth.exceptions.GoogleAuthError as e:
        raise StatusError(
            f"no Google credentials ({e}); run `gcloud auth application-default login`"
        ) from None
    except gexc.GoogleAPICallError as e:
        raise StatusError(f"the API refused: {e.message}") from None
    except gexc.GoogleAPIError as e:
        raise StatusError(f"cannot reach the API: {e}") from None
    return {
        "target": "local" if local else "vertex",
        "project": project,
        "region": region,
        "jobs": jobs,
        "endpoints": endpoints,
    }


def _jobs(target: Target, spec: Spec) -> list[dict[str, Any]]:
    managed = f'labels.{keys.MANAGED_LABEL}="{keys.MANAGED_VALUE}"'
    request = {"parent": target.parent, "filter": managed}
    found: dict[str, Any] = {}
    tuning = client(aip.GenAiTuningServiceClient, target).list_tuning_jobs(request=request)
    custom = client(aip.JobServiceClient, target).list_custom_jobs(request=request)
    for n, job in enumerate([*tuning, *custom]):
        if n >= MAX_LISTED:
            break
        if job.labels.get(keys.MANAGED_LABEL) != keys.MANAGED_VALUE:
            continue  # a server that ignores the filter
        name = getattr(job, "tuned_model_display_name", "") or job.display_name
        newest = found.get(name)
        if newest is None or job.create_time.timestamp() > newest.create_time.timestamp():
            found[name] = job
    out: list[dict[str, Any]] = []
    for j in spec.tuning_jobs:
        job = found.get(j.name)
        if job is None:
            out.append({"name": j.name, "job": None, "progress": None})
            continue
        state = vertex_jobs.state_name(job)
        output_uri = _output_uri(job) or j.output_uri
        progress = read_progress(target, output_uri, state).as_json()
        out.append(
            {"name": j.name, "job": job.name, "output_uri": output_uri, "progress": progress}
        )
    return out


def _endpoints(target: Target, spec: Spec) -> list[dict[str, Any]]:
    svc = client(aip.EndpointServiceClient, target)
    listed = []
    for n, ep in enumerate(svc.list_endpoints(request={"parent": target.parent})):
        if n >= MAX_LISTED:
            break
        listed.append(ep)
    out: list[dict[str, Any]] = []
    for e in spec.endpoints:
        mine = [ep for ep in listed if keys.is_spec_endpoint(ep.display_name, e.name)]
        if not mine:
            out.append(
                {"name": e.name, "endpoint": None, "deployed_models": [], "traffic_split": {}}
            )
            continue
        ep = max(mine, key=lambda x: x.create_time.timestamp())
        out.append(
            {
                "name": e.name,
                "endpoint": ep.name,
                "deployed_models": [_deployed(d) for d in ep.deployed_models],
                "traffic_split": dict(ep.traffic_split),
            }
        )
    return out


def _deployed(d: Any) -> dict[str, Any]:
    res = d.dedicated_resources
    return {
        "id": d.id,
        "model": d.model,
        "display_name": d.display_name,
        "min_replicas": res.min_replica_count,
        "max_replicas": res.max_replica_count,
        "machine_type": res.machine_spec.machine_type,
        "accelerator_type": res.machine_spec.accelerator_type.name,
        "accelerator_count": res.machine_spec.accelerator_count,
    }


def _output_uri(job: Any) -> str:
    if isinstance(job, aip.TuningJob):
        return str(job.output_uri)
    return str(job.job_spec.base_output_directory.output_uri_prefix)
