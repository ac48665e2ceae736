"""Spec models (data only)."""

from infra.spec.models import (
    Bucket,
    Dataset,
    Endpoint,
    IamGrant,
    Prices,
    Project,
    Spec,
    SpecModel,
    TrainerImage,
    TuningJob,
)

__all__ = [
    "Bucket",
    "Dataset",
    "Endpoint",
    "IamGrant",
    "Prices",
    "Project",
    "Spec",
    "SpecModel",
    "TrainerImage",
    "TuningJob",
]
