"""The typed plan: plain, frozen dataclasses describing every resource `pulumi up` registers.

A plan is data only (no Pulumi objects): it can be printed, diffed and snapshotted. Every node
has a ``name`` that is its Pulumi logical name (unique across the whole stack, so a name alone
identifies a resource) and ``depends_on``: the names of the nodes that must exist first.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from infra.catalog import FINAL_CHECKPOINT, checkpoint_uri
from infra.plan.inputs import ModelDeploymentArgs, TuningJobArgs, as_inputs

#: Component groups (ComponentResource name -> type token). Renaming one changes every URN
#: under it, so these are part of the state contract: add ``aliases`` before changing them.
COMPONENTS: dict[str, str] = {
    "foundation": "tunestack:project:Foundation",
    "storage": "tunestack:storage:Storage",
    "tuning": "tunestack:tuning:Tuning",
    "serving": "tunestack:serving:Serving",
}


@dataclass(frozen=True)
class ProjectPlan:
    """The project: created (``create``) or adopted.

    Attributes:
        name: Logical name of the Project resource (only registered when ``create``).
        project_id: GCP project id.
        region: Region of jobs and endpoints.
        create: Whether the program creates the project.
        number: Project number when known from the spec; otherwise looked up / an output.
        billing_account: Billing account linked at creation.
        folder_id: Parent folder (numeric id) at creation.
        org_id: Parent organization (numeric id) at creation.
        labels: Labels for the project and everything in it.
    """

    name: str
    project_id: str
    region: str
    create: bool
    number: str | None
    billing_account: str | None
    folder_id: str | None
    org_id: str | None
    labels: dict[str, str]

    @property
    def depends_on(self) -> tuple[str, ...]:
        return ()


@dataclass(frozen=True)
class ApiPlan:
    """One enabled API (``gcp.projects.Service``, left enabled on destroy)."""

    name: str
    service: str
    depends_on: tuple[str, ...]


@dataclass(frozen=True)
class AgentsPlan:
    """Forcing both Vertex service agents into existence before any grant.

    Attributes:
        identity_name: ``gcp.projects.ServiceIdentity`` for aiplatform (gcp-sa-aiplatform).
        agents_name: The providers' ``ServiceAgents`` resource (gcp-sa-vertex-moss-ft, which
            no native resource can create).
        domains: The agent domains granted on buckets, in catalog order.
        depends_on: The aiplatform API.
    """

    identity_name: str
    agents_name: str
    domains: tuple[str, ...]
    depends_on: tuple[str, ...]


@dataclass(frozen=True)
class BucketPlan:
    """A bucket the program creates (``create``) or only references.

    Attributes:
        name: Logical name of the Bucket resource (registered only when ``create``).
        bucket: The bucket's name.
        location: Bucket location.
        create: Managed by the program; false = existing bucket, grants only.
        protect: Pulumi protect + retain_on_delete.
        versioning: Object versioning (buckets that hold job outputs).
        labels: Bucket labels.
        uses: Why the bucket matters (datasets, outputs, images, ...), sorted.
        depends_on: Project/API nodes it needs.
    """

    name: str
    bucket: str
    location: str
    create: bool
    protect: bool
    versioning: bool
    labels: dict[str, str]
    uses: tuple[str, ...]
    depends_on: tuple[str, ...]

    @property
    def url(self) -> str:
        return f"gs://{self.bucket}"


@dataclass(frozen=True)
class GrantPlan:
    """One additive ``BucketIAMMember``.

    Attributes:
        name: Logical name.
        bucket: Bucket name.
        role: IAM role.
        agent_domain: Service-agent domain when the member is a Vertex agent (its email needs
            the project number, known at deploy time); None for spec ``iam:`` extras.
        member: The member for spec extras; None for agents.
        depends_on: Bucket, agents and APIs.
    """

    name: str
    bucket: str
    role: str
    agent_domain: str | None
    member: str | None
    depends_on: tuple[str, ...]


@dataclass(frozen=True)
class UploadPlan:
    """A local dataset file uploaded as a content-addressed object.

    Attributes:
        name: Logical name of the BucketObject.
        dataset: Dataset name.
        split: ``train`` or ``validation``.
        bucket: Destination bucket.
        object_name: ``tunestack/datasets/<dataset>/<sha256[:16]>/<split>.jsonl``.
        local_path: Path of the file as the program opens it.
        sha256: Hex digest of the file.
        retain: retain_on_delete (the bucket is protected).
        depends_on: The bucket (when managed).
    """

    name: str
    dataset: str
    split: str
    bucket: str
    object_name: str
    local_path: str
    sha256: str
    retain: bool
    depends_on: tuple[str, ...]

    @property
    def uri(self) -> str:
        return f"gs://{self.bucket}/{self.object_name}"


@dataclass(frozen=True)
class DatasetPlan:
    """Where a dataset's files are read from by the jobs."""

    name: str
    train_uri: str
    validation_uri: str | None
    uploads: tuple[str, ...]


