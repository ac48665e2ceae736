"""How one ``tunestack serve`` runs: ports, caps and the (test-only) fault injection switch."""

from __future__ import annotations

from dataclasses import dataclass, field

#: Default wall-clock limit of one generation, seconds (``tunestack serve --generation-timeout``).
GENERATION_TIMEOUT_S = 120.0
DEFAULT_PORT = 8470
DEFAULT_BODY_LIMIT = 8 * 1024 * 1024
DEFAULT_PREDICT_CONCURRENCY = 2


@dataclass
class Settings:
    """How one server instance runs.

    Attributes:
        port: TCP port of the API (0: a free one).
        host: Bind address; 127.0.0.1 unless the user says otherwise.
        storage_port: Port of the GCS emulator (0: a free one).
        smoke: Replace unmapped catalog base models by tiny random models.
        body_limit: Largest request body in bytes (413 beyond).
        max_tokens: Server-wide cap on ``max_tokens`` (None, the default: only the model's
            context bounds it, as in real serving).
        generation_timeout_s: Wall-clock limit of one generation, seconds.
        predict_concurrency: Predictions running at once; more answer 429.
        extra_hosts: Host names accepted besides localhost names (with a non-local bind).
        job_watchdog_s: Seconds a running job may make no progress before it is failed.
            Default: None, ``$TUNESTACK_JOB_WATCHDOG_SECONDS`` or 1800.
        faults: Serve the fault-injection route ``/v1/tunestack:faults`` (tests only; no CLI
            flag sets it). Default: False, and the route answers 404.
    """

    port: int = DEFAULT_PORT
    host: str = "127.0.0.1"
    storage_port: int = 0
    smoke: bool = False
    body_limit: int = DEFAULT_BODY_LIMIT
    max_tokens: int | None = None
    generation_timeout_s: float = GENERATION_TIMEOUT_S
    predict_concurrency: int = DEFAULT_PREDICT_CONCURRENCY
    extra_hosts: tuple[str, ...] = field(default_factory=tuple)
    faults: bool = False
    job_watchdog_s: float | None = None
