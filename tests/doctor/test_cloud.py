"""``run_cloud_checks`` against the fake Google REST APIs, one test per failure answer."""

from __future__ import annotations

from typing import Any

import google.auth
import google.oauth2.credentials
import pytest
from google.auth import exceptions as auth_exc

from infra.doctor.api import Endpoints
from infra.doctor.cloud import run_cloud_checks
from infra.doctor.project import BUCKET_PERMISSIONS
from infra.doctor.results import CANNOT_CHECK, FAIL, PASS, CheckResult, exit_code
from infra.spec.models import Spec

JOB = {
    "name": "sft",
    "base_model": "meta/llama3_1@llama-3.1-8b-instruct",
    "tuning_mode": "PEFT_ADAPTER",
    "dataset": "chat",
    "output_uri": "gs://tuned-data/out",
}


def make_spec(project: dict[str, Any] | None = None, **top: Any) -> Spec:
    data: dict[str, Any] = {
        "project": {"id": "tuned-proj-1", "region": "us-central1"} | (project or {}),
        "buckets": [{"name": "tuned-data"}],
        "tuning_jobs": [JOB],
    }
    return Spec.model_validate(data | top)


def check(spec: Spec, fake_google: str, creds: Any) -> dict[str, CheckResult]:
    results = list(run_cloud_checks(spec, creds, Endpoints.single(fake_google)))
    by_name = {r.check: r for r in results}
    assert len(by_name) == len(results), "check names are unique"
    return by_name


def statuses(results: dict[str, CheckResult]) -> dict[str, str]:
    return {name: r.status for name, r in results.items()}


def test_healthy_project_passes_every_check_with_one_call_per_question(fake_google, creds, world):
    world.jobs["us-central1"] = [("meta/llama3_1@llama-3.1-8b", "JOB_STATE_SUCCEEDED")]
    results = check(make_spec(apis=["artifactregistry.googleapis.com"]), fake_google, creds)
    world.enabled_apis.add("artifactregistry.googleapis.com")
    assert statuses(results)["api:artifactregistry.googleapis.com"] == FAIL  # asked before enabling
    results = check(make_spec(apis=["artifactregistry.googleapis.com"]), fake_google, creds)
    assert set(statuses(results).values()) == {PASS}, results
    assert list(results) == [
        "region",
        "credentials",
        "project",
        "billing",
        "api:aiplatform.googleapis.com",
        "api:artifactregistry.googleapis.com",
        "api:storage.googleapis.com",
        "service-agent:gcp-sa-aiplatform",
        "service-agent:gcp-sa-vertex-moss-ft",
        "bucket:tuned-data",
        "tuning-quota",
        "running-tuning-jobs",
    ]
    assert exit_code(list(results.values())) == 0
    assert "number 123456789012" in results["project"].detail
    assert "2 concurrent" in results["tuning-quota"].detail  # found on the second page
    assert results["running-tuning-jobs"].detail.startswith(
        "0 open-model tuning job(s) active of 2"
    )
    paths = [(m, p) for m, p, _ in world.requests]
    assert ("GET", "/v3/projects/tuned-proj-1") in paths
    assert ("POST", "/v3/projects/tuned-proj-1:getIamPolicy") in paths
    assert ("GET", "/v1/projects/tuned-proj-1/billingInfo") in paths
    assert ("GET", "/v1/projects/123456789012/services/aiplatform.googleapis.com") in paths
    assert ("GET", "/storage/v1/b/tuned-data/iam/testPermissions") in paths
    for region in ("us-central1", "europe-west4", "us-west1", "us-east5", "asia-southeast1"):
        assert ("GET", f"/v1beta1/projects/tuned-proj-1/locations/{region}/tuningJobs") in paths
    # Read-only: nothing but gets, lists and the getIamPolicy read (a POST in CRM v3).
    assert {m for m, p in paths if not p.endswith(":getIamPolicy")} == {"GET"}
    # User credentials need a quota project for Cloud Quotas/Service Usage: the spec's.
    quota_headers = [h for _, p, h in world.requests if p.endswith("/quotaInfos")]
    assert quota_headers and all(
        h.get("x-goog-user-project") == "tuned-proj-1" for h in quota_headers
    )


