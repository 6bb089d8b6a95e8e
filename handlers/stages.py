"""A stage, declared once, in the module of its handler: everything else derives from the list of declared stages.

A module of the handlers package that assigns `STAGE = Stage(...)` is a stage: its name, what feeds it (S3's events
of the uploads bucket, or the claim-check topic through a subscription and its filter), its settings (a dataclass
of `handlers.settings` fields, with their defaults, bounds and environment variables), its size, what it is linked
to (named resources of the stack, and IAM grants of its own), the metrics it counts, its per-image time and cost for
the capacity model, and its handler (the module's `handler`). The program builds its resources from this, the
settings and `Pulumi.yaml` list its settings, the capacity model and the cost table count it, the dashboard and the
operator policy cover it, `python -m ops` and the local cloud run it: adding a stage is adding its module.

Only the standard library and handlers.names/settings are imported here: the program reads the declarations, and
each function reads only its own settings (from its environment), never the registry.
"""
from __future__ import annotations

import dataclasses
import importlib
import math
import pkgutil
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from handlers.names import ClaimAttribute, GateState, Metric
from handlers.settings import StageSettings


class Feed(StrEnum):
    """What feeds a stage's queue."""

    UPLOADS = "uploads"  # S3's events of the uploads bucket (the intake)
    CLAIM_CHECKS = "claim-checks"  # the claim-check topic, through a subscription (raw delivery, an optional filter)


@dataclass(frozen=True)
class Grant:
    """An IAM statement a stage needs that none of the stack's named links gives: `actions` on `resources` ("*" for
    actions that take no resource-level permissions, such as Rekognition's)."""

    actions: tuple[str, ...]
    resources: tuple[str, ...] = ("*",)


@dataclass(frozen=True)
class Limit:
    """Something that caps how many images a second a stage takes; `operation` ("rekognition.DetectLabels"): the AWS
    call a service quota caps (the local cloud's emulator refuses calls over it, as the service does)."""

    name: str
    per_second: float
    operation: str | None = None


@dataclass(frozen=True)
class Capacity:
    """What the capacity model and the cost table know of one image in the stage.

    `seconds(configured, megapixels, format)`: the stage's time for one image, on its memory's share of a vCPU
    (`speed`: this machine's engine time over the benchmark's, for the local cloud's model); `measured` says whether
    that comes from `make bench` (else it is an assumption about network calls). `applies(configured, format)`: whether
    an image of that format reaches the stage. The rest are counts per image: its S3 GETs of uploads/, its S3 PUTs to
    thumbnails/, its record writes (at most) and strongly consistent reads, and priced items of its own (a
    Rekognition image) by price key. `limits`: caps of its own."""

    seconds: Callable[[Any, float, str, float], float]
    measured: bool = False
    applies: Callable[[Any, str], bool] = lambda configured, fmt: True
    upload_reads: int = 0
    thumbnail_writes: Callable[[Any], int] = lambda configured: 0
    record_writes: int = 2
    record_reads: int = 1
    priced: Callable[[Any], Mapping[str, float]] = lambda configured: {}
    limits: Callable[[Any], list[Limit]] = lambda configured: []
    memory_needed: Callable[[Any], int] | None = None  # the least memory its largest image fits in (MB)
    # Prices of its own that infra/costs.py's table lacks: (key, USD per request, the cost table's item, its source).
    prices: tuple[tuple[str, float, str, str], ...] = ()


@dataclass(frozen=True)
class Configured:
    """One stage as a stack configures it: its settings (options and the shared settings it reads) and its size."""

    stage: Stage
    settings: Any
    sizing: StageSettings

    @property
    def name(self) -> str:
        return self.stage.name


