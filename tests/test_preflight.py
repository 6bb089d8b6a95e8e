"""The preflight's bounds at their exact edges, through the engine as the stage runs it (isolated, within a CPU and
memory budget): a JPEG with exactly the limit of scans or marker segments is decoded, one more is refused with the
reason a person reads, and a TIFF whose pages loop is refused for the loop, not stopped for its CPU."""
from __future__ import annotations

import io
import struct
import time

import pytest
from PIL import Image

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


def tiff_chain(pages: int, *, order: str = "<", big: bool = False, link_last_to: int | None = None) -> bytes:
    """A TIFF of `pages` 1x1 grey pages, classic or BigTIFF, little (<) or big-endian (>): each page an IFD of six
    entries and its link, then its pixel; the last page links to page `link_last_to` (None: ends the chain)."""
    mark = b"II" if order == "<" else b"MM"
    count, link, value = ("Q", "Q", 8) if big else ("H", "I", 4)
    header = mark + (struct.pack(order + "HHHQ", 43, 8, 0, 16) if big else struct.pack(order + "HI", 42, 8))
    entry_size = 4 + (8 if big else 4) + value
    page_size = struct.calcsize(order + count) + 6 * entry_size + struct.calcsize(order + link) + 2
    at = [len(header) + index * page_size for index in range(pages)]
    body = b""
    for index, offset in enumerate(at):
        pixel_at = offset + page_size - 2
        following = at[index + 1] if index + 1 < pages else (0 if link_last_to is None else at[link_last_to])
        entries = [(256, 3, 1), (257, 3, 1), (258, 3, 8), (262, 3, 1), (273, 4, pixel_at), (279, 4, 1)]
        body += struct.pack(order + count, len(entries))
        for tag, kind, number in entries:
            field = struct.pack(order + ("H" if kind == 3 else "I"), number).ljust(value, b"\x00")
            body += struct.pack(order + "HH" + ("Q" if big else "I"), tag, kind, 1) + field
        body += struct.pack(order + link, following) + b"\x7f\x00"
    return header + body


LAYOUTS = [("<", False), (">", False), ("<", True), (">", True)]


@pytest.mark.parametrize("order, big", LAYOUTS, ids=["classic-II", "classic-MM", "bigtiff-II", "bigtiff-MM"])
def test_a_tiffs_pages_are_counted_in_either_byte_order_classic_or_bigtiff_as_its_decoder_counts_them(order, big):
    data = tiff_chain(3, order=order, big=big)
    if not (big and order == ">"):  # Pillow 13 takes a big-endian BigTIFF for a classic one and cannot open it
        with Image.open(io.BytesIO(data)) as decoded:
            assert decoded.n_frames == 3  # the file is what the decoder reads: three pages
    assert preflight.tiff_pages(data, 3) == 3
    with pytest.raises(PermanentFailure) as refused:
        preflight.tiff_pages(tiff_chain(4, order=order, big=big), 3)
    assert refused.value.reason == "the image has more than 3 pages, over the limit of 3"
    with pytest.raises(PermanentFailure) as looped:
        preflight.tiff_pages(tiff_chain(3, order=order, big=big, link_last_to=1), 10)
    assert looped.value.reason == "the TIFF's pages form a loop"


@pytest.mark.parametrize("order, big", LAYOUTS, ids=["classic-II", "classic-MM", "bigtiff-II", "bigtiff-MM"])
def test_a_tiff_cut_inside_its_chain_counts_the_pages_read_or_is_refused_as_truncated(order, big):
    data = tiff_chain(2, order=order, big=big)
    header, count_size, link_size = (16, 8, 8) if big else (8, 2, 4)
    page = (len(data) - header) // 2
    assert preflight.tiff_pages(data, 5) == 2
    assert preflight.tiff_pages(data[:header + 2 * page - 3], 5) == 2  # the last link cut: what was read stands
    assert preflight.tiff_pages(data[:header + count_size + 1], 5) == 1  # the first page's entries cut
    assert preflight.tiff_pages(data[:header + count_size], 5) == 1  # cut right after its entry count
    assert preflight.tiff_pages(data[:header + page - 3], 5) == 1  # its link cut short by a byte: not followed
    with pytest.raises(PermanentFailure, match="a TIFF page lies past the end"):
        preflight.tiff_pages(data[:header + page - 2], 5)  # its link whole, to a page the file no longer holds
    with pytest.raises(PermanentFailure) as truncated:
        preflight.tiff_pages(data[:header + page + count_size - 1], 5)  # linked to a page whose count is cut
    assert truncated.value.reason == "the image data is truncated (a TIFF page lies past the end of the file)"
    assert link_size == struct.calcsize(order + ("Q" if big else "I"))
