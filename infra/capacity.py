"""How much a stack can take, from its settings and our measurements: the model behind `python -m ops capacity` (the
account's concurrency, which `pulumi up` checks, is infra/concurrency.py's).

Everything here is a model. Its inputs are AWS's documented limits (each with its source), the thumbnail engine's
one-core times measured by `make bench` on the 2-core machine this project is built on, and assumed network
times for the calls the functions make (no AWS account here to measure them; each marked ASSUMED). What it says
is what those inputs imply, no more: check it against your own stack's CloudWatch metrics.

The flow is modelled as fluid: uploads arrive (a burst at once, then a steady rate); each stage takes from its
queue as fast as its concurrency (ramping as SQS event sources ramp) and the limits outside Lambda allow; what the
intake passes on arrives at the thumbnail and label queues. A queue's oldest message is as old as the time since
the one at its head arrived (SQS standard queues are about first-in, first-out; the model takes them as exactly so).
"""
from __future__ import annotations

import bisect
import math
from dataclasses import dataclass, field, replace
from typing import Any

from handlers.settings import MB_PER_VCPU
from handlers.stages import Configured, Limit
from infra import costs
from infra.settings import Settings

# --- AWS's limits ------------------------------------------------------------------------------------------------
# Each function scales by at most 1,000 execution environments every 10 seconds (Lambda Developer Guide, "Lambda
# scaling behavior"): faster than an SQS event source ramps, so never what binds here.
SCALING_PER_SECOND = 1000 / 10
# An SQS event source mapping starts with 5 concurrent batches and, while messages wait, adds up to 300 a minute,
# up to 1,000 (Lambda Developer Guide, "Using Lambda with Amazon SQS", "Scaling and processing").
ESM_START, ESM_RAMP_PER_SECOND, ESM_MAX = 5, 300 / 60, 1000
# S3 serves at least 3,500 PUT/COPY/POST/DELETE and 5,500 GET/HEAD requests a second per partitioned prefix (S3
# User Guide, "Best practices design patterns: optimizing Amazon S3 performance"). Every upload is under uploads/
# (the intake, the thumbnail stage and Rekognition each GET it once); a new stack's thumbnails/ is one prefix until
# S3 partitions it.
S3_WRITES_PER_PREFIX, S3_READS_PER_PREFIX = 3500, 5500
# A new on-demand table serves up to 4,000 write request units a second at first, then grows (DynamoDB Developer
# Guide, "On-demand capacity mode", "Initial throughput for on-demand capacity mode"). An image's record is written
# once by the intake and at most twice by each stage (its result, then the settled status).
DYNAMODB_INITIAL_WRITES = 4000
# SQS standard queues take a nearly unlimited number of calls a second (SQS Developer Guide, "Amazon SQS quotas"),
# SNS's publish quota is thousands a second in every Region: neither binds before the limits above.

# Each stage's own figures (its time per image, measured or ASSUMED, its requests and quotas) are in its declaration
# (handlers/stages.py, Capacity): the thumbnail stage's engine times come from make bench on this 2-core machine.

# Memory sizes the tuning table tries, as AWS Lambda Power Tuning would (1,769 MB: exactly one vCPU).
MEMORY_SIZES = (512, 768, 1024, 1280, 1536, MB_PER_VCPU, 2048, 3008)
WITHIN_FASTEST = 1.10  # the cheapest memory whose time is within 10% of the fastest


def vcpus(memory_mb: int) -> float:
    """Lambda gives CPU in proportion to memory, 1,769 MB for one vCPU (Lambda Developer Guide, "Configure Lambda
    function memory"); the engine runs on one thread, so more than one does not speed it."""
    return min(1.0, memory_mb / MB_PER_VCPU)


# --- The plan -----------------------------------------------------------------------------------------------------

@dataclass
class StagePlan:
    function: str
    memory: int
    seconds_per_image: float
    max_concurrency: int
    limits: list[Limit]
    needed: float = 0.0  # concurrency the steady rate needs
    ramp_seconds: float = 0.0  # from the burst's first message to the concurrency it can use
    drain_seconds: float = 0.0  # until its queue holds nothing of the burst
    oldest_seconds: float = 0.0  # the oldest message its queue reaches
    usd_per_million: float = 0.0  # its share of the cost of a million images (the stages' shares add up to the total)

    @property
    def binding(self) -> Limit:
        return min(self.limits, key=lambda limit: limit.per_second)

    @property
    def rate(self) -> float:
        """Images a second it sustains."""
        return self.binding.per_second

    @property
    def concurrency(self) -> float:
        """The concurrency it reaches at its sustained rate (what the ramp has to climb to)."""
        return min(self.max_concurrency, self.rate * self.seconds_per_image)


