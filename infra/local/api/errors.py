"""Errors in Google's JSON shape: ``{"error": {"code", "message", "status"}}``."""

from __future__ import annotations

from starlette.responses import JSONResponse

# HTTP status -> google.rpc status name, for Google's JSON error shape.
_STATUS = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    408: "DEADLINE_EXCEEDED",
    409: "ALREADY_EXISTS",
    413: "INVALID_ARGUMENT",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    501: "UNIMPLEMENTED",
    502: "UNAVAILABLE",
    503: "UNAVAILABLE",
}


class ApiError(Exception):
    """An error answered in Google's shape: ``{"error": {"code", "message", "status"}}``.

    Args:
        code: The HTTP status.
        message: What went wrong, for the caller.
        status: The google.rpc status name (default: the usual one of ``code``).
        field: The request field at fault: answered as a ``google.rpc.BadRequest`` field
            violation in ``details``, as Vertex does.
    """

    def __init__(
        self, code: int, message: str, status: str | None = None, field: str | None = None
    ) -> None:
        super().__init__(message)
        self.code = code
        self.status = status or _STATUS.get(code, "UNKNOWN")
        self.field = field

    def response(self) -> JSONResponse:
        """The error as a JSON response."""
        error: dict[str, object] = {"code": self.code, "message": str(self), "status": self.status}
        if self.field:
            error["details"] = [
                {
                    "@type": "type.googleapis.com/google.rpc.BadRequest",
                    "fieldViolations": [{"field": self.field, "description": str(self)}],
                }
            ]
        return JSONResponse({"error": error}, status_code=self.code)
