"""`tunestack` subcommands of this module (being written; registers nothing yet)."""

from __future__ import annotations

import argparse
from typing import Any


def register(sub: Any) -> None:
    """Adds this module's subcommands to the parser."""
    _ = argparse
