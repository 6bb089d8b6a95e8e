"""Turning the local cloud's state into what the demo prints and writes."""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from handlers.names import EVENT_SOURCE, SETTLED, UPLOADS_PREFIX, Function, StackOutput, Status
from localcloud.cloud import DeadLetter, LocalCloud
from ops import gallery
from ops.gallery import renditions
from ops.gallery import view as image_json

# An upload whose message waits in a dead-letter queue: accounted for (alarmed, redrivable), not settled.
DEAD_LETTERED = "dead-lettered"


@dataclass
class Summary:
    uploaded: list[str]
    records: dict[str, dict[str, Any]]
    dead_letters: list[DeadLetter]

    def status(self, key: str) -> str:
        record = self.records.get(key)
        if record and record.get("status") in SETTLED:
            return record["status"]
        if any(letter.key == key for letter in self.dead_letters):
            return DEAD_LETTERED
        return record["status"] if record else "unaccounted"

    def settled(self, key: str) -> bool:
        return self.status(key) in (*SETTLED, DEAD_LETTERED)

    def unaccounted(self) -> list[str]:
        return [key for key in self.uploaded if not self.settled(key)]

    def key_of(self, image_id: str) -> str:
        """The key of the uploaded image whose id this is (a duplicate names what it copies by id)."""
        return next((key for key, record in self.records.items() if record.get("image_id") == image_id), image_id)

    def counts(self) -> Counter:
        return Counter(self.status(key) for key in self.uploaded)

    def as_json(self) -> dict[str, Any]:
        counts = self.counts()
        return {
            "uploaded": len(self.uploaded),
            **{status: counts[status] for status in (Status.DONE, Status.REJECTED, Status.FAILED, Status.DELETED,
                                                     Status.QUARANTINED)},
            "dead_lettered": counts[DEAD_LETTERED],
            "unaccounted": len(self.unaccounted()),
            "images": [image_json(key, self.status(key), self.records.get(key, {})) for key in self.uploaded],
            "dead_letters": [{"queue": d.queue, "key": d.key, "receive_count": d.receive_count} for d in self.dead_letters],
        }


def explain(letter: DeadLetter, summary: Summary) -> str:
    """A dead letter in words: a duplicate of work that finished anyway is not a lost upload."""
    status = summary.status(letter.key) if letter.key in summary.uploaded else None
    line = f"{letter.queue}: {letter.key or '(no key)'} after {letter.receive_count} receives"
    if status in SETTLED:
        return f"{line} - a repeated delivery; the upload itself is {status} (redrive or delete the message)"
    return f"{line} - the upload waits on it (fix the cause, then redrive it)"


def collect(cloud: LocalCloud, uploaded: list[str]) -> Summary:
    return Summary(list(dict.fromkeys(uploaded)), cloud.records(), cloud.dead_letters())


def table(summary: Summary) -> str:
    images = [image_json(key, summary.status(key), summary.records.get(key, {})) for key in summary.uploaded]
    hashed = any(image["phash"] for image in images)  # with `duplicates`: each image's pHash, and what it copies
    rows = [("KEY", "STATUS", "FORMAT", "SIZE", "THUMBNAILS", "LABELS", *(("PHASH",) if hashed else ()), "REASON")]
    for key, image in zip(summary.uploaded, images, strict=True):
        size = f"{image['width']}x{image['height']}" if image["width"] else "-"
        # Each width or crop (by name) once, whatever the formats it is stored in.
        thumbs = ",".join(dict.fromkeys(t.get("crop") or str(t["width"]) for t in image[Function.THUMBNAILS])) or "-"
        labels = ", ".join(label["name"] for label in image[Function.LABELS][:3])
        if labels and image["labels_emulated"]:
            labels += " (emulated)"
        copied = summary.key_of(image["duplicate_of"]) if image["duplicate_of"] and image["status"] != Status.REJECTED else ""
        reason = image["reason"] or (f"a duplicate of {copied} (distance {image['duplicate_distance']})" if copied else "")
        rows.append((key, image["status"], image["format"] or "-", size, thumbs, labels or "-",
                     *((image["phash"] or "-",) if hashed else ()), reason))
    limits = (40, 13, 6, 11, 22, 34, *((16,) if hashed else ()), 70)
    widths = [min(max(len(str(row[i])) for row in rows), limit) for i, limit in enumerate(limits)]
    return "\n".join("  ".join(_cell(str(value), width) for value, width in zip(row, widths, strict=True)).rstrip() for row in rows)


def _cell(text: str, width: int) -> str:
    return (text if len(text) <= width else text[: width - 1] + "…").ljust(width)


def thumbnail_path(key: str, output: dict[str, Any]) -> str:
    """Where the demo copies a thumbnail, under its out/ folder: <upload key without uploads/>/<box>.<ext>."""
    return f"{key.removeprefix(UPLOADS_PREFIX)}/{output['key'].rsplit('/', 1)[-1]}"


def write_gallery(summary: Summary, out: Path) -> Path:
    """out/index.html: the gallery of every upload, linking the thumbnails write_thumbnails copied beside it."""
    path = out / "index.html"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(gallery.page(summary.as_json()["images"], lambda key, output: quote(thumbnail_path(key, output)),
                                 "claimcheck: the local demo", emulated=True), encoding="utf-8")
    return path


def write_thumbnails(cloud: LocalCloud, summary: Summary, out: Path) -> int:
    """Copy every stored thumbnail to out/<upload key without uploads/>/<box>.<ext>; returns how many (sizes that share
    one rendition share its file)."""
    s3 = cloud.client("s3")
    bucket = cloud.outputs[StackOutput.THUMBNAILS_BUCKET]
    written = 0
    for key in summary.uploaded:
        for output in renditions(summary.records.get(key, {})):
            target = out / thumbnail_path(key, output)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(s3.get_object(Bucket=bucket, Key=output["key"])["Body"].read())
            written += 1
    return written


# The demo's consumer of the stack's image events: a rule on every image.* event to a queue of its own.
CONSUMER = "demo-consumer"
CONSUMER_PATTERN = {"source": [EVENT_SOURCE], "detail-type": [{"prefix": "image."}]}


def events_line(events: list[dict[str, Any]], uploaded: list[str]) -> str:
    """What the demo's consumer received: how many events of each detail-type, and whether each upload had one.
    Redelivered events carry the id they had (the consumer's dedup rule), so they count once."""
    unique = {e["detail"]["id"]: e for e in events}.values()
    kinds = Counter(e["detail-type"] for e in unique)
    per_key = Counter(e["detail"]["key"] for e in unique)
    shown = ", ".join(f"{n} {kind}" for kind, n in sorted(kinds.items(), key=lambda kv: (-kv[1], kv[0])))
    if sorted(per_key) == sorted(uploaded) and set(per_key.values()) <= {1}:
        coverage = "one per upload"
    else:
        missing = [key for key in uploaded if key not in per_key]
        coverage = f"{len(uploaded) - len(missing)} of {len(uploaded)} uploads had one" + (
            f" (none for {', '.join(missing)})" if missing else "")
    duplicates = len(events) - len(unique)
    return (f"Events: a consumer queue received {len(unique)} events ({shown}), {coverage}"
            + (f"; {duplicates} redelivered (same id)" if duplicates else ""))