@dataclass(frozen=True)
class ImagePlan:
    """The trainer image: an Artifact Registry docker repository and the image built into it.

    Attributes:
        repository_name: Logical name of the Repository resource.
        image_name: Logical name of the TrainerImage resource.
        repository: Repository id.
        location: Repository location.
        image_uri: ``<location>-docker.pkg.dev/<project>/<repository>/trainer``.
        labels: Repository labels.
        depends_on: APIs the repository needs.
    """

    repository_name: str
    image_name: str
    repository: str
    location: str
    image_uri: str
    labels: dict[str, str]
    depends_on: tuple[str, ...]


@dataclass(frozen=True)
class JobPlan:
    """One tuning job, its inputs, estimates and place in the quota chain.

    Attributes:
        name: Logical name of the job resource (TuningJob or CustomTrainingJob).
        completion_name: Logical name of the TuningJobCompletion that waits for the job.
        job: The job name in the spec.
        engine: ``managed`` or ``trainer_image``.
        base_model: Vertex model id.
        custom_base_model: gs:// URI of starting weights, or None.
        tuning_mode: ``FULL`` or ``PEFT_ADAPTER``.
        epochs: Epochs.
        learning_rate: Absolute learning rate, or None.
        learning_rate_multiplier: Multiplier, or None.
        adapter_size: LoRA rank, or None.
        train_uri: gs:// URI of the training file.
        validation_uri: gs:// URI of the validation file, or None.
        output_uri: gs:// output prefix.
        labels: Job labels.
        replicas: trainer_image replicas.
        machine_type: trainer_image machine type.
        dataset_identity: ``train:<sha256>;validation:<sha256>`` of the dataset files when
            known (part of the providers' job key: new data is a new job).
        after: Spec job names this job waits for (quota chain and continued training).
        depends_on: Grants, uploads, image and previous completions.
        examples: Training examples (from validation), or None.
        tokens: Training-set tokens, or None.
        tokens_exact: Whether ``tokens`` was counted with the model's tokenizer.
        training_tokens: tokens x epochs (the billed amount), or None.
        checkpoints: Checkpoints Vertex keeps.
        run_uri: ``{output_uri}/{run key}``: where this job version writes (its own prefix;
            :func:`infra.plan.keys.run_output_uri` of its provider inputs, as the providers
            compute it). Checkpoints are under ``{run_uri}/postprocess/node-0/checkpoints``.
    """

    name: str
    completion_name: str
    job: str
    engine: str
    base_model: str
    custom_base_model: str | None
    tuning_mode: str
    epochs: int
    learning_rate: float | None
    learning_rate_multiplier: float | None
    adapter_size: int | None
    train_uri: str
    validation_uri: str | None
    output_uri: str
    labels: dict[str, str]
    replicas: int
    machine_type: str | None
    dataset_identity: str | None
    after: tuple[str, ...]
    depends_on: tuple[str, ...]
    examples: int | None
    tokens: int | None
    tokens_exact: bool
    training_tokens: int | None
    checkpoints: int
    run_uri: str = ""

    @property
    def final_uri(self) -> str:
        """The final checkpoint of this job version."""
        return checkpoint_uri(self.run_uri or self.output_uri, FINAL_CHECKPOINT)

    def provider_inputs(self, project: Any, location: str) -> dict[str, Any]:
        """The inputs of the job's dynamic resource (TuningJob, or CustomTrainingJob less its
        image fields). The Pulumi program and ``up --local`` both use this, so they derive the
        same job key and adopt each other's jobs."""
        args = TuningJobArgs(
            project=project,
            location=location,
            base_model=self.base_model,
            tuning_mode=self.tuning_mode,
            train_dataset_uri=self.train_uri,
            output_uri=self.output_uri,
            epochs=self.epochs,
            custom_base_model=self.custom_base_model,
            learning_rate=self.learning_rate,
            learning_rate_multiplier=self.learning_rate_multiplier,
            adapter_size=self.adapter_size,
            validation_dataset_uri=self.validation_uri,
            display_name=self.job,
            labels=self.labels,
            dataset_identity=self.dataset_identity,
        )
        return _plan_inputs(args)


