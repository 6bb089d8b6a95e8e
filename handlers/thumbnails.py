"""Thumbnail stage: claim check -> the named object version -> thumbnails + metadata.

Output keys are derived from the image id, the object's version and the name of the thumbnail settings, so doing
the same work twice writes the same objects, a key's content never changes (caches may keep it for good), and a
public thumbnail URL says nothing about the original's bytes (an ETag would be its MD5). A reprocess request
(`python -m ops reprocess`) makes a done image's thumbnails again only when its record names other settings.
Whenever the image ends anything but `done` (failed, deleted, replaced by a rejected upload), or a newer
version's thumbnails replace an older one's, what no longer belongs to the record is removed, and, when a
CDN serves them, a purge is asked of the purge function (handlers/cdn_purge.py) first; a redelivery that finds
its work recorded finishes that clean-up if it was cut short. When the record has moved on to a newer event while
this one ran, what it wrote is removed again.
"""
from __future__ import annotations

import itertools
import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from time import perf_counter
from typing import TYPE_CHECKING, Any

from handlers import aws, contracts, environment, focal, imaging, isolation, originals, records
from handlers.failures import PermanentFailure, classified
from handlers.names import FOCAL_POINT, ClaimEvent, Function, Metric, StackOutput, StageStatus, Status, thumbnail_settings
from handlers.observability import count, duration, logger, run_batch
from handlers.settings import (
    MB_PER_VCPU,
    Accepts,
    ConfigurationError,
    StageSettings,
    between,
    one_of,
    setting,
    shared,
    spec_of,
)
from handlers.stage import for_claim_check, pending, refuse
from handlers.stages import Capacity, Configured, Stage

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse

NAME = Function.THUMBNAILS
OUTPUT_FORMATS = ("jpeg", "webp", "png")
# What outputFormats may list: AVIF only beside a fallback every browser shows, or alone.
OFFERED_FORMATS = ("avif", "webp", "jpeg", "png")
# The quality of each lossy format that reaches the SSIM of a JPEG at each quality, on the sample library at the
# default sizes (python -m bench.formats; README, "Output formats"): (JPEG quality, that format's quality), by JPEG
# quality. Between two points the quality is interpolated; outside them, the nearest point's offset is kept.
MATCHED_QUALITY: dict[str, tuple[tuple[int, int], ...]] = {
    "jpeg": ((60, 60), (70, 70), (82, 82), (90, 90)),
    "webp": ((60, 67), (70, 77), (82, 83), (90, 88)),
    "avif": ((60, 54), (70, 59), (82, 67), (90, 78)),
}
# What a record says when its key no longer holds an image the stages should show (a gate may quarantine a done image
# that was never screened: its thumbnails go too).
REMOVED = (Status.REJECTED, Status.DELETED, Status.QUARANTINED)
# Thumbnail keys never change content, so caches may keep them for a year.
CACHE_CONTROL = "public, max-age=31536000, immutable"

# --- Memory: what one decode may take -----------------------------------------------------------------------------
# The stage's worst-case memory, per decoded pixel, by input format: what a decode at `maxPixels` may take on top of
# the function's own footprint. Measured by the hostile-image suite (tests/test_hostile.py prints the peak of each
# case); the intake's header check keeps every upload within maxPixels. Measured at 50 MP (the table keeps about a
# tenth more, for what the allocator adds):
#   jpeg: 8.2 B/px for a progressive CMYK file (full-size coefficient buffers: 4 components x 2 bytes), 0.4 baseline;
#   png, tiff: 9.9 for 16-bit samples (decoded to 32-bit, then scaled), 8.1 RGBA, 4.1 RGB; gif: 5.2 (to RGB);
#   webp: 16 (libwebp's RGBA canvas, the frame it returns, Pillow's copy); avif: 9.1; heic: not measured, 12 assumed.
DECODE_BYTES_PER_PIXEL = {"jpeg": 9, "png": 11, "gif": 6, "tiff": 11, "webp": 17, "heic": 12, "avif": 10}
FUNCTION_FOOTPRINT_MB = 120  # the Python runtime, boto3, Powertools and Pillow, measured in a warm thumbnail process
MEMORY_HEADROOM = 0.85  # of the configured memory; the rest is left for the allocator's fragmentation

# --- Time: measured here (make bench, 2 cores, one core per engine run; README, "Performance") -----------------------
# The engine's one-core time for a photo of `mp` megapixels, per format: a + b × mp milliseconds. JPEG: 98 ms at
# 12 MP, 185 ms at 24 MP: 2026-12-02's 92 and 135 ms (idle) scaled by the engine's time against pyvips in the same run
# on 2026-12-07 (0.89 -> 0.95 and 1.03 -> 1.41), when the draft began to leave the resampler 1.5x (a 24 MP photo is
# now decoded at 1/2, 3000 x 2000, not 1/4); PNG 194 ms (131 ms x 1.90 / 1.28, the same run's ratios: the box reduce
# now leaves 1.5x) and WebP 190 ms at 6 MP (Pillow decodes them at full size, so they grow with the pixels). GIF and TIFF are taken as PNG; HEIC
# and AVIF were not benchmarked (40 ms/MP ASSUMED, a little over WebP).
ENGINE_MS = {"jpeg": (11.0, 7.25), "png": (0.0, 32.4), "webp": (0.0, 31.7), "gif": (0.0, 32.4), "tiff": (0.0, 32.4),
             "heic": (0.0, 40.0), "avif": (0.0, 40.0)}