@dataclass(frozen=True)
class Stage:
    name: str  # its function: the handler is this module's `handler`; its key in the stack's queue outputs
    component: str  # its Pulumi component type, claimcheck:index:<component> (part of every URN under it)
    resource: str  # its resources' names: <project>-<resource>-queue, -function, …
    description: str  # what the settings table says of its size object
    settings: type  # its settings: a dataclass of handlers.settings fields (defaults are the declaration's)
    sizing: StageSettings  # its default memory, timeout, batch size, batching window and maximum concurrency
    order: int  # where an upload meets it (the intake first)
    key: str = ""  # the config key of its size object (default: its name)
    feed: Feed = Feed.CLAIM_CHECKS
    # The subscription's filter policy on the claim check's message attributes (None: every claim check); the intake
    # waits for the stages whose filter a created image's claim check passes, by this same policy.
    subscription: Callable[[Any], dict[str, list[str]] | None] = lambda settings: None
    results: bool = True  # it writes a result onto the image record, which settles once every expected one is there
    uses: tuple[str | Grant, ...] = ()  # the stack's named links (infra/links.py) and grants of its own
    dropped: str = Metric.INVALID_CLAIM_CHECKS  # counted for each message it cannot read (alarmed)
    reported: tuple[tuple[str, str], ...] = ()  # what `python -m ops status` shows of the last hour: (words, metric)
    deployed: Callable[[Any], bool] = lambda settings: True  # whether a stack with these settings has it at all
    capacity: Capacity | None = None
    # Configurations that cannot work (refused at `pulumi up`), and that work but waste (warned about), in the words
    # of the settings' other messages; each takes the stage's Configured and the whole stack's settings.
    problems: Callable[[Configured, Any], list[str]] = lambda configured, stack: []
    warnings: Callable[[Configured, Any], list[str]] = lambda configured, stack: []
    # Its settings completed from its size and the other stages' (fields without a config key, carried to its
    # function like the rest): what the program works out for it.
    complete: Callable[[Configured, Mapping[str, Configured]], Any] = lambda configured, others: configured.settings
    outputs: Callable[[Any], dict[str, Any]] = lambda settings: {}  # stack outputs of its own (by name)
    # A gate runs before every other stage and decides whether they run at all (see "gates" below).
    gate: bool = False
    # What an operator needs for its own commands of `python -m ops`: the stack's named operator links
    # (infra/links.py, OPERATOR) and grants; the operator policy holds them only while the stage is deployed.
    operator: tuple[str | Grant, ...] = ()
    alarmed: tuple[str, ...] = ()  # metrics of its own that need a person when counted: each has an alarm
    # Config values the local cloud's demo and `make up` run with, to show a stage that is off by default.
    demo: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    # The AWS calls its handler makes besides its record's ("s3.PutObject"): the soak fails them at its fault rate.
    calls: tuple[str, ...] = ()
    # Its result on the image record in words, for `python -m ops show` (the result, whether the stack is the local
    # cloud's); None: its status and reason.
    shown: Callable[[Mapping[str, Any], bool], list[str]] | None = None
    module: str = ""  # filled in by the registry: the module that declares it

    @property
    def config_key(self) -> str:
        return self.key or self.name

    @property
    def handler(self) -> str:
        return f"{self.module}.handler"

    def describe(self, result: Mapping[str, Any], emulated: bool) -> list[str]:
        """Its result on an image record, in the lines `python -m ops show` prints."""
        if self.shown is not None:
            return self.shown(result, emulated)
        return [f"  {self.name}: {result.get('status')}" + (f" ({result['reason']})" if result.get("reason") else "")]


def filter_problems(name: str, policy: Any) -> list[str]:
    """What makes a stage's subscription filter one the intake's wait cannot evaluate as SNS does: only exact string
    values of the attributes every claim check carries (ClaimAttribute). SNS would also take operators (prefix,
    anything-but, numeric, exists: SNS Developer Guide, "Filter policy constraints"); a stage declared with one would
    get claim checks that no record waits for, and its work would be skipped as settled."""
    if policy is None:
        return []
    if not isinstance(policy, Mapping) or not policy:
        return [f"stage {name}: its subscription filter must be a non-empty object of claim-check attributes, or None"]
    found = []
    for attribute, values in policy.items():
        if attribute not in set(ClaimAttribute):
            found.append(f"stage {name}: its subscription filters on {attribute!r}, which claim checks do not carry "
                         f"(they carry {', '.join(ClaimAttribute)})")
        elif not isinstance(values, list) or not values or not all(isinstance(v, str) for v in values):
            found.append(f"stage {name}: its subscription filter on {attribute!r} must list exact string values "
                         f"(got {values!r}): the intake waits for a stage by matching them exactly")
    return found


def paced_warnings(configured: Configured, operation: str, quota_key: str, tps: int, seconds: float) -> list[str]:
    """Environments a quota of `tps` calls a second keeps waiting (each `seconds` long): a stage that paces itself to
    its share of the quota needs no more than it can keep busy."""
    concurrency = configured.sizing.max_concurrency
    enough = max(2, math.ceil(tps * seconds))
    if concurrency <= enough:
        return []
    return [f"{configured.stage.config_key}.maxConcurrency {concurrency} could call {operation} {concurrency / seconds:.0f} "
            f"times a second, but {quota_key} is {tps:,}: the stage paces itself to it, so {enough} environments are "
            f"enough (or ask AWS for more and raise {quota_key})"]


def matches(policy: Mapping[str, list[str]] | None, attributes: Mapping[str, str]) -> bool:
    """Whether a message with these attributes passes an SNS filter policy of exact string values (every key
    present, its value one of those listed: SNS Developer Guide, "Amazon SNS subscription filter policies"); None
    passes all."""
    return policy is None or all(attributes.get(name) in values for name, values in policy.items())


