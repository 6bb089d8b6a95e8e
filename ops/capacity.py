"""`python -m ops --stack NAME capacity`: what a stack takes, from its configuration (Pulumi.NAME.yaml over the
defaults, read by the settings code `pulumi up` runs) and infra/capacity.py's model. Nothing is called: no
credentials, no Pulumi CLI."""
from __future__ import annotations

import json
import re
from dataclasses import asdict
from pathlib import Path
from typing import Any

from infra import capacity, costs, settings
from infra.concurrency import UNRESERVED_RULE, added_up
from ops import render
from ops.queues import OpsError

ROOT = Path(__file__).resolve().parent.parent
PER = {"s": 1, "sec": 1, "min": 60, "m": 60, "h": 3600, "hour": 3600, "d": 86400, "day": 86400}
MODEL = ("a model: AWS's documented limits, make bench's engine times on 2 cores and ASSUMED call times "
         "(infra/capacity.py); check it against the stack's CloudWatch metrics")


def per_second(text: str) -> float:
    """'50/s', '3000/min', '100000/h', or a bare number of images a second."""
    found = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*(?:/\s*([a-z]+))?\s*", text.lower())
    if not found or (found.group(2) and found.group(2) not in PER):
        raise OpsError(f"--rate {text!r} is not a rate: write it as 50/s, 3000/min or 100000/h")
    return float(found.group(1)) / PER[found.group(2) or "s"]


def stack_settings(stack: str, overrides: list[str], root: Path = ROOT) -> settings.Settings:
    """The stack's settings as `pulumi up` reads them, with `--set key=value` on top (as `pulumi config set` would)."""
    path = root / f"Pulumi.{stack}.yaml"
    if not path.exists():
        raise OpsError(f"{path.name} does not exist here: capacity reads a stack's configuration (`pulumi stack init "
                       f"{stack}` makes one; `--stack dev` reads Pulumi.dev.yaml)")
    try:
        config: dict[str, Any] = {**settings.stack_config(path), **settings.assignments(overrides)}
    except settings.SettingsError as error:
        raise OpsError(str(error)) from None
    try:
        return settings.load(config)
    except settings.SettingsError as error:
        raise OpsError(f"`pulumi up` would refuse this stack: {error}") from None


def report(stack: str, p: capacity.Plan) -> str:
    s = p.settings
    rows = [(stage.function, f"{stage.memory:,} MB", f"{stage.seconds_per_image * 1000:,.0f} ms",
             f"{stage.needed:,.1f} / {stage.max_concurrency:,}", f"{stage.rate:,.1f}", stage.binding.name,
             capacity.duration(stage.ramp_seconds), capacity.duration(stage.drain_seconds),
             capacity.duration(stage.oldest_seconds, "no end")
             + (" ALARM" if stage.oldest_seconds > s.oldest_message_alarm_seconds else ""), f"{stage.usd_per_million:,.2f}")
            for stage in p.stages.values()]
    lines = [
        f"claimcheck {stack}: {p.rate:g} images/s steady and a burst of {p.burst:,} {p.megapixels:g} MP "
        f"{p.fmt.upper()} photos ({MODEL})",
        render.table(("STAGE", "MEMORY", "PER IMAGE", "NEEDS / MAX CONC", "IMAGES/S", "LIMIT THAT BINDS", "TO FULL CONC",
                      "BURST DRAINS IN", "OLDEST MESSAGE", "$ PER MILLION"), rows),
        f"The pipeline sustains {p.sustained:,.1f} images/s and "
        + (f"drains the burst in {capacity.duration(p.drain_seconds)}; " if p.drain_seconds < float("inf")
           else f"never drains the burst at {p.rate:g}/s; ")
        +
        f"oldest-message alarm at {s.oldest_message_alarm_seconds:,} s; messages kept {s.queue_retention_days} days.",
        f"Cost ({costs.PRICES_DATE} us-east-1 prices, {s.architecture}): ${p.usd_per_million['total']:,.2f} per million "
        f"images (Rekognition ${p.usd_per_million['rekognition']:,.2f} of it), ${p.usd_for_burst:,.2f} for the burst.",
    ]
    if p.rekognition_per_owner_day is not None:
        lines.append(f"uploadQuota ({s.quota[0]:,} uploads per owner a day) bounds one owner's Rekognition spend to "
                     f"${p.rekognition_per_owner_day:,.2f} a day ({p.fmt.upper()}: "
                     f"${p.usd_per_million['rekognition'] / 1e6:,.4f} an image).")
    lines += [f"  ! {note}" for note in p.notes]
    lines += ["", concurrency(s)]
    if capacity.tuned(s) is None:
        return "\n".join(lines)
    tuned, table, best = capacity.memory_table(s, p.megapixels, p.fmt)
    fastest = min((row for row in table if row.fits), key=lambda row: (row.seconds, row.memory))

    def label(row: capacity.MemoryRow) -> str:
        return ", ".join(text for text, holds in (
            ("too small for its largest image", not row.fits), ("fastest", row is fastest),
            ("cheapest within 10% of the fastest", row is best), ("configured", row.memory == tuned.sizing.memory))
            if holds)

    lines += ["", f"Memory of {tuned.name} for {p.megapixels:g} MP {p.fmt.upper()} (like AWS Lambda Power Tuning, from "
              "make bench's one-core time; CPU in proportion to memory, 1,769 MB = 1 vCPU; a model):",
              render.table(("MEMORY", "PER IMAGE", "COMPUTE $/M", ""),
                           [(f"{row.memory:,} MB", f"{row.seconds * 1000:,.0f} ms", f"{row.usd_per_million:,.2f}", label(row))
                            for row in table])]
    return "\n".join(lines)