@dataclass(frozen=True)
class EndpointPlan:
    """One Model Garden deployment.

    Attributes:
        name: Logical name of the ModelDeployment resource.
        endpoint: Endpoint display name.
        job: Spec job whose checkpoint is deployed, or None for gs:// weights.
        checkpoint: The selection as written: ``final``, ``best``, ``epoch-N`` or
            ``checkpoint-<step>``.
        model_uri: gs:// URI of the weights when known at plan time (gs:// models, or the
            job version's checkpoint path under its ``run_uri``); for ``epoch-N`` and ``best``
            the checkpoint's step is known only after training, so the URI ends in the
            selection and is resolved from the job's recorded checkpoints when it deploys.
        machine_type: G2 machine type.
        accelerator_type: Accelerator type.
        accelerator_count: Accelerators per replica.
        min_replicas: Minimum replicas.
        max_replicas: Maximum replicas.
        base_model: Catalog id sizing the weights, or None.
        weights_gb: bf16 weight size, or None when unknown.
        fits: Whether the weights fit the accelerators' memory, or None when unknown.
        depends_on: The job completion or the grants on the weights' bucket.
        canary_percent: Traffic share of a new model while the previous one stays deployed,
            or None (a new model takes 100%).
        serves: What the endpoint serves and how that is resolved, in words.
        serves_uri: The weights' URI when the plan knows it (gs:// weights, ``final``,
            ``checkpoint-<step>``); None when only training decides (``epoch-N``, ``best``).
    """

    name: str
    endpoint: str
    job: str | None
    checkpoint: str
    model_uri: str
    machine_type: str
    accelerator_type: str
    accelerator_count: int
    min_replicas: int
    max_replicas: int
    base_model: str | None
    weights_gb: float | None
    fits: bool | None
    depends_on: tuple[str, ...]
    canary_percent: int | None = None
    serves: str = ""
    serves_uri: str | None = None

    def provider_inputs(self, project: Any, location: str, gcs_uri: Any) -> dict[str, Any]:
        """The inputs of the endpoint's ModelDeployment (program and ``up --local`` alike)."""
        args = ModelDeploymentArgs(
            project=project,
            location=location,
            gcs_uri=gcs_uri,
            machine_type=self.machine_type,
            endpoint_display_name=self.endpoint,
            model_display_name=self.job or self.endpoint,
            accelerator_type=self.accelerator_type,
            accelerator_count=self.accelerator_count,
            min_replicas=self.min_replicas,
            max_replicas=self.max_replicas,
            canary_percent=self.canary_percent,
        )
        return _plan_inputs(args)


