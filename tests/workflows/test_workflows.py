"""The shipped GitHub workflows: every ``tunestack`` command they run exists with those flags,
actions are pinned, the cloud steps are guarded, and the spec -> stack mapping works.

No GitHub runner is available here, so the workflow files are parsed, their ``tunestack``
command lines parsed by our own argparse parser, and their inline Python run for real.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from infra.cli import build_parser

ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.y*ml"))
EXPRESSION = re.compile(r"\$\{\{.*?\}\}")
SHELL_OPERATORS = {">", ">>", "<", "|", "||", "&&", ";", "2>&1", "&"}


def load(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text())
    # YAML 1.1 reads the key `on` as True.
    data["on"] = data.pop(True, data.get("on"))
    return data


def steps(workflow: dict[str, Any]) -> list[dict[str, Any]]:
    return [step for job in workflow["jobs"].values() for step in job.get("steps", [])]


def tunestack_commands(script: str) -> list[list[str]]:
    """The argv (after ``tunestack``) of every tunestack invocation in a shell script."""
    script = EXPRESSION.sub("PLACEHOLDER", script.replace("\\\n", " "))
    commands = []
    for line in script.splitlines():
        if "tunestack" not in line or line.lstrip().startswith("#"):
            continue
        try:
            tokens = shlex.split(line, comments=True)
        except ValueError:
            continue  # an inline-Python line with unbalanced quotes, not a command
        for i, token in enumerate(tokens):
            if re.fullmatch(r"(.*/)?tunestack", token):
                argv = []
                for t in tokens[i + 1 :]:
                    if t in SHELL_OPERATORS or t.startswith((">", "<", "|", "&")):
                        break
                    argv.append(t)
                commands.append(argv)
    return commands


def all_commands() -> list[tuple[str, list[str]]]:
    return [
        (path.name, argv)
        for path in WORKFLOWS
        for step in steps(load(path))
        for argv in tunestack_commands(step.get("run", ""))
    ]


def subparser(name: str) -> argparse.ArgumentParser:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices[name]


def test_workflows_exist():
    assert {p.name for p in WORKFLOWS} >= {"config-pr.yml", "config-deploy.yml"}


@pytest.mark.parametrize(
    ("workflow", "argv"), all_commands(), ids=lambda v: " ".join(v) if isinstance(v, list) else v
)
def test_every_tunestack_command_parses_with_exact_flags(workflow, argv):
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as e:
        pytest.fail(
            f"{workflow}: `tunestack {' '.join(argv)}` is not a valid command (exit {e.code})"
        )
    known = {o for a in subparser(args.command)._actions for o in a.option_strings}
    for token in argv:
        if token.startswith("--"):
            # argparse accepts unambiguous prefixes; a workflow must spell flags out in full.
            assert token.split("=")[0] in known, (
                f"{workflow}: {token} is not a flag of tunestack {args.command}"
            )


def test_the_pr_workflow_validates_plans_with_diff_and_previews():
    commands = [argv for name, argv in all_commands() if name == "config-pr.yml"]
    assert any(a[0] == "validate" for a in commands)
    plans = [a for a in commands if a[0] == "plan"]
    assert any("--diff-against" in a and a[a.index("--format") + 1] == "markdown" for a in plans)
    pr = load(ROOT / ".github/workflows/config-pr.yml")
    assert "specs/**" in pr["on"]["pull_request"]["paths"]
    comment = [
        s
        for s in steps(pr)
        if s.get("uses", "").startswith("marocchino/sticky-pull-request-comment@")
    ]
    assert comment and comment[0]["with"]["path"] == "plan.md"
    preview = [s for s in steps(pr) if s.get("uses", "").startswith("pulumi/actions@")]
    assert [s["with"]["command"] for s in preview] == ["preview"]
    # Guarded: runs only when the credentials check said so.
    assert "configured == 'true'" in preview[0]["if"]
    auth = [s for s in steps(pr) if s.get("uses", "").startswith("google-github-actions/auth@")]
    assert auth and "workload_identity_provider" in auth[0]["with"]
    assert pr["jobs"]["preview"]["permissions"]["id-token"] == "write"


def test_the_deploy_workflow_runs_pulumi_up_per_stack_on_main():
    deploy = load(ROOT / ".github/workflows/config-deploy.yml")
    assert deploy["on"]["push"]["branches"] == ["main"]
    up = deploy["jobs"]["up"]
    assert up["strategy"]["matrix"]["stack"] == "${{ fromJSON(needs.stacks.outputs.stacks) }}"
    pulumi = [s for s in up["steps"] if s.get("uses", "").startswith("pulumi/actions@")]
    assert [s["with"]["command"] for s in pulumi] == ["up"]
    assert pulumi[0]["with"]["stack-name"] == "${{ matrix.stack }}"
    assert deploy["concurrency"]["cancel-in-progress"] is False


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_actions_are_pinned_to_versions(path):
    for step in steps(load(path)):
        if "uses" in step:
            action, _, ref = step["uses"].partition("@")
            assert re.fullmatch(r"v\d+(\.\d+)*|[0-9a-f]{40}", ref), (
                f"{path.name}: {step['uses']} is not pinned"
            )


def inline_python(path: Path) -> str:
    for step in steps(load(path)):
        m = re.search(r"<<'PY'\n(.*?)\nPY\b", step.get("run", ""), re.S)
        if m:
            return m.group(1)
    raise AssertionError(f"{path.name} has no inline Python step")


@pytest.fixture
def infra_repo(tmp_path: Path) -> Path:
    """A user's infra repository: two specs, a dataset, two stacks."""
    (tmp_path / "specs" / "data").mkdir(parents=True)
    for name in ("dev", "prod", "unused"):
        (tmp_path / "specs" / f"{name}.yaml").write_text("project: {}\n")
    (tmp_path / "specs" / "data" / "train.jsonl").write_text("{}\n")
    (tmp_path / "Pulumi.dev.yaml").write_text("config:\n  tunestack:spec: specs/dev.yaml\n")
    (tmp_path / "Pulumi.prod.yaml").write_text(
        "config:\n  tunestack:spec: ./specs/prod.yaml\n  gcp:project: p\n"
    )
    return tmp_path