# Encoding each format, per megapixel of thumbnail (the default sizes of a 3:2 photo are 0.88 MP), one core, at the
# qualities matched to JPEG 82 and AVIF speed 9: the fastest of 5 encodes of each of bench.formats' 21 thumbnails
# (2026-12-07, load 9-13; README, "Output formats"). ENGINE_MS holds one JPEG encode already. PNG: not measured, taken
# as JPEG (it is only ever the one format).
ENCODE_MS_PER_MP = {"jpeg": 21.4, "png": 21.4, "webp": 192.5, "avif": 141.2}
PLACEHOLDER_MS = 8.6  # the ThumbHash of the smallest thumbnail, pure Python (README, "What a page gets")
# The saliency point, from a 256 px copy of the largest thumbnail: 10-37 ms measured, a 1024 px thumbnail's 20 ms
# (load 8-11; README, "What a page gets"). Every image pays it: the record's focal point when labels give none.
SALIENCY_MS = 20.0
# Bytes of a camera photo per megapixel, for the GET that fetches it: ~0.35 MB/MP for a JPEG at quality 90-95,
# 1.5 MB/MP for a PNG (the generated camera library of make test-library: 780 MB for 112 photos of 8-24 MP).
BYTES_PER_MP = {"jpeg": 350_000, "png": 1_500_000, "webp": 250_000, "gif": 1_000_000, "tiff": 3_000_000,
                "heic": 200_000, "avif": 200_000}
DECODE_CHILD_MS = 4.0  # handing the photo to the warm decode child (measured here: handlers/isolation.py)
# ASSUMED (no AWS account here to measure them): one stream from Lambda to S3 in the same Region, one call's round trip.
S3_GET_MB_PER_S = 80.0
REQUEST_MS = {"s3_put": 15.0, "s3_get": 20.0, "dynamodb": 8.0}


def _output_formats_ok(value: Any) -> bool:
    if value is None:
        return True
    if not (isinstance(value, tuple) and value and len(set(value)) == len(value) and set(value) <= set(OFFERED_FORMATS)):
        return False
    # The last is the fallback every browser shows: never AVIF (README, "What a page gets").
    return value[-1] != "avif" and (len(value) == 1 or ("png" not in value and value[-1] in ("jpeg", "webp")))


def matched_quality(fmt: str, reference: str, quality: int) -> int:
    """The quality of `fmt` whose thumbnails reach the SSIM of `reference`'s at `quality` (MATCHED_QUALITY)."""
    if fmt == reference:
        return quality
    as_jpeg = _interpolate([(theirs, jpeg) for jpeg, theirs in MATCHED_QUALITY[reference]], quality)
    return max(1, min(100, round(_interpolate(list(MATCHED_QUALITY[fmt]), as_jpeg))))


def _interpolate(points: list[tuple[int, int]], x: float) -> float:
    """y at `x` on the line through `points` (sorted by x); beyond the ends, the end's offset (y - x) is kept."""
    points = sorted(points)
    if x <= points[0][0]:
        return x + points[0][1] - points[0][0]
    for (x0, y0), (x1, y1) in itertools.pairwise(points):
        if x <= x1:
            return y0 + (y1 - y0) * (x - x0) / (x1 - x0)
    return x + points[-1][1] - points[-1][0]


def _sizes_ok(value: Any) -> bool:
    return (isinstance(value, tuple) and 1 <= len(value) <= 10 and len(set(value)) == len(value)
            and all(isinstance(v, int) and not isinstance(v, bool) and 16 <= v <= 4096 for v in value))


def _crops_ok(value: Any) -> bool:
    return (isinstance(value, tuple) and len(value) <= 10 and len(set(value)) == len(value)
            and all(focal.crop_size(v) is not None for v in value))


