"""Waiting on Vertex long-running operations, via ``google.api_core``.

:func:`wait_operation` waits on a GAPIC call's ``google.api_core.operation.Operation`` future
with its own ``result(timeout=...)`` and an api_core polling ``Retry``. Anything polled by a
get (a job's state, an endpoint's model, a Cloud Build) goes through :func:`infra.wait.poll`,
the other shape of wait; no other module in ``infra/`` sleeps between attempts.
"""

from __future__ import annotations

import concurrent.futures

from google.api_core import exceptions as gexc
from google.api_core import operation
from google.api_core.future import polling
from google.longrunning import operations_pb2

from infra.vertex.errors import DeadlineExceeded, VertexError
from infra.wait import INITIAL_DELAY, MAX_DELAY


def wait_operation(
    future: operation.Operation,
    deadline_s: float,
    *,
    what: str = "operation",
    initial_delay: float = INITIAL_DELAY,
    max_delay: float = MAX_DELAY,
) -> operations_pb2.Operation:
    """Waits for a GAPIC long-running operation future (bounded deadline, backoff).

    An operation that is done without an error counts as done even when it carries no
    response (some servers omit ``google.protobuf.Empty``).

    Returns:
        The finished operation (its ``response`` unpacks to the call's result type).

    Raises:
        VertexError: the operation finished with an error (its message and code).
        DeadlineExceeded: not done by the deadline (it keeps running).
    """
    name = future.operation.name
    every = polling.DEFAULT_POLLING.with_delay(
        initial=initial_delay, maximum=max_delay, multiplier=2.0
    )
    try:
        future.result(timeout=deadline_s, polling=every)
    except concurrent.futures.TimeoutError:
        raise DeadlineExceeded(
            f"{what} {name} not done after {deadline_s:.0f} s; it keeps running, and a "
            "re-run adopts it"
        ) from None
    except gexc.GoogleAPICallError:
        op = future.operation
        if not op.done:
            raise  # the polling call itself failed
        if op.HasField("error") and op.error.code:
            raise VertexError(
                f"{what} {name} failed: {op.error.message} (code {op.error.code})"
            ) from None
    return future.operation
