"""The one JPEG marker walk (ITU-T T.81, B.1.1.2 and Table B.1), and its two readers agreeing on every file: the
intake's sniffing (the frame's size) and the thumbnail stage's preflight (segments and scans before decoding)."""
from __future__ import annotations

import io
import struct
import time

import pytest
from PIL import Image

from handlers import jpeg_markers, preflight
from handlers.failures import PermanentFailure
from handlers.jpeg_markers import MalformedJpeg, Segment, segments
from handlers.sniff import sniff
from localcloud import samples

SOI, EOI = b"\xff\xd8", b"\xff\xd9"
APP0 = b"\xff\xe0\x00\x04\x00\x00"
SCAN = b"\xff\xda\x00\x08\x01\x01\x00\x00\x3f\x00" + b"\x12\x34\x56" + EOI  # one component's scan, its data, the end


def frame_header(width: int = 500, height: int = 300, marker: int = 0xC0, components: int = 1) -> bytes:
    body = struct.pack(">BHHB", 8, height, width, components) + b"\x01\x11\x00" * components
    return bytes([0xFF, marker]) + struct.pack(">H", 2 + len(body)) + body


def walked(data: bytes) -> list[tuple[int, int, int]]:
    return [(s.marker, s.offset, s.length) for s in segments(data)]


def test_each_segment_is_its_marker_offset_and_length_up_to_the_first_scan():
    data = SOI + APP0 + frame_header() + SCAN
    assert walked(data) == [(0xE0, 2, 4), (0xC0, 8, 11), (0xDA, 21, 8)]


def test_the_walk_stops_at_the_first_scan_its_data_is_not_walked():
    # Entropy-coded data has no lengths: what looks like a marker in it (FF E1 here) is not a segment.
    data = SOI + frame_header() + b"\xff\xda\x00\x02" + b"\xff\xe1\x00\x02" + EOI
    assert [s.marker for s in segments(data)] == [0xC0, 0xDA]


def test_a_segment_is_walked_by_its_whole_length_past_what_looks_like_markers_inside_it():
    # An EXIF thumbnail is a whole JPEG inside APP1: its frame header is not the image's. 318 takes both length bytes.
    thumbnail = SOI + frame_header(160, 120) + SCAN
    exif = b"Exif\x00\x00" + bytes(280) + thumbnail
    app1 = b"\xff\xe1" + struct.pack(">H", 2 + len(exif)) + exif
    data = SOI + app1 + frame_header(4000, 3000) + SCAN
    assert walked(data)[:2] == [(0xE1, 2, 318), (0xC0, 322, 11)]
    assert next(segments(data)).payload(data) == exif
    assert (sniff(data).width, sniff(data).height) == (4000, 3000)


def test_fill_bytes_before_a_marker_belong_to_no_segment():
    data = SOI + b"\xff\xff\xff" + APP0 + SCAN
    assert walked(data)[0] == (0xE0, 5, 4)  # the marker's own X'FF' is the last of the run


@pytest.mark.parametrize("code", [0x01, *range(0xD0, 0xD8), 0xD8], ids=lambda c: f"{c:02X}")
def test_tem_rst_and_soi_stand_alone_without_a_length(code):
    data = SOI + bytes([0xFF, code]) + APP0 + SCAN
    assert walked(data)[:2] == [(code, 2, 0), (0xE0, 4, 4)]


def test_eoi_stands_alone_and_ends_the_walk():
    # T.81 Table B.1: EOI has no length; the image ends there (a tables-only stream), so what follows is not walked.
    data = SOI + APP0 + EOI + frame_header() + SCAN
    assert walked(data) == [(0xE0, 2, 4), (0xD9, 8, 0)]


@pytest.mark.parametrize("stray", [b"\x00", b"\x12\x34\x56", b"\xff\x00", b"\x00\xff\x00\xff\xff\x00"],
                         ids=["one-byte", "bytes", "ff-00", "mixed"])
def test_bytes_that_are_no_marker_are_passed_over_to_the_next_marker(stray):
    # X'FF' X'00' is no marker (B.1.1.2: the second byte is neither 0 nor X'FF'); libjpeg and Pillow skip both kinds.
    data = SOI + APP0 + stray + frame_header() + SCAN
    assert [s.marker for s in segments(data)] == [0xE0, 0xC0, 0xDA]


def test_the_frame_headers_are_sof0_to_sof15_but_dht_jpg_and_dac():
    assert set(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC} == jpeg_markers.SOF


def test_a_length_under_two_is_refused_by_name():
    with pytest.raises(MalformedJpeg, match=r"^the JPEG has a marker segment of impossible length$"):
        list(segments(SOI + b"\xff\xe0\x00\x01" + SCAN))


def test_a_second_frame_header_before_the_first_scan_is_refused():
    with pytest.raises(MalformedJpeg, match=r"^the JPEG has a second frame header before its image data$"):
        list(segments(SOI + frame_header() + frame_header(60000, 60000, 0xC2) + SCAN))


@pytest.mark.parametrize("end, found", [(3, []), (4, []), (5, []), (6, [Segment(0xE0, 2, 4)]), (7, [Segment(0xE0, 2, 4)])])
def test_data_that_ends_inside_a_marker_or_its_length_ends_the_walk_quietly(end, found):
    # A segment whose length is there is given even if its payload is cut: its reader checks what it reads.
    assert list(segments((SOI + APP0 + SCAN)[:end])) == found


