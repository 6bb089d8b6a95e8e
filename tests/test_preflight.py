"""The preflight's bounds at their exact edges, through the engine as the stage runs it (isolated, within a CPU and
memory budget): a JPEG with exactly the limit of scans or marker segments is decoded, one more is refused with the
reason a person reads, and a TIFF whose pages loop is refused for the loop, not stopped for its CPU."""
from __future__ import annotations

import struct
import time

from handlers import imaging, isolation, preflight
from handlers.failures import PermanentFailure
from localcloud import samples
from tests import hostile

SIZES = (64,)
# A looping walk would spin until this budget stops it: then the reason is the CPU, not the loop.
BUDGET = isolation.Budget(cpu_seconds=5, memory_mb=512, wall_seconds=30)


def engine(data: bytes, sniffed: str, *, scans: int = 100, segments: int = 1000, pages: int = 100) -> tuple[str, str]:
    """(outcome, reason) of one image through the thumbnail engine in its decode child."""
    limits = imaging.Limits(max_pixels=50_000_000, max_frames=pages, max_jpeg_scans=scans, max_jpeg_segments=segments)
    try:
        isolation.run(imaging.make_thumbnails, data, SIZES, "jpeg", 82, limits, False, sniffed, budget=BUDGET)
        return "done", ""
    except PermanentFailure as failure:
        return "failed", failure.reason


def progressive() -> tuple[bytes, int]:
    data = hostile.encode(samples.photo(160, 120), "JPEG", progressive=True)
    return data, data.count(preflight.SOS)


def test_a_jpeg_with_exactly_the_limit_of_scans_is_decoded_and_one_more_is_refused():
    data, scans = progressive()
    assert scans > 2 and preflight.jpeg(data, 1000, scans).scans == scans
    assert engine(data, "jpeg", scans=scans) == ("done", "")
    assert engine(data, "jpeg", scans=scans - 1) == (
        "failed", f"the JPEG has {scans} scans, over the limit of {scans - 1} (each progressive scan is another pass "
                  "over the whole image)")


def test_a_jpeg_with_exactly_the_limit_of_marker_segments_is_decoded_and_one_more_is_refused():
    base = samples.jpeg(64, 48)
    flood = hostile.app_marker_flood(40, base)
    segments = preflight.jpeg(base, 1000, 100).segments + 40
    assert preflight.jpeg(flood, segments, 100).segments == segments
    assert engine(flood, "jpeg", segments=segments) == ("done", "")
    assert engine(flood, "jpeg", segments=segments - 1) == (
        "failed", f"the JPEG has more than {segments - 1} marker segments before its image data "
                  f"(the limit is {segments - 1})")


def test_a_flood_of_segments_far_over_the_limit_is_refused_before_any_decoder_runs():
    flood = hostile.app_marker_flood(50_000)
    started = time.process_time()
    assert engine(flood, "jpeg") == (
        "failed", "the JPEG has more than 1,000 marker segments before its image data (the limit is 1,000)")
    assert time.process_time() - started < 2


def looping_tiff(pages: int, back_to: int) -> bytes:
    """A TIFF of `pages` pages whose last page links back to page `back_to` (0: the first)."""
    data = bytearray(hostile.tiff_page_bomb(pages))
    page_size = 2 + 6 * 12 + 4 + 2  # an IFD of six entries and its link, then its one pixel (tests/hostile.py)
    data[-6:-2] = struct.pack("<I", 8 + back_to * page_size)
    return bytes(data)


def test_a_tiff_whose_pages_loop_is_refused_for_the_loop():
    for pages, back_to in ((1, 0), (3, 0), (4, 2)):
        data = looping_tiff(pages, back_to)
        started = time.monotonic()
        assert engine(data, "tiff") == ("failed", "the TIFF's pages form a loop"), (pages, back_to)
        assert time.monotonic() - started < BUDGET.cpu_seconds


def test_a_tiff_with_exactly_the_limit_of_pages_is_decoded_and_one_more_is_refused():
    assert preflight.tiff_pages(hostile.tiff_page_bomb(5), 5) == 5
    assert engine(hostile.tiff_page_bomb(5), "tiff", pages=5) == ("done", "")
    assert engine(hostile.tiff_page_bomb(6), "tiff", pages=5) == ("failed", "the image has more than 5 pages, over the limit of 5")
