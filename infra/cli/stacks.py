"""Which Pulumi stack deploys a spec: ``up``/``down`` without ``--local`` print its commands.

A stack's config ``Pulumi.<stack>.yaml`` (next to ``Pulumi.yaml``) names its spec as
``tunestack:spec``; the spec path is relative to the Pulumi project folder.
"""

from __future__ import annotations

import sys
from pathlib import Path

import yaml

#: The config key of a stack that names its spec.
SPEC_KEY = "tunestack:spec"
#: Largest stack config file read (they are a few lines).
MAX_STACK_CONFIG_BYTES = 1024 * 1024


def stacks_for(spec: Path) -> tuple[Path | None, list[str]]:
    """The Pulumi project folder above ``spec`` and the stacks whose config names it.

    Returns:
        (project folder or None when no ``Pulumi.yaml`` is found, stack names in order).
    """
    project = _project_dir(spec.resolve().parent)
    if project is None:
        return None, []
    wanted = spec.resolve()
    names = []
    for config in sorted(project.glob("Pulumi.*.yaml")):
        try:
            if config.stat().st_size > MAX_STACK_CONFIG_BYTES:
                continue
            data = yaml.safe_load(config.read_text()) or {}
        except (OSError, yaml.YAMLError):
            continue
        named = ((data.get("config") or {}) if isinstance(data, dict) else {}).get(SPEC_KEY)
        if isinstance(named, str) and (project / named).resolve() == wanted:
            names.append(config.name.removeprefix("Pulumi.").removesuffix(".yaml"))
    return project, names


def print_pulumi_commands(spec: Path, command: str = "up") -> int:
    """Prints the ``pulumi stack select`` / ``pulumi up`` lines for ``spec``'s stack(s).

    Returns:
        0 when a stack names the spec, 1 when none does (with what to add), 2 no such file.
    """
    if not spec.exists():
        print(f"{spec}: error: no such file", file=sys.stderr)
        return 1
    project, names = stacks_for(spec)
    action = "destroy" if command == "down" else "up"
    if project is None:
        print(
            f"error: no Pulumi.yaml above {spec}: `tunestack {command}` without --local runs "
            f"Pulumi from the project folder (add --local to run the spec on this machine)",
            file=sys.stderr,
        )
        return 1
    cd = _cd(project)
    if not names:
        rel = _relative(spec.resolve(), project)
        print(
            f"error: no Pulumi.<stack>.yaml in {project} names {rel} as {SPEC_KEY}; create one:\n"
            f"  {cd}pulumi stack init NAME && pulumi config set {SPEC_KEY} {rel}",
            file=sys.stderr,
        )
        return 1
    print(f"{spec} is deployed by Pulumi (review first: tunestack plan {spec}):")
    for name in names:
        print(f"  {cd}pulumi stack select {name} && pulumi {action}")
    print("or run it on this machine: add --local")
    return 0


def _project_dir(start: Path) -> Path | None:
    for folder in (start, *start.parents):
        if (folder / "Pulumi.yaml").is_file():
            return folder
    return None


def _cd(project: Path) -> str:
    return "" if project == Path.cwd().resolve() else f"cd {project} && "


def _relative(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)
