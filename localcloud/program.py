"""Run the project's unchanged `__main__.py` under Pulumi mocks, with no CLI and no plugins."""
from __future__ import annotations

import json
import logging
import runpy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi

from handlers import stages
from handlers.names import PROJECT
from infra import packaging
from localcloud.outputs import Context, call_outputs, resource_outputs
from localcloud.seams.pulumi_sdk import RecordingMonitor, child_urn, run_program, stack_outputs

PROJECT_ROOT = Path(__file__).resolve().parent.parent
PROGRAM = PROJECT_ROOT / "__main__.py"


@dataclass
class Registered:
    """One resource the program declared: its type, logical name, inputs (camelCase) and state."""

    typ: str
    name: str
    inputs: dict[str, Any]
    id: str = ""
    state: dict[str, Any] = field(default_factory=dict)
    urn: str = ""

    parents: list[str] = field(default_factory=list)  # types of its ancestors, outermost first
    depends_on: list[str] = field(default_factory=list)  # URNs it was declared to wait for (depends_on)
    parent_urn: str = ""
    aliases: list[str] = field(default_factory=list)  # the URNs it was known by before (its own Pulumi aliases)


class RecordingMocks(pulumi.runtime.Mocks):
    """Mocks that answer like the AWS provider and remember every resource registered."""

    def __init__(self, context: Context | None = None):
        self.context = context or Context()
        self.resources: list[Registered] = []
        self.calls: list[tuple[str, dict[str, Any]]] = []  # provider functions the program called, with their args

    def create(self, typ: str, name: str, inputs: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        """Where a subclass makes the resource real; here only the provider's outputs are computed."""
        return resource_outputs(typ, name, inputs, self.context)

    def new_resource(self, args: pulumi.runtime.MockResourceArgs):
        if not args.custom:  # component resources have no provider
            self.resources.append(Registered(args.typ, args.name, dict(args.inputs)))
            return f"{args.name}-id", {}
        resource_id, state = self.create(args.typ, args.name, dict(args.inputs))
        self.resources.append(Registered(args.typ, args.name, dict(args.inputs), resource_id, state))
        return resource_id, state

    def call(self, args: pulumi.runtime.MockCallArgs):
        self.calls.append((args.token, dict(args.args)))
        return call_outputs(args.token, self.context, dict(args.args)), []


@dataclass
class Deployment:
    resources: list[Registered]
    outputs: dict[str, Any]
    warnings: list[str]
    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def of_type(self, typ: str) -> list[Registered]:
        return [r for r in self.resources if r.typ == typ]

    def by_urn(self, urn: str) -> Registered:
        [found] = [r for r in self.resources if r.urn == urn]
        return found

    def waits_for(self, resource: Registered) -> list[Registered]:
        """What `resource` was declared to depend on."""
        return [self.by_urn(urn) for urn in resource.depends_on]

    def functions(self) -> dict[str, Registered]:
        """The Lambda functions the program declared, by which of the pipeline's functions each runs (its handler)."""
        by_handler = {package.handler: name for name, package in packaging.FUNCTIONS.items()}
        by_handler.update({stage.handler: stage.name for stage in stages.declared()})
        return {by_handler[fn.inputs["handler"]]: fn for fn in self.of_type("aws:lambda/function:Function")}

    def named(self, name: str) -> Registered:
        [found] = [r for r in self.resources if r.name == name]
        return found

    def known_urns(self) -> set[str]:
        """Every URN a stack deployed earlier could hold these resources under: their URNs now and the URNs
        their aliases name, a parent's aliases carried to its children as the engine carries them."""
        by_urn = {r.urn: r for r in self.resources}

        def candidates(urn: str) -> set[str]:
            resource = by_urn.get(urn)
            if resource is None:  # the stack itself
                return {urn}
            found = {urn, *resource.aliases}
            if resource.parent_urn in by_urn:
                for parent in candidates(resource.parent_urn):
                    found.add(child_urn(parent, resource.typ, resource.name))
            return found

        return {urn for r in self.resources for urn in candidates(r.urn)}


def run(mocks: RecordingMocks, config: dict[str, Any] | None = None, stack: str = "dev",
        project: str = PROJECT) -> Deployment:
    """Run __main__.py with `config` (keys without the project prefix) and return what it declared. `project`: the
    Pulumi project's name, as a fork's Pulumi.yaml would give it (its config keys are under that name)."""
    pulumi.runtime.set_all_config({f"{project}:{k}": v if isinstance(v, str) else json.dumps(v)
                                   for k, v in (config or {}).items()})
    warnings = _WarningCollector()
    engine_log = logging.getLogger("claimcheck.engine")
    engine_log.addHandler(warnings)
    engine_log.propagate = False
    monitor = RecordingMonitor(mocks)
    try:
        # Mocks record a layer's archive path and never read it: no pip here.
        with packaging.layers_named_only():
            run_program(lambda: runpy.run_path(str(PROGRAM), run_name="__main__"), mocks, monitor, project, stack, engine_log)
    finally:
        engine_log.removeHandler(warnings)
    urns = {(_type_of(urn), urn.split("::")[-1]): urn for urn in monitor.parent_of}
    for registered in mocks.resources:
        registered.urn = urns.get((registered.typ, registered.name), "")
        registered.depends_on = monitor.dependencies.get(registered.urn, [])
        registered.aliases = monitor.aliases.get(registered.urn, [])
        registered.parent_urn = monitor.parent_of.get(registered.urn, "")
        parent = registered.parent_urn
        while parent:
            registered.parents.insert(0, _type_of(parent))
            parent = monitor.parent_of.get(parent, "")
    return Deployment(mocks.resources, stack_outputs(), warnings.messages, mocks.calls)


def _type_of(urn: str) -> str:
    return urn.split("::")[2].split("$")[-1]


class _WarningCollector(logging.Handler):
    """Keeps what the engine was told at warning level or above (deprecations among them)."""

    def __init__(self) -> None:
        super().__init__(level=logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


