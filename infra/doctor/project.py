"""The live checks of one spec's GCP project (Resource Manager, Billing, Service Usage, IAM,
Cloud Storage, Cloud Quotas, Vertex AI), each a read-only call through Google's own clients.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import google.oauth2.credentials
from google.api_core import exceptions as gexc
from google.auth.credentials import Credentials
from google.cloud import billing_v1, cloudquotas_v1, resourcemanager_v3, service_usage_v1
from google.cloud.aiplatform_v1beta1 import GenAiTuningServiceClient

from infra import catalog, gcs
from infra.doctor.api import CALL_ERRORS, TIMEOUT_S, Endpoints
from infra.doctor.api import client_options as _opts
from infra.doctor.results import CANNOT_CHECK, FAIL, PASS, CheckResult, blocked, first_line
from infra.spec.models import Bucket, Spec

#: Display name of the quota that caps concurrent open-model tuning jobs (from Google's
#: "Tuning open models" page). Its quota id is not published, so the quota is found by this
#: display name among aiplatform.googleapis.com's quotas in the Cloud Quotas API.
TUNING_QUOTA_DISPLAY_NAME = "Global concurrent managed OSS model fine-tuning jobs per project"

#: What tunestack does on a bucket: read/write objects and add bucket-level IAM members.
BUCKET_PERMISSIONS = (
    "storage.buckets.get",
    "storage.buckets.getIamPolicy",
    "storage.buckets.setIamPolicy",
    "storage.objects.create",
    "storage.objects.get",
    "storage.objects.list",
)

#: Cloud Quotas' value for a quota without a limit.
UNLIMITED = -1


def apis(spec: Spec) -> list[str]:
    """The APIs a spec needs: its own and the ones tunestack always uses, sorted."""
    return sorted(set(spec.apis) | set(catalog.REQUIRED_APIS))


class ProjectChecks:
    """The live checks of one spec; holds the credentials and builds each client once."""

    def __init__(self, spec: Spec, creds: Credentials, endpoints: Endpoints, who: str) -> None:
        self.spec = spec
        self.project_id = spec.project.id
        self.creds = creds
        self.endpoints = endpoints
        self.who = who
        self._projects: resourcemanager_v3.ProjectsClient | None = None

    # -- clients (REST transport: works with any HTTP endpoint, needs no gRPC egress) --------

    @property
    def projects(self) -> resourcemanager_v3.ProjectsClient:
        if self._projects is None:
            self._projects = resourcemanager_v3.ProjectsClient(
                credentials=self.creds,
                transport="rest",
                client_options=_opts(self.endpoints.resource_manager),
            )
        return self._projects

    def use_quota_project(self) -> None:
        # Only user credentials are refused without one; a service account bills its own project.
        if (
            isinstance(self.creds, google.oauth2.credentials.Credentials)
            and self.creds.quota_project_id is None
        ):
            self.creds = self.creds.with_quota_project(self.project_id)
            self._projects = None

    # -- checks ---------------------------------------------------------------------------

    def project(self) -> tuple[CheckResult, str | None]:
        """Cloud Resource Manager v3 ``projects.get``: exists, ACTIVE, number matches."""
        pid = self.project_id
        try:
            project = self.projects.get_project(name=f"projects/{pid}", timeout=TIMEOUT_S)
        except (gexc.Forbidden, gexc.NotFound) as e:
            if self.spec.project.create:
                return CheckResult(
                    "project",
                    PASS,
                    f"{pid} does not exist yet; `pulumi up` creates it (project.create: true)",
                ), None
            return CheckResult(
                "project",
                FAIL,
                f"{pid} does not exist or {self.who} cannot see it ({e.code} {first_line(e)})",
                f"check project.id; set project.create: true to create it; or grant {self.who} "
                f"roles/browser on {pid}",
            ), None
        except CALL_ERRORS as e:
            return CheckResult(
                "project",
                CANNOT_CHECK,
                f"projects.get failed: {first_line(e)}",
                "re-run; check network access to Cloud Resource Manager",
            ), None
        state = resourcemanager_v3.Project.State(project.state).name
        number = project.name.removeprefix("projects/")
        if state != "ACTIVE":
            return CheckResult(
                "project",
                FAIL,
                f"{pid} (number {number}) is {state}, not ACTIVE",
                f"`gcloud projects undelete {pid}` (possible within 30 days of deletion), or use another project",
            ), None
        declared = self.spec.project.number
        if declared and declared != number:
            return CheckResult(
                "project",
                FAIL,
                f"{pid} has number {number} but the spec says {declared}",
                f'set project.number: "{number}" or remove it (it is looked up when absent)',
            ), None
        return CheckResult("project", PASS, f"{pid} exists, number {number}, ACTIVE"), number

    def billing(self) -> CheckResult:
        """Cloud Billing ``projects.getBillingInfo``: billing enabled."""
        pid = self.project_id
        try:
            client = billing_v1.CloudBillingClient(
                credentials=self.creds,
                transport="rest",
                client_options=_opts(self.endpoints.billing),
            )
            info = client.get_project_billing_info(name=f"projects/{pid}", timeout=TIMEOUT_S)
        except gexc.Forbidden as e:
            return CheckResult(
                "billing",
                CANNOT_CHECK,
                f"getBillingInfo denied: {first_line(e)}",
                _denied_fix(
                    e,
                    "cloudbilling.googleapis.com",
                    pid,
                    f"grant {self.who} roles/viewer on {pid} (getBillingInfo needs resourcemanager.projects.get)",
                ),
            )
        except CALL_ERRORS as e:
            return CheckResult(
                "billing",
                CANNOT_CHECK,
                f"getBillingInfo failed: {first_line(e)}",
                "enable cloudbilling.googleapis.com or re-run",
            )
        if info.billing_enabled:
            return CheckResult("billing", PASS, f"enabled ({info.billing_account_name})")
        account = self.spec.project.billing_account or "ACCOUNT_ID"
        return CheckResult(
            "billing",
            FAIL,
            f"billing is not enabled on {pid}",
            f"`gcloud billing projects link {pid} --billing-account={account}`",
        )

    def apis(self, number: str) -> Iterator[CheckResult]:
        """Service Usage ``services.get`` for every spec API and the two always needed."""
        try:
            client = service_usage_v1.ServiceUsageClient(
                credentials=self.creds,
                transport="rest",
                client_options=_opts(self.endpoints.service_usage),
            )
        except CALL_ERRORS as e:
            yield from blocked(
                [f"api:{a}" for a in apis(self.spec)], f"Service Usage client: {first_line(e)}"
            )
            return
        for api in apis(self.spec):
            name = f"api:{api}"
            try:
                service = client.get_service(
                    request={"name": f"projects/{number}/services/{api}"}, timeout=TIMEOUT_S
                )
            except gexc.Forbidden as e:
                yield CheckResult(
                    name,
                    CANNOT_CHECK,
                    f"services.get denied: {first_line(e)}",
                    _denied_fix(
                        e,
                        "serviceusage.googleapis.com",
                        self.project_id,
                        f"grant {self.who} roles/serviceusage.serviceUsageViewer on {self.project_id}",
                    ),
                )
                continue
            except CALL_ERRORS as e:
                yield CheckResult(
                    name, CANNOT_CHECK, f"services.get failed: {first_line(e)}", "re-run"
                )
                continue
            if service.state == service_usage_v1.State.ENABLED:
                yield CheckResult(name, PASS, "enabled")
            else:
                yield CheckResult(
                    name,
                    FAIL,
                    f"{api} is not enabled",
                    f"`gcloud services enable {api} --project={self.project_id}` (or `pulumi up`, which enables the spec's APIs)",
                )

    def agents(self, number: str) -> Iterator[CheckResult]:
        """Both Vertex service agents appear as members of the project's IAM policy.

        A service agent lives in a Google-owned project, so IAM ``serviceAccounts.get`` on its
        email is denied to project owners; the project's own IAM policy is readable with
        roles/viewer and lists every agent Google has created (each is granted its service
        agent role on the project when it is created).
        """
        names = [f"service-agent:{d}" for d in catalog.SERVICE_AGENT_DOMAINS]
        try:
            policy = self.projects.get_iam_policy(
                resource=f"projects/{self.project_id}", timeout=TIMEOUT_S
            )
        except gexc.Forbidden as e:
            for name in names:
                yield CheckResult(
                    name,
                    CANNOT_CHECK,
                    f"getIamPolicy denied: {first_line(e)}",
                    f"grant {self.who} roles/iam.securityReviewer or roles/viewer on {self.project_id}",
                )
            return
        except CALL_ERRORS as e:
            yield from blocked(names, f"getIamPolicy failed: {first_line(e)}")
            return
        members = {m for binding in policy.bindings for m in binding.members}
        for domain, name in zip(catalog.SERVICE_AGENT_DOMAINS, names, strict=True):
            member = catalog.service_agent(number, domain)
            email = member.removeprefix("serviceAccount:")
            if member in members:
                yield CheckResult(name, PASS, f"{email} exists")
            elif domain == "gcp-sa-aiplatform":
                yield CheckResult(
                    name,
                    FAIL,
                    f"{email} does not exist (not in the project IAM policy)",
                    f"`gcloud beta services identity create --service=aiplatform.googleapis.com --project={self.project_id}` (tunestack's program also creates it with gcp.projects.ServiceIdentity)",
                )
            else:
                yield CheckResult(
                    name,
                    FAIL,
                    f"{email} does not exist yet (not in the project IAM policy)",
                    "Vertex creates this agent on the project's first open-model tuning job; bucket "
                    "grants to it fail until then: run one small tuning job (or any open-model "
                    "tuning in the console) in this project, wait a few minutes, re-run doctor",
                )

    def bucket(self, bucket: Bucket) -> CheckResult:
        """Cloud Storage ``testIamPermissions``: the caller can act on the bucket (404: missing)."""
        name = f"bucket:{bucket.name}"
        try:
            client = gcs.client(self.project_id, self.endpoints.storage, self.creds)
            granted = set(
                client.bucket(bucket.name).test_iam_permissions(
                    list(BUCKET_PERMISSIONS), timeout=TIMEOUT_S, retry=None
                )
            )
        except gexc.NotFound:
            if bucket.create:
                return CheckResult(
                    name,
                    PASS,
                    f"gs://{bucket.name} does not exist yet; `pulumi up` creates it (buckets[].create: true)",
                )
            return CheckResult(
                name,
                FAIL,
                f"gs://{bucket.name} does not exist (buckets[].create: false adopts an existing bucket)",
                f"create it (`gcloud storage buckets create gs://{bucket.name} --project={self.project_id} --location={self.spec.project.region}`) or set create: true",
            )
        except CALL_ERRORS as e:
            return CheckResult(
                name,
                CANNOT_CHECK,
                f"testIamPermissions failed: {first_line(e)}",
                "re-run; check network access to Cloud Storage",
            )
        missing = [p for p in BUCKET_PERMISSIONS if p not in granted]
        if not missing:
            return CheckResult(
                name, PASS, f"{self.who} can read, write and grant on gs://{bucket.name}"
            )
        taken = (
            " (the name may belong to someone else: bucket names are global)"
            if not granted and bucket.create
            else ""
        )
        return CheckResult(
            name,
            FAIL,
            f"{self.who} lacks {', '.join(missing)} on gs://{bucket.name}{taken}",
            f"`gcloud storage buckets add-iam-policy-binding gs://{bucket.name} --member={self.who} --role=roles/storage.admin`",
        )

    def quota(self) -> tuple[CheckResult, int | None]:
        """Cloud Quotas ``quotaInfos.list`` on aiplatform: the concurrent tuning jobs quota."""
        want = self.spec.project.max_concurrent_tuning_jobs
        try:
            client = cloudquotas_v1.CloudQuotasClient(
                credentials=self.creds,
                transport="rest",
                client_options=_opts(self.endpoints.quotas),
            )
            parent = (
                f"projects/{self.project_id}/locations/global/services/aiplatform.googleapis.com"
            )
            infos = list(client.list_quota_infos(parent=parent, timeout=TIMEOUT_S))
        except gexc.Forbidden as e:
            return CheckResult(
                "tuning-quota",
                CANNOT_CHECK,
                f"quotaInfos.list denied: {first_line(e)}",
                _denied_fix(
                    e,
                    "cloudquotas.googleapis.com",
                    self.project_id,
                    f"grant {self.who} roles/cloudquotas.viewer on {self.project_id}",
                ),
            ), None
        except CALL_ERRORS as e:
            return CheckResult(
                "tuning-quota", CANNOT_CHECK, f"quotaInfos.list failed: {first_line(e)}", "re-run"
            ), None
        value = _quota_value(infos)
        if value is None:
            return CheckResult(
                "tuning-quota",
                CANNOT_CHECK,
                f"no quota named {TUNING_QUOTA_DISPLAY_NAME!r} among aiplatform.googleapis.com's quotas",
                "look it up in the console (IAM & Admin > Quotas); project.max_concurrent_tuning_jobs is used as the limit",
            ), None
        if value == UNLIMITED:
            return CheckResult("tuning-quota", PASS, "unlimited concurrent tuning jobs"), value
        if value < want:
            return CheckResult(
                "tuning-quota",
                FAIL,
                f"quota allows {value} concurrent tuning job(s) but project.max_concurrent_tuning_jobs is {want}",
                f"request more of {TUNING_QUOTA_DISPLAY_NAME!r} (IAM & Admin > Quotas) or set project.max_concurrent_tuning_jobs: {value}",
            ), value
        return CheckResult(
            "tuning-quota", PASS, f"{value} concurrent tuning job(s) allowed (spec uses {want})"
        ), value

    def running_jobs(self, quota: int | None) -> CheckResult:
        """GenAiTuningService ``tuningJobs.list`` in every tuning region (the quota is global).

        Args:
            quota: The quota from :meth:`quota`, :data:`UNLIMITED`, or None when unknown (then
                ``project.max_concurrent_tuning_jobs`` stands in for it).
        """
        limit = quota if quota is not None else self.spec.project.max_concurrent_tuning_jobs
        source = (
            "quota" if quota is not None else "project.max_concurrent_tuning_jobs, quota unknown"
        )
        active: list[str] = []
        for region in catalog.TUNING_REGIONS:
            try:
                client = GenAiTuningServiceClient(
                    credentials=self.creds,
                    transport="rest",
                    client_options=_opts(self.endpoints.aiplatform.format(region=region)),
                )
                jobs = list(
                    client.list_tuning_jobs(
                        parent=f"projects/{self.project_id}/locations/{region}", timeout=TIMEOUT_S
                    )
                )
            except gexc.Forbidden as e:
                return CheckResult(
                    "running-tuning-jobs",
                    CANNOT_CHECK,
                    f"tuningJobs.list in {region} denied: {first_line(e)}",
                    _denied_fix(
                        e,
                        "aiplatform.googleapis.com",
                        self.project_id,
                        f"grant {self.who} roles/aiplatform.viewer on {self.project_id}",
                    ),
                )
            except CALL_ERRORS as e:
                return CheckResult(
                    "running-tuning-jobs",
                    CANNOT_CHECK,
                    f"tuningJobs.list in {region} failed: {first_line(e)}",
                    "re-run",
                )
            active += [j.name for j in jobs if _holds_slot(j)]
        managed = [j.name for j in self.spec.tuning_jobs if j.engine == "managed"]
        allowed = "unlimited" if limit == UNLIMITED else str(limit)
        detail = f"{len(active)} open-model tuning job(s) active of {allowed} allowed ({source})"
        if active:
            detail += ": " + ", ".join(sorted(active))
        if managed and limit != UNLIMITED and len(active) >= limit:
            return CheckResult(
                "running-tuning-jobs",
                FAIL,
                detail + f"; the spec's {len(managed)} job(s) would wait or be refused",
                "wait for the active jobs to finish (or cancel them), or request more of "
                f"{TUNING_QUOTA_DISPLAY_NAME!r}",
            )
        return CheckResult("running-tuning-jobs", PASS, detail)


def _quota_value(infos: list[Any]) -> int | None:
    wanted = TUNING_QUOTA_DISPLAY_NAME.casefold()
    for info in infos:
        if info.quota_display_name.casefold() != wanted:
            continue
        values = [int(d.details.value) for d in info.dimensions_infos]
        if not values:
            return None
        # Cloud Quotas writes -1 for "unlimited"; the most restrictive dimension wins.
        limited = [v for v in values if v != UNLIMITED]
        return min(limited) if limited else UNLIMITED
    return None


def _denied_fix(e: Exception, api: str, project: str, grant: str) -> str:
    # A 403 means either "API off" or "no permission"; Google says which in the message.
    text = str(e).lower()
    if "has not been used" in text or "is disabled" in text or "service_disabled" in text:
        return f"`gcloud services enable {api} --project={project}`"
    return grant


def _holds_slot(job: Any) -> bool:
    # Gemini tuning jobs have their own quota; open-model ones name a publisher/model base or
    # start from custom weights.
    is_open_model = "/" in job.base_model or bool(getattr(job, "custom_base_model", ""))
    return is_open_model and job.state.name in catalog.ACTIVE_JOB_STATES