@dataclass(frozen=True)
class ThumbnailSettings:
    allowed_formats: tuple[str, ...] = shared("allowedFormats")  # its decoders are imported as the function starts
    max_pixels: int = shared("maxPixels")
    max_frames: int = setting(100, "maxFrames", "int", "Most frames (or pages) an animated image may have.",
                              between(1, 10_000), env="MAX_FRAMES")
    max_jpeg_scans: int = setting(100, "maxJpegScans", "int",
                                  "Most scans a progressive JPEG may have (each scan is another pass over the image).",
                                  between(1, 10_000), env="MAX_JPEG_SCANS")
    max_jpeg_segments: int = setting(1000, "maxJpegSegments", "int",
                                     "Most marker segments a JPEG may have before its first scan.", between(16, 65_535),
                                     env="MAX_JPEG_SEGMENTS")
    thumbnail_sizes: tuple[int, ...] = setting(
        (1024, 512, 128), "thumbnailSizes", "list", "Bounding boxes of the thumbnails, in pixels; never upscaled.",
        Accepts(_sizes_ok, "1 to 10 different whole numbers, each 16 to 4,096 pixels"), env="THUMBNAIL_SIZES")
    # Its own key, not entries of thumbnailSizes: the CLI checks every item of a list against one declared type
    # (pulumi/pulumi, sdk/go/common/workspace/project.go, ValidateConfigValue), and "256x256" is no integer.
    crop_sizes: tuple[str, ...] = setting(
        (), "cropSizes", "list", "Crops cut around the image's focal point, each WIDTHxHEIGHT (\"256x256\"): exactly that size, "
        "or that shape at the photo's own scale when it is smaller; never upscaled.",
        Accepts(_crops_ok, "up to 10 different WIDTHxHEIGHT texts such as \"256x256\", each side 16 to 4,096 pixels"),
        env="CROP_SIZES")
    output_format: str = setting("jpeg", "outputFormat", "str", "Thumbnail format.", one_of(*OUTPUT_FORMATS),
                                 env="OUTPUT_FORMAT")
    output_quality: int = setting(82, "outputQuality", "int", "Encoder quality for jpeg and webp thumbnails.",
                                  between(1, 100), env="OUTPUT_QUALITY")
    output_formats: tuple[str, ...] | None = setting(
        None, "outputFormats", "list",
        "Thumbnail formats, the most preferred first: each size is stored in each one that is smaller than the next one "
        "kept, and always in the last (the fallback every browser shows, at outputQuality; the others at the quality "
        "that matches its SSIM). Unset: outputFormat alone.",
        Accepts(_output_formats_ok, f"unset, or 1 to {len(OFFERED_FORMATS)} different formats of "
                f"{' | '.join(OFFERED_FORMATS)}; the last not avif, and with several no png and the last jpeg or webp"),
        declared=False, env="OUTPUT_FORMATS")
    store_gps: bool = setting(False, "storeGps", "bool", "Keep GPS coordinates from EXIF in the image record.",
                              env="STORE_GPS")
    # CPU seconds one image may take (completed by the program from the stage's timeout, memory and batch size).
    image_cpu_seconds: int = setting(10, None, "int", "CPU seconds one image may take.", env="IMAGE_CPU_SECONDS")

    @property
    def sizes(self) -> tuple[int, ...]:
        """The boxes, largest first: each size is made from the one before it."""
        return tuple(sorted(set(self.thumbnail_sizes), reverse=True))

    @property
    def crops(self) -> tuple[tuple[int, int], ...]:
        """The crops as (width, height), in their configured order."""
        return tuple(size for size in map(focal.crop_size, self.crop_sizes) if size is not None)

    @property
    def formats(self) -> tuple[str, ...]:
        """The formats every size is made in, the most preferred first; the last is always stored."""
        return self.output_formats or (self.output_format,)

    @property
    def encodings(self) -> tuple[tuple[str, int], ...]:
        """(format, quality) of each format: the last at outputQuality, the others at the quality matching its SSIM."""
        fallback = self.formats[-1]
        return tuple((fmt, matched_quality(fmt, fallback, self.output_quality)) for fmt in self.formats)

    @property
    def name(self) -> str:
        """The name of these sizes, crops, formats and qualities: part of every thumbnail key, and kept on the record
        (one format and no crops name as they always have, so a stack that sets neither keeps its keys)."""
        if len(self.formats) == 1:
            return thumbnail_settings(self.thumbnail_sizes, self.formats[0], self.output_quality, self.crop_sizes)
        described = ",".join(f"{fmt}:{quality}" for fmt, quality in self.encodings)
        return thumbnail_settings(self.thumbnail_sizes, described, self.output_quality, self.crop_sizes)

    def peak_mb(self) -> dict[str, int]:
        """Worst-case memory of one decode at maxPixels, per allowed format (see DECODE_BYTES_PER_PIXEL)."""
        return peak_mb(self.allowed_formats, self.max_pixels)


def peak_mb(formats: tuple[str, ...], max_pixels: int) -> dict[str, int]:
    """A function's worst-case memory decoding one image of each format at `max_pixels` (DECODE_BYTES_PER_PIXEL)."""
    return {f: FUNCTION_FOOTPRINT_MB + math.ceil(max_pixels * DECODE_BYTES_PER_PIXEL[f] / 2**20) for f in formats}


