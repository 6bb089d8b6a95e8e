"""Hostile images: every file ends `done` or `failed` with a reason, within the thumbnail stage's CPU and memory.

The named cases run in `make test`; the whole suite (every truncation of a few small files, seeded mutations,
the named cases) is marked `hostile` and run by .ci/run after it, printing its figures for the README.
"""
from __future__ import annotations

import io
import json
import os
import struct
import time
from collections import Counter

import pytest
from PIL import Image

from handlers import imaging, intake, isolation, jpeg_markers, preflight, thumbnails
from handlers.failures import PermanentFailure
from handlers.names import Function
from handlers.thumbnails import DECODE_BYTES_PER_PIXEL, FUNCTION_FOOTPRINT_MB, MEMORY_HEADROOM
from infra.settings import Settings
from localcloud import samples
from tests import hostile
from tests.conftest import invoke, s3_message

STAGE = Settings().configured(Function.THUMBNAILS)  # the thumbnail stage as the default stack configures it
SETTINGS = STAGE.settings
SIZES = SETTINGS.thumbnail_sizes
LIMITS = imaging.Limits(SETTINGS.max_pixels, SETTINGS.max_frames, SETTINGS.max_jpeg_scans, SETTINGS.max_jpeg_segments)
# The stage's own limits per image: its CPU seconds, and the memory its function leaves a decode.
BUDGET = isolation.Budget(cpu_seconds=SETTINGS.image_cpu_seconds,
                          memory_mb=int(STAGE.sizing.memory * MEMORY_HEADROOM) - FUNCTION_FOOTPRINT_MB,
                          wall_seconds=120)


def engine(data: bytes, sniffed: str, output: str = "jpeg") -> tuple[str, str, isolation.Usage | None]:
    """(outcome, reason, usage) of one image through the engine, isolated as the stage runs it."""
    try:
        _, usage = isolation.run(imaging.make_thumbnails, data, SIZES, output, 82, LIMITS, False, sniffed, budget=BUDGET)
        return "done", "", usage
    except PermanentFailure as failure:
        return "failed", failure.reason, None


def metadata_in(data: bytes) -> set[str]:
    """The metadata a JPEG, PNG or WebP file carries: comment, EXIF, XMP, ICC (by marker, chunk or box)."""
    found: set[str] = set()
    if data.startswith(b"\xff\xd8"):
        for segment in jpeg_markers.segments(data):
            payload = segment.payload(data)
            if segment.marker == 0xFE:
                found.add("comment")
            elif segment.marker == 0xE1:
                found.add("exif" if payload.startswith(b"Exif") else "xmp")
            elif segment.marker == 0xE2:
                found.add("icc")
    elif data.startswith(b"\x89PNG"):
        pos = 8
        while pos + 8 <= len(data):
            length, kind = struct.unpack(">I4s", data[pos:pos + 8])
            found |= {{b"tEXt": "comment", b"zTXt": "comment", b"iTXt": "comment", b"eXIf": "exif",
                       b"iCCP": "icc"}.get(kind, "")} - {""}
            pos += 12 + length
    elif data[8:12] == b"WEBP":
        pos = 12
        while pos + 8 <= len(data):
            kind, length = data[pos:pos + 4], int.from_bytes(data[pos + 4:pos + 8], "little")
            found |= {{b"EXIF": "exif", b"XMP ": "xmp", b"ICCP": "icc"}.get(kind, "")} - {""}
            pos += 8 + length + (length & 1)
    return found


# 1. Truncated animated GIFs made Pillow's frame count raise IndexError, outside every classified error.
def test_a_truncated_gif_is_recorded_not_raised():
    assert engine(hostile.named_cases()["truncated-gif-bang"][0], "gif")[:2] == ("failed", "the image data is truncated")