@dataclass
class Plan:
    settings: Settings
    rate: float  # steady uploads a second
    burst: int
    megapixels: float
    fmt: str
    stages: dict[str, StagePlan]
    usd_per_million: dict[str, float]
    notes: list[str] = field(default_factory=list)  # what to look at: alarms, lost messages, quotas

    @property
    def drain_seconds(self) -> float:
        return max(stage.drain_seconds for stage in self.stages.values())

    @property
    def sustained(self) -> float:
        """The steady rate the whole pipeline takes: its slowest stage's."""
        return min(stage.rate for stage in self.stages.values())

    @property
    def usd_for_burst(self) -> float:
        return self.usd_per_million["total"] * self.burst / 1e6

    @property
    def rekognition_per_owner_day(self) -> float | None:
        """What uploadQuota lets one owner spend on Rekognition in a UTC day (its uploads a day x the Rekognition
        calls one image of this format costs); None without an uploads limit."""
        uploads = self.settings.quota[0] if self.settings.upload_api else 0
        return uploads * self.usd_per_million["rekognition"] / 1e6 if uploads else None


def reaching(s: Settings, fmt: str) -> list[Configured]:
    """The deployed stages an image of `fmt` reaches, in the order it meets them."""
    return [c for c in s.deployed if c.stage.capacity is not None and c.stage.capacity.applies(c, fmt)]


def stage_plans(s: Settings, megapixels: float, fmt: str, *, speed: float = 1.0,
                concurrency_cap: int | None = None) -> dict[str, StagePlan]:
    """Each stage's time per image and its limits, for photos of `megapixels` in `fmt`. `concurrency_cap`: at most
    this many environments per function (the local cloud's)."""
    stages = reaching(s, fmt)
    reads = sum(_capacity(c).upload_reads for c in stages)  # GETs of each upload under uploads/
    writes = sum(_capacity(c).record_writes for c in stages)  # record writes per image, at most
    room = s.concurrency.stages_pool
    shared = [Limit(f"S3 reads of uploads/ ({S3_READS_PER_PREFIX:,}/s per prefix, {reads} per image)",
                    S3_READS_PER_PREFIX / reads),
              Limit(f"DynamoDB writes of a new on-demand table ({DYNAMODB_INITIAL_WRITES:,}/s, {writes} per image)",
                    DYNAMODB_INITIAL_WRITES / writes)]
    plans: dict[str, StagePlan] = {}
    for configured in stages:
        model, st = _capacity(configured), configured.sizing
        seconds = model.seconds(configured, megapixels, fmt, speed)
        cap = min(st.max_concurrency, concurrency_cap or st.max_concurrency)
        limits = [Limit(f"its maxConcurrency ({cap:,})" if cap == st.max_concurrency
                        else f"the local cloud's {cap} environments", cap / seconds),
                  Limit(f"the Regional Lambda concurrency it is left ({room:,}: accountConcurrency - reserved - "
                        "concurrencyReserve)", room / seconds), *shared]
        puts = model.thumbnail_writes(configured)
        if puts:
            limits.append(Limit(f"S3 writes to thumbnails/ ({S3_WRITES_PER_PREFIX:,}/s per prefix, {puts} per image)",
                                S3_WRITES_PER_PREFIX / puts))
        limits.extend(model.limits(configured))
        plans[configured.name] = StagePlan(configured.name, st.memory, seconds, cap, limits)
    return plans


def _capacity(configured: Configured) -> Any:
    assert configured.stage.capacity is not None
    return configured.stage.capacity


def plan(s: Settings, rate: float, burst: int, megapixels: float, fmt: str = "jpeg", *, speed: float = 1.0,
         concurrency_cap: int | None = None, ramp: bool = True) -> Plan:
    """What the stack does with `burst` uploads at once while `rate` more arrive every second. `ramp`: whether
    event sources ramp as Lambda's do (the local cloud's pollers start at full concurrency)."""
    stages = stage_plans(s, megapixels, fmt, speed=speed, concurrency_cap=concurrency_cap)
    for stage in stages.values():
        stage.needed = rate * stage.seconds_per_image
        start = min(ESM_START, stage.max_concurrency)
        stage.ramp_seconds = max(0.0, stage.concurrency - start) / ESM_RAMP_PER_SECOND if ramp else 0.0
    _flow(stages, rate, burst, s.queue_retention_days * 86400, ramp)
    each = {c.name: costs.StageCost.of(c, stages[c.name].seconds_per_image) for c in reaching(s, fmt)}
    price = costs.per_million(list(each.values()), s.architecture)
    for name, cost in each.items():
        stages[name].usd_per_million = costs.per_million([cost], s.architecture)["total"]
    found = Plan(s, rate, burst, megapixels, fmt, stages, price)
    found.notes = _notes(found)
    return found


def _concurrency(stage: StagePlan, t: float, ramp: bool) -> float:
    start = min(ESM_START, stage.max_concurrency)
    return stage.concurrency if not ramp else min(stage.concurrency, start + ESM_RAMP_PER_SECOND * t)


