"""``up``/``down`` without ``--local`` print the Pulumi commands of the stack naming the spec."""

from __future__ import annotations

from pathlib import Path

import pytest

from infra.cli import main
from infra.cli.stacks import stacks_for

REPO = Path(__file__).resolve().parents[2]


def test_up_prints_the_stack_commands(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(REPO)
    assert main(["up", "specs/dev.yaml"]) == 0
    out = capsys.readouterr().out
    assert "  pulumi stack select dev && pulumi up\n" in out
    assert main(["down", "specs/prod.yaml"]) == 0
    assert "  pulumi stack select prod && pulumi destroy\n" in capsys.readouterr().out


def test_a_spec_no_stack_names_says_how_to_create_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "Pulumi.yaml").write_text("name: x\nruntime: python\n")
    (tmp_path / "Pulumi.dev.yaml").write_text("config:\n  tunestack:spec: specs/other.yaml\n")
    spec = tmp_path / "specs" / "mine.yaml"
    spec.parent.mkdir()
    spec.write_text("project: {}\n")
    assert stacks_for(spec) == (tmp_path, [])
    assert main(["up", str(spec)]) == 1
    err = capsys.readouterr().err
    assert "pulumi stack init NAME && pulumi config set tunestack:spec specs/mine.yaml" in err
    (tmp_path / "Pulumi.mine.yaml").write_text("config:\n  tunestack:spec: specs/mine.yaml\n")
    assert stacks_for(spec) == (tmp_path, ["mine"])