def memory_problems(configured: Configured, peaks: dict[str, int]) -> list[str]:
    """The largest decode maxPixels allows (`peaks`, by format) must fit the stage's memory, with headroom."""
    st, max_pixels = configured.sizing, configured.settings.max_pixels
    budget = st.memory * MEMORY_HEADROOM
    over = {f: mb for f, mb in peaks.items() if mb > budget}
    if not over:
        return []
    worst = max(over, key=lambda f: over[f])
    needed = math.ceil(over[worst] / MEMORY_HEADROOM)
    fits = math.floor((budget - FUNCTION_FOOTPRINT_MB) * 2**20 / DECODE_BYTES_PER_PIXEL[worst])
    key = configured.stage.config_key
    return [f"{key}.memory = {st.memory} is too small for maxPixels = {max_pixels:,}: a {worst.upper()} of that "
            f"size may need {over[worst]:,} MB to decode (accepted: {key}.memory of at least {needed:,}, or "
            f"maxPixels of at most {fits:,})"]


def image_cpu_seconds(sizing: StageSettings) -> int:
    """CPU seconds one image may take: a full batch of the slowest images the budget allows still ends within 80% of
    the timeout at the function's share of a CPU (RLIMIT_CPU counts whole seconds)."""
    return max(1, math.floor(sizing.timeout * 0.8 * min(1.0, sizing.vcpus) / sizing.batch_size))


def engine_seconds(megapixels: float, fmt: str) -> float:
    """The engine's time on one whole core for a photo of this size and format (make bench's measurements)."""
    a, b = ENGINE_MS[fmt]
    return (a + b * megapixels) / 1000


def stage_cpu_seconds(settings: ThumbnailSettings, megapixels: float, fmt: str) -> float:
    """The stage's work on one image, on one whole core: the engine, the placeholder, the saliency point, and the
    encodes of `settings`' formats and crops beyond ENGINE_MS's one JPEG per size."""
    return (engine_seconds(megapixels, fmt) + (PLACEHOLDER_MS + SALIENCY_MS) / 1000
            + encode_seconds(settings, megapixels))


def encode_seconds(settings: ThumbnailSettings, megapixels: float) -> float:
    """What the configured formats and crops add to ENGINE_MS's one JPEG encode per size, for a 3:2 photo of
    `megapixels`."""
    thumbnail_mp = sum(min(box * box * 2 / 3 / 1e6, megapixels) for box in settings.sizes)
    crop_mp = sum(min(width * height / 1e6, megapixels) for width, height in settings.crops)
    per_mp = sum(ENCODE_MS_PER_MP[fmt] for fmt in settings.formats)
    return ((per_mp - ENCODE_MS_PER_MP["jpeg"]) * thumbnail_mp + per_mp * crop_mp) / 1000


def renditions_at_most(settings: ThumbnailSettings) -> int:
    """The renditions one image may store: each size and each crop in each format (fewer when a format is not
    smaller)."""
    return (len(settings.thumbnail_sizes) + len(settings.crop_sizes)) * len(settings.formats)


def seconds(configured: Configured, megapixels: float, fmt: str, speed: float = 1.0) -> float:
    """One image through the stage: the engine at its memory's share of a vCPU (`speed`: a machine's engine time over
    make bench's, 1 for Lambda), then GET the photo, PUT each size, read and write the record."""
    cpu = stage_cpu_seconds(configured.settings, megapixels, fmt) * speed / min(1.0, configured.sizing.memory / MB_PER_VCPU)
    fetch = REQUEST_MS["s3_get"] / 1000 + megapixels * BYTES_PER_MP[fmt] / (S3_GET_MB_PER_S * 1e6)
    puts = renditions_at_most(configured.settings)
    calls = (puts * REQUEST_MS["s3_put"] + 2 * REQUEST_MS["dynamodb"] + DECODE_CHILD_MS) / 1000
    return cpu + fetch + calls


def _problems(configured: Configured, stack: Any) -> list[str]:
    """The largest decode maxPixels allows must fit the function's memory, and a batch of the slowest images it allows
    must end within the timeout."""
    s, st = configured.settings, configured.sizing
    found = memory_problems(configured, s.peak_mb())
    if s.output_formats and s.output_format != spec_of(ThumbnailSettings, "output_format").default \
            and s.output_format != s.formats[-1]:
        # Both set, and they disagree on the fallback: which one was meant is not for the program to guess.
        found.append(f"outputFormat = {s.output_format} and outputFormats = {list(s.output_formats)} disagree (accepted: "
                     f"outputFormat unset, or the last of outputFormats, the fallback)")
    if found:
        return found
    megapixels = s.max_pixels / 1e6
    fmt, cpu = max(((f, stage_cpu_seconds(s, megapixels, f)) for f in s.allowed_formats), key=lambda found: found[1])
    batch = st.batch_size * seconds(configured, megapixels, fmt)
    if cpu > image_cpu_seconds(st) or batch > st.timeout:
        enough = next((t for t in range(st.timeout, 901)
                       if cpu <= image_cpu_seconds(replace(st, timeout=t)) and batch <= t), None)
        accepted = (f"at least {enough} s at batchSize {st.batch_size} and memory {st.memory:,}, or a smaller batchSize "
                    "or maxPixels" if enough else "a smaller batchSize or maxPixels: no timeout up to 900 s is enough")
        found.append(f"thumbnails.timeout = {st.timeout} is too short for a batch of the largest images maxPixels allows "
                     f"(accepted: {accepted}): a {megapixels:g} MP {fmt.upper()} takes about {cpu:.1f} s of CPU "
                     f"(model: make bench's one-core time), {batch / st.batch_size:.1f} s at "
                     f"{min(1.0, st.memory / MB_PER_VCPU):.2f} vCPU")
    return found


