"""What one ``up``/``down --local`` did, and the one error it reports."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Changes:
    """What one ``up`` or ``down`` did (printed as the summary; tests assert on it)."""

    created: list[str] = field(default_factory=list)
    adopted: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    #: Spec endpoint name -> endpoint resource name; spec job name -> its loss curve file.
    endpoints: dict[str, str] = field(default_factory=dict)
    loss_curves: dict[str, str] = field(default_factory=dict)

    @property
    def changed(self) -> bool:
        return bool(self.created or self.deleted or self.updated)


class UpError(Exception):
    """A failure ``up``/``down`` reports as one message, exit 1 (no traceback)."""
