"""Duplicates gate: claim check -> the image's perceptual hash -> the same owner's earlier done image it copies, if any.

A gate stage (handlers/stages.py, "gates"), the first an upload meets when `duplicates` is on: it decodes the version
the claim check names within the thumbnail stage's limits (in the same warm decode child, at the smallest size its
draft allows), hashes it (handlers/phash.py), and looks the hash up in the duplicates index: one BatchGetItem of the
owner's band items (`band_keys`), every candidate within `duplicateDistance` bits checked against its own record (done,
the same owner, the same hash: a deleted or replaced image is no duplicate). The record gets `phash` and, for a copy,
`duplicate_of` and `duplicate_distance`; with `duplicates: reject` a copy ends rejected with that reason and is never
published to the moderation gate or any other stage, so no Rekognition call is paid for it. Otherwise the hash goes
into the index and the claim check is published again for the next gate or the stages. Why a gate and how the index
scales: README "Duplicates".
"""
from __future__ import annotations

import io
import math
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from handlers import aws, contracts, environment, imaging, originals, phash, records
from handlers.failures import PermanentFailure, classified
from handlers.names import ClaimEvent, Function, Metric, StageStatus, Status
from handlers.observability import count, logger, run_batch
from handlers.settings import StageSettings, between, one_of, setting, shared
from handlers.stage import handle, pending
from handlers.stages import Capacity, Configured, Stage, gate_order, passed_state
from handlers.thumbnails import (
    MEMORY_HEADROOM,
    decode_original,
    image_cpu_seconds,
    invocation_margin,
    memory_problems,
    peak_mb,
)

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
    from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

NAME = "duplicates"
MODES = ("off", "record", "reject")
# The most bits a copy may differ by: its hash's bands (distance + 1) times the four turns looked up must fit in one
# BatchGetItem's 100 keys (DynamoDB API Reference, BatchGetItem: "up to 100 items"), and a band of 5 bits (at 12) is
# already shared by a 32nd of an owner's images.
MAX_DISTANCE = 12
# Measured (README "Duplicates"): the largest distance no two different photos of bench/duplicates.py came within
# (their closest pair differed in 6 bits of 64).
DEFAULT_DISTANCE = 5
OWNERLESS = "-"  # the owner of uploads not made through the upload API: the bucket's own, one owner for all of them
# A BatchGetItem's unprocessed keys asked for again at most this often, 50 ms, 100 ms, ... (at most 1 s) apart.
UNPROCESSED_TRIES = 8
UNPROCESSED_BACKOFF_S = 0.05
HASHED_BOX = 256  # the decode's box: small enough for a JPEG's draft to do most of the work, 8x the hash's 32 px
# Its whole time per image besides the decode: a GET, the record's read and writes, a BatchGetItem, distance + 1
# UpdateItems and a publish (ASSUMED, no AWS account here to measure it).
CALLS_SECONDS = 0.08


@dataclass(frozen=True)
class DuplicatesSettings:
    allowed_formats: tuple[str, ...] = shared("allowedFormats")
    max_pixels: int = shared("maxPixels")
    mode: str = setting("off", "duplicates", "str",
                        "Find each upload's copies among its owner's earlier done images by perceptual hash: off, "
                        "record (duplicate_of in the record), or reject (a copy ends rejected before any label or "
                        "moderation call).", one_of(*MODES), env="DUPLICATES")
    distance: int = setting(DEFAULT_DISTANCE, "duplicateDistance", "int",
                            "Most bits of 64 in which a copy's pHash may differ from the image it copies.",
                            between(0, MAX_DISTANCE), env="DUPLICATE_DISTANCE")
    # Completed by the program: what it publishes a passed claim check as (the next gate's, or the stages'), and
    # the thumbnail stage's decode limits.
    passes_as: str = setting("clear", None, "str", "The gate state a passed claim check is published with.",
                             env="GATE_PASSES_AS")
    max_frames: int = setting(100, None, "int", "The thumbnail stage's maxFrames.", env="MAX_FRAMES")
    max_jpeg_scans: int = setting(100, None, "int", "The thumbnail stage's maxJpegScans.", env="MAX_JPEG_SCANS")
    max_jpeg_segments: int = setting(1000, None, "int", "The thumbnail stage's maxJpegSegments.", env="MAX_JPEG_SEGMENTS")
    image_cpu_seconds: int = setting(10, None, "int", "CPU seconds one hash may take.", env="IMAGE_CPU_SECONDS")


def _complete(configured: Configured, others: Mapping[str, Configured]) -> DuplicatesSettings:
    shown = others[Function.THUMBNAILS].settings
    return replace(configured.settings, passes_as=passed_state(gate_order(others.values()), configured.name),
                   max_frames=shown.max_frames, max_jpeg_scans=shown.max_jpeg_scans,
                   max_jpeg_segments=shown.max_jpeg_segments, image_cpu_seconds=image_cpu_seconds(configured.sizing))


