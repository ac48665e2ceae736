"""The plan layer: a validated spec compiled into typed, deterministic plan dataclasses.

Pure (no Pulumi, no I/O): :func:`build_plan` turns a spec and its validation report into a
:class:`Plan` of resources, dependencies, order and estimates; :func:`project_diagnostics`
checks the project bootstrap settings. The emit layer turns a plan into Pulumi resources.
"""

from infra.plan.build import bucket_of, build_plan
from infra.plan.model import (
    COMPONENTS,
    AgentsPlan,
    ApiPlan,
    BucketPlan,
    DatasetPlan,
    EndpointPlan,
    GrantPlan,
    ImagePlan,
    JobPlan,
    Plan,
    ProjectPlan,
    UploadPlan,
)
from infra.plan.project import project_diagnostics

__all__ = [
    "COMPONENTS",
    "AgentsPlan",
    "ApiPlan",
    "BucketPlan",
    "DatasetPlan",
    "EndpointPlan",
    "GrantPlan",
    "ImagePlan",
    "JobPlan",
    "Plan",
    "ProjectPlan",
    "UploadPlan",
    "bucket_of",
    "build_plan",
    "project_diagnostics",
]
