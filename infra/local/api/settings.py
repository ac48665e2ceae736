"""How one ``tunestack serve`` runs: ports, caps and the (test-only) fault injection switch."""

from __future__ import annotations

from dataclasses import dataclass, field

#: Largest ``max_tokens`` per prediction instance: the same figure as
#: ``infra.local.predict.MAX_TOKENS_CAP`` (a test checks they agree), declared here as well so
#: that the CLI's ``--help`` defaults need no torch import.
MAX_TOKENS_CAP = 1024
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
        max_tokens: Largest ``max_tokens`` per prediction instance.
        predict_concurrency: Predictions running at once; more answer 429.
        extra_hosts: Host names accepted besides localhost names (with a non-local bind).
        faults: Serve the fault-injection route ``/v1/tunestack:faults`` (tests only; no CLI
            flag sets it). Default: False, and the route answers 404.
    """

    port: int = DEFAULT_PORT
    host: str = "127.0.0.1"
    storage_port: int = 0
    smoke: bool = False
    body_limit: int = DEFAULT_BODY_LIMIT
    max_tokens: int = MAX_TOKENS_CAP
    predict_concurrency: int = DEFAULT_PREDICT_CONCURRENCY
    extra_hosts: tuple[str, ...] = field(default_factory=tuple)
    faults: bool = False