def _shown(result: Mapping[str, Any], emulated: bool) -> list[str]:
    line = f"  {NAME}: {result.get('status')}, pHash {result.get('phash', '-')}"
    if result.get("duplicate_of"):
        line += f", a duplicate of {result['duplicate_of']} (distance {result.get('distance')} of {phash.BITS} bits)"
    return [line + (f" ({result['reason']})" if result.get("reason") and not result.get("duplicate_of") else "")]


STAGE = Stage(
    name=NAME, component="DuplicatesStage", resource="duplicates-stage", key="duplicatesGate",
    description="The duplicates gate's function (with duplicates).", order=12, gate=True,
    settings=DuplicatesSettings,
    # It decodes at a draft's scale, but a PNG or WebP decodes whole: the thumbnail stage's memory rule holds.
    sizing=StageSettings(memory=1536, timeout=60, batch_size=5, batching_window=1, max_concurrency=2),
    deployed=lambda s: s.mode != "off",
    uses=("records", "uploads", "status_tags", "claim_checks", "duplicates_index"),
    reported=(("hashed", Metric.PROCESSED), ("duplicates found", Metric.DUPLICATES),
              ("dropped claim checks", Metric.INVALID_CLAIM_CHECKS)),
    calls=("s3.GetObject", "dynamodb.BatchGetItem", "s3.PutObjectTagging", "sns.Publish"),
    shown=_shown,
    demo={"duplicates": "record"},
    complete=_complete,
    problems=lambda c, stack: memory_problems(c, peak_mb(c.settings.allowed_formats, c.settings.max_pixels)),
    capacity=Capacity(
        seconds=lambda c, megapixels, fmt, speed: CALLS_SECONDS + 0.004 * megapixels * speed / min(1.0, c.sizing.vcpus),
        upload_reads=1, record_writes=2, priced=lambda c: {"sns_publish": 1.0},
        memory_needed=lambda c: math.ceil(max(peak_mb(c.settings.allowed_formats, c.settings.max_pixels).values())
                                          / MEMORY_HEADROOM)),
)

_invocation: dict[str, Any] = {}


@logger.inject_lambda_context(clear_state=True)
def handler(event: dict[str, Any], context: Any) -> PartialItemFailureResponse:
    _invocation.update(context=context, margin=invocation_margin(context))
    return run_batch(event, context, record_handler)


def record_handler(record: SQSRecord) -> None:
    handle(record, work=_dispatch)


# --- the index ---------------------------------------------------------------------------------------------------
# One item per owner, band and band value (`owner#band#value`), its other attributes `i<image id>` = the image's
# hash in hex. A hash within `distance` bits of another agrees with it on one of its `distance + 1` bands at least
# (pigeonhole), so the items of the upload's bands (for each of its four turns) hold every candidate: one
# BatchGetItem, whatever the table's size; each candidate's real distance is then checked.

def band_key(owner: str, band: int, value: int) -> str:
    return f"{owner}#{band}#{value:x}"


def band_keys(owner: str, hashes: Iterable[int], distance: int) -> list[str]:
    """Every item a lookup reads, each once."""
    return list(dict.fromkeys(band_key(owner, band, value) for h in hashes for band, value in phash.bands(h, distance + 1)))


def candidates(index_table: str, owner: str, hashes: list[int], distance: int) -> dict[str, set[int]]:
    """Image id -> the hashes the index holds for it (an image's earlier versions leave theirs: its record says which
    is current) of every image of `owner` within `distance` bits of one of `hashes`: one BatchGetItem, and again for
    keys DynamoDB left unprocessed, which it may do for any of them, after an exponential backoff (API Reference,
    BatchGetItem: "we strongly recommend that you use an exponential backoff algorithm"); keys still unprocessed
    after UNPROCESSED_TRIES fail the message, which SQS retries."""
    keys: list[dict[str, Any]] = [{"band": {"S": key}} for key in band_keys(owner, hashes, distance)]
    found: dict[str, set[int]] = {}
    client = aws.client("dynamodb")
    for attempt in range(UNPROCESSED_TRIES):
        if attempt:
            time.sleep(min(UNPROCESSED_BACKOFF_S * 2 ** (attempt - 1), 1.0))
        with classified():
            answer = client.batch_get_item(RequestItems={index_table: {"Keys": keys, "ConsistentRead": True}})
        for item in answer.get("Responses", {}).get(index_table, []):
            for name, value in item.items():
                if name.startswith("i") and "S" in value:
                    stored = int(value["S"], 16)
                    if min(phash.distance(stored, h) for h in hashes) <= distance:
                        found.setdefault(name[1:], set()).add(stored)
        keys = answer.get("UnprocessedKeys", {}).get(index_table, {}).get("Keys", [])
        if not keys:
            return found
    raise RuntimeError(f"the duplicates index left {len(keys)} key(s) unprocessed after {UNPROCESSED_TRIES} tries")


