"""Rekognition's DetectModerationLabels, as the local cloud answers it (moto has no such operation, and no model).

The answer follows a documented, deterministic rule, never a judgement: an image is flagged when at least
MARK_SHARE of its pixels carry a marker colour (`localcloud/samples.py` paints them: `samples.marked`):

  magenta (255, 0, 255)  Violence > Weapon Violence, 98.6%   (a category the gate blocks by default)
  yellow  (255, 255, 0)  Alcohol > Alcoholic Beverages, 91.2%  (recorded, passes by default)

Everything else has no moderation label. The answer's ModerationModelVersion says it is emulated, and the functions
are told Rekognition is emulated, so the records say so too. Held to Rekognition's rules as its documentation
states them (Developer Guide, "Guidelines and quotas in Amazon Rekognition"; API reference, DetectModerationLabels):
JPEG or PNG only (InvalidImageFormatException), at most 15 MB from S3 and 5 MB as bytes (ImageTooLargeException),
80 to 10,000 pixels a side (InvalidParameterException), an S3 object that is not there (InvalidS3ObjectException);
labels under MinConfidence are left out. The calls a second are held to the stack's quota by the emulator's
gateway, as DetectLabels' are (controls.Quotas).
"""
from __future__ import annotations

import base64
import io
from collections.abc import Callable
from typing import Any

MODEL_VERSION = "emulated (localcloud/rekognition.py)"
MARK_SHARE = 0.03  # of the pixels of a 64 x 64 reduction
MAGENTA, YELLOW = (255, 0, 255), (255, 255, 0)
MARKERS: dict[tuple[int, int, int], list[tuple[str, str, float, int]]] = {
    MAGENTA: [("Violence", "", 98.6, 1), ("Weapon Violence", "Violence", 98.6, 2)],
    YELLOW: [("Alcohol", "", 91.2, 1), ("Alcoholic Beverages", "Alcohol", 91.2, 2)],
}
CLOSE = 60  # each channel within this of the marker's
S3_BYTES, IMAGE_BYTES = 15 * 2**20, 5 * 2**20
MIN_SIDE, MAX_SIDE = 80, 10_000


class RekognitionError(Exception):
    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code, self.message = code, message


def detect_moderation_labels(request: dict[str, Any], read: Callable[[str, str, str | None], bytes | None]) -> dict[str, Any]:
    """The answer to one request (`read(bucket, key, version)`: an S3 object's bytes, None when it is not there)."""
    image = request.get("Image") or {}
    if "S3Object" in image:
        s3 = image["S3Object"]
        data = read(s3.get("Bucket", ""), s3.get("Name", ""), s3.get("Version"))
        if data is None:
            raise RekognitionError("InvalidS3ObjectException", "Unable to get object metadata from S3. Check object key, "
                                                               "region and/or access permissions.")
        limit = S3_BYTES
    elif "Bytes" in image:
        data, limit = base64.b64decode(image["Bytes"]), IMAGE_BYTES
    else:
        raise RekognitionError("InvalidParameterException", "Request has invalid parameters")
    if len(data) > limit:
        raise RekognitionError("ImageTooLargeException", f"Image size is too large (it is {len(data):,} bytes).")
    minimum = float(request.get("MinConfidence", 50.0))
    labels = [{"Name": name, "ParentName": parent, "Confidence": confidence, "TaxonomyLevel": level}
              for marker in _markers(data) for name, parent, confidence, level in MARKERS[marker] if confidence >= minimum]
    return {"ModerationLabels": labels, "ModerationModelVersion": MODEL_VERSION}


def _markers(data: bytes) -> list[tuple[int, int, int]]:
    from PIL import Image, UnidentifiedImageError

    try:
        image = Image.open(io.BytesIO(data), formats=["JPEG", "PNG"])
    except (UnidentifiedImageError, OSError):
        raise RekognitionError("InvalidImageFormatException", "Request has unsupported image format") from None
    if not all(MIN_SIDE <= side <= MAX_SIDE for side in image.size):
        raise RekognitionError("InvalidParameterException", f"Request has invalid image dimensions {image.size}")
    try:
        image.draft("RGB", (64, 64))
        raw = image.convert("RGB").resize((64, 64)).tobytes()
    except OSError:  # truncated or broken image data: Rekognition names no other error for an image it cannot read
        raise RekognitionError("InvalidImageFormatException", "Request has unsupported image format") from None
    pixels = [tuple(raw[i:i + 3]) for i in range(0, len(raw), 3)]
    return [marker for marker in MARKERS
            if sum(all(abs(c - m) <= CLOSE for c, m in zip(p, marker, strict=True)) for p in pixels) >= MARK_SHARE * len(pixels)]