def test_no_credentials_fails_and_calls_nothing(fake_google, world, monkeypatch):
    def no_adc(*args: Any, **kwargs: Any) -> Any:
        raise auth_exc.DefaultCredentialsError("Your default credentials were not found.")

    monkeypatch.setattr(google.auth, "default", no_adc)
    results = check(make_spec(), fake_google, None)
    assert results["credentials"].status == FAIL
    assert "gcloud auth application-default login" in results["credentials"].fix
    assert results["region"].status == PASS
    assert {r.status for n, r in results.items() if n not in ("credentials", "region")} == {
        CANNOT_CHECK
    }
    assert world.requests == []


def test_adc_identity_is_reported(fake_google, world, monkeypatch):
    user = google.oauth2.credentials.Credentials(token="test-token", account="ana@example.com")
    monkeypatch.setattr(google.auth, "default", lambda **kw: (user, "tuned-proj-1"))
    results = check(make_spec(), fake_google, None)
    assert results["credentials"].status == PASS
    assert "user:ana@example.com" in results["credentials"].detail


def test_identity_comes_from_tokeninfo_when_adc_does_not_record_it(fake_google, creds, world):
    world.token_email = "deployer@tuned-proj-1.iam.gserviceaccount.com"
    results = check(make_spec(), fake_google, creds)
    assert results["credentials"].detail.endswith(
        "of serviceAccount:deployer@tuned-proj-1.iam.gserviceaccount.com"
    )
    world.buckets["tuned-data"] = set()
    results = check(make_spec(), fake_google, creds)
    assert (
        "--member=serviceAccount:deployer@tuned-proj-1.iam.gserviceaccount.com"
        in results["bucket:tuned-data"].fix
    )


def test_credentials_without_a_token_fail(fake_google, world):
    expired = google.oauth2.credentials.Credentials(token=None)  # nothing to refresh with
    results = check(make_spec(), fake_google, expired)
    assert results["credentials"].status == FAIL
    assert "no token" in results["credentials"].detail
    assert world.requests == []


@pytest.mark.parametrize("status", [403, 404])
def test_missing_project_fails_and_blocks_the_rest(fake_google, creds, world, status):
    world.project_state = None
    world.missing_project_status = status
    results = check(make_spec(), fake_google, creds)
    assert results["project"].status == FAIL
    assert f"({status} " in results["project"].detail
    assert "create: true" in results["project"].fix
    later = [n for n in results if n not in ("region", "credentials", "project")]
    assert later and all(results[n].status == CANNOT_CHECK for n in later)
    assert "project tuned-proj-1 is not reachable" in results["billing"].detail


def test_missing_project_is_fine_when_the_spec_creates_it(fake_google, creds, world):
    world.project_state = None
    spec = make_spec({"create": True, "billing_account": "012345-6789AB-CDEF01", "folder_id": "12"})
    results = check(spec, fake_google, creds)
    assert results["project"].status == PASS
    assert "creates it" in results["project"].detail
    assert results["billing"].status == CANNOT_CHECK
    assert "does not exist yet" in results["billing"].detail
    assert exit_code(list(results.values())) == 0


def test_project_pending_deletion_fails_with_undelete(fake_google, creds, world):
    world.project_state = "DELETE_REQUESTED"
    results = check(make_spec(), fake_google, creds)
    assert results["project"].status == FAIL
    assert "DELETE_REQUESTED" in results["project"].detail
    assert "gcloud projects undelete tuned-proj-1" in results["project"].fix


def test_project_number_mismatch_fails(fake_google, creds, world):
    results = check(make_spec({"number": "999"}), fake_google, creds)
    assert results["project"].status == FAIL
    assert "123456789012" in results["project"].fix


def test_billing_disabled_fails_with_link_command(fake_google, creds, world):
    world.billing_enabled = False
    results = check(make_spec({"billing_account": "012345-6789AB-CDEF01"}), fake_google, creds)
    assert results["billing"].status == FAIL
    assert (
        results["billing"].fix
        == "`gcloud billing projects link tuned-proj-1 --billing-account=012345-6789AB-CDEF01`"
    )
    assert exit_code(list(results.values())) == 1