def concurrency(s: settings.Settings) -> str:
    """The account's Regional Lambda concurrency quota and how the stack shares it."""
    b = s.concurrency
    rows = [("account quota (accountConcurrency)", f"{b.quota:,}"),
            ("reserved by the stack", f"{sum(b.reserved.values()):,} ({added_up(b.reserved)})" if b.reserved
             else "0 (uploadApiConcurrency 0: the upload function shares the unreserved pool)" if s.upload_api else "0"),
            ("kept unreserved by Lambda", f"{b.unreserved_minimum:,} ({UNRESERVED_RULE})"),
            ("could still be reserved", f"{b.reservable - sum(b.reserved.values()):,}"),
            ("the stages at most (maxConcurrency)", f"{sum(b.scaling.values()):,} ({added_up(b.scaling)})"),
            ("kept for other functions (concurrencyReserve)", f"{b.reserve:,}"),
            ("room left", f"{b.room:,}")]
    return render.table(("LAMBDA CONCURRENCY", ""), rows)


def document(stack: str, p: capacity.Plan) -> dict[str, Any]:
    memory = {}
    if capacity.tuned(p.settings) is not None:
        tuned, rows, best = capacity.memory_table(p.settings, p.megapixels, p.fmt)
        memory = {"stage": tuned.name, "rows": [asdict(row) for row in rows], "recommended": best.memory}
    budget = p.settings.concurrency
    return {"stack": stack, "model": MODEL, "rate": p.rate, "burst": p.burst, "megapixels": p.megapixels,
            "format": p.fmt, "sustained": p.sustained, "drain_seconds": _finite(p.drain_seconds),
            "stages": {name: {"memory": st.memory, "seconds_per_image": st.seconds_per_image, "needed": st.needed,
                              "max_concurrency": st.max_concurrency, "rate": st.rate, "binding": st.binding.name,
                              "ramp_seconds": st.ramp_seconds, "drain_seconds": _finite(st.drain_seconds),
                              "oldest_seconds": _finite(st.oldest_seconds),
                              "alarm": st.oldest_seconds > p.settings.oldest_message_alarm_seconds,
                              "limits": [asdict(limit) for limit in st.limits]}
                       for name, st in p.stages.items()},
            "usd_per_million": p.usd_per_million, "usd_for_burst": round(p.usd_for_burst, 2),
            "rekognition_per_owner_day": p.rekognition_per_owner_day,
            "prices_date": costs.PRICES_DATE, "notes": p.notes,
            "memory": memory,
            "concurrency": {**asdict(budget), "unreserved_minimum": budget.unreserved_minimum,
                            "reservable": budget.reservable, "room": budget.room}}


def _finite(seconds: float) -> float | None:
    return None if seconds == float("inf") else seconds


def run(stack: str, overrides: list[str], rate: str, burst: int, megapixels: float, fmt: str, as_json: bool) -> int:
    s = stack_settings(stack, overrides)
    if fmt not in s.allowed_formats:
        raise OpsError(f"--format {fmt}: the stack accepts only {', '.join(s.allowed_formats)}")
    p = capacity.plan(s, per_second(rate), burst, megapixels, fmt)
    print(json.dumps(document(stack, p), indent=2) if as_json else report(stack, p))
    return 0
