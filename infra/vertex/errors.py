"""What the Vertex client raises for failures the user must act on."""

from __future__ import annotations


class VertexError(RuntimeError):
    """A Vertex call or wait failed in a way the user must act on."""


class JobFailed(VertexError):
    """A job reached a terminal state other than SUCCEEDED.

    Attributes:
        name: Job resource name.
        state: Terminal state name (``JOB_STATE_*``).
        error_message: The job's own error message (``job.error.message``), may be empty.
    """

    def __init__(self, name: str, state: str, error_message: str) -> None:
        self.name = name
        self.state = state
        self.error_message = error_message
        detail = f": {error_message}" if error_message else ""
        super().__init__(f"job {name} ended in {state}{detail}")


class DeadlineExceeded(VertexError):
    """A bounded wait ran out; the remote work continues and a re-run resumes waiting."""