# 2. When the JPEG parser gave up, Pillow tried plugins without signatures (here: PCD, by a marker at byte 2048).
def test_only_the_sniffed_formats_decoder_runs():
    pcd_lookalike = b"\xff\xd8\xff\x00" + b"\x00" * 2044 + b"PCD_IPI" + b"\x00" * 2000
    with pytest.raises(Exception):  # noqa: B017 - any exception: Pillow alone, given no format, tries others
        Image.open(io.BytesIO(pcd_lookalike), formats=["JPEG"])
    outcome, reason, _ = engine(pcd_lookalike, "jpeg")
    assert outcome == "failed" and reason
    jpeg = samples.jpeg(64, 48)
    result = imaging.make_thumbnails(jpeg, (32,), "png", 80, LIMITS, sniffed="jpeg")
    assert result.metadata["format"] == "jpeg"  # the record's format is the decoder's


# 3. The source's comment (and ICC, EXIF, XMP) went into every thumbnail; a long comment broke encoding.
@pytest.mark.parametrize("case", ["jpeg-comment", "gif-long-comment", "png-long-comment", "jpeg-icc"])
@pytest.mark.parametrize("output", ["jpeg", "png", "webp"])
def test_thumbnails_carry_no_metadata(case, output):
    data, fmt = hostile.named_cases()[case]
    result = imaging.make_thumbnails(data, (64, 32), output, 80, LIMITS, sniffed=fmt)
    for thumbnail in result.thumbnails:
        assert metadata_in(thumbnail.data) == set(), (case, output)
        assert b"jane@example.com" not in thumbnail.data


# ... "no ICC unless converted to sRGB on purpose": a thumbnail without a profile is shown as sRGB.
P3_PIXEL, P3_IN_SRGB = (200, 100, 50), (216, 93, 24)  # the second: littlecms' relative-colorimetric answer


