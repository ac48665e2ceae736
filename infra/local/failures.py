"""The ``error.message`` of a failed job, as Vertex writes it: what failed, without the
emulator's URLs or local paths (they mean nothing to a Vertex client), and where the full
trainer log is.
"""

from __future__ import annotations

import re

#: Longest trainer line quoted in an error message.
MAX_QUOTED = 300

_LOCAL_URL = re.compile(r"https?://(?:127\.0\.0\.1|localhost|\[::1\])(?::\d+)?[^\s'\")]*")
_PATH = re.compile(r"(?<![\w:/.])/(?:[\w.@+-]+/)+[\w.@+-]*")


def job_error(collection: str, rid: str, exit_code: int, last_line: str) -> str:
    """The message of a job whose trainer exited with ``exit_code``.

    Args:
        collection: ``tuningJobs`` or ``customJobs``.
        rid: The job id.
        exit_code: The trainer's exit status.
        last_line: The last line the trainer logged.
    """
    quoted = scrub(last_line)
    what = f": {quoted}" if quoted else ""
    return (
        f"Training failed (trainer exit code {exit_code}){what}. The full trainer log: "
        f"GET /local/v1/{collection}/{rid}/log on the local API (tunestack serve)."
    )


def scrub(text: str) -> str:
    """``text`` without local URLs and absolute paths, at most :data:`MAX_QUOTED` characters."""
    text = _LOCAL_URL.sub("<local storage>", text)
    text = _PATH.sub(lambda m: "<local path>/" + m.group(0).rstrip("/").rsplit("/", 1)[-1], text)
    return text if len(text) <= MAX_QUOTED else text[: MAX_QUOTED - 3] + "..."
