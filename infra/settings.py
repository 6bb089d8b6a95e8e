"""Every tunable of the pipeline, read from `pulumi config` into one validated object.

Defaults live here; `Pulumi.yaml` declares the same keys with the same defaults
for the CLI (a test keeps the two equal). A bad value stops the program with a
message naming the key and what it accepts.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import pulumi

KNOWN_FORMATS = ("jpeg", "png", "webp", "gif", "tiff", "heic", "avif")
# Formats whose decoder is not in Pillow itself: the layer adds pillow-heif for them.
HEIF_FORMATS = ("heic",)
# Rekognition DetectLabels reads only these; the label subscription filters on them.
REKOGNITION_FORMATS = ("jpeg", "png")
OUTPUT_FORMATS = ("jpeg", "webp", "png")
ARCHITECTURES = ("arm64", "x86_64")
RUNTIMES = ("python3.11", "python3.12", "python3.13")
LOG_RETENTION_DAYS = (1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557,
                      2922, 3288, 3653)
MAX_VISIBILITY_TIMEOUT = 43_200  # SQS: 12 hours
# Lambda's guidance for SQS sources: visibility timeout >= 6 x function timeout (+ batching window).
VISIBILITY_FACTOR = 6


class SettingsError(ValueError):
    """One or more config values are out of range; the message lists each."""


@dataclass(frozen=True)
class StageSettings:
    """How one function is sized and fed from its queue."""

    memory: int
    timeout: int
    batch_size: int
    batching_window: int
    max_concurrency: int
    visibility_timeout: int | None = None  # None: VISIBILITY_FACTOR x timeout + batching window

    @property
    def queue_visibility_timeout(self) -> int:
        if self.visibility_timeout is not None:
            return self.visibility_timeout
        return VISIBILITY_FACTOR * self.timeout + self.batching_window


STAGE_DEFAULTS = {
    "intake": StageSettings(memory=256, timeout=30, batch_size=10, batching_window=0, max_concurrency=10),
    "thumbnails": StageSettings(memory=1024, timeout=60, batch_size=5, batching_window=1, max_concurrency=20),
    "labels": StageSettings(memory=256, timeout=30, batch_size=10, batching_window=1, max_concurrency=5),
}
_STAGE_KEYS = {"memory": "memory", "timeout": "timeout", "batchSize": "batch_size",
               "batchingWindow": "batching_window", "maxConcurrency": "max_concurrency",
               "visibilityTimeout": "visibility_timeout"}


@dataclass(frozen=True)
class Settings:
    allowed_formats: tuple[str, ...] = ("jpeg", "png", "webp", "gif")
    max_upload_bytes: int = 25 * 1024 * 1024
    max_pixels: int = 50_000_000
    max_frames: int = 100
    thumbnail_sizes: tuple[int, ...] = (1024, 512, 128)
    output_format: str = "jpeg"
    output_quality: int = 82
    max_labels: int = 20
    min_confidence: float = 70.0
    store_gps: bool = False
    intake: StageSettings = STAGE_DEFAULTS["intake"]
    thumbnails: StageSettings = STAGE_DEFAULTS["thumbnails"]
    labels: StageSettings = STAGE_DEFAULTS["labels"]
    max_receive_count: int = 5
    architecture: str = "arm64"
    runtime: str = "python3.13"
    alarm_email: str | None = None
    originals_transition_days: int = 30
    noncurrent_version_days: int = 30
    queue_retention_days: int = 4
    dlq_retention_days: int = 14
    log_retention_days: int = 30
    tracing: bool = True
    oldest_message_alarm_seconds: int = 900
    labels_emulated: bool = False  # set only by the local cloud
    upload_api: bool = False
    upload_expiry_seconds: int = 300
    jwt_issuer: str | None = None  # with jwt_audience: API Gateway with a JWT authorizer instead of IAM
    jwt_audience: str | None = None
    cdn: bool = False
    cdn_domain: str | None = None
    cdn_certificate_arn: str | None = None

    @property
    def needs_heif(self) -> bool:
        return any(f in HEIF_FORMATS for f in self.allowed_formats)

    @property
    def label_formats(self) -> tuple[str, ...]:
        """Formats sent to Rekognition: the allowed ones it can read."""
        return tuple(f for f in self.allowed_formats if f in REKOGNITION_FORMATS)

    def stage(self, name: str) -> StageSettings:
        return getattr(self, name)


# key in pulumi config -> (attribute, kind)
_KEYS: dict[str, tuple[str, str]] = {
    "allowedFormats": ("allowed_formats", "list"),
    "maxUploadBytes": ("max_upload_bytes", "int"),
    "maxPixels": ("max_pixels", "int"),
    "maxFrames": ("max_frames", "int"),
    "thumbnailSizes": ("thumbnail_sizes", "list"),
    "outputFormat": ("output_format", "str"),
    "outputQuality": ("output_quality", "int"),
    "maxLabels": ("max_labels", "int"),
    "minConfidence": ("min_confidence", "float"),
    "storeGps": ("store_gps", "bool"),
    "intake": ("intake", "stage"),
    "thumbnails": ("thumbnails", "stage"),
    "labels": ("labels", "stage"),
    "maxReceiveCount": ("max_receive_count", "int"),
    "architecture": ("architecture", "str"),
    "runtime": ("runtime", "str"),
    "alarmEmail": ("alarm_email", "str"),
    "originalsTransitionDays": ("originals_transition_days", "int"),
    "noncurrentVersionDays": ("noncurrent_version_days", "int"),
    "queueRetentionDays": ("queue_retention_days", "int"),
    "dlqRetentionDays": ("dlq_retention_days", "int"),
    "logRetentionDays": ("log_retention_days", "int"),
    "tracing": ("tracing", "bool"),
    "oldestMessageAlarmSeconds": ("oldest_message_alarm_seconds", "int"),
    "labelsEmulated": ("labels_emulated", "bool"),
    "uploadApi": ("upload_api", "bool"),
    "uploadExpirySeconds": ("upload_expiry_seconds", "int"),
    "jwtIssuer": ("jwt_issuer", "str"),
    "jwtAudience": ("jwt_audience", "str"),
    "cdn": ("cdn", "bool"),
    "cdnDomain": ("cdn_domain", "str"),
    "cdnCertificateArn": ("cdn_certificate_arn", "str"),
}


def load(config: pulumi.Config | None = None) -> Settings:
    """Read and validate the project's config; raise SettingsError listing every bad key."""
    config = config or pulumi.Config()
    errors: list[str] = []
    values: dict[str, Any] = {}
    for key, (attr, kind) in _KEYS.items():
        raw = config.get(key)
        if raw is None:
            continue
        try:
            values[attr] = _parse(kind, raw, key)
        except (ValueError, TypeError) as exc:
            errors.append(f"claimcheck:{key}: {exc}")
    if errors:
        raise SettingsError("invalid configuration:\n  " + "\n  ".join(errors))
    return validate(replace(Settings(), **values))