# --- gates -------------------------------------------------------------------------------------------------------
# A gate stage (`gate=True`) sees an image before any other stage. Every claim check carries the GATE attribute:
# the intake and a reprocess request publish creations as PENDING, removals as CLEAR. With a gate deployed, its
# subscription takes only PENDING claim checks and every other stage's only CLEAR ones (their declared filters,
# amended here, by the program: SNS delivers a message only when each key of the policy is among its attributes
# with one of the values listed, SNS Developer Guide, "Amazon SNS subscription filter policies"). The gate records
# its verdict and, when the image passes, publishes the same claim check again, marked CLEAR; when it holds the image
# back (StageStatus.HELD), the record settles quarantined and no other stage ever sees it. Without a gate no filter
# names the attribute and nothing changes. The record names its gate, and every other stage refuses to work for an
# image its gate has not passed (ImageRecord.admits): a filter change takes up to 15 minutes to take effect (same
# page), and whoever may send to a stage's queue could send it anything.

#
# Gates in a row: with more than one deployed, an image meets them in their order, each taking only what the one
# before passed: the first takes PENDING, each later one `after(<the one before>)`, and the last publishes CLEAR (a
# gate learns what it publishes from the program: `passed_state`). So the duplicates gate answers before the
# moderation gate's Rekognition call is paid, and no other stage's filter changes.

def after(gate: str) -> str:
    """The GATE attribute of a claim check `gate` passed on to the next gate."""
    return f"{gate}-passed"


def gate_state(gates: Sequence[str], stage: str) -> str:
    """The GATE attribute `stage`'s subscription takes in a stack whose gates are `gates`, in order."""
    if stage not in gates:
        return GateState.CLEAR
    position = gates.index(stage)
    return GateState.PENDING if position == 0 else after(gates[position - 1])


def passed_state(gates: Sequence[str], gate: str) -> str:
    """The GATE attribute `gate` publishes a claim check it passed with: the next gate's, or CLEAR after the last."""
    position = gates.index(gate) if gate in gates else len(gates)
    return after(gate) if position < len(gates) - 1 else GateState.CLEAR


def gate_order(stack: Iterable[Configured]) -> list[str]:
    """The deployed gate stages, in the order an upload meets them."""
    found = [c for c in stack if c.stage.gate and c.stage.feed == Feed.CLAIM_CHECKS and c.stage.deployed(c.settings)]
    return [c.name for c in sorted(found, key=lambda c: (c.stage.order, c.name))]


def filter_policy(configured: Configured, gates: Sequence[str]) -> dict[str, list[str]] | None:
    """The subscription filter policy a claim-check-fed stage gets in a stack whose gates are `gates` (none: its
    declared one)."""
    declared = configured.stage.subscription(configured.settings)
    if not gates:
        return declared
    return {**(declared or {}), ClaimAttribute.GATE: [gate_state(gates, configured.name)]}


def subscriptions(stack: Iterable[Configured]) -> dict[str, dict[str, list[str]] | None]:
    """Each deployed claim-check-fed stage's filter policy, by name: what its subscription applies and what the
    intake reads to know which stages an image waits for."""
    stack = list(stack)
    fed = [c for c in stack if c.stage.feed == Feed.CLAIM_CHECKS and c.stage.deployed(c.settings)]
    gates = gate_order(fed)
    return {c.name: filter_policy(c, gates) for c in fed}


# --- the registry ----------------------------------------------------------------------------------------------

_DECLARES = re.compile(r"^STAGE\s*=\s*Stage\(", re.M)
_extra: list[Stage] = []


def _modules() -> Iterator[str]:
    """The handlers modules whose source declares a stage (read as text first: importing every module would load
    every handler's dependencies, Pillow among them)."""
    package = Path(__file__).parent
    for info in pkgutil.iter_modules([str(package)]):
        if _DECLARES.search((package / f"{info.name}.py").read_text()):
            yield f"{__package__}.{info.name}"


def declared() -> tuple[Stage, ...]:
    """Every declared stage, in the order an upload meets them."""
    found = [_from(module) for module in _modules()]
    return tuple(sorted([*found, *_extra], key=lambda stage: (stage.order, stage.name)))


def _from(module: str) -> Stage:
    stage = importlib.import_module(module).STAGE
    return stage if stage.module else dataclasses.replace(stage, module=module)


def named(name: str) -> Stage:
    for stage in declared():
        if stage.name == name:
            return stage
    raise KeyError(f"no stage is declared as {name!r}")


@contextmanager
def also(stage: Stage, module: str) -> Iterator[Stage]:
    """Declare `stage` (its handler in `module`) for as long as the block runs: how a test adds a stage of its own
    without touching a file of the project."""
    declared_stage = dataclasses.replace(stage, module=module)
    _extra.append(declared_stage)
    try:
        yield declared_stage
    finally:
        _extra.remove(declared_stage)