def test_disabled_api_fails_per_api(fake_google, creds, world):
    world.enabled_apis.discard("aiplatform.googleapis.com")
    results = check(make_spec(), fake_google, creds)
    assert results["api:aiplatform.googleapis.com"].status == FAIL
    assert (
        "gcloud services enable aiplatform.googleapis.com --project=tuned-proj-1"
        in results["api:aiplatform.googleapis.com"].fix
    )
    assert results["api:storage.googleapis.com"].status == PASS


@pytest.mark.parametrize("domain", ["gcp-sa-aiplatform", "gcp-sa-vertex-moss-ft"])
def test_missing_service_agent_fails(fake_google, creds, world, domain):
    world.agents.discard(domain)
    results = check(make_spec(), fake_google, creds)
    assert results[f"service-agent:{domain}"].status == FAIL
    assert (
        f"service-123456789012@{domain}.iam.gserviceaccount.com"
        in results[f"service-agent:{domain}"].detail
    )
    other = next(d for d in ("gcp-sa-aiplatform", "gcp-sa-vertex-moss-ft") if d != domain)
    assert results[f"service-agent:{other}"].status == PASS
    if domain == "gcp-sa-aiplatform":
        assert "services identity create" in results[f"service-agent:{domain}"].fix
    else:
        assert "first open-model tuning job" in results[f"service-agent:{domain}"].fix


def test_bucket_permission_missing_fails_listing_what_is_missing(fake_google, creds, world):
    world.buckets["tuned-data"] = {
        "storage.objects.get",
        "storage.objects.list",
        "storage.buckets.get",
    }
    results = check(make_spec(), fake_google, creds)
    r = results["bucket:tuned-data"]
    assert r.status == FAIL
    for missing in ("storage.buckets.setIamPolicy", "storage.objects.create"):
        assert missing in r.detail
    assert "storage.objects.get," not in r.detail
    assert "gs://tuned-data" in r.fix
    asked = [p for _, p, _ in world.requests if p.endswith("/testPermissions")]
    assert asked == ["/storage/v1/b/tuned-data/iam/testPermissions"]


def test_bucket_of_someone_else_hints_at_the_global_namespace(fake_google, creds, world):
    world.buckets["tuned-data"] = set()
    results = check(make_spec(), fake_google, creds)
    assert results["bucket:tuned-data"].status == FAIL
    assert "bucket names are global" in results["bucket:tuned-data"].detail


def test_adopted_bucket_must_exist_created_one_need_not(fake_google, creds, world):
    world.buckets = {}
    results = check(
        make_spec(buckets=[{"name": "tuned-data", "create": False}, {"name": "new-data"}]),
        fake_google,
        creds,
    )
    assert results["bucket:tuned-data"].status == FAIL
    assert "does not exist" in results["bucket:tuned-data"].detail
    assert "set create: true" in results["bucket:tuned-data"].fix
    assert results["bucket:new-data"].status == PASS
    assert "creates it" in results["bucket:new-data"].detail


def test_wrong_region_fails_with_did_you_mean(fake_google, creds, world):
    results = check(make_spec({"region": "us-central"}), fake_google, creds)
    assert results["region"].status == FAIL
    assert "did you mean us-central1?" in results["region"].detail
    assert "europe-west4" in results["region"].fix


def test_full_quota_fails_counting_jobs_in_every_region(fake_google, creds, world):
    world.quota = 1
    world.jobs = {
        "europe-west4": [("qwen/qwen3@qwen3-8b", "JOB_STATE_RUNNING")],
        "us-central1": [
            ("gemini-2.0-flash-001", "JOB_STATE_RUNNING"),  # Gemini tuning: another quota
            ("meta/llama3_1@llama-3.1-8b", "JOB_STATE_SUCCEEDED"),
            ("meta/llama3_1@llama-3.1-8b", "JOB_STATE_CANCELLED"),
        ],
    }
    results = check(make_spec(), fake_google, creds)
    r = results["running-tuning-jobs"]
    assert r.status == FAIL
    assert r.detail.startswith("1 open-model tuning job(s) active of 1 allowed (quota)")
    assert "locations/europe-west4/tuningJobs/1000" in r.detail
    assert "wait for the active jobs" in r.fix
    assert results["tuning-quota"].status == PASS
    assert exit_code(list(results.values())) == 1


