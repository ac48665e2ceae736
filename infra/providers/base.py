"""What every tunestack dynamic provider shares: input lists, diff, update, targets, polling.

Providers hold no state at all (no clients, no credentials): Pulumi pickles them by reference
(module path + class name, a state contract: never move these classes) and the engine's host
calls them on up to 4 threads.
"""

from __future__ import annotations

import os
from typing import Any, ClassVar, TypedDict, TypeGuard

from pulumi.dynamic import CheckFailure, CheckResult, DiffResult, ResourceProvider, UpdateResult
from pulumi.output import Unknown

from infra.plan.inputs import changed_inputs
from infra.vertex.target import Target

#: Placeholder the engine sends for values not known yet (preview). The host turns it into a
#: ``pulumi.output.Unknown`` in check and diff.
UNKNOWN = "04da6b54-80e4-46f7-96ec-b56ff0331ba9"


def known(value: Any) -> TypeGuard[Any]:
    """Whether a (preview) input value is set and known."""
    return value is not None and not isinstance(value, Unknown) and value != UNKNOWN


class Poll(TypedDict):
    """Keyword arguments of the client layer's polling loops."""

    initial_delay: float
    max_delay: float


def poll_settings() -> Poll:
    """Poll intervals: ``TUNESTACK_POLL_INITIAL_SECONDS`` (2) and ``..._MAX_SECONDS`` (60).

    Environment, not inputs, so that changing how often we poll never replaces a resource.
    """
    return Poll(
        initial_delay=float(os.environ.get("TUNESTACK_POLL_INITIAL_SECONDS", "2")),
        max_delay=float(os.environ.get("TUNESTACK_POLL_MAX_SECONDS", "60")),
    )


def target_of(props: dict[str, Any]) -> Target:
    """The Vertex target named by a resource's ``project``/``location``/``api_endpoint``."""
    return Target(
        project=props["project"],
        location=props["location"],
        api_endpoint=props.get("api_endpoint") or None,
        storage_endpoint=props.get("storage_endpoint") or None,
    )


class TunestackProvider(ResourceProvider):
    """Base: declared inputs, ``diff`` over them, ``update`` returning complete outputs.

    Subclasses set ``INPUTS`` (all input names), ``REPLACES`` (inputs whose change needs a
    new cloud object) and ``REQUIRED``, all read from their ``Args`` declaration in
    :mod:`infra.plan.inputs`, and ``OUTPUTS``.
    """

    INPUTS: ClassVar[tuple[str, ...]] = ()
    REPLACES: ClassVar[frozenset[str]] = frozenset()
    REQUIRED: ClassVar[tuple[str, ...]] = ()
    OUTPUTS: ClassVar[tuple[str, ...]] = ()

    def check(self, _olds: dict[str, Any], news: dict[str, Any]) -> CheckResult:
        failures = [
            CheckFailure(name, f"{name} is required")
            for name in self.REQUIRED
            if news.get(name) in (None, "")
        ]
        failures += [CheckFailure(p, r) for p, r in self.validate(news)]
        return CheckResult(news, failures)

    def validate(self, news: dict[str, Any]) -> list[tuple[str, str]]:
        """Extra input checks: ``(property, reason)`` pairs. Values may be UNKNOWN in preview."""
        return []

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        changed = changed_inputs(self.INPUTS, olds, news)
        replaces = [name for name in changed if name in self.REPLACES]
        return DiffResult(
            changes=bool(changed), replaces=replaces, stables=[], delete_before_replace=False
        )

    def update(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        """In-place updates only touch non-replacing inputs: keep computed outputs, take news."""
        outs = {k: v for k, v in olds.items() if k in self.OUTPUTS}
        outs.update(inputs_of(news, self.INPUTS))
        return UpdateResult(outs)


def inputs_of(props: dict[str, Any], names: tuple[str, ...]) -> dict[str, Any]:
    """The declared inputs of ``props`` (drops ``__provider`` and anything undeclared)."""
    return {name: props.get(name) for name in names}
