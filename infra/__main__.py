"""The Pulumi program (`pulumi up`): config `tunestack:spec` -> checks -> plan -> emit -> outputs.

Invalid specs stop here with every diagnostic logged as an error: nothing is created or
uploaded. The same `build` runs under mocks in `tunestack plan`.
"""

import sys
from pathlib import Path

import pulumi

# Pulumi runs this folder as a script; make `infra` importable without an installed package.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from infra.emit.program import build  # noqa: E402

spec_path = pulumi.Config("tunestack").require("spec")
build(spec_path)