def test_queued_jobs_hold_slots_too(fake_google, creds, world):
    world.jobs = {
        "us-east5": [
            ("meta/llama4@llama-4-scout-17b-16e-instruct", "JOB_STATE_QUEUED"),
            ("qwen/qwen3@qwen3-4b", "JOB_STATE_PENDING"),
        ]
    }
    results = check(make_spec(), fake_google, creds)
    assert results["running-tuning-jobs"].status == FAIL
    assert results["running-tuning-jobs"].detail.startswith(
        "2 open-model tuning job(s) active of 2"
    )


def test_full_quota_is_fine_without_managed_jobs(fake_google, creds, world):
    world.quota = 1
    world.jobs = {"us-central1": [("qwen/qwen3@qwen3-8b", "JOB_STATE_RUNNING")]}
    results = check(make_spec(tuning_jobs=[]), fake_google, creds)
    assert results["running-tuning-jobs"].status == PASS


def test_quota_below_spec_concurrency_fails(fake_google, creds, world):
    world.quota = 1
    results = check(make_spec({"max_concurrent_tuning_jobs": 3}), fake_google, creds)
    assert results["tuning-quota"].status == FAIL
    assert "max_concurrent_tuning_jobs: 1" in results["tuning-quota"].fix


def test_unknown_quota_is_cannot_check_and_spec_limit_is_used(fake_google, creds, world):
    world.quota = None
    world.jobs = {"us-central1": [("qwen/qwen3@qwen3-8b", "JOB_STATE_RUNNING")]}
    results = check(make_spec(), fake_google, creds)
    assert results["tuning-quota"].status == CANNOT_CHECK
    r = results["running-tuning-jobs"]
    assert r.status == FAIL
    assert "of 1 allowed (project.max_concurrent_tuning_jobs, quota unknown)" in r.detail


def test_cloud_quotas_denied_is_cannot_check_not_failure(fake_google, creds, world):
    world.quotas_status = 403
    results = check(make_spec(), fake_google, creds)
    assert results["tuning-quota"].status == CANNOT_CHECK
    # The fake answers like Google does for an API that is off: enable it.
    assert (
        results["tuning-quota"].fix
        == "`gcloud services enable cloudquotas.googleapis.com --project=tuned-proj-1`"
    )
    assert exit_code(list(results.values())) == 0


def test_unlimited_quota_never_blocks(fake_google, creds, world):
    world.quota = -1
    world.jobs = {"us-central1": [("qwen/qwen3@qwen3-8b", "JOB_STATE_RUNNING")] * 3}
    results = check(make_spec({"max_concurrent_tuning_jobs": 2}), fake_google, creds)
    assert results["tuning-quota"].status == PASS
    assert results["running-tuning-jobs"].status == PASS
    assert (
        "3 open-model tuning job(s) active of unlimited allowed"
        in results["running-tuning-jobs"].detail
    )


def test_denied_listing_jobs_names_the_role(fake_google, creds, world):
    world.jobs_status = 403
    results = check(make_spec(), fake_google, creds)
    assert results["running-tuning-jobs"].status == CANNOT_CHECK
    assert "roles/aiplatform.viewer" in results["running-tuning-jobs"].fix


def test_unreachable_endpoint_is_cannot_check_not_a_crash(creds):
    results = check(make_spec(), "http://127.0.0.1:9", creds)
    assert results["project"].status == CANNOT_CHECK
    assert results["billing"].status == CANNOT_CHECK
    assert exit_code(list(results.values())) == 0


def test_bucket_permissions_are_what_tunestack_needs():
    # Objects read/write for datasets and checkpoints, IAM read/write for the agents' grants.
    assert {"storage.objects.create", "storage.objects.get", "storage.buckets.setIamPolicy"} <= set(
        BUCKET_PERMISSIONS
    )
