"""The plan layer: a validated spec compiled into typed, deterministic plan dataclasses.

Pure (no Pulumi, no I/O): :func:`build_plan` turns a spec and its validation report into a
:class:`Plan` of resources, dependencies, order and estimates. It checks nothing: every rule
runs in ``tunestack validate`` (:mod:`infra.checks`), so a validated spec always plans. The
emit layer turns a plan into Pulumi resources.
"""

from infra.plan.build import build_plan
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
    "build_plan",
]
