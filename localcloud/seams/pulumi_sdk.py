"""Pulumi's Python SDK, past its public API: running a program under mocks outside `@pulumi.runtime.test` needs the
SDK's private event-loop helpers and a fresh root stack per run; what the mock monitor was asked is read by
subclassing MockMonitor. Written for the version in localcloud.seams.WRITTEN_FOR."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pulumi
from pulumi.runtime import mocks as pulumi_mocks
from pulumi.runtime.stack import run_pulumi_func
from pulumi.runtime.sync_await import _sync_await


def run_program(program: Callable[[], Any], mocks: pulumi.runtime.Mocks, monitor: pulumi_mocks.MockMonitor,
                project: str, stack: str, engine_log: Any) -> None:
    """Run `program` to completion under `mocks`, on a fresh root stack (set_mocks keeps an existing one, and with
    it the previous run's exports)."""
    pulumi.runtime.settings.set_root_resource(None)  # type: ignore[arg-type]
    pulumi_mocks.set_mocks(mocks, project=project, stack=stack, preview=False, logger=engine_log, monitor=monitor)
    _sync_await(run_pulumi_func(program))


def resolved(value: Any) -> Any:
    """The value of an Output (or plain input) once the program has run."""
    return _sync_await(pulumi.Output.from_input(value).future())


def stack_outputs() -> dict[str, Any]:
    """What the program exported, resolved."""
    root = pulumi.runtime.settings.get_root_resource()
    return {key: resolved(value) for key, value in (getattr(root, "outputs", {}) or {}).items()}


class RecordingMonitor(pulumi_mocks.MockMonitor):
    """The mock monitor, remembering what each RegisterResource asked: its parent, what it was declared to depend
    on, and the URNs its aliases name (the SDK sends alias specs to a monitor that takes them, as this one does)."""

    def __init__(self, mocks: pulumi.runtime.Mocks):
        super().__init__(mocks)
        self.parent_of: dict[str, str] = {}
        self.dependencies: dict[str, list[str]] = {}
        self.aliases: dict[str, list[str]] = {}

    def RegisterResource(self, request: Any) -> Any:  # noqa: N802 - the gRPC method's name
        response = super().RegisterResource(request)
        self.parent_of[response.urn] = request.parent
        self.dependencies[response.urn] = list(request.dependencies)
        self.aliases[response.urn] = _alias_urns(request)
        return response


def child_urn(parent_urn: str, typ: str, name: str) -> str:
    """The URN of a resource `typ` named `name` under `parent_urn`, as the mock monitor makes it: the parent's own
    type, '$', the type (the engine leaves the root stack's type out; the mock keeps it, the same for every run)."""
    prefix, _, rest = parent_urn.partition("::")
    project, qualified, _ = rest.split("::", 2)
    return f"{prefix}::{project}::{qualified.split('$')[-1]}${typ}::{name}"


def _alias_urns(request: Any) -> list[str]:
    found = []
    for alias in request.aliases:
        if alias.urn:
            found.append(alias.urn)
            continue
        spec = alias.spec
        parent = "" if spec.noParent else (spec.parentUrn or request.parent)
        typ, name = spec.type or request.type, spec.name or request.name
        if parent:
            found.append(child_urn(parent, typ, name))
        else:
            found.append(f"urn:pulumi:{spec.stack or pulumi.get_stack()}::{spec.project or pulumi.get_project()}::{typ}::{name}")
    return found


