"""``tunestack validate`` and ``tunestack schema`` end to end: output, exit codes, shipped files."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from infra.cli import main
from infra.cli.validate import SCHEMA_PATH, reference_markdown, schema_text
from infra.diagnostics import CODES

ROOT = Path(__file__).resolve().parents[2]
SPECS = sorted((ROOT / "specs").glob("*.yaml"))
LINE = re.compile(
    r"^(?P<file>[^:]+):(?P<line>\d+):(?P<col>\d+): (?P<sev>error|warning)\[(?P<code>[a-z-]+)\]: (?P<rest>.+)$"
)

BAD = """\
project:
  id: acme-ml-dev
  region: us-central1
buckets:
  - name: acme-ml-dev-tuning
datasets:
  - name: d
    train: train.jsonl
    bucket: acme-ml-dev-tuning
tuning_jobs:
  - name: j
    base_model: meta/llama3_1@llama-3.1-8b
    tuning_mode: FULL
    epochs: 2
    adapter_size: 8
    dataset: d
    output_uri: gs://acme-ml-dev-tuning/j
"""


@pytest.fixture()
def bad_spec(tmp_path: Path) -> Path:
    (tmp_path / "train.jsonl").write_text(
        '{"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]}\n{"prompt": "x"}\n'
    )
    spec = tmp_path / "bad.yaml"
    spec.write_text(BAD)
    return spec


@pytest.mark.parametrize("spec", SPECS, ids=[p.name for p in SPECS])
def test_every_shipped_spec_validates(spec: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert spec.read_text().startswith("# yaml-language-server: $schema=schema.json\n")
    assert main(["validate", str(spec)]) == 0, capsys.readouterr().out
    assert "valid (0 errors" in capsys.readouterr().out


def test_one_spec_per_model_family_and_a_second_image_bucket() -> None:
    text = "\n".join(p.read_text() for p in SPECS)
    for family_id in ("meta/llama3_1@", "google/gemma3@", "qwen/qwen3@", "meta/llama4@"):
        assert family_id in text
    assert "create: false" in (ROOT / "specs" / "llama4.yaml").read_text()


def test_text_output_lists_every_problem_then_the_summary(
    bad_spec: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["validate", str(bad_spec)]) == 1
    out = capsys.readouterr().out.splitlines()
    diags = [LINE.match(line) for line in out if LINE.match(line)]
    got = {(m["code"], m["file"].rsplit("/", 1)[-1], int(m["line"])) for m in diags if m}
    assert ("invalid-adapter-size", "bad.yaml", 15) in got
    assert ("unknown-format", "train.jsonl", 2) in got
    assert any(
        "tuning_jobs[0].adapter_size: adapter_size is for PEFT_ADAPTER" in line for line in out
    )
    assert any(line.startswith(f"{bad_spec}: invalid (2 errors, 0 warnings)") for line in out)
    assert any(
        "job j: 1 examples (chat)" in line
        and "(estimated)" in line
        and "2 checkpoints kept" in line
        for line in out
    )


def test_json_output_shape(bad_spec: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        main(["validate", "--format", "json", str(bad_spec), str(ROOT / "specs" / "llama.yaml")])
        == 1
    )
    doc = json.loads(capsys.readouterr().out)
    assert set(doc) == {"ok", "diagnostics", "jobs"} and doc["ok"] is False
    for d in doc["diagnostics"]:
        assert set(d) == {"severity", "code", "file", "line", "column", "field", "message"}
    assert [j["name"] for j in doc["jobs"]] == ["j", "support-llama"]
    job = doc["jobs"][1]
    assert set(job) == {
        "name",
        "examples",
        "tokens",
        "tokens_exact",
        "epochs",
        "training_tokens",
        "checkpoints",
        "estimated_cost_usd",
    }
    assert job["training_tokens"] == job["tokens"] * job["epochs"] and job["checkpoints"] == 3


def test_strict_turns_warnings_into_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = tmp_path / "s.yaml"
    spec.write_text(
        BAD.replace("    adapter_size: 8\n", "").replace(
            "train: train.jsonl", "train: t.jsonl\n    tokenizer: ./nope"
        )
    )
    (tmp_path / "t.jsonl").write_text('{"prompt": "a", "completion": "b"}\n')
    assert main(["validate", str(spec)]) == 0
    assert "warning[tokenizer-unavailable]" in capsys.readouterr().out
    assert main(["validate", "--strict", str(spec)]) == 1
    assert "error[tokenizer-unavailable]" in capsys.readouterr().out


# A real process with only this module's commands (the full CLI imports every command
# module, which is slow to start; main() itself is exercised in-process above).
ENTRY = """
import argparse, importlib.util, sys
spec = importlib.util.spec_from_file_location("validate_cli", "infra/cli/validate.py")
validate = importlib.util.module_from_spec(spec)
spec.loader.exec_module(validate)
p = argparse.ArgumentParser(prog="tunestack")
validate.register(p.add_subparsers(dest="command", required=True))
a = p.parse_args()
sys.exit(a.func(a))
"""


def test_missing_spec_is_exit_1_and_bad_flags_exit_2(tmp_path: Path) -> None:
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        cmd = [sys.executable, "-c", ENTRY, *args]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=ROOT)

    missing = run("validate", str(tmp_path / "nope.yaml"))
    assert missing.returncode == 1
    assert "error[file-not-found]" in missing.stdout and "Traceback" not in missing.stderr
    usage = run("validate", "--frobnicate", "x.yaml")
    assert usage.returncode == 2 and "Traceback" not in usage.stderr
    with pytest.raises(SystemExit) as e:
        main(["validate"])
    assert e.value.code == 2


def test_no_datasets_flag(bad_spec: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", "--no-datasets", str(bad_spec)]) == 1
    assert "unknown-format" not in capsys.readouterr().out


def test_schema_file_is_current(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert SCHEMA_PATH.read_text() == schema_text(), (
        "specs/schema.json is stale: run `tunestack schema`"
    )
    assert main(["schema", "--check"]) == 0
    stale = tmp_path / "schema.json"
    stale.write_text("{}")
    assert main(["schema", "--check", "--output", str(stale)]) == 1
    assert main(["schema", "--output", str(stale)]) == 0 and stale.read_text() == schema_text()
    schema = json.loads(schema_text())
    assert schema["additionalProperties"] is False and "tuning_jobs" in schema["properties"]


def test_readme_lists_every_code_and_nothing_else() -> None:
    doc = (ROOT / "README.md").read_text()
    table = re.findall(r"^\| `([a-z0-9-]+)` \|", doc.split("## Error codes", 1)[1], re.M)
    assert sorted(table) == sorted(CODES)


def test_generated_reference_covers_every_field() -> None:
    from infra.spec import Spec

    md = reference_markdown()
    for name, field in Spec.model_fields.items():
        assert f"| `{name}` |" in md and (field.description or "") in md
    assert md.count("| `") >= len(CODES) + sum(1 for _ in Spec.model_fields)


def test_unknown_keys_do_not_hide_the_other_mistakes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        BAD.replace("epochs: 2", "epoch: 2").replace("region: us-central1", "region: us-west9")
    )
    (tmp_path / "train.jsonl").write_text(
        '{"messages": [{"role": "user", "content": "hi"}, {"role": "gpt", "content": "yo"}]}\n'
    )
    assert main(["validate", str(spec), "--format", "json"]) == 1
    out = json.loads(capsys.readouterr().out)
    found = {(d["code"], d["line"]) for d in out["diagnostics"]}
    # The typo, the region, the FULL adapter size and the dataset's bad role: one run.
    assert ("unknown-field", 14) in found
    assert ("unsupported-region", 3) in found
    assert ("invalid-adapter-size", 15) in found
    assert ("invalid-role", 1) in found
    assert out["ok"] is False