def _parse(kind: str, raw: str, key: str) -> Any:
    import json

    if kind == "str":
        return raw.strip() or None
    if kind == "int":
        return _int(raw)
    if kind == "float":
        return float(raw)
    if kind == "bool":
        if raw.lower() not in ("true", "false"):
            raise ValueError(f"{raw!r} is not true or false")
        return raw.lower() == "true"
    value = json.loads(raw)
    if kind == "list":
        if not isinstance(value, list):
            raise ValueError(f"expected a list, got {raw!r}")
        return tuple(value)
    if kind == "stage":
        if not isinstance(value, dict):
            raise ValueError(f"expected an object with {', '.join(_STAGE_KEYS)}, got {raw!r}")
        unknown = sorted(set(value) - set(_STAGE_KEYS))
        if unknown:
            raise ValueError(f"unknown field(s) {unknown}; accepted: {', '.join(_STAGE_KEYS)}")
        base = STAGE_DEFAULTS[key]
        return replace(base, **{_STAGE_KEYS[k]: _int(v) for k, v in value.items()})
    raise AssertionError(kind)


def _int(raw: Any) -> int:
    if isinstance(raw, bool):
        raise ValueError(f"{raw!r} is not a whole number")
    if isinstance(raw, float) and raw.is_integer():
        return int(raw)
    if isinstance(raw, int):
        return raw
    try:
        return int(str(raw).strip())
    except ValueError:
        raise ValueError(f"{raw!r} is not a whole number") from None