def run_mapping(workflow: str, repo: Path, changed: list[str]) -> dict[str, str]:
    (repo / "changed.txt").write_text("\n".join(changed) + "\n")
    (repo / "out.txt").write_text("")
    code = inline_python(ROOT / ".github" / "workflows" / workflow)
    subprocess.run(
        [sys.executable, "-c", code, str(repo / "changed.txt")],
        cwd=repo,
        check=True,
        env={**os.environ, "GITHUB_OUTPUT": str(repo / "out.txt")},
        capture_output=True,
    )
    return dict(line.split("=", 1) for line in (repo / "out.txt").read_text().splitlines())


@pytest.mark.parametrize(
    ("changed", "specs", "stacks"),
    [
        (["specs/dev.yaml"], "specs/dev.yaml", '["dev"]'),
        (["specs/unused.yaml", "README.md"], "specs/unused.yaml", "[]"),
        (
            ["specs/data/train.jsonl"],
            "specs/dev.yaml specs/prod.yaml specs/unused.yaml",
            '["dev", "prod"]',
        ),
        (["Pulumi.prod.yaml"], "specs/prod.yaml", '["prod"]'),
        (["README.md"], "", "[]"),
    ],
)
def test_pr_mapping_of_changed_files_to_specs_and_stacks(infra_repo, changed, specs, stacks):
    assert run_mapping("config-pr.yml", infra_repo, changed) == {"specs": specs, "stacks": stacks}


@pytest.mark.parametrize(
    ("changed", "stacks"),
    [
        (["specs/prod.yaml"], '["prod"]'),
        (["specs/data/train.jsonl"], '["dev", "prod"]'),
        (["Pulumi.dev.yaml"], '["dev"]'),
        (["specs/unused.yaml"], "[]"),
    ],
)
def test_deploy_mapping_of_changed_files_to_stacks(infra_repo, changed, stacks):
    assert run_mapping("config-deploy.yml", infra_repo, changed) == {"stacks": stacks}


def step_script(workflow: str, job: str, name: str) -> str:
    data = load(ROOT / ".github" / "workflows" / workflow)
    return next(s["run"] for s in data["jobs"][job]["steps"] if s.get("name") == name)


