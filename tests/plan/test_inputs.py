"""Provider inputs are declared once (``infra/plan/inputs.py``): the providers' input
lists and the plan's ``provider_inputs`` follow that declaration."""

from __future__ import annotations

from dataclasses import fields

from infra.plan import inputs
from infra.providers.agents import ServiceAgentsProvider
from infra.providers.deployment import ModelDeploymentProvider
from infra.providers.image import TrainerImageProvider
from infra.providers.jobs import CustomTrainingJobProvider, JobCompletionProvider, TuningJobProvider

TRAINING = {
    "project", "location", "base_model", "custom_base_model", "tuning_mode", "epochs",
    "learning_rate", "learning_rate_multiplier", "adapter_size", "train_dataset_uri",
    "validation_dataset_uri", "output_uri", "display_name", "dataset_identity",
}  # fmt: skip


def test_every_field_says_whether_it_replaces():
    for args in (
        inputs.ServiceAgentsArgs, inputs.TuningJobArgs, inputs.CustomTrainingJobArgs,
        inputs.TuningJobCompletionArgs, inputs.TrainerImageArgs, inputs.ModelDeploymentArgs,
    ):  # fmt: skip
        assert all("replace" in f.metadata for f in fields(args)), args.__name__


def test_jobs_replace_on_training_inputs_and_update_labels():
    assert set(TuningJobProvider.INPUTS) == {*TRAINING, "labels", "api_endpoint"}
    assert {*TRAINING, "api_endpoint"} == TuningJobProvider.REPLACES
    assert TuningJobProvider.REQUIRED == (
        "project", "location", "base_model", "tuning_mode", "train_dataset_uri", "output_uri",
    )  # fmt: skip
    extra = {"image_uri", "replicas", "machine_type"}
    assert {*TRAINING, *extra, "api_endpoint"} == CustomTrainingJobProvider.REPLACES
    assert (*TuningJobProvider.REQUIRED, "image_uri") == CustomTrainingJobProvider.REQUIRED
    assert {
        "project", "location", "job_name", "output_uri", "api_endpoint",
    } == JobCompletionProvider.REPLACES  # fmt: skip


def test_deadlines_and_build_settings_update_in_place():
    assert "deadline_seconds" not in ModelDeploymentProvider.REPLACES
    assert "deadline_seconds" in ModelDeploymentProvider.INPUTS
    assert {"project", "project_number", "api_endpoint"} == ServiceAgentsProvider.REPLACES
    assert {
        "project", "location", "repository", "image_name", "context_hash",
    } == TrainerImageProvider.REPLACES  # fmt: skip
    assert TrainerImageProvider.INPUTS[-1] == "context_hash"  # hidden: computed by check