def _flow(stages: dict[str, StagePlan], rate: float, burst: int, horizon: float, ramp: bool) -> None:
    """Run the fluid model until every queue that keeps up with `rate` is empty of the burst, setting each stage's
    drain time and the oldest message its queue reaches. A queue that cannot keep up never empties: its oldest
    message grows older until SQS deletes it at `horizon` (the queue's retention)."""
    order = list(stages)  # the intake first; the others are fed by it
    behind = {name for name, stage in stages.items() if stage.rate <= rate}
    for name in behind:
        stages[name].drain_seconds = stages[name].oldest_seconds = math.inf
    keeping_up = [stage for name, stage in stages.items() if name not in behind]
    if burst <= 0 or not keeping_up:
        return
    slowest = min([stage.rate for stage in keeping_up] + [stages[order[0]].rate])  # none gets more than the intake passes
    estimate = burst / max(slowest - rate, 1e-9) + max(stage.ramp_seconds for stage in keeping_up)
    dt = min(max(estimate / 20_000, 0.01), horizon)
    arrived = {name: [0.0] for name in order}  # cumulative arrivals, one sample per step
    done = dict.fromkeys(order, 0.0)
    backlog = dict.fromkeys(order, 0.0)
    backlog[order[0]] = arrived[order[0]][0] = float(burst)
    drained: dict[str, float] = {}
    t = 0.0
    while len(drained) < len(keeping_up) and t < horizon:
        t += dt
        passed = 0.0
        for name in order:
            stage = stages[name]
            incoming = rate * dt if name == order[0] else passed
            backlog[name] += incoming
            arrived[name].append(arrived[name][-1] + incoming)
            taken = min(backlog[name], min(_concurrency(stage, t, ramp) / stage.seconds_per_image, stage.rate) * dt)
            backlog[name] -= taken
            done[name] += taken
            if name == order[0]:
                passed = taken
            if name in behind:
                continue
            # The head of the queue arrived when the cumulative arrivals reached what has been taken.
            head = bisect.bisect_left(arrived[name], done[name] - 1e-9)
            if backlog[name] > 1e-6:
                stage.oldest_seconds = max(stage.oldest_seconds, t - head * dt)
            if name not in drained and done[name] >= burst - 0.5 and backlog[name] < max(1.0, 2 * rate * dt):
                drained[name] = t
    for stage in keeping_up:
        stage.drain_seconds = drained.get(stage.function, math.inf)


def _notes(p: Plan) -> list[str]:
    s, notes = p.settings, []
    kept = s.queue_retention_days * 86400
    for stage in p.stages.values():
        queue = f"the {stage.function} queue"
        if math.isinf(stage.oldest_seconds):
            notes.append(f"{stage.function} takes at most {stage.rate:,.1f} images/s ({stage.binding.name}); at "
                         f"{p.rate:g}/s {queue} grows without end: its oldest-message alarm fires, and after "
                         f"queueRetentionDays ({s.queue_retention_days}) SQS deletes what is older, never processed")
            continue
        if stage.oldest_seconds >= kept:
            notes.append(f"{queue}'s oldest message would be older than queueRetentionDays ({s.queue_retention_days}): "
                         "SQS deletes it, never processed (raise the limit that binds, or queueRetentionDays up to 13)")
        elif stage.oldest_seconds > s.oldest_message_alarm_seconds:
            notes.append(f"{queue}'s oldest message reaches {duration(stage.oldest_seconds)}: its oldest-message "
                         f"alarm (oldestMessageAlarmSeconds {s.oldest_message_alarm_seconds:,}) fires")
    return notes


def duration(seconds: float, endless: str = "never") -> str:
    if math.isinf(seconds):
        return endless
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


# --- Memory, tuned like AWS Lambda Power Tuning ----------------------------------------------------------------

@dataclass(frozen=True)
class MemoryRow:
    memory: int
    seconds: float
    usd_per_million: float  # the stage's compute
    fits: bool  # its largest image fits in it


def tuned(s: Settings) -> Configured | None:
    """The deployed stage whose time is the engine's, measured (not network calls): the one memory changes."""
    return next((c for c in s.deployed if c.stage.capacity is not None and c.stage.capacity.measured), None)


def memory_table(s: Settings, megapixels: float, fmt: str) -> tuple[Configured, list[MemoryRow], MemoryRow]:
    """The measured stage's time and compute cost per million images at each of MEMORY_SIZES, and the cheapest size
    within 10% of the fastest among those its largest image fits in."""
    configured = tuned(s)
    assert configured is not None, "a stack without a measured stage has nothing to tune"
    model = _capacity(configured)
    gb_second = costs.LAMBDA_GB_SECOND[s.architecture]
    needed = model.memory_needed(configured) if model.memory_needed else 0
    rows = []
    for memory in MEMORY_SIZES:
        sized = replace(configured, sizing=replace(configured.sizing, memory=memory))
        seconds = model.seconds(sized, megapixels, fmt, 1.0)
        rows.append(MemoryRow(memory, seconds, 1e6 * seconds * memory / 1024 * gb_second, needed <= memory))
    fitting = [row for row in rows if row.fits] or rows
    fastest = min(row.seconds for row in fitting)
    best = min((row for row in fitting if row.seconds <= fastest * WITHIN_FASTEST), key=lambda row: row.usd_per_million)
    return configured, rows, best