def test_a_frame_header_is_read_as_far_as_the_data_goes():
    header = frame_header(500, 300, 0xC2, components=3)
    data = SOI + header
    [segment] = segments(data)
    assert jpeg_markers.frame(data, segment) == jpeg_markers.Frame(0xC2, 500, 300)
    assert jpeg_markers.frame(data[:2 + 9], segment) == jpeg_markers.Frame(0xC2, 500, 300)  # X ends at the 9th byte
    assert jpeg_markers.frame(data[:2 + 8], segment) is None
    empty = SOI + b"\xff\xc0\x00\x02" + APP0 + SCAN  # a frame header's fields are its own, never the next segment's
    assert jpeg_markers.first_frame(empty) is None and sniff(empty).width is None


def test_a_run_of_fill_bytes_the_size_of_the_sniffed_head_is_walked_in_linear_time():
    started = time.process_time()
    assert list(segments(SOI + b"\xff" * 60_000 + b"\x00" + b"\xff\x00" * 30_000 + APP0)) == [Segment(0xE0, 120_003, 4)]
    assert time.process_time() - started < 0.1


# Where the intake's walk and the preflight's disagreed before they became this one (sniff | preflight):
#   bytes between segments:   gave up, no size            | walked past them           -> both walk past (libjpeg does)
#   X'FF' X'00' before SOF:   read a length, lost the SOF  | read a length, "truncated" -> both pass over it (no marker)
#   EOI before the frame:     read a length after EOI      | walked on past EOI         -> the image ends there
#   two frame headers:        the first                    | the last one's fields      -> the first; the preflight refuses
#                                                                                          the second, as libjpeg does
SHAPE = preflight.JpegShape(segments=2, scans=1)


@pytest.mark.parametrize("data, size, preflighted", [
    (SOI + APP0 + b"\x00\x11" + frame_header() + SCAN, (500, 300), SHAPE),
    (SOI + APP0 + b"\xff\x00" + frame_header() + SCAN, (500, 300), SHAPE),
    (SOI + APP0 + EOI + frame_header() + SCAN, (None, None),
     "the JPEG has no image data: it ends (EOI) before its first scan"),
    (SOI + APP0 + frame_header() + frame_header(60000, 60000, 0xC2, 3) + SCAN, (500, 300),
     "the JPEG has a second frame header before its image data"),
], ids=["stray-bytes", "ff-00", "eoi-first", "two-frame-headers"])
def test_the_intake_and_the_preflight_walk_the_same_markers(data, size, preflighted):
    found = sniff(data)
    assert (found.format, found.width, found.height) == ("jpeg", *size)
    if isinstance(preflighted, str):
        with pytest.raises(PermanentFailure) as refused:
            preflight.jpeg(data, 1000, 100)
        assert refused.value.reason == preflighted
    else:
        assert preflight.jpeg(data, 1000, 100) == preflighted


def test_what_the_decoder_reads_past_is_walked_past_and_what_it_refuses_is_refused():
    # The rules above are Pillow's and libjpeg's too: a stray byte or X'FF' X'00' before the frame decodes; EOI first
    # or a second frame header does not.
    photo = samples.jpeg(64, 48)
    at = photo.index(b"\xff\xc0")
    header = photo[at:at + 2 + int.from_bytes(photo[at + 2:at + 4], "big")]
    for extra in (b"\x00", b"\xff\x00"):
        data = photo[:at] + extra + photo[at:]
        decoded = Image.open(io.BytesIO(data))
        decoded.load()
        assert decoded.size == (64, 48) and (sniff(data).width, sniff(data).height) == (64, 48)
        assert preflight.jpeg(data, 1000, 100) == preflight.jpeg(photo, 1000, 100)
    for extra in (EOI, header):
        data = photo[:at] + extra + photo[at:]
        with pytest.raises(OSError, match="broken data stream"):
            Image.open(io.BytesIO(data)).load()
        with pytest.raises(PermanentFailure):
            preflight.jpeg(data, 1000, 100)


@pytest.mark.parametrize("data", [SOI, SOI + APP0, SOI + APP0 + frame_header(), SOI + b"\x00" * 40],
                         ids=["soi-alone", "cut-after-app0", "cut-after-the-frame", "no-marker-after-soi"])
def test_a_jpeg_that_ends_before_its_first_scan_is_refused_as_truncated(data):
    # Cut at a segment's end, the walk ends quietly: the preflight, not the decoder, names what is missing.
    with pytest.raises(PermanentFailure) as refused:
        preflight.jpeg(data, 1000, 100)
    assert refused.value.reason == "the image data is truncated (the JPEG has no image data)"


def test_a_scan_is_counted_from_the_first_one_on_not_from_the_file_start():
    # The bytes FF DA may stand in a segment before the first scan (an APP payload here): not a scan.
    app = b"\xff\xe1\x00\x06" + preflight.SOS + b"\x00\x00"
    data = SOI + app + frame_header() + SCAN
    assert preflight.jpeg(data, 1000, 1) == preflight.JpegShape(segments=2, scans=1)