def _shown(result: Mapping[str, Any], emulated: bool) -> list[str]:
    """Its result in `python -m ops show`: status, the settings they were made with, each size and where it is (with
    its format and bytes when there are several formats)."""
    lines = [f"  thumbnails: {result.get('status')}" + (f" ({result['reason']})" if result.get("reason") else "")
             + (f", settings {result['settings']}" if result.get("settings") else "")]
    stored = records.renditions(result.get("outputs", []))
    several = len({o["format"] for o in stored}) > 1
    lines += [f"    {int(o['width'])}x{int(o['height'])}"
              + (f"  {o['format']} {int(o.get('bytes') or 0):,} B" if several else "") + f"  {o.get('url') or o['key']}"
              + (f"  (boxes {', '.join(str(int(box)) for box in o['boxes'])})" if len(o["boxes"]) > 1 else "")
              + (f"  (crop {o['crop']})" if o.get("crop") else "")
              for o in stored]
    point = focal.Point.of_record(result.get(FOCAL_POINT))
    if point and any(o.get("crop") for o in result.get("outputs", [])):
        lines.append(f"    crops cut around ({point.x:.3f}, {point.y:.3f}), from {point.source}")
    if result.get("placeholder"):
        lines.append(f"    placeholder (ThumbHash, base64)  {result['placeholder']}")
    return lines


STAGE = Stage(
    name=NAME, component="ThumbnailStage", resource="thumbnail-stage", description="The thumbnail function.", order=20,
    settings=ThumbnailSettings,
    # 1,536 MB: a 50 MP WebP (the costliest decode maxPixels allows) needs ~880 MB with the function's own; the CPU
    # share it buys (0.87 vCPU) makes the CPU-bound work faster by as much as the memory costs more.
    sizing=StageSettings(memory=1536, timeout=60, batch_size=5, batching_window=1, max_concurrency=20),
    uses=("records", "uploads", "status_tags", "thumbnail_writes", "cdn"),
    reported=(("thumbnails made", Metric.PROCESSED), ("thumbnails failed", Metric.FAILED),
              ("dropped claim checks", Metric.INVALID_CLAIM_CHECKS)),
    complete=lambda c, others: replace(c.settings, image_cpu_seconds=image_cpu_seconds(c.sizing)),
    problems=_problems,
    outputs=lambda s: {StackOutput.THUMBNAIL_SETTINGS: s.name},
    calls=("s3.GetObject", "s3.PutObject"),
    shown=_shown,
    # The demo shows a square crop beside the sizes, and each in AVIF and WebP before the JPEG (README, "What a page
    # gets").
    demo={"cropSizes": '["256x256"]', "outputFormats": '["avif", "webp", "jpeg"]'},
    # A GET of the photo, a PUT of each size and crop and a LIST (of what to clean up), priced as S3 prices them.
    capacity=Capacity(seconds=seconds, measured=True, upload_reads=1,
                      thumbnail_writes=lambda c: renditions_at_most(c.settings),
                      priced=lambda c: {"s3_get": 1.0, "s3_put": renditions_at_most(c.settings) + 1.0},
                      memory_needed=lambda c: math.ceil(max(c.settings.peak_mb().values()) / MEMORY_HEADROOM)),
)


def _prepare() -> list[str]:
    """As Lambda starts the function (its init phase, billed like the rest but before any image waits): the
    Pillow plugins of this stack's formats and nothing else (imaging.prepare); the decode child forked for the
    first image inherits them. Imported where no stack configures it (tests, tools), it prepares nothing: the
    first image then imports its own decoder."""
    try:
        settings = environment.load().settings(ThumbnailSettings)
    except ConfigurationError:
        return []
    return imaging.prepare(settings.allowed_formats, *settings.formats)


PREPARED = _prepare()


@logger.inject_lambda_context(clear_state=True)
def handler(event: dict[str, Any], context: Any) -> PartialItemFailureResponse:
    _invocation.update(context=context, margin=invocation_margin(context))
    return run_batch(event, context, record_handler)