def validate(s: Settings) -> Settings:
    """Check every value against its accepted range; raise one SettingsError naming each bad key."""
    errors: list[str] = []

    def check(key: str, ok: bool, accepted: str, value: Any) -> None:
        if not ok:
            errors.append(f"claimcheck:{key} = {value!r} is out of range (accepted: {accepted})")

    def in_range(key: str, value: Any, low: float, high: float) -> None:
        check(key, isinstance(value, (int, float)) and not isinstance(value, bool) and low <= value <= high,
              f"{low:,} to {high:,}", value)

    unknown = [f for f in s.allowed_formats if f not in KNOWN_FORMATS]
    check("allowedFormats", bool(s.allowed_formats) and not unknown and len(set(s.allowed_formats)) == len(s.allowed_formats),
          f"a non-empty list without repeats of {', '.join(KNOWN_FORMATS)}", list(s.allowed_formats))
    in_range("maxUploadBytes", s.max_upload_bytes, 1, 5 * 1024**3)
    in_range("maxPixels", s.max_pixels, 1, 1_000_000_000)
    in_range("maxFrames", s.max_frames, 1, 10_000)
    sizes_ok = (1 <= len(s.thumbnail_sizes) <= 10
                and all(isinstance(v, int) and not isinstance(v, bool) and 16 <= v <= 4096 for v in s.thumbnail_sizes)
                and len(set(s.thumbnail_sizes)) == len(s.thumbnail_sizes))
    check("thumbnailSizes", sizes_ok, "1 to 10 different whole numbers, each 16 to 4,096 pixels", list(s.thumbnail_sizes))
    check("outputFormat", s.output_format in OUTPUT_FORMATS, " | ".join(OUTPUT_FORMATS), s.output_format)
    in_range("outputQuality", s.output_quality, 1, 100)
    in_range("maxLabels", s.max_labels, 1, 1000)
    in_range("minConfidence", s.min_confidence, 0, 100)
    in_range("maxReceiveCount", s.max_receive_count, 3, 1000)
    check("architecture", s.architecture in ARCHITECTURES, " | ".join(ARCHITECTURES), s.architecture)
    check("runtime", s.runtime in RUNTIMES, " | ".join(RUNTIMES), s.runtime)
    check("alarmEmail", s.alarm_email is None or ("@" in s.alarm_email and " " not in s.alarm_email),
          "an e-mail address, or unset", s.alarm_email)
    in_range("originalsTransitionDays", s.originals_transition_days, 30, 3650)  # STANDARD_IA needs >= 30
    in_range("noncurrentVersionDays", s.noncurrent_version_days, 1, 3650)
    in_range("queueRetentionDays", s.queue_retention_days, 1, 13)
    in_range("dlqRetentionDays", s.dlq_retention_days, 2, 14)
    if not errors and s.dlq_retention_days <= s.queue_retention_days:
        check("dlqRetentionDays", False, f"more than queueRetentionDays ({s.queue_retention_days}) and at most 14",
              s.dlq_retention_days)
    check("logRetentionDays", s.log_retention_days in LOG_RETENTION_DAYS, ", ".join(map(str, LOG_RETENTION_DAYS)),
          s.log_retention_days)
    in_range("oldestMessageAlarmSeconds", s.oldest_message_alarm_seconds, 60, 1_209_600)
    in_range("uploadExpirySeconds", s.upload_expiry_seconds, 10, 3600)
    check("jwtIssuer", (s.jwt_issuer is None) == (s.jwt_audience is None) and (s.jwt_issuer or "https://").startswith("https://"),
          "an https:// issuer URL, set together with jwtAudience (or neither: IAM auth)", s.jwt_issuer)
    check("cdnDomain", (s.cdn_domain is None) == (s.cdn_certificate_arn is None),
          "set together with cdnCertificateArn (or neither: the distribution's own domain)", s.cdn_domain)
    check("cdnCertificateArn", s.cdn_certificate_arn is None or s.cdn_certificate_arn.startswith("arn:aws:acm:us-east-1:"),
          "an ACM certificate ARN in us-east-1 (CloudFront reads certificates only there)", s.cdn_certificate_arn)
    for name in STAGE_DEFAULTS:
        _validate_stage(name, s.stage(name), errors)
    if errors:
        raise SettingsError("invalid configuration:\n  " + "\n  ".join(errors))
    return s


def _validate_stage(name: str, st: StageSettings, errors: list[str]) -> None:
    def bad(field_name: str, value: Any, accepted: str) -> None:
        errors.append(f"claimcheck:{name}.{field_name} = {value!r} is out of range (accepted: {accepted})")

    limits = {"memory": (128, 10240), "timeout": (1, 900), "batchSize": (1, 10000),
              "batchingWindow": (0, 300), "maxConcurrency": (2, 1000)}
    for key, (low, high) in limits.items():
        value = getattr(st, _STAGE_KEYS[key])
        if not low <= value <= high:
            bad(key, value, f"{low:,} to {high:,}")
    if st.batch_size > 10 and st.batching_window < 1:
        bad("batchingWindow", st.batching_window, "at least 1 when batchSize is over 10 (an SQS event source rule)")
    minimum = VISIBILITY_FACTOR * st.timeout + st.batching_window
    if st.visibility_timeout is not None and not minimum <= st.visibility_timeout <= MAX_VISIBILITY_TIMEOUT:
        bad("visibilityTimeout", st.visibility_timeout,
            f"{minimum:,} to {MAX_VISIBILITY_TIMEOUT:,} seconds: at least {VISIBILITY_FACTOR} x timeout ({st.timeout}) "
            f"+ batchingWindow ({st.batching_window})")