def index(index_table: str, owner: str, image_id: str, value: int, distance: int) -> None:
    """Put the image's hash in its band items (one UpdateItem each: an item of many owners' images would be read
    whole by every lookup, so each holds one owner's band value only)."""
    table = aws.table(index_table)
    for band, bits in phash.bands(value, distance + 1):
        with classified():
            table.update_item(Key={"band": band_key(owner, band, bits)}, UpdateExpression="SET #i = :h",
                              ExpressionAttributeNames={"#i": f"i{image_id}"},
                              ExpressionAttributeValues={":h": phash.hex_of(value)})


# --- the gate ----------------------------------------------------------------------------------------------------

def _dispatch(claim: contracts.ClaimCheck) -> None:
    if claim.event == ClaimEvent.CREATED:
        _check(claim)
    elif claim.event == ClaimEvent.REPROCESS:
        _pass(claim)  # a done image this gate passed or never saw: nothing of it changes here
    # a removal waits for no gate: it is never published to one


def _check(claim: contracts.ClaimCheck) -> None:
    env = environment.load()
    settings = env.settings(DuplicatesSettings)
    current, waiting = pending(env.table_name, claim, NAME)
    if not waiting or current is None:
        return
    if (current.result(NAME) or {}).get("status") == StageStatus.DONE:
        _pass(claim, settings)  # recorded by an earlier delivery that may have died before it published
        return
    try:
        turns = _hashes(claim, env, settings)
    except PermanentFailure as failure:
        originals.tag_status(claim, Status.FAILED)
        records.record_stage(env.table_name, claim.image_id, claim.sequencer, NAME,
                             {"status": StageStatus.FAILED, "reason": failure.reason}, known=current)
        count(Metric.FAILED)
        return
    owner = str(current.item.get("owner") or OWNERLESS)
    copied = _earliest_copy(env, claim.image_id, owner, turns, settings.distance)
    result: dict[str, Any] = {"status": StageStatus.DONE, "phash": phash.hex_of(turns[0])}
    found: dict[str, Any] = {"phash": phash.hex_of(turns[0])}
    if copied is not None:
        of, distance = copied
        found.update(duplicate_of=of, duplicate_distance=distance)
        result.update(duplicate_of=of, distance=distance,
                      reason=f"a duplicate of {of} (distance {distance} of {phash.BITS} bits)")
        count(Metric.DUPLICATES)
        if settings.mode == "reject":
            result["status"] = StageStatus.REJECTED
            originals.tag_status(claim, Status.REJECTED)  # first: a retry after the record tags again
            records.record_stage(env.table_name, claim.image_id, claim.sequencer, NAME, result, known=current,
                                 shared=found)
            logger.info("rejected: a duplicate", extra={"duplicate_of": of, "distance": distance})
            return
    index(env.duplicates_table_name, owner, claim.image_id, turns[0], settings.distance)
    written = records.record_stage(env.table_name, claim.image_id, claim.sequencer, NAME, result, known=current,
                                   shared=found)
    if written.outcome == records.Outcome.WRITTEN:
        _pass(claim, settings)
    count(Metric.PROCESSED)


def _earliest_copy(env: environment.Environment, image_id: str, owner: str, turns: list[int],
                   distance: int) -> tuple[str, int] | None:
    """(image id, distance) of the nearest done image of `owner` whose record still holds the hash the index
    found (the earliest of equals); None when there is none. The image itself (an earlier version of its key) is
    not its own duplicate."""
    found = candidates(env.duplicates_table_name, owner, turns, distance)
    ranked = []
    for other, values in found.items():
        if other == image_id:
            continue
        record = records.get(env.table_name, other)
        current = [v for v in values if record is not None and record.item.get("phash") == phash.hex_of(v)]
        if (record is None or record.status != Status.DONE or str(record.item.get("owner") or OWNERLESS) != owner
                or not current):
            continue  # deleted, replaced by another version, another's, or not done: no longer what was indexed
        value = current[0]
        ranked.append((min(phash.distance(value, h) for h in turns), str(record.item.get("created_at", "")), other))
    if not ranked:
        return None
    nearest, _, other = min(ranked)
    return other, nearest


def _hashes(claim: contracts.ClaimCheck, env: environment.Environment, settings: DuplicatesSettings) -> list[int]:
    return list(decode_original(claim, env, settings, _invocation, hashes_of))


def hashes_of(data: bytes, limits: imaging.Limits, fmt: str | None) -> list[int]:
    """The pHash of the image as the thumbnail stage shows it (its first frame, oriented, in sRGB, a transparent one
    flattened onto white as its JPEG thumbnails are), and of its three turns. Runs in the decode child."""
    from PIL import Image

    [shown] = imaging.make_thumbnails(data, (HASHED_BOX,), "jpeg", 95, limits, sniffed=fmt,
                                       saliency=False).thumbnails
    return phash.rotations(Image.open(io.BytesIO(shown.data)))


def _pass(claim: contracts.ClaimCheck, settings: DuplicatesSettings | None = None) -> None:
    """The same claim check again, for the next gate or the stages."""
    state = (settings or environment.load().settings(DuplicatesSettings)).passes_as
    aws.client("sns").publish(TopicArn=environment.load().topic_arn, Message=claim.to_json(),
                              MessageAttributes=claim.message_attributes(passed=True, gate=state))