def _centre(thumbnail: imaging.Thumbnail) -> tuple[int, ...]:
    image = Image.open(io.BytesIO(thumbnail.data))
    return image.convert("RGB").getpixel((image.width // 2, image.height // 2))


@pytest.mark.parametrize("source", ["JPEG", "PNG", "WEBP"])
@pytest.mark.parametrize("output", ["jpeg", "png", "webp"])
def test_a_display_p3_photo_is_converted_to_srgb_and_its_profile_dropped(source, output):
    profile = hostile.matrix_profile("Display P3")
    data = samples.encode(Image.new("RGB", (640, 480), P3_PIXEL), source, icc_profile=profile, quality=95)
    result = imaging.make_thumbnails(data, (256, 64), output, 95, LIMITS, sniffed=source.lower())
    assert result.metadata["color_profile"] == "Display P3"
    for thumbnail in result.thumbnails:
        assert metadata_in(thumbnail.data) == set()
        assert max(abs(a - b) for a, b in zip(_centre(thumbnail), P3_IN_SRGB, strict=True)) <= 3, (source, output)


def test_srgb_unreadable_and_mismatched_profiles_leave_the_pixels_alone():
    srgb = hostile.with_icc("PNG")
    assert "color_profile" not in imaging.make_thumbnails(srgb, (64,), "png", 90, LIMITS, sniffed="png").metadata
    flat = Image.new("RGB", (120, 80), P3_PIXEL)
    for profile in (b"not a profile" * 10, hostile.matrix_profile("Display P3")[:200]):
        result = imaging.make_thumbnails(samples.encode(flat, "PNG", icc_profile=profile), (64,), "png", 90, LIMITS,
                                         sniffed="png")
        assert _centre(result.thumbnails[0]) == P3_PIXEL and "color_profile" not in result.metadata
    grey = samples.encode(Image.new("L", (120, 80), 90), "PNG", icc_profile=hostile.matrix_profile("Display P3"))
    [thumb] = imaging.make_thumbnails(grey, (64,), "png", 90, LIMITS, sniffed="png").thumbnails
    assert _centre(thumb) == (90, 90, 90)  # an RGB profile cannot describe grey pixels: ignored


def test_a_cmyk_jpeg_with_a_profile_that_does_not_describe_it_gets_the_plain_conversion():
    # (A CMYK profile, a lookup table, is more than the tests build by hand: an RGB profile on CMYK pixels is the
    # mismatch, which must give the plain conversion rather than fail.)
    cmyk = Image.new("CMYK", (200, 100), (0, 128, 200, 0))
    data = samples.encode(cmyk, "JPEG", icc_profile=hostile.matrix_profile("Display P3"), quality=95)
    result = imaging.make_thumbnails(data, (64,), "jpeg", 95, LIMITS, sniffed="jpeg")
    plain = imaging.make_thumbnails(samples.encode(cmyk, "JPEG", quality=95), (64,), "jpeg", 95, LIMITS, sniffed="jpeg")
    assert _centre(result.thumbnails[0]) == _centre(plain.thumbnails[0])


def test_the_metadata_check_sees_metadata():
    assert metadata_in(hostile.named_cases()["jpeg-comment"][0]) == {"comment"}
    assert "icc" in metadata_in(hostile.with_icc("PNG")) and "icc" in metadata_in(hostile.with_icc("WEBP"))


# 4. A progressive JPEG's scans are passes over the whole image; libjpeg has no limit.
def test_a_scan_bomb_is_refused_before_decoding():
    data = hostile.named_cases()["scan-bomb"][0]
    started = time.process_time()
    outcome, reason, _ = engine(data, "jpeg")
    assert (outcome, reason) == ("failed", "the JPEG has 3,001 scans, over the limit of 100 (each progressive scan is "
                                           "another pass over the whole image)")
    assert time.process_time() - started < 0.5
    real = samples.encode(samples.photo(640, 480), "JPEG", progressive=True)
    assert preflight.jpeg(real, 1000, 100).scans < 20  # a real progressive JPEG has a handful


# 5. Memory: a flood of APP segments, an MPO decoded without draft, and the biggest decodes maxPixels allows.
def test_an_app_marker_flood_is_refused():
    outcome, reason, _ = engine(hostile.named_cases()["app-flood"][0], "jpeg")
    assert (outcome, reason) == ("failed", "the JPEG has more than 1,000 marker segments before its image data "
                                           "(the limit is 1,000)")


def test_an_mpo_is_decoded_at_draft_scale_like_a_jpeg():
    data = hostile.named_cases()["mpo"][0]
    image = Image.open(io.BytesIO(data), formats=["JPEG"])
    assert image.format == "MPO"
    base = imaging._decode(image, 512)
    assert base.size[0] <= 2400 // 2  # decoded at 1/2 or smaller, not at full size


def test_a_50_mp_webp_fits_the_memory_the_settings_allow_for_it():
    outcome, _, usage = engine(hostile.named_cases()["webp-50mp"][0], "webp")
    assert outcome == "done"
    model = SETTINGS.max_pixels * DECODE_BYTES_PER_PIXEL["webp"] / 2**20
    assert usage.added_mb <= model


# 6. TIFF: Pillow's loader orients it already (it was turned twice); its page count walked every page, quadratically.
@pytest.mark.parametrize("orientation", range(1, 9))
def test_tiff_orientation_is_applied_once(orientation):
    data = hostile.named_cases()[f"tiff-orientation-{orientation}"][0]
    result = imaging.make_thumbnails(data, (128,), "png", 90, LIMITS, sniffed="tiff")
    out = Image.open(io.BytesIO(result.thumbnails[0].data)).convert("RGB")
    assert out.size == (128, 85), orientation
    red = out.getpixel((4, 4))
    assert red[0] > 180 and red[1] < 80 and red[2] < 80, f"orientation {orientation}: top-left is {red}"


def test_tiff_pages_are_counted_without_walking_them_all():
    started = time.process_time()
    assert engine(hostile.named_cases()["tiff-page-bomb"][0], "tiff")[:2] == (
        "failed", "the image has more than 100 pages, over the limit of 100")
    assert engine(hostile.named_cases()["tiff-page-loop"][0], "tiff")[:2] == ("failed", "the TIFF's pages form a loop")
    assert time.process_time() - started < 1


# A timeout or kill never takes innocent images with it.
@pytest.fixture
def poisoned_batch(cloud, monkeypatch):
    """Three uploads accepted by the intake: a photo, a CPU bomb under the scan limit the test sets, a photo."""
    monkeypatch.setenv("MAX_JPEG_SCANS", "100000")
    keys = {"uploads/before.jpg": samples.jpeg(400, 300), "uploads/bomb.jpg": hostile.progressive_scan_bomb(2048, 2048, 40_000),
            "uploads/after.png": samples.png(300, 200)}
    for key, data in keys.items():
        invoke(intake, [s3_message(cloud.put(key, data))])
    return [json.dumps(p["claim"]) for p in cloud.published()]


def test_a_cpu_bomb_is_stopped_and_recorded_alone(cloud, poisoned_batch, monkeypatch):
    monkeypatch.setenv("IMAGE_CPU_SECONDS", "1")
    assert invoke(thumbnails, poisoned_batch)["batchItemFailures"] == []
    assert cloud.record("uploads/bomb.jpg")["thumbnails"]["reason"] == (
        "decoding the image took more than 1 s of CPU, the limit per image")
    assert cloud.record("uploads/before.jpg")["thumbnails"]["status"] == "done"
    assert cloud.record("uploads/after.png")["thumbnails"]["status"] == "done"


# The memory left to a decode is the function's less this process's own; mutmut's processes fork from its own, larger one.
@pytest.mark.skipif("MUTANT_UNDER_TEST" in os.environ, reason="under mutmut the test process is not the function's size")
def test_an_image_over_the_memory_left_is_stopped_and_recorded_alone(cloud, monkeypatch):
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256")
    for key, data in {"uploads/a.png": samples.png(200, 100), "uploads/huge.webp": hostile.webp_bomb(),
                      "uploads/b.png": samples.png(300, 100)}.items():
        invoke(intake, [s3_message(cloud.put(key, data))])
    response = invoke(thumbnails, [json.dumps(p["claim"]) for p in cloud.published()])
    assert response["batchItemFailures"] == []
    reason = cloud.record("uploads/huge.webp")["thumbnails"]["reason"]
    assert reason.startswith("decoding the image needs about 811 MB, more than the ") and reason.endswith(" MB an image may use")
    assert cloud.record("uploads/a.png")["thumbnails"]["status"] == cloud.record("uploads/b.png")["thumbnails"]["status"] == "done"


def test_the_memory_limit_stops_a_decode_the_model_did_not_foresee():
    # Without the model's estimate, the address-space limit itself stops the decode, and it is still a reason.
    tight = isolation.Budget(cpu_seconds=10, memory_mb=200, wall_seconds=60)
    with pytest.raises(PermanentFailure) as failed:
        isolation.run(imaging.make_thumbnails, hostile.named_cases()["webp-50mp"][0], SIZES, "jpeg", 82, LIMITS, False,
                      "webp", budget=tight)
    assert failed.value.reason in ("decoding the image needs more than the 200 MB an image may use",
                                   "the image cannot be decoded: OSError: could not create decoder object")


def test_an_invocation_short_of_time_hands_the_rest_back(cloud, monkeypatch):
    from localcloud.lambda_events import LambdaContext, sqs_event, sqs_record

    invoke(intake, [s3_message(cloud.put("uploads/late.png", samples.png(100, 100)))])
    body = json.dumps(cloud.published()[0]["claim"])
    event = sqs_event([sqs_record(body, "arn:aws:sqs:us-east-1:123456789012:q", message_id="m0")])
    from aws_lambda_powertools.utilities.batch.exceptions import BatchProcessingError

    with pytest.raises(BatchProcessingError, match=r"only 0\.5 s left in this invocation"):  # the whole batch is retried
        thumbnails.handler(event, LambdaContext(function_name="fn", timeout_s=0.5))
    assert cloud.record("uploads/late.png")["status"] == "accepted"  # not started, nothing recorded


@pytest.mark.parametrize("name", sorted(hostile.named_cases()))
def test_every_named_case_ends_with_an_outcome_and_a_reason(name):
    data, fmt = hostile.named_cases()[name]
    outcome, reason, _ = engine(data, fmt)
    assert outcome in ("done", "failed") and (outcome == "done" or reason)


@pytest.mark.hostile
def test_the_hostile_suite(capsys):
    """Every truncation of six small files, 1,000 seeded mutations of each, and the named cases."""
    outcomes: Counter = Counter()
    reasons: Counter = Counter()
    worst_cpu, worst_name, peak_mb, peak_name = 0.0, "", 0.0, ""
    cases = [(n, d, f) for n, (d, f) in hostile.named_cases().items()]
    cases += list(hostile.truncations()) + list(hostile.mutations(1000))
    started = time.monotonic()
    for name, data, fmt in cases:
        began = time.process_time()
        try:
            _, usage = isolation.run(imaging.make_thumbnails, data, SIZES, "jpeg", 82, LIMITS, False, fmt, budget=BUDGET)
            outcomes["done"] += 1
        except PermanentFailure as failure:
            assert failure.reason, name
            outcomes["failed"] += 1
            reasons[failure.reason.split(":")[0][:60]] += 1
            usage = None
        if usage and usage.cpu_seconds > worst_cpu:
            worst_cpu, worst_name = usage.cpu_seconds, name
        if usage and usage.added_mb > peak_mb:
            peak_mb, peak_name = usage.added_mb, name
        assert time.process_time() - began < 1, name  # the parent's own work stays small
    with capsys.disabled():
        print(f"\nhostile suite: {len(cases)} cases in {time.monotonic() - started:.0f} s: {dict(outcomes)}; "
              f"worst CPU {worst_cpu:.2f} s ({worst_name}) of {BUDGET.cpu_seconds} s; most memory one decode added "
              f"{peak_mb:.0f} MB ({peak_name}) of the {BUDGET.memory_mb} MB it may (thumbnails.memory "
              f"{STAGE.sizing.memory} MB)")
        for reason, count in reasons.most_common(12):
            print(f"  {count:5d}  {reason}")
    assert worst_cpu <= BUDGET.cpu_seconds
    assert peak_mb <= BUDGET.memory_mb


# 7. No metadata leaks from a camera's file: GPS, maker notes and an embedded thumbnail in its EXIF, XMP, IPTC, a
# Display P3 profile. The ICC decision: the pixels are converted to sRGB and no profile is kept (section 3's tests).
CAMERA = samples.camera_jpeg(samples.photo(1600, 1200), everything=True, icc_profile=hostile.matrix_profile("Display P3"))
RECORDED = {"format", "mode", "orientation", "width", "height", "camera_make", "camera_model", "taken_at", "color_profile"}


def leaks(data: bytes) -> set[str]:
    """The kinds of the camera file's metadata found in `data`: by marker, chunk or box, by any JPEG APP segment, by
    the text each kind carries (samples.CAMERA_MARKS) and by each format's own signature."""
    found = metadata_in(data) | {kind for kind, mark in samples.CAMERA_MARKS.items() if mark in data}
    if data.startswith(b"\xff\xd8"):
        found |= {f"APP{s.marker - 0xE0}" for s in jpeg_markers.segments(data) if 0xE0 <= s.marker <= 0xEF}
    signatures = {"exif": (b"Exif\x00\x00", b"Fujifilm"), "icc": (b"acsp", b"Display P3"), "iptc": (b"8BIM", b"Photoshop"),
                  "xmp": (b"ns.adobe.com", b"xmpmeta")}
    return found | {kind for kind, marks in signatures.items() if any(mark in data for mark in marks)}


def test_the_leak_check_finds_every_kind_in_the_camera_file():
    assert leaks(CAMERA) >= {"exif", "gps", "maker notes", "embedded thumbnail", "xmp", "iptc", "icc", "APP1", "APP13"}


@pytest.mark.parametrize("output", ["jpeg", "png", "webp"])
def test_no_thumbnail_of_a_camera_file_carries_any_of_its_metadata(output):
    result = imaging.make_thumbnails(CAMERA, SIZES, output, 82, LIMITS, sniffed="jpeg")
    assert sorted(box for t in result.thumbnails for box in t.boxes) == sorted(SIZES)
    for thumbnail in result.thumbnails:
        assert leaks(thumbnail.data) == set(), (output, thumbnail.box)
        opened = Image.open(io.BytesIO(thumbnail.data))
        assert not opened.getexif() and "icc_profile" not in opened.info, (output, thumbnail.box)
    # The record: what it names, sRGB said as converted from the camera's profile, GPS only with storeGps.
    assert set(result.metadata) <= RECORDED and result.metadata["color_profile"] == "Display P3"
    assert not [v for v in result.metadata.values() if any(m.decode() in str(v) for m in samples.CAMERA_MARKS.values())]
    with_gps = imaging.make_thumbnails(CAMERA, SIZES, output, 82, LIMITS, store_gps=True, sniffed="jpeg").metadata
    assert with_gps["gps"] == samples.CAMERA_GPS and set(with_gps) - set(result.metadata) == {"gps"}


# 8. Animations: the thumbnails are of the first frame, and the record says it was an animation of so many frames
# (every frame at every size measured 23x the CPU of the first: README, "Hostile images").
@pytest.mark.parametrize("fmt", ["gif", "webp", "png"])
def test_a_small_animation_is_recorded_as_one_and_its_thumbnails_are_its_first_frame(fmt):
    frames = [Image.new("RGB", (96, 64), colour) for colour in ((255, 0, 0), (0, 0, 255), (0, 255, 0))]
    data = samples.encode(frames[0], fmt.upper(), save_all=True, append_images=frames[1:], duration=100, loop=0,
                          **({"lossless": True} if fmt == "webp" else {}))
    result = imaging.make_thumbnails(data, SIZES, "png", 82, LIMITS, sniffed=fmt)
    assert {k: result.metadata[k] for k in ("animated", "frames", "width", "height")} == {
        "animated": True, "frames": 3, "width": 96, "height": 64}
    [thumbnail] = result.thumbnails  # every box is above 96 px: one rendition
    out = Image.open(io.BytesIO(thumbnail.data))
    assert getattr(out, "n_frames", 1) == 1 and out.convert("RGB").getpixel((48, 32)) == (255, 0, 0)
    still = imaging.make_thumbnails(samples.png(96, 64), SIZES, "png", 82, LIMITS, sniffed="png").metadata
    assert "animated" not in still and "frames" not in still


def test_an_animation_over_max_frames_is_refused_with_the_reason():
    started = time.process_time()
    outcome, reason, _ = engine(hostile.gif_on_canvas(64, 64, 5000), "gif")
    assert (outcome, reason) == ("failed", f"the image has 5000 frames, over the limit of {LIMITS.max_frames}")
    assert time.process_time() - started < 1  # counted from the frame headers; no frame is composed


def test_a_frame_bomb_within_max_frames_costs_one_frame():
    # 100 one-pixel frames on a 25 MP canvas: composing every frame would cost about 0.1 s of CPU each here (10 s,
    # over the stage's budget); only the first is decoded, so the work is one canvas, which maxPixels bounds.
    data = hostile.gif_on_canvas(5000, 5000, LIMITS.max_frames)
    outcome, _, usage = engine(data, "gif")
    assert outcome == "done" and usage is not None
    one_canvas = time.process_time()
    imaging.make_thumbnails(hostile.gif_on_canvas(5000, 5000, 1), SIZES, "jpeg", 82, LIMITS, sniffed="gif")
    one_canvas = time.process_time() - one_canvas
    assert usage.cpu_seconds < 3 * one_canvas + 0.3, (usage.cpu_seconds, one_canvas)
    assert imaging.make_thumbnails(data, SIZES, "jpeg", 82, LIMITS, sniffed="gif").metadata["frames"] == LIMITS.max_frames
