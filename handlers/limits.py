"""The pixel limit, stated once for the intake (from the header) and the thumbnail stage (before decoding)."""
from __future__ import annotations

from handlers.failures import PermanentFailure


def describe_pixels(count: int) -> str:
    return f"{count / 1e6:.1f} MP" if count >= 100_000 else f"{count:,} pixels"


def check_pixels(width: int, height: int, max_pixels: int) -> None:
    """Raise a permanent failure when width x height is empty or over `max_pixels`."""
    if width <= 0 or height <= 0:
        raise PermanentFailure(f"the image header declares an empty size ({width}x{height})")
    pixels = width * height
    if pixels > max_pixels:
        raise PermanentFailure(
            f"the image is {width}x{height} ({describe_pixels(pixels)}), over the limit of {describe_pixels(max_pixels)}")