TEAM_SPEC = """\
project:
  id: acme-ml-test
  region: us-central1
buckets:
  - name: acme-ml-test-tuning
datasets:
  - name: chat
    train: gs://acme-ml-test-tuning/data/train.jsonl
tuning_jobs:
  - name: support
    base_model: meta/llama3_1@llama-3.1-8b-instruct
    tuning_mode: PEFT_ADAPTER
    epochs: 3
    dataset: chat
    output_uri: gs://acme-ml-test-tuning/out/support
"""


@pytest.mark.slow
def test_pr_steps_post_a_plan_diff_of_the_changed_spec(tmp_path):
    """The PR job's own shell steps, run in a git repository whose PR raises a job's epochs."""
    repo, runner = tmp_path / "repo", tmp_path / "runner"
    (repo / "specs").mkdir(parents=True)
    runner.mkdir()
    spec = repo / "specs" / "team.yaml"
    spec.write_text(TEAM_SPEC)
    (repo / "specs" / "other.yaml").write_text(TEAM_SPEC)
    (repo / "Pulumi.prod.yaml").write_text("config:\n  tunestack:spec: specs/team.yaml\n")
    # `.venv/bin/tunestack` and `.venv/bin/python` as the workflow calls them, running this
    # checkout's CLI with the Python that runs the tests.
    bin_dir = repo / ".venv" / "bin"
    bin_dir.mkdir(parents=True)
    (bin_dir / "tunestack").write_text(
        f"#!/bin/sh\nexec {sys.executable} -c 'import sys; from infra.cli import main; sys.exit(main())' \"$@\"\n"
    )
    (bin_dir / "tunestack").chmod(0o755)
    (bin_dir / "python").symlink_to(sys.executable)
    (repo / ".gitignore").write_text(".venv\n")
    git = ["git", "-c", "user.email=ci@example.com", "-c", "user.name=ci"]
    subprocess.run([*git, "init", "-q"], cwd=repo, check=True)
    subprocess.run([*git, "add", "."], cwd=repo, check=True)
    subprocess.run([*git, "commit", "-qm", "base"], cwd=repo, check=True)
    base = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=repo, check=True, capture_output=True, text=True
    ).stdout.strip()
    spec.write_text(TEAM_SPEC.replace("epochs: 3", "epochs: 4"))
    subprocess.run([*git, "commit", "-qam", "more epochs"], cwd=repo, check=True)

    env = {
        **os.environ,
        "BASE_SHA": base,
        "RUNNER_TEMP": str(runner),
        "PYTHONPATH": str(ROOT),
        "GITHUB_OUTPUT": str(runner / "out"),
        "GITHUB_STEP_SUMMARY": str(runner / "summary"),
    }
    find = step_script("config-pr.yml", "plan", "Find changed specs and the stacks they belong to")
    subprocess.run(
        ["bash", "-eo", "pipefail", "-c", find], cwd=repo, env=env, check=True, capture_output=True
    )
    outputs = dict(line.split("=", 1) for line in (runner / "out").read_text().splitlines())
    assert outputs == {"specs": "specs/team.yaml", "stacks": '["prod"]'}

    plan = step_script("config-pr.yml", "plan", "Plan against the base branch")
    env["SPECS"] = outputs["specs"]
    ran = subprocess.run(
        ["bash", "-eo", "pipefail", "-c", plan], cwd=repo, env=env, capture_output=True, text=True
    )
    assert ran.returncode == 0, ran.stdout + ran.stderr
    markdown = (repo / "plan.md").read_text()
    assert "`specs/team.yaml`" in markdown
    # Only the changed job (a new billed job: replaced, with the changed field named) and its
    # completion, which waits for the new job.
    rows = [line for line in markdown.splitlines() if line.startswith(("| ~ ", "| + ", "| - "))]
    rows += [line for line in markdown.splitlines() if line.startswith("| -/+ ")]
    assert len(rows) == 2, markdown
    assert "`job-support`" in rows[0] and "epochs" in rows[0] and "**replace**" in rows[0]
    assert "`job-support-done`" in rows[1]
    assert "NEW BILLED job" in markdown
    assert (runner / "summary").read_text() == markdown