# The invocation's context, for the time it has left (Powertools hands record handlers only the record).
_invocation: dict[str, Any] = {}
# Memory the decode of one image may add, beyond what the function holds already, is what is left of the
# function's memory after its own footprint and this margin for the allocator.
MEMORY_MARGIN_MB = 48
# Kept back from the invocation's deadline for storing and recording the results: 15% of the function's
# timeout, at most 3 s.
WALL_MARGIN_SHARE, WALL_MARGIN_MAX_S = 0.15, 3.0


def _budget(env: environment.Environment) -> isolation.Budget:
    return budget(env, env.settings(ThumbnailSettings).image_cpu_seconds, _invocation)


def budget(env: environment.Environment, cpu_seconds: int, invocation: dict[str, Any]) -> isolation.Budget:
    """One image's limits: its CPU seconds, the memory left to it, and the wall time the invocation (its context and
    the margin kept for the results) can spare."""
    context = invocation.get("context")
    remaining = context.get_remaining_time_in_millis() / 1000 if context else 900.0
    wall = remaining - invocation.get("margin", WALL_MARGIN_MAX_S)
    if wall <= 0.5:
        # Starting now would let Lambda's timeout end the batch: hand it back for another invocation.
        raise isolation.OutOfTime(f"only {remaining:.1f} s left in this invocation")
    memory = int(env.function_memory_mb - isolation.resident_mb() - MEMORY_MARGIN_MB)
    return isolation.Budget(cpu_seconds=cpu_seconds, memory_mb=max(memory, 64), wall_seconds=wall)


def decode_original(claim: contracts.ClaimCheck, env: environment.Environment, settings: Any,
                    invocation: dict[str, Any], work: Any) -> Any:
    """What `work(data, limits, format)` returns for the claim's version, run in the warm decode child within this
    stage's decode limits (a gate's `settings` carry them: max_pixels, max_frames, max_jpeg_scans, max_jpeg_segments,
    image_cpu_seconds) and the time its invocation (`invocation`: its context and margin) can spare."""
    with classified():
        data = aws.client("s3").get_object(**claim.object_version())["Body"].read()
    allowed = budget(env, settings.image_cpu_seconds, invocation)
    found, _ = isolation.run(work, data, decode_limits(settings, allowed.memory_mb), claim.format, budget=allowed)
    return found


def decode_limits(settings: Any, memory_mb: int) -> imaging.Limits:
    """The decode limits of a stage's `settings` (max_pixels, max_frames, max_jpeg_scans, max_jpeg_segments) within
    `memory_mb`."""
    return imaging.Limits(settings.max_pixels, settings.max_frames, settings.max_jpeg_scans, settings.max_jpeg_segments,
                          max_decode_mb=memory_mb, bytes_per_pixel=tuple(DECODE_BYTES_PER_PIXEL.items()))


def invocation_margin(context: Any) -> float:
    """What an invocation keeps back from its deadline for storing and recording its results."""
    return min(WALL_MARGIN_MAX_S, WALL_MARGIN_SHARE * context.get_remaining_time_in_millis() / 1000)


def _thumbnails_of(claim: contracts.ClaimCheck, env: environment.Environment,
                   current: records.ImageRecord | None) -> imaging.Result:
    budget = _budget(env)
    data = _fetch(claim)
    s = env.settings(ThumbnailSettings)
    limits = decode_limits(s, budget.memory_mb)
    (*preferred, (fallback, quality)) = s.encodings
    result, usage = isolation.run(
        imaging.make_thumbnails, data, s.sizes, fallback, quality, limits, s.store_gps, claim.format, s.crops,
        _labels_point(current), tuple(preferred), budget=budget)
    logger.debug("decoded", extra={"cpu_seconds": usage.cpu_seconds, "peak_rss_mb": usage.peak_rss_mb})
    return result


def _dispatch(claim: contracts.ClaimCheck) -> None:
    if claim.event == ClaimEvent.REMOVED:
        _remove(claim)
    elif claim.event == ClaimEvent.REPROCESS:
        _reprocess(claim)
    else:
        _create(claim)


