"""How much a stack can take, from its settings and our measurements: the model behind `python -m ops capacity` and
behind the settings checks that refuse configurations that cannot work.

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

from handlers.names import Function
from infra import costs
from infra.settings import MB_PER_VCPU, MEMORY_HEADROOM, Settings

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
# Lambda keeps part of the Regional quota unreserved for the functions without reserved concurrency: every
# reservation together may leave no less than 100 (Lambda API Reference, PutFunctionConcurrency: "as long as you
# leave at least 100 simultaneous executions unreserved"; Developer Guide, "Configuring reserved concurrency for a
# function"). On an account whose quota is under 100 (new accounts start lower: "Lambda quotas") AWS refuses any
# reservation, naming the whole quota as that minimum ("below its minimum value of [10]").
UNRESERVED_MINIMUM = 100
UNRESERVED_RULE = "100, or the whole quota when it is smaller"  # the rule above, as the refusals and ops say it
# SQS standard queues take a nearly unlimited number of calls a second (SQS Developer Guide, "Amazon SQS quotas"),
# SNS's publish quota is thousands a second in every Region: neither binds before the limits above.

# --- Measured here (make bench, 2 cores, one core per engine run; README, "Performance", 2026-12-02) -------------
# The engine's one-core time for a photo of `mp` megapixels, per format: a + b × mp milliseconds. JPEG: 92 ms at
# 12 MP, 135 ms at 24 MP (libjpeg's DCT scaling makes it grow slower than the pixels); PNG 131 ms and WebP 190 ms
# at 6 MP (Pillow decodes them at full size, so they grow with the pixels). GIF and TIFF are taken as PNG; HEIC
# and AVIF were not benchmarked (40 ms/MP ASSUMED, a little over WebP).
ENGINE_MS = {"jpeg": (49.0, 3.58), "png": (0.0, 21.8), "webp": (0.0, 31.7), "gif": (0.0, 21.8), "tiff": (0.0, 21.8),
             "heic": (0.0, 40.0), "avif": (0.0, 40.0)}
# Bytes of a camera photo per megapixel, for the GET that fetches it: ~0.35 MB/MP for a JPEG at quality 90-95,
# 1.5 MB/MP for a PNG (the generated camera library of make test-library: 780 MB for 112 photos of 8-24 MP).
BYTES_PER_MP = {"jpeg": 350_000, "png": 1_500_000, "webp": 250_000, "gif": 1_000_000, "tiff": 3_000_000,
                "heic": 200_000, "avif": 200_000}
DECODE_CHILD_MS = 4.0  # handing the photo to the warm decode child (measured here: handlers/isolation.py)

# --- ASSUMED (not measured: no AWS account here) ------------------------------------------------------------------
S3_GET_MB_PER_S = 80.0  # one stream from Lambda to S3 in the same Region
REQUEST_MS = {"s3_put": 15.0, "s3_get": 20.0, "dynamodb": 8.0}  # one call's round trip in the Region
# The intake's and the label stage's whole time per image (a ranged GET, a write, a publish; DetectLabels): the
# benchmark's cost model assumes the same.
INTAKE_MS, LABEL_MS = costs.ASSUMED_MS[Function.INTAKE], costs.ASSUMED_MS[Function.LABELS]

# Memory sizes the tuning table tries, as AWS Lambda Power Tuning would (1,769 MB: exactly one vCPU).
MEMORY_SIZES = (512, 768, 1024, 1280, 1536, MB_PER_VCPU, 2048, 3008)
WITHIN_FASTEST = 1.10  # the cheapest memory whose time is within 10% of the fastest


def vcpus(memory_mb: int) -> float:
    """Lambda gives CPU in proportion to memory, 1,769 MB for one vCPU (Lambda Developer Guide, "Configure Lambda
    function memory"); the engine runs on one thread, so more than one does not speed it."""
    return min(1.0, memory_mb / MB_PER_VCPU)


def engine_seconds(megapixels: float, fmt: str) -> float:
    """The engine's time on one whole core for a photo of this size and format (make bench's measurements)."""
    a, b = ENGINE_MS[fmt]
    return (a + b * megapixels) / 1000


def thumbnail_seconds(memory_mb: int, megapixels: float, fmt: str, sizes: int, speed: float = 1.0) -> float:
    """One image through the thumbnail stage: the engine at this memory's share of a vCPU (`speed`: this machine's
    engine time over make bench's, 1 for Lambda), then GET the photo, PUT each size, read and write the record."""
    cpu = engine_seconds(megapixels, fmt) * speed / vcpus(memory_mb)
    fetch = REQUEST_MS["s3_get"] / 1000 + megapixels * BYTES_PER_MP[fmt] / (S3_GET_MB_PER_S * 1e6)
    calls = (sizes * REQUEST_MS["s3_put"] + 2 * REQUEST_MS["dynamodb"] + DECODE_CHILD_MS) / 1000
    return cpu + fetch + calls


# --- The plan -----------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Limit:
    """Something that caps how many images a second one stage takes."""

    name: str
    per_second: float


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


def stage_plans(s: Settings, megapixels: float, fmt: str, *, speed: float = 1.0,
                concurrency_cap: int | None = None) -> dict[str, StagePlan]:
    """Each stage's time per image and its limits, for photos of `megapixels` in `fmt`. `concurrency_cap`: at most
    this many environments per function (the local cloud's)."""
    labelled = fmt in s.label_formats
    sizes = len(s.thumbnail_sizes)
    reads = 2 + labelled  # GETs of each upload under uploads/
    writes = 1 + 2 + 2 * labelled  # record writes per image
    room = concurrency_budget(s).stages_pool
    times: dict[str, float] = {Function.INTAKE: INTAKE_MS / 1000,
             Function.THUMBNAILS: thumbnail_seconds(s.thumbnails.memory, megapixels, fmt, sizes, speed)}
    if labelled:
        times[Function.LABELS] = LABEL_MS / 1000
    shared = [Limit(f"S3 reads of uploads/ ({S3_READS_PER_PREFIX:,}/s per prefix, {reads} per image)",
                    S3_READS_PER_PREFIX / reads),
              Limit(f"DynamoDB writes of a new on-demand table ({DYNAMODB_INITIAL_WRITES:,}/s, {writes} per image)",
                    DYNAMODB_INITIAL_WRITES / writes)]
    plans: dict[str, StagePlan] = {}
    for function, seconds in times.items():
        st = s.stage(function)
        cap = min(st.max_concurrency, concurrency_cap or st.max_concurrency)
        limits = [Limit(f"its maxConcurrency ({cap:,})" if cap == st.max_concurrency
                        else f"the local cloud's {cap} environments", cap / seconds),
                  Limit(f"the Regional Lambda concurrency it is left ({room:,}: accountConcurrency - reserved - "
                        "concurrencyReserve)", room / seconds), *shared]
        if function == Function.THUMBNAILS:
            limits.append(Limit(f"S3 writes to thumbnails/ ({S3_WRITES_PER_PREFIX:,}/s per prefix, {sizes} per image)",
                                S3_WRITES_PER_PREFIX / sizes))
        if function == Function.LABELS:
            limits.append(Limit(f"Rekognition's DetectLabels quota (rekognitionTps {s.rekognition_tps:,})",
                                float(s.rekognition_tps)))
        plans[function] = StagePlan(function, st.memory, seconds, cap, limits)
    return plans


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
    memory: dict[str, int] = {name: s.stage(name).memory for name in (Function.INTAKE, Function.THUMBNAILS, Function.LABELS)}
    price = costs.per_million(stages[Function.THUMBNAILS].seconds_per_image * 1000, memory, s.architecture,
                              len(s.thumbnail_sizes),
                              {name: s.stage(name).batch_size for name in memory},
                              labelled_share=1.0 if Function.LABELS in stages else 0.0)
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
    usd_per_million: float  # the thumbnail stage's compute
    fits: bool  # the largest decode maxPixels allows fits in it


def memory_table(s: Settings, megapixels: float, fmt: str) -> tuple[list[MemoryRow], MemoryRow]:
    """The thumbnail stage's time and compute cost per million images at each of MEMORY_SIZES, and the cheapest
    size within 10% of the fastest among those the largest allowed decode fits in."""
    gb_second = costs.LAMBDA_GB_SECOND[s.architecture]
    peak = max(s.thumbnail_peak_mb().values())
    rows = []
    for memory in MEMORY_SIZES:
        seconds = thumbnail_seconds(memory, megapixels, fmt, len(s.thumbnail_sizes))
        rows.append(MemoryRow(memory, seconds, 1e6 * seconds * memory / 1024 * gb_second, peak <= memory * MEMORY_HEADROOM))
    fitting = [row for row in rows if row.fits] or rows
    fastest = min(row.seconds for row in fitting)
    best = min((row for row in fitting if row.seconds <= fastest * WITHIN_FASTEST), key=lambda row: row.usd_per_million)
    return rows, best


# --- What `pulumi up` refuses ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ConcurrencyBudget:
    """How the stack shares the account's Regional Lambda concurrency quota: what it reserves, what its queue-fed
    functions may take from the unreserved pool at once, and what it leaves the account's other functions."""

    quota: int  # accountConcurrency
    reserved: dict[str, int]  # reserved concurrency (ReservedConcurrentExecutions) by function; 0 is never listed
    scaling: dict[str, int]  # each deployed queue-fed function's maxConcurrency (its event source's cap)
    reserve: int  # concurrencyReserve

    @property
    def unreserved_minimum(self) -> int:
        """What Lambda keeps unreserved whatever is reserved: 100, or the whole quota when it is smaller."""
        return min(UNRESERVED_MINIMUM, self.quota)

    @property
    def reservable(self) -> int:
        """The most every reservation in the account together may take."""
        return self.quota - self.unreserved_minimum

    @property
    def stages_pool(self) -> int:
        """The concurrency the queue-fed functions may take at once: neither reserved nor kept for other functions."""
        return self.quota - sum(self.reserved.values()) - self.reserve

    @property
    def room(self) -> int:
        """What is left once every stage runs at its maxConcurrency (negative: the stack does not fit)."""
        return self.stages_pool - sum(self.scaling.values())


def added_up(used: dict[str, int]) -> str:
    """`intake 10 + thumbnails 20 + labels 2`: concurrency by function, as the refusals and ops show a sum."""
    return " + ".join(f"{name} {n:,}" for name, n in used.items())


def concurrency_budget(s: Settings) -> ConcurrencyBudget:
    reserved = {"upload API": s.upload_api_concurrency} if s.upload_api and s.upload_api_concurrency else {}
    return ConcurrencyBudget(s.account_concurrency, reserved,
                             {function: s.stage(function).max_concurrency for function in s.queue_fed_functions},
                             s.concurrency_reserve)


def worst_image(s: Settings) -> tuple[str, float]:
    """(format, one-core seconds) of the slowest image maxPixels allows among the allowed formats."""
    megapixels = s.max_pixels / 1e6
    return max(((fmt, engine_seconds(megapixels, fmt)) for fmt in s.allowed_formats), key=lambda found: found[1])


def problems(s: Settings) -> list[str]:
    """Configurations that cannot work, in the words of the settings' other errors (key = value, what is accepted)."""
    found = []
    budget = concurrency_budget(s)
    if sum(budget.reserved.values()) > budget.reservable:
        found.append(f"uploadApiConcurrency = {s.upload_api_concurrency:,} is more than Lambda lets the account reserve "
                     f"(accepted: at most accountConcurrency {budget.quota:,} - the {budget.unreserved_minimum:,} Lambda "
                     f"keeps unreserved ({UNRESERVED_RULE}) = {budget.reservable:,}; set "
                     "uploadApiConcurrency 0 to reserve none: the upload function then shares the unreserved concurrency, "
                     "bounded by the HTTP API's throttle in JWT mode; or ask AWS to raise the Regional Lambda concurrency "
                     "quota and set accountConcurrency)")
    used = {**budget.scaling, **budget.reserved}
    room = budget.quota - budget.reserve
    if sum(used.values()) > room:
        found.append(f"maxConcurrency = {added_up(used)} = {sum(used.values()):,} is more than the account leaves the pipeline "
                     f"(accepted: at most accountConcurrency {s.account_concurrency:,} - concurrencyReserve "
                     f"{s.concurrency_reserve:,} = {room:,}; ask AWS to raise the Regional Lambda concurrency quota and "
                     "set accountConcurrency, or lower them)")
    st = s.thumbnails
    fmt, cpu = worst_image(s)
    megapixels = s.max_pixels / 1e6
    batch = st.batch_size * thumbnail_seconds(st.memory, megapixels, fmt, len(s.thumbnail_sizes))
    # Each image may take Settings.image_cpu_seconds of CPU (timeout x 0.8 x vCPUs / batchSize, whole seconds), and
    # the whole batch must end within the timeout.
    if cpu > s.image_cpu_seconds or batch > st.timeout:
        enough = next((t for t in range(st.timeout, 901)
                       if cpu <= replace(s, thumbnails=replace(st, timeout=t)).image_cpu_seconds and batch <= t), None)
        accepted = (f"at least {enough} s at batchSize {st.batch_size} and memory {st.memory:,}, or a smaller batchSize "
                    "or maxPixels" if enough else "a smaller batchSize or maxPixels: no timeout up to 900 s is enough")
        found.append(f"thumbnails.timeout = {st.timeout} is too short for a batch of the largest images maxPixels allows "
                     f"(accepted: {accepted}): a {megapixels:g} MP {fmt.upper()} takes about {cpu:.1f} s of CPU "
                     f"(model: make bench's one-core time), {batch / st.batch_size:.1f} s at {vcpus(st.memory):.2f} vCPU")
    return found


def warnings(s: Settings) -> list[str]:
    """Configurations that work but waste: label environments Rekognition's quota keeps waiting."""
    found = []
    if s.label_formats:
        calls = s.labels.max_concurrency / (LABEL_MS / 1000)
        enough = max(2, math.ceil(s.rekognition_tps * LABEL_MS / 1000))
        if s.labels.max_concurrency > enough:
            found.append(f"labels.maxConcurrency {s.labels.max_concurrency} could call DetectLabels {calls:.0f} times a "
                         f"second, but rekognitionTps is {s.rekognition_tps:,}: the stage paces itself to it, so "
                         f"{enough} environments are enough (or ask AWS for more and raise rekognitionTps)")
    return found