@dataclass(frozen=True)
class Plan:
    """Everything the program registers, in dependency-respecting groups.

    Attributes:
        spec_path: The spec file planned.
        project: The project node.
        apis: Enabled APIs, sorted by service.
        agents: Service-agent nodes.
        buckets: Buckets, in spec order (then referenced-only buckets by name).
        grants: Additive bucket grants, sorted by name.
        uploads: Dataset uploads, in spec order.
        datasets: Dataset URIs, in spec order.
        image: The trainer image, when any job uses engine trainer_image.
        jobs: Tuning jobs, in spec order.
        endpoints: Endpoints, in spec order.
    """

    spec_path: str
    project: ProjectPlan
    apis: tuple[ApiPlan, ...]
    agents: AgentsPlan
    buckets: tuple[BucketPlan, ...]
    grants: tuple[GrantPlan, ...]
    uploads: tuple[UploadPlan, ...]
    datasets: tuple[DatasetPlan, ...]
    image: ImagePlan | None
    jobs: tuple[JobPlan, ...]
    endpoints: tuple[EndpointPlan, ...] = field(default=())

    @property
    def training_tokens(self) -> int | None:
        """Total billed training tokens, or None when any job's count is unknown."""
        counts = [j.training_tokens for j in self.jobs]
        return None if any(c is None for c in counts) else sum(c for c in counts if c is not None)

    def edges(self) -> list[tuple[str, str]]:
        """Every (dependency, dependent) pair between registered nodes, sorted."""
        registered = set(self.registered_names())
        pairs: set[tuple[str, str]] = set()
        for name, deps in self._nodes():
            pairs.update((d, name) for d in deps if d in registered and name in registered)
        return sorted(pairs)

    def registered_names(self) -> list[str]:
        """Names of the nodes that become resources (adopted projects and existing buckets
        are referenced, not registered)."""
        return [name for name, _ in self._nodes()]

    def order(self) -> list[str]:
        """A deterministic topological order of the registered nodes (Kahn's algorithm; ties
        keep plan order), the order in which `pulumi up` can create them."""
        nodes = self._nodes()
        names = [n for n, _ in nodes]
        known = set(names)
        indegree = {n: 0 for n in names}
        dependents: dict[str, list[str]] = {n: [] for n in names}
        for name, deps in nodes:
            for d in set(deps):
                if d in known:
                    indegree[name] += 1
                    dependents[d].append(name)
        position = {n: i for i, n in enumerate(names)}
        ready = [n for n in names if indegree[n] == 0]
        result: list[str] = []
        while ready:
            ready.sort(key=position.__getitem__, reverse=True)
            current = ready.pop()
            result.append(current)
            for nxt in dependents[current]:
                indegree[nxt] -= 1
                if indegree[nxt] == 0:
                    ready.append(nxt)
        return result

    def _nodes(self) -> list[tuple[str, tuple[str, ...]]]:
        nodes: list[tuple[str, tuple[str, ...]]] = []
        if self.project.create:
            nodes.append((self.project.name, ()))
        nodes += [(a.name, a.depends_on) for a in self.apis]
        nodes.append((self.agents.identity_name, self.agents.depends_on))
        nodes.append((self.agents.agents_name, self.agents.depends_on))
        nodes += [(b.name, b.depends_on) for b in self.buckets if b.create]
        nodes += [(g.name, g.depends_on) for g in self.grants]
        nodes += [(u.name, u.depends_on) for u in self.uploads]
        if self.image is not None:
            nodes.append((self.image.repository_name, self.image.depends_on))
            nodes.append((self.image.image_name, (self.image.repository_name,)))
        for job in self.jobs:
            nodes.append((job.name, job.depends_on))
            nodes.append((job.completion_name, (job.name,)))
        nodes += [(e.name, e.depends_on) for e in self.endpoints]
        return nodes


def _plan_inputs(args: Any) -> dict[str, Any]:
    # The inputs the plan decides, named as their provider declares them; the Pulumi program
    # and ``up --local`` set the rest (where the API is, how long to wait).
    return {k: v for k, v in as_inputs(args).items() if k not in _CALLER_INPUTS}


#: Inputs the Pulumi program or ``up --local`` set, never the plan.
_CALLER_INPUTS = frozenset({"api_endpoint", "deadline_seconds"})