def _create(claim: contracts.ClaimCheck) -> None:
    env = environment.load()
    current, waiting = pending(env.table_name, claim, NAME)
    if not waiting:
        if not _owns_keys(current, claim):
            # An earlier delivery may have stored thumbnails and died before recording them.
            _discard(env, _stored(env.thumbnails_bucket, claim.thumbnail_prefix))
        elif current is not None and current.status in (Status.DONE, Status.FAILED):
            # This work is recorded; an earlier delivery may have died while it cleared what the record replaced.
            _clear(claim, keep=_recorded_keys(current))
        return
    started = perf_counter()
    try:
        with classified():  # anything else is transient: retried through batchItemFailures
            result = _thumbnails_of(claim, env, current)
    except PermanentFailure as failure:
        originals.tag_status(claim, Status.FAILED)  # first: a retry after the record tags again
        written = records.record_stage(env.table_name, claim.image_id, claim.sequencer, NAME,
                                       {"status": StageStatus.FAILED, "reason": failure.reason}, known=current)
        logger.info("thumbnails failed", extra={"reason": failure.reason})
        count(Metric.FAILED)
        if written.outcome == records.Outcome.WRITTEN:
            # The image is now failed: an earlier version's thumbnails must not outlive it.
            _clear(claim, keep=set())
        return
    outputs = [output for thumbnail in result.thumbnails for output in _store(claim, thumbnail, env, result.focal_point)]
    written = records.record_stage(env.table_name, claim.image_id, claim.sequencer, NAME, _done(outputs, result, env),
                                   metadata=result.metadata, known=current, shared_if_absent=_point_if_absent(result))
    if written.outcome == records.Outcome.STALE:
        if not _owns_keys(written.record, claim):
            _delete(env.thumbnails_bucket, [o["key"] for o in outputs])
        count(Metric.SKIPPED_CLAIM_CHECKS)
        return
    if current is not None and not current.made_by_its_event:
        _clear(claim, keep={o["key"] for o in outputs})  # an earlier version's thumbnails go
    duration(Metric.THUMBNAIL_DURATION, (perf_counter() - started) * 1000)
    count(Metric.PROCESSED)
    logger.info("thumbnails stored", extra={"outputs": [o["key"] for o in outputs]})


def _fetch(claim: contracts.ClaimCheck) -> bytes:
    return aws.client("s3").get_object(**claim.object_version())["Body"].read()


def _reprocess(claim: contracts.ClaimCheck) -> None:
    """Make a done image's thumbnails with the settings deployed now, record them, then remove the ones they replace.
    Nothing happens when the image changed since the request was made or was already made with these settings."""
    env = environment.load()
    current = records.get(env.table_name, claim.image_id)
    if current is None or current.status != Status.DONE or current.sequencer != claim.sequencer:
        logger.info("reprocess request is stale: the image changed or is not done")
        count(Metric.SKIPPED_CLAIM_CHECKS)
        return
    if not current.names(claim.version_id, claim.etag, claim.format, claim.size):
        refuse(claim, f"the done record names version {current.version_id} ({current.format}, ETag {current.etag})")
        return
    made_with = (current.result(NAME) or {}).get("settings")
    if made_with == env.settings(ThumbnailSettings).name:
        count(Metric.ALREADY_CURRENT)
        _clear(claim, keep=_recorded_keys(current))  # a reprocess cut short after it was recorded: finish it
        return
    try:
        with classified():
            result = _thumbnails_of(claim, env, current)
    except PermanentFailure as failure:
        # The thumbnails it has stay; the record says why new ones could not be made (python -m ops show).
        records.record_reprocess_failure(env.table_name, claim.image_id, claim.sequencer, {
            "status": StageStatus.FAILED, "reason": failure.reason, "settings": env.settings(ThumbnailSettings).name})
        count(Metric.FAILED)
        return
    outputs = [output for thumbnail in result.thumbnails for output in _store(claim, thumbnail, env, result.focal_point)]
    written = records.record_reprocessed(env.table_name, claim.image_id, claim.sequencer, NAME,
                                         _done(outputs, result, env), made_with, _point_if_absent(result))
    if written.outcome != records.Outcome.WRITTEN:
        theirs = written.record.result(NAME) if written.record else None
        if not (written.record and written.record.sequencer == claim.sequencer
                and (theirs or {}).get("settings") == env.settings(ThumbnailSettings).name):
            _delete(env.thumbnails_bucket, [o["key"] for o in outputs])  # not the record's keys: take them back
        count(Metric.SKIPPED_CLAIM_CHECKS)
        return
    _clear(claim, keep={o["key"] for o in outputs})  # the thumbnails of the old settings go
    count(Metric.REPROCESSED)


def _labels_point(current: records.ImageRecord | None) -> focal.Point | None:
    """The record's focal point when the label stage gave it already (the crops are then cut around it); None: the
    engine finds the saliency point. A label point that comes later is the record's, and each crop keeps the point
    it was cut around (README, "What a page gets")."""
    point = focal.Point.of_record(current.item.get(FOCAL_POINT)) if current is not None else None
    return point if point is not None and point.source == focal.LABELS else None


def _point_if_absent(result: imaging.Result) -> dict[str, Any]:
    """The record's focal point from this result, to be set only where the label stage gave none (its boxes are the
    better guess than saliency)."""
    return {FOCAL_POINT: result.focal_point.as_record()} if result.focal_point else {}


