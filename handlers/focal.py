"""The subject's point of an image, and the crops cut around it (README, "What a page gets": focal point and crops).

A point is a pair of fractions of the image as it is displayed (oriented): x from the left edge, y from the top.
It comes from Rekognition's label boxes when the label stage found some (`from_labels`), otherwise from smartcrop's
interest map of a thumbnail already in memory (handlers/imaging.py, _saliency), otherwise the centre. A crop of W x H
is cut around it as CSS `object-fit: cover` would show the image in that box: scaled so the box is filled, the point
as near the box's centre as the image's edges allow (`crop_box`).

This module imports no Pillow: the label stage uses it and needs no Pillow layer.
"""
from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from handlers.names import Function

# Where a point came from (the record's `source`): the label stage's boxes, the thumbnail stage's saliency, neither.
LABELS, SALIENCY, CENTRE = str(Function.LABELS), "saliency", "centre"
CROP = re.compile(r"([0-9]{1,4})x([0-9]{1,4})")
CROP_SIDES = (16, 4096)  # the bounds of a thumbnail size (thumbnailSizes) hold for each side of a crop


@dataclass(frozen=True)
class Point:
    x: float
    y: float
    source: str

    def as_record(self) -> dict[str, Any]:
        """The point as the record keeps it (DynamoDB takes numbers as Decimal), to a thousandth of the image."""
        return {"x": Decimal(f"{self.x:.3f}"), "y": Decimal(f"{self.y:.3f}"), "source": self.source}

    @classmethod
    def of_record(cls, value: Mapping[str, Any] | None) -> Point | None:
        """A point as a record holds it; None when there is none, or it is not one."""
        if not isinstance(value, Mapping):
            return None
        try:
            x, y = float(value["x"]), float(value["y"])
        except (TypeError, KeyError, ValueError):
            return None
        return cls(x, y, str(value.get("source") or "")) if 0 <= x <= 1 and 0 <= y <= 1 else None


def crop_size(entry: Any) -> tuple[int, int] | None:
    """(width, height) of a crop entry such as "256x256"; None when it is not one within CROP_SIDES."""
    found = CROP.fullmatch(entry) if isinstance(entry, str) else None
    if found is None:
        return None
    width, height = int(found.group(1)), int(found.group(2))
    low, high = CROP_SIDES
    return (width, height) if low <= width <= high and low <= height <= high else None


def from_labels(labels: Iterable[Mapping[str, Any]], min_confidence: float) -> Point | None:
    """The centre of the largest box Rekognition found for any label (Labels[].Instances[].BoundingBox: Left, Top,
    Width, Height as ratios of the image's width and height; Rekognition API Reference, "BoundingBox"), among the
    instances at or above `min_confidence`; None when there is none. DetectLabels gives a JPEG's boxes after its EXIF
    orientation is applied, i.e. in display coordinates (API Reference, DetectLabels, Response Elements,
    "OrientationCorrection"), as this point is; a PNG's as stored (it has no EXIF for Rekognition to read)."""
    best: tuple[float, Point] | None = None
    for label in labels:
        for instance in label.get("Instances") or []:
            box = instance.get("BoundingBox") or {}
            try:
                left, top, width, height = (float(box[k]) for k in ("Left", "Top", "Width", "Height"))
            except (KeyError, TypeError, ValueError):
                continue
            if float(instance.get("Confidence", 0)) < min_confidence or width <= 0 or height <= 0:
                continue
            point = Point(_unit(left + width / 2), _unit(top + height / 2), LABELS)
            if best is None or width * height > best[0]:
                best = (width * height, point)
    return best[1] if best else None


def crop_box(shown: tuple[int, int], wanted: tuple[int, int], point: Point) -> tuple[tuple[int, int], tuple[float, float, float, float]]:
    """(the crop's size, the region of the displayed image it shows, in its pixels) for a crop `wanted` of an image
    displayed at `shown`: the region has the crop's aspect and fills the image's width or height; the point is at
    its centre unless an edge is nearer. Never upscaled: an image smaller than the box gets a crop of the box's aspect
    at its own scale (a 100 x 68 photo's 256x256 crop is 68 x 68)."""
    width, height = shown
    scale = min(1.0, width / wanted[0], height / wanted[1])
    size = (max(1, round(wanted[0] * scale)), max(1, round(wanted[1] * scale)))
    cover = max(size[0] / width, size[1] / height)  # the image's scale at which the crop fills it
    region_w, region_h = min(width, size[0] / cover), min(height, size[1] / cover)
    left = min(max(point.x * width - region_w / 2, 0.0), width - region_w)
    top = min(max(point.y * height - region_h / 2, 0.0), height - region_h)
    return size, (left, top, left + region_w, top + region_h)


def _unit(value: float) -> float:
    return min(1.0, max(0.0, value))
