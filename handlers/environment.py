"""What a function is configured with: its environment variables, parsed once.

Limits and their defaults are decided in infra/settings.py and arrive here as
environment variables; this module only reads them and fails loudly when one
is missing or malformed.
"""
from __future__ import annotations

import json
import os
from functools import cache, cached_property

from handlers.names import Env, thumbnail_settings


class ConfigurationError(RuntimeError):
    """A required environment variable is missing or malformed."""


def _get(name: str, default: str | None = None) -> str:
    value = os.environ.get(name, default)
    if value is None or value == "":
        raise ConfigurationError(f"environment variable {name} is not set")
    return value


def _int(name: str, default: str | None = None) -> int:
    raw = _get(name, default)
    try:
        return int(raw)
    except ValueError as exc:
        raise ConfigurationError(f"environment variable {name}={raw!r} is not an integer") from exc


def _list(name: str, default: str | None = None) -> tuple[str, ...]:
    return tuple(part.strip() for part in _get(name, default).split(",") if part.strip())


def _present_list(name: str) -> tuple[str, ...]:
    """A list that may be empty (the variable set to ""), but must be set: empty means none."""
    if name not in os.environ:
        raise ConfigurationError(f"environment variable {name} is not set")
    return tuple(part.strip() for part in os.environ[name].split(",") if part.strip())


def _string_table(name: str) -> dict[str, str]:
    """A JSON object of strings (a table the program wrote), refused whole when it is anything else."""
    raw = _get(name)
    try:
        table = json.loads(raw)
    except ValueError as exc:
        raise ConfigurationError(f"environment variable {name} is not JSON") from exc
    if not isinstance(table, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in table.items()):
        raise ConfigurationError(f"environment variable {name} is not a JSON object of strings")
    return table


class Environment:
    """Each setting is read on first use, so a function needs only the variables it uses."""

    table_name = property(lambda self: _get(Env.TABLE_NAME))
    topic_arn = property(lambda self: _get(Env.TOPIC_ARN))
    thumbnails_bucket = property(lambda self: _get(Env.THUMBNAILS_BUCKET))
    uploads_bucket = property(lambda self: _get(Env.UPLOADS_BUCKET))
    upload_expiry_seconds = cached_property(lambda self: _int(Env.UPLOAD_EXPIRY_SECONDS))
    # Set when thumbnails are served through CloudFront: each output gets its URL.
    thumbnails_base_url = cached_property(lambda self: os.environ.get(Env.THUMBNAILS_BASE_URL, "").rstrip("/"))
    allowed_formats = cached_property(lambda self: _list(Env.ALLOWED_FORMATS))
    # Empty when the stack sends no format to Rekognition (allowedFormats without jpeg and png).
    label_formats = cached_property(lambda self: _present_list(Env.LABEL_FORMATS))
    # The distribution the purge function invalidates thumbnails in.
    distribution_id = cached_property(lambda self: os.environ.get(Env.DISTRIBUTION_ID, ""))
    # Set when thumbnails are served through CloudFront: the thumbnail stage asks the purge function, through this
    # queue, to invalidate what it deletes.
    purge_queue_url = cached_property(lambda self: os.environ.get(Env.PURGE_QUEUE_URL, ""))
    max_upload_bytes = cached_property(lambda self: _int(Env.MAX_UPLOAD_BYTES))
    max_pixels = cached_property(lambda self: _int(Env.MAX_PIXELS))
    max_frames = cached_property(lambda self: _int(Env.MAX_FRAMES))
    max_jpeg_scans = cached_property(lambda self: _int(Env.MAX_JPEG_SCANS, "100"))
    max_jpeg_segments = cached_property(lambda self: _int(Env.MAX_JPEG_SEGMENTS, "1000"))
    # CPU seconds one image may take (the program derives it from the timeout, memory and batch size).
    image_cpu_seconds = cached_property(lambda self: _int(Env.IMAGE_CPU_SECONDS, "10"))
    # format -> bytes one decode takes per pixel (the program's memory model), e.g. "jpeg:9,webp:16".
    decode_bytes_per_pixel = cached_property(lambda self: tuple(
        (name, float(value)) for name, value in (part.split(":") for part in _list(Env.DECODE_BYTES_PER_PIXEL, "")))
        if os.environ.get(Env.DECODE_BYTES_PER_PIXEL) else ())
    # Lambda sets it to the function's memory; the local cloud too.
    function_memory_mb = cached_property(lambda self: _int("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "1024"))
    # Largest first: each size is made from the one before it.
    thumbnail_sizes = cached_property(lambda self: tuple(sorted({int(s) for s in _list(Env.THUMBNAIL_SIZES)}, reverse=True)))
    output_format = cached_property(lambda self: _get(Env.OUTPUT_FORMAT).lower())
    output_quality = cached_property(lambda self: _int(Env.OUTPUT_QUALITY))
    # The name of these three: part of every thumbnail key, and kept on the record.
    thumbnail_settings = cached_property(lambda self: thumbnail_settings(
        self.thumbnail_sizes, self.output_format, self.output_quality))
    max_labels = cached_property(lambda self: _int(Env.MAX_LABELS))
    min_confidence = cached_property(lambda self: float(_get(Env.MIN_CONFIDENCE)))
    store_gps = cached_property(lambda self: _get(Env.STORE_GPS, "false").lower() == "true")
    # This environment's share of the DetectLabels quota (calls a second); 0: not paced.
    rekognition_calls_per_second = cached_property(lambda self: float(_get(Env.REKOGNITION_CALLS_PER_SECOND, "0")))
    # stage -> the UUID of its event source mapping: the only mappings the pause function acts on.
    stage_mappings = cached_property(lambda self: _string_table(Env.STAGE_MAPPINGS))
    # Set by the local cloud: its Rekognition answers canned labels.
    labels_emulated = cached_property(lambda self: _get(Env.LABELS_EMULATED, "false").lower() == "true")


@cache
def load() -> Environment:
    """The function's settings, one instance per execution environment."""
    return Environment()