def _done(outputs: list[dict[str, Any]], result: imaging.Result, env: environment.Environment) -> dict[str, Any]:
    """The stage's result for stored thumbnails: their outputs, the settings they were made with, the placeholder,
    and the focal point its crops were cut around."""
    done: dict[str, Any] = {"status": StageStatus.DONE, "outputs": outputs, "settings": env.settings(ThumbnailSettings).name}
    if result.focal_point:
        done[FOCAL_POINT] = result.focal_point.as_record()
    if result.unhashed:
        logger.warning("thumbnails stored without a placeholder", extra={"reason": result.unhashed})
    return done | ({"placeholder": result.placeholder} if result.placeholder else {})


def _store(claim: contracts.ClaimCheck, thumbnail: imaging.Thumbnail, env: environment.Environment,
           point: focal.Point | None) -> list[dict[str, Any]]:
    """Store one rendition, once, and return an output for each box it serves (the boxes at or above the original's
    size share the one key: a page finds every size in the record, and a delete or purge meets the key once)."""
    key = f"{claim.thumbnail_prefix}{env.settings(ThumbnailSettings).name}/{thumbnail.crop or thumbnail.box}.{thumbnail.extension}"
    aws.client("s3").put_object(
        Bucket=env.thumbnails_bucket, Key=key, Body=thumbnail.data, ContentType=thumbnail.content_type,
        CacheControl=CACHE_CONTROL, Metadata={"image-id": claim.image_id},
    )
    output = {"key": key, "width": thumbnail.width, "height": thumbnail.height,
              "bytes": len(thumbnail.data), "content_type": thumbnail.content_type, "format": thumbnail.format}
    if env.thumbnails_base_url:
        output["url"] = f"{env.thumbnails_base_url}/{key}"
    if thumbnail.crop:
        # A crop serves no box: it is named ("256x256") and says which point it was cut around.
        return [{**output, "crop": thumbnail.crop, **({FOCAL_POINT: point.as_record()} if point else {})}]
    return [{**output, "box": box} for box in thumbnail.boxes]


def _owns_keys(current: records.ImageRecord | None, claim: contracts.ClaimCheck) -> bool:
    """Whether the record's current version is this claim check's (its thumbnails live under the same keys)."""
    return (current is not None and current.status != Status.DELETED
            and contracts.version_tag(current.version_id, current.sequencer)
            == contracts.version_tag(claim.version_id, claim.sequencer))


def _recorded_keys(record: records.ImageRecord) -> set[str]:
    return {o["key"] for o in (record.result(NAME) or {}).get("outputs", [])}


def _discard(env: environment.Environment, keys: list[str]) -> None:
    """Delete thumbnails that a record may have handed out, and make the CDN forget them. The purge is asked first:
    once the request is on its queue it is durable (SQS keeps it, the purge function retries it until CloudFront
    accepts it, and it alarms when it cannot), whereas a retry of this message after the delete would find nothing
    left to ask about. The purge function waits until the objects are gone before it invalidates them, so no
    request in between can cache them again."""
    if not keys:
        return
    if env.purge_queue_url:
        sqs = aws.client("sqs")
        for start in range(0, len(keys), contracts.MAX_PURGE_KEYS):
            request = contracts.PurgeRequest(tuple(keys[start:start + contracts.MAX_PURGE_KEYS]))
            sqs.send_message(QueueUrl=env.purge_queue_url, MessageBody=request.to_json())
    _delete(env.thumbnails_bucket, keys)


def _delete(bucket: str, keys: list[str]) -> None:
    s3 = aws.client("s3")
    keys = list(dict.fromkeys(keys))  # sizes that share a rendition name its key more than once
    for start in range(0, len(keys), 1000):
        s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": k} for k in keys[start:start + 1000]], "Quiet": True})


def _stored(bucket: str, prefix: str) -> list[str]:
    s3 = aws.client("s3")
    return [obj["Key"] for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
            for obj in page.get("Contents", [])]


def _remove(claim: contracts.ClaimCheck) -> None:
    """The key no longer holds an accepted image (deleted, or overwritten by a rejected upload): its thumbnails go."""
    env = environment.load()
    current = records.get(env.table_name, claim.image_id)
    if current is None or current.sequencer != claim.sequencer:
        logger.info("removal is stale; the key was uploaded again")
        count(Metric.SKIPPED_CLAIM_CHECKS)
        return
    if current.status not in REMOVED:
        # The intake sends a removal only with the event that made the record rejected or deleted.
        refuse(claim, f"the record shows the image {current.status}, not removed")
        return
    removed = _clear(claim, keep=set())
    logger.info("thumbnails removed", extra={"count": removed})
    count(Metric.PROCESSED)


def _clear(claim: contracts.ClaimCheck, keep: set[str]) -> int:
    """Delete every thumbnail of the image but `keep`, and have the CDN forget them."""
    env = environment.load()
    doomed = [key for key in _stored(env.thumbnails_bucket, contracts.thumbnail_prefix(claim.image_id)) if key not in keep]
    _discard(env, doomed)
    return len(doomed)


# Defined last: it wraps the work above.
record_handler = for_claim_check(_dispatch)
