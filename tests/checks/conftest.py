"""Fixtures shared by the dataset validation tests."""

from __future__ import annotations

import os
import shutil
from typing import Any

import pytest

from infra.checks.dataset import blocks


@pytest.fixture
def textscan() -> Any:
    """The C scanner module. Fails when a C compiler is here but it was not built; skips,
    saying why, when it is switched off (TUNESTACK_TEXTSCAN=0) or no compiler exists."""
    if blocks.textscan is None:
        if os.environ.get("TUNESTACK_TEXTSCAN") == "0":
            pytest.skip("the C scanner is switched off (TUNESTACK_TEXTSCAN=0)")
        if shutil.which("cc") or shutil.which("gcc"):
            pytest.fail("infra/checks/_textscan.c was not built although a C compiler is here")
        pytest.skip("no C compiler: this install validates without the C scanner")
    return blocks.textscan
