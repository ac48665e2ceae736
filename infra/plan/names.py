"""Logical names and labels the plan gives what it registers.

Pulumi logical names are part of the state contract (renaming one replaces the resource), so
the fixed ones are written once, here.
"""

from __future__ import annotations

#: APIs the trainer_image engine needs on top of the required ones (image build + registry).
TRAINER_IMAGE_APIS = ("artifactregistry.googleapis.com", "cloudbuild.googleapis.com")

#: Label put on everything tunestack creates, so a console filter finds it.
MANAGED_BY = {"managed-by": "tunestack"}

PROJECT = "project"
IDENTITY = "agent-aiplatform"
AGENTS = "agent-vertex-moss-ft"
REPOSITORY = "trainer-repository"
IMAGE = "trainer-image"


def job_names(job: str) -> tuple[str, str]:
    """The logical names of a tuning job and of its completion (``job-x``, ``job-x-done``)."""
    return f"job-{job}", f"job-{job}-done"
