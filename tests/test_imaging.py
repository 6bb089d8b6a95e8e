"""The engine on inputs people bring and the settings they choose: every mode, extreme shapes, quality, outputs,
and the time a photo was taken."""
from __future__ import annotations

import io

import pytest
from PIL import Image

from handlers import imaging

LIMITS = imaging.Limits(10**8, 10)


def encode(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def opened(thumbnail: imaging.Thumbnail) -> Image.Image:
    image = Image.open(io.BytesIO(thumbnail.data))
    image.load()
    return image


def test_gray_with_alpha_keeps_its_transparency_and_flattens_onto_white_for_jpeg():
    la = Image.new("LA", (200, 100), (30, 255))
    la.paste((30, 0), (100, 0, 200, 100))  # right half transparent
    data = encode(la, "PNG")
    [png] = imaging.make_thumbnails(data, (64,), "png", 90, LIMITS).thumbnails
    out = opened(png)
    assert out.mode == "RGBA" and out.size == (64, 32)
    assert out.getpixel((5, 16))[3] == 255 and out.getpixel((60, 16))[3] == 0
    [jpeg] = imaging.make_thumbnails(data, (64,), "jpeg", 90, LIMITS).thumbnails
    flat = opened(jpeg).convert("L")
    assert flat.getpixel((5, 16)) < 60 and flat.getpixel((60, 16)) > 240


def test_a_one_bit_image_becomes_gray_with_its_black_and_white():
    bits = Image.new("1", (300, 150), 0)
    bits.paste(1, (150, 0, 300, 150))
    [out] = imaging.make_thumbnails(encode(bits, "PNG"), (100,), "png", 90, LIMITS).thumbnails
    image = opened(out)
    assert image.mode == "L" and image.size == (100, 50)
    assert image.getpixel((5, 25)) == 0 and image.getpixel((95, 25)) == 255


@pytest.mark.parametrize("size", [(4000, 1), (1, 4000)])
def test_a_one_pixel_line_keeps_one_pixel_at_every_size(size):
    data = encode(Image.new("RGB", size, (10, 20, 30)), "PNG")
    outputs = imaging.make_thumbnails(data, (1024, 512, 128), "jpeg", 82, LIMITS).thumbnails
    long_side = [1024, 512, 128]
    assert [(t.width, t.height) for t in outputs] == [
        (side, 1) if size[0] > 1 else (1, side) for side in long_side]


def test_the_configured_quality_is_what_the_encoder_used():
    photo = Image.effect_mandelbrot((400, 300), (-2, -1.5, 1, 1.5), 60).convert("RGB")
    data = encode(photo, "PNG")
    low, high = (imaging.make_thumbnails(data, (256,), "jpeg", q, LIMITS).thumbnails[0] for q in (30, 95))
    assert len(low.data) < len(high.data)
    for quality, thumbnail in ((30, low), (95, high)):
        reference = Image.open(io.BytesIO(encode(opened(thumbnail).convert("RGB"), "JPEG", quality=quality)))
        assert opened(thumbnail).quantization == reference.quantization, quality  # the same tables: this quality


@pytest.mark.parametrize("fmt, mime", [("png", "image/png"), ("webp", "image/webp"), ("jpeg", "image/jpeg")])
def test_each_output_format_is_that_format_at_the_fitted_size(fmt, mime):
    data = encode(Image.new("RGB", (800, 400), (200, 40, 40)), "PNG")
    outputs = imaging.make_thumbnails(data, (512, 128), fmt, 82, LIMITS).thumbnails
    assert [(t.box, t.width, t.height, t.content_type, t.extension) for t in outputs] == [
        (512, 512, 256, mime, "jpg" if fmt == "jpeg" else fmt), (128, 128, 64, mime, "jpg" if fmt == "jpeg" else fmt)]
    for thumbnail in outputs:
        image = opened(thumbnail)
        assert image.format == fmt.upper() and image.size == (thumbnail.width, thumbnail.height)
    if fmt == "png":  # lossless: the colour is exact
        assert opened(outputs[1]).convert("RGB").getpixel((10, 10)) == (200, 40, 40)


@pytest.mark.parametrize("tag, raw, expected", [
    (0x9003, "2026:03:04 05:06:07", "2026-03-04T05:06:07"),  # DateTimeOriginal
    (0x0132, "2025:12:31 23:59:59", "2025-12-31T23:59:59"),  # DateTime, when there is no DateTimeOriginal
    (0x9003, "2026:03:04 05:06:07.123", "2026-03-04T05:06:07"),
])
def test_taken_at_is_the_iso_time_the_camera_wrote(tag, raw, expected):
    exif = Image.Exif()
    if tag == 0x9003:
        exif.get_ifd(0x8769)[tag] = raw
    else:
        exif[tag] = raw
    data = encode(Image.new("RGB", (64, 48)), "JPEG", exif=exif.tobytes())
    assert imaging.make_thumbnails(data, (32,), "jpeg", 80, LIMITS).metadata["taken_at"] == expected


def test_the_original_time_wins_over_the_file_time():
    exif = Image.Exif()
    exif[0x0132] = "2020:01:01 00:00:00"
    exif.get_ifd(0x8769)[0x9003] = "2026:03:04 05:06:07"
    data = encode(Image.new("RGB", (64, 48)), "JPEG", exif=exif.tobytes())
    assert imaging.make_thumbnails(data, (32,), "jpeg", 80, LIMITS).metadata["taken_at"] == "2026-03-04T05:06:07"
