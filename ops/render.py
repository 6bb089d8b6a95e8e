"""How the operator tools print: rich's tables and progress on a terminal, plain aligned text elsewhere (logs, CI,
pipes), and an image record as a person reads it."""
from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

from handlers import stages
from handlers.names import ClaimEvent
from handlers.records import DECISION

PLAIN_EVERY_S = 5.0


def title(text: str, emulated: bool) -> str:
    return text + (" (the local cloud: CloudWatch metrics and labels are emulated)" if emulated else "")


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = [[str(h) for h in headers], *[[str(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
                     for row in cells)


def record(item: dict[str, Any], emulated: bool) -> str:
    """An image record in words: what it is, what each stage did, what came out."""
    lines = [f"{item.get('key')}  {str(item.get('status', '')).upper()}" + (f": {item['reason']}" if item.get("reason") else ""),
             f"  format {item.get('format') or '-'}, {item.get('width') or '?'}x{item.get('height') or '?'}, "
             f"{int(item.get('size') or 0):,} bytes, version {item.get('version_id') or '-'}",
             f"  uploaded {item.get('event_time') or '-'}, last changed {item.get('updated_at') or '-'}"
             + (f", owner {item['owner']}" if item.get("owner") else "")]
    for stage in stages.declared():
        result = item.get(stage.name)
        if stage.results and isinstance(result, dict):
            lines += stage.describe(result, emulated)
    decided = item.get(DECISION)
    if decided:
        lines.append(f"  decision: {decided.get('decision')} by {decided.get('by')} at {decided.get('at')}")
    note = item.get(ClaimEvent.REPROCESS)
    if note:
        lines.append(f"  reprocess to settings {note.get('settings')}: {note.get('status')}, {note.get('reason')}")
    metadata = item.get("metadata") or {}
    if metadata:
        camera = " ".join(str(metadata[k]) for k in ("camera_make", "camera_model") if metadata.get(k))
        lines.append("  metadata: " + ", ".join(part for part in (
            f"orientation {metadata['orientation']}" if metadata.get("orientation") else "",
            f"camera {camera}" if camera else "", f"taken {metadata['taken_at']}" if metadata.get("taken_at") else "",
            f"profile {metadata['color_profile']}" if metadata.get("color_profile") else "") if part) or "  metadata: -")
    return "\n".join(lines)


def progress(what: str, unit: str, stream: Any = None,
             second: str = "scanned") -> tuple[Callable[[int, int], None], Callable[[], None]]:
    """(show(done, scanned), close): rich's live progress on a terminal, a plain line every few seconds elsewhere;
    `second` names the second count."""
    stream = stream or sys.stderr
    if stream.isatty():
        from rich.console import Console
        from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

        bar = Progress(SpinnerColumn(), TextColumn("{task.description}"), TextColumn("{task.fields[line]}"),
                       TimeElapsedColumn(), console=Console(file=stream), transient=False)
        task = bar.add_task(what, line="", total=None)
        bar.start()
        started = time.monotonic()

        def show_live(done: int, scanned: int) -> None:
            rate = done / max(time.monotonic() - started, 1e-6)
            bar.update(task, line=f"{done} {unit}, {scanned} {second}, {rate:.1f}/s")

        return show_live, bar.stop
    last = [time.monotonic()]  # the first line after PLAIN_EVERY_S: a short run prints only its result

    def show_plain(done: int, scanned: int) -> None:
        if time.monotonic() - last[0] >= PLAIN_EVERY_S:
            last[0] = time.monotonic()
            print(f"  {what}: {done} {unit}, {scanned} {second}", file=stream, flush=True)

    return show_plain, (lambda: None)
