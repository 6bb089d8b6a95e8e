"""Every tunable of the pipeline, read from `pulumi config` into one validated object.

Each setting is declared once, as a field of `Settings`: its config key, kind,
default, accepted range and description live together, and `Pulumi.yaml`'s
`config:` block is generated from them (`python -m infra.settings` rewrites
it; a test fails when it is stale). A bad value stops the program with a
message naming the key and what it accepts, every bad key at once.
"""
from __future__ import annotations

import dataclasses
import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from handlers.names import PROJECT, QUEUE_FED, Function

KNOWN_FORMATS = ("jpeg", "png", "webp", "gif", "tiff", "heic", "avif")
# Formats whose decoder is not in Pillow itself: the layer adds pillow-heif for them.
HEIF_FORMATS = ("heic",)
# Rekognition DetectLabels reads only these; the label subscription filters on them.
REKOGNITION_FORMATS = ("jpeg", "png")
OUTPUT_FORMATS = ("jpeg", "webp", "png")
ARCHITECTURES = ("arm64", "x86_64")
# Lambda's Python runtimes and the glibc of the Amazon Linux they run on (Lambda runtimes page:
# python3.12 and python3.13 on Amazon Linux 2023, glibc 2.34). python3.11 runs on Amazon Linux 2
# (glibc 2.26), which cannot load Pillow 13's manylinux_2_28 wheels, so it is not offered.
RUNTIME_GLIBC = {"python3.12": (2, 34), "python3.13": (2, 34)}
RUNTIMES = tuple(RUNTIME_GLIBC)
# CloudWatch Logs PutRetentionPolicy: the only values retentionInDays takes.
LOG_RETENTION_DAYS = (1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557,
                      2922, 3288, 3653)
MAX_VISIBILITY_TIMEOUT = 43_200  # SQS: 12 hours
# A layer version's ARN as a function's Layers take it (Lambda API reference, CreateFunction, Layers: the pattern of
# LayerVersionArn; tests/test_aws_rules.py holds it to botocore's copy of the API model).
LAYER_VERSION_ARN = (r"((arn:(aws[a-zA-Z-]*)?:lambda:(eusc-)?[a-z]{2}((-gov)|(-iso([a-z]?)))?-[a-z]+-\d{1}:\d{12}:layer:"
                     r"[a-zA-Z0-9-_]+:[0-9]+)|(arn:[a-zA-Z0-9-]+:lambda:::awslayer:[a-zA-Z0-9-_]+))")
# Lambda's guidance for SQS sources: visibility timeout >= 6 x function timeout (+ batching window).
VISIBILITY_FACTOR = 6
# Lambda allocates CPU in proportion to memory: 1,769 MB is one vCPU (Lambda developer guide, "Memory and computing power").
MB_PER_VCPU = 1769

# The thumbnail stage's worst-case memory, per decoded pixel, by input format: what a decode at `maxPixels` may
# take on top of the function's own footprint. Measured by the hostile-image suite (tests/test_hostile.py prints
# the peak of each case); the intake's header check keeps every upload within maxPixels. Measured at 50 MP (the
# table keeps about a tenth more, for what the allocator adds):
#   jpeg: 8.2 B/px for a progressive CMYK file (full-size coefficient buffers: 4 components x 2 bytes), 0.4 baseline;
#   png, tiff: 9.9 for 16-bit samples (decoded to 32-bit, then scaled), 8.1 RGBA, 4.1 RGB; gif: 5.2 (to RGB);
#   webp: 16 (libwebp's RGBA canvas, the frame it returns, Pillow's copy); avif: 9.1; heic: not measured, 12 assumed.
DECODE_BYTES_PER_PIXEL = {"jpeg": 9, "png": 11, "gif": 6, "tiff": 11, "webp": 17, "heic": 12, "avif": 10}
FUNCTION_FOOTPRINT_MB = 120  # the Python runtime, boto3, Powertools and Pillow, measured in a warm thumbnail process
MEMORY_HEADROOM = 0.85  # of the configured memory; the rest is left for the allocator's fragmentation


class SettingsError(ValueError):
    """One or more config values are out of range; the message lists each."""


@dataclass(frozen=True)
class Accepts:
    """A rule for one value: `ok` decides, `text` says what is accepted."""

    ok: Callable[[Any], bool]
    text: str


def between(low: float, high: float) -> Accepts:
    return Accepts(lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and low <= v <= high,
                   f"{low:,} to {high:,}")


def one_of(*choices: Any, sep: str = " | ") -> Accepts:
    return Accepts(lambda v: v in choices, sep.join(map(str, choices)))


def setting(default: Any, key: str, kind: str, description: str, accepts: Accepts | None = None,
            declared: bool = True) -> Any:
    """A Settings field with its config key. `kind`: int, float, str, bool, list, stage.
    `declared`: in Pulumi.yaml (optional keys without a default are not: the CLI would require them)."""
    metadata = {"key": key, "kind": kind, "description": description, "accepts": accepts, "declared": declared}
    if isinstance(default, (list, dict)):
        raise TypeError("use a tuple for list defaults")
    return field(default=default, metadata=metadata)


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

    @property
    def vcpus(self) -> float:
        return min(self.memory / MB_PER_VCPU, 6.0)


STAGE_DEFAULTS: dict[str, StageSettings] = {
    Function.INTAKE: StageSettings(memory=256, timeout=30, batch_size=10, batching_window=0, max_concurrency=10),
    # 1,536 MB: a 50 MP WebP (the costliest decode maxPixels allows) needs ~880 MB with the function's own; the CPU
    # share it buys (0.87 vCPU) makes the CPU-bound work faster by as much as the memory costs more.
    Function.THUMBNAILS: StageSettings(memory=1536, timeout=60, batch_size=5, batching_window=1, max_concurrency=20),
    # 2 environments: a DetectLabels call takes ~0.3 s, so two make the ~6 calls a second a default quota of 5 lets
    # through (the stage paces each environment to rekognitionTps / maxConcurrency); more would only wait.
    Function.LABELS: StageSettings(memory=256, timeout=30, batch_size=10, batching_window=1, max_concurrency=2),
    # With a CDN: batches of up to 100 purge requests a few seconds apart become one invalidation each; two at a time
    # (the least an SQS event source takes) keep well inside CloudFront's 3,000 paths in progress.
    Function.CDN_PURGE: StageSettings(memory=256, timeout=30, batch_size=100, batching_window=5, max_concurrency=2),
}
STAGE_KEYS = {"memory": "memory", "timeout": "timeout", "batchSize": "batch_size",
              "batchingWindow": "batching_window", "maxConcurrency": "max_concurrency",
              "visibilityTimeout": "visibility_timeout"}
_STAGE_LIMITS = {"memory": (128, 10240), "timeout": (1, 900), "batchSize": (1, 10000),
                 "batchingWindow": (0, 300), "maxConcurrency": (2, 1000)}


def _formats_ok(value: Any) -> bool:
    return (isinstance(value, tuple) and bool(value) and all(f in KNOWN_FORMATS for f in value)
            and len(set(value)) == len(value))


def _sizes_ok(value: Any) -> bool:
    return (isinstance(value, tuple) and 1 <= len(value) <= 10 and len(set(value)) == len(value)
            and all(isinstance(v, int) and not isinstance(v, bool) and 16 <= v <= 4096 for v in value))


def _strings_ok(value: Any) -> bool:
    return isinstance(value, tuple) and all(isinstance(v, str) and v and " " not in v for v in value)


def _origins_ok(value: Any) -> bool:
    return _strings_ok(value) and all(v == "*" or v.startswith(("https://", "http://localhost", "http://127.0.0.1"))
                                      for v in value) and len(value) <= 100


@dataclass(frozen=True)
class Settings:
    allowed_formats: tuple[str, ...] = setting(
        ("jpeg", "png", "webp", "gif"), "allowedFormats", "list",
        "Image formats accepted at intake, judged by content.",
        Accepts(_formats_ok, f"a non-empty list without repeats of {', '.join(KNOWN_FORMATS)}"))
    max_upload_bytes: int = setting(25 * 1024 * 1024, "maxUploadBytes", "int",
                                    "Largest upload accepted, in bytes (5 GiB at most).", between(1, 5 * 1024**3))
    max_pixels: int = setting(50_000_000, "maxPixels", "int",
                              "Largest image accepted, in pixels (width x height), checked on the header before decoding.",
                              between(1, 1_000_000_000))
    max_frames: int = setting(100, "maxFrames", "int", "Most frames (or pages) an animated image may have.",
                              between(1, 10_000))
    max_jpeg_scans: int = setting(100, "maxJpegScans", "int",
                                  "Most scans a progressive JPEG may have (each scan is another pass over the image).",
                                  between(1, 10_000))
    max_jpeg_segments: int = setting(1000, "maxJpegSegments", "int",
                                     "Most marker segments a JPEG may have before its first scan.", between(16, 65_535))
    thumbnail_sizes: tuple[int, ...] = setting(
        (1024, 512, 128), "thumbnailSizes", "list", "Bounding boxes of the thumbnails, in pixels; never upscaled.",
        Accepts(_sizes_ok, "1 to 10 different whole numbers, each 16 to 4,096 pixels"))
    output_format: str = setting("jpeg", "outputFormat", "str", "Thumbnail format.",
                                 one_of(*OUTPUT_FORMATS))
    output_quality: int = setting(82, "outputQuality", "int", "Encoder quality for jpeg and webp thumbnails.",
                                  between(1, 100))
    max_labels: int = setting(20, "maxLabels", "int", "Most labels Rekognition returns per image.", between(1, 1000))
    min_confidence: int = setting(70, "minConfidence", "int", "Lowest label confidence kept, in percent.",
                                  between(0, 100))
    store_gps: bool = setting(False, "storeGps", "bool", "Keep GPS coordinates from EXIF in the image record.")
    intake: StageSettings = setting(STAGE_DEFAULTS[Function.INTAKE], Function.INTAKE, "stage", "The intake function.",
                                    declared=False)
    thumbnails: StageSettings = setting(STAGE_DEFAULTS[Function.THUMBNAILS], Function.THUMBNAILS, "stage",
                                        "The thumbnail function.", declared=False)
    labels: StageSettings = setting(STAGE_DEFAULTS[Function.LABELS], Function.LABELS, "stage", "The label function.",
                                    declared=False)
    cdn_purge: StageSettings = setting(STAGE_DEFAULTS[Function.CDN_PURGE], "cdnPurge", "stage",
                                       "The function that makes CloudFront forget deleted thumbnails (with cdn).",
                                       declared=False)
    # Rekognition's DetectLabels quota is per account and Region and differs between Regions (AWS General Reference,
    # "Amazon Rekognition endpoints and quotas"; Service Quotas: "Transactions per second per account for the Amazon
    # Rekognition Image operation DetectLabels"). The default is the smallest figure we know a Region to have, not
    # read from that table here: set the stack's from the Service Quotas console.
    rekognition_tps: int = setting(5, "rekognitionTps", "int",
                                   "Your Region's DetectLabels quota, in calls a second (Service Quotas shows it); the "
                                   "label stage paces itself to it and capacity plans with it.", between(1, 10_000))
    # Lambda's Regional concurrency quota: 1,000 by default, raised on request (Lambda Developer Guide, "Lambda quotas").
    account_concurrency: int = setting(1000, "accountConcurrency", "int",
                                       "The account's Regional Lambda concurrency quota (1,000 unless AWS raised it).",
                                       between(10, 1_000_000))
    concurrency_reserve: int = setting(100, "concurrencyReserve", "int",
                                       "Concurrency left for the account's other functions; the stages' maxConcurrency "
                                       "must fit in accountConcurrency minus this.", between(0, 1_000_000))
    max_receive_count: int = setting(5, "maxReceiveCount", "int",
                                     "Deliveries before a message goes to its dead-letter queue.",
                                     between(3, 1000))
    architecture: str = setting("arm64", "architecture", "str", "Lambda architecture.",
                                one_of(*ARCHITECTURES))
    runtime: str = setting("python3.13", "runtime", "str", "Lambda Python runtime.",
                           Accepts(lambda v: v in RUNTIMES, " | ".join(RUNTIMES) + " (python3.11 runs on Amazon Linux 2, "
                                   "whose glibc 2.26 cannot load Pillow 13)"))
    powertools_layer_arn: str | None = setting(
        None, "powertoolsLayerArn", "str",
        "The Powertools layer version to use instead of the one AWS's public SSM parameter names for the pinned "
        "version (for a Region where that parameter is missing); built for the stack's runtime and architecture, in "
        "its Region.",
        Accepts(lambda v: v is None or re.fullmatch(LAYER_VERSION_ARN, v) is not None,
                "a Lambda layer version ARN (arn:aws:lambda:REGION:ACCOUNT:layer:NAME:VERSION), or unset"),
        declared=False)
    alarm_email: str | None = setting(None, "alarmEmail", "str", "An address subscribed to the alarm topic.",
                                      Accepts(lambda v: v is None or ("@" in v and " " not in v), "an e-mail address, or unset"),
                                      declared=False)
    originals_transition_days: int = setting(30, "originalsTransitionDays", "int",
                                             "Days before originals move to STANDARD_IA (which needs 30 or more).",
                                             between(30, 3650))  # STANDARD_IA needs >= 30
    noncurrent_version_days: int = setting(30, "noncurrentVersionDays", "int",
                                           "Days an overwritten or deleted upload version is kept.", between(1, 3650))
    rejected_retention_days: int = setting(30, "rejectedRetentionDays", "int",
                                           "Days a rejected or failed original is kept (counted from its upload; tagged "
                                           "with its status, a lifecycle rule expires it); 0 keeps them.",
                                           between(0, 3650))
    queue_retention_days: int = setting(4, "queueRetentionDays", "int", "Days a message may wait in a work queue.",
                                        between(1, 13))
    dlq_retention_days: int = setting(14, "dlqRetentionDays", "int",
                                      "Days a message is kept in a dead-letter queue (more than queueRetentionDays).",
                                      between(2, 14))
    log_retention_days: int = setting(30, "logRetentionDays", "int", "Days function logs are kept.",
                                      Accepts(lambda v: v in LOG_RETENTION_DAYS, "a CloudWatch Logs retention value: " + ", ".join(map(str, LOG_RETENTION_DAYS))))
    tracing: bool = setting(True, "tracing", "bool", "X-Ray active tracing on every function.")
    oldest_message_alarm_seconds: int = setting(900, "oldestMessageAlarmSeconds", "int",
                                                "Alarm when a queue's oldest message is older than this.",
                                                between(60, 1_209_600))
    access_logging: bool = setting(True, "accessLogging", "bool",
                                   "S3 server access logs of the uploads bucket and, with cdn, CloudFront's standard logs, into a "
                                   "private log bucket.")
    access_log_retention_days: int = setting(90, "accessLogRetentionDays", "int",
                                             "Days access logs are kept in the log bucket.", between(1, 3650))
    force_destroy: bool = setting(False, "forceDestroy", "bool",
                                  "Let `pulumi destroy` delete the buckets with everything in them and the table "
                                  "(for dev stacks; off keeps data safe).")
    labels_emulated: bool = setting(False, "labelsEmulated", "bool", "Set only by the local cloud.", declared=False)
    upload_api: bool = setting(False, "uploadApi", "bool",
                               "An authenticated endpoint that hands out one-use presigned uploads (IAM, or JWT when "
                               "jwtIssuer and jwtAudience are set).")
    upload_expiry_seconds: int = setting(300, "uploadExpirySeconds", "int",
                                         "How long an upload grant stays valid, in seconds.", between(10, 3600))
    upload_allowed_origins: tuple[str, ...] = setting(
        (), "uploadAllowedOrigins", "list",
        "Web origins allowed to call the upload API and upload from a browser (CORS); empty: no CORS.",
        Accepts(_origins_ok, "a list of https:// origins (or http://localhost…, or *)"))
    upload_scopes: tuple[str, ...] = setting(
        (), "uploadScopes", "list", "OAuth scopes the JWT route requires (one of them); empty: any token of the audience.",
        Accepts(_strings_ok, "a list of scope names"))
    upload_rate_limit: int = setting(10, "uploadRateLimit", "int",
                                     "Upload grants per second the HTTP API allows (steady rate, JWT mode).",
                                     between(1, 10_000))
    upload_burst_limit: int = setting(20, "uploadBurstLimit", "int", "Upload grants the HTTP API allows in a burst (JWT mode).",
                                      between(1, 5_000))
    upload_api_concurrency: int = setting(5, "uploadApiConcurrency", "int",
                                          "Reserved concurrency of the upload function: at most this many grants at once. "
                                          "0 reserves none (for an account whose quota leaves nothing to reserve): the "
                                          "function then shares the account's unreserved concurrency.",
                                          between(0, 1000))
    jwt_issuer: str | None = setting(None, "jwtIssuer", "str", "With jwtAudience: the upload API's JWT issuer.",
                                     declared=False)
    jwt_audience: str | None = setting(None, "jwtAudience", "str", "With jwtIssuer: the audience tokens must carry.",
                                       declared=False)
    cdn: bool = setting(False, "cdn", "bool",
                        "Serve thumbnails through CloudFront with Origin Access Control (the bucket stays private).")
    cdn_domain: str | None = setting(None, "cdnDomain", "str", "A custom domain for the distribution.", declared=False)
    cdn_certificate_arn: str | None = setting(None, "cdnCertificateArn", "str",
                                              "The ACM certificate (us-east-1) of cdnDomain.", declared=False)

    @property
    def needs_heif(self) -> bool:
        return any(f in HEIF_FORMATS for f in self.allowed_formats)

    @property
    def label_formats(self) -> tuple[str, ...]:
        """Formats sent to Rekognition: the allowed ones it can read."""
        return tuple(f for f in self.allowed_formats if f in REKOGNITION_FORMATS)

    @property
    def queue_fed_functions(self) -> tuple[Function, ...]:
        """The queue-fed functions this stack deploys: the label stage only when an allowed format is one Rekognition
        reads, the CDN purge only with a CDN."""
        return (*(function for function in QUEUE_FED if function != Function.LABELS or self.label_formats),
                *((Function.CDN_PURGE,) if self.cdn else ()))

    def stage(self, name: str) -> StageSettings:
        return getattr(self, name)

    @property
    def image_cpu_seconds(self) -> int:
        """CPU seconds one image may take in the thumbnail stage: a full batch of the slowest images the budget
        allows still ends within 80% of the timeout at the function's share of a CPU."""
        st = self.thumbnails
        return max(1, math.floor(st.timeout * 0.8 * min(1.0, st.vcpus) / st.batch_size))  # RLIMIT_CPU counts whole seconds

    def thumbnail_peak_mb(self) -> dict[str, int]:
        """Worst-case memory of one decode at maxPixels, per allowed format (see DECODE_BYTES_PER_PIXEL)."""
        return {f: FUNCTION_FOOTPRINT_MB + math.ceil(self.max_pixels * DECODE_BYTES_PER_PIXEL[f] / 2**20)
                for f in self.allowed_formats}


FIELDS = {f.metadata["key"]: f for f in dataclasses.fields(Settings)}
FIELDS_BY_NAME = {f.name: f for f in dataclasses.fields(Settings)}


def load(config: Any = None) -> Settings:
    """Read and validate the project's config; raise SettingsError listing every bad key."""
    if config is None:
        import pulumi

        config = pulumi.Config()
    errors: list[str] = []
    values: dict[str, Any] = {}
    for key, spec in FIELDS.items():
        raw = config.get(key)
        if raw is None:
            continue
        try:
            values[spec.name] = _parse(spec.metadata["kind"], raw, spec.name)
        except (ValueError, TypeError) as exc:
            errors.append(f"{PROJECT}:{key}: {exc}")
    if errors:
        raise SettingsError("invalid configuration:\n  " + "\n  ".join(errors))
    return validate(replace(Settings(), **values))


def stack_config(path: Any) -> dict[str, str]:
    """The claimcheck: values of a Pulumi.<stack>.yaml as the CLI hands them to the program: lists and objects as
    JSON, booleans as true/false, everything else as text."""
    import yaml  # the Pulumi SDK's own dependency

    values = (yaml.safe_load(Path(path).read_text()) or {}).get("config") or {}
    prefix = f"{PROJECT}:"
    return {key.removeprefix(prefix): json.dumps(value) if isinstance(value, (list, dict))
            else str(value).lower() if isinstance(value, bool) else str(value)
            for key, value in values.items() if key.startswith(prefix)}


def assignments(items: list[str]) -> dict[str, str]:
    """`KEY=VALUE` pairs (with or without the project prefix) as config values, the way `pulumi config set KEY VALUE`
    stores them; an unknown key is a SettingsError naming the keys there are."""
    values: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip().removeprefix(f"{PROJECT}:")
        if not sep or key not in FIELDS:
            raise SettingsError(f"--set {item!r}: write KEY=VALUE with one of the stack's keys ({', '.join(FIELDS)})")
        values[key] = value
    return values


def load_stack(path: Any) -> Settings:
    """The settings a stack file gives (its values over the defaults), checked as `pulumi up` checks them."""
    return load(stack_config(path))


def _parse(kind: str, raw: str, name: str) -> Any:
    """A config value as the field `name` holds it."""
    if kind == "str":
        return raw.strip() or None
    if kind == "int":
        return _int(raw)
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
            raise ValueError(f"expected an object with {', '.join(STAGE_KEYS)}, got {raw!r}")
        unknown = sorted(set(value) - set(STAGE_KEYS))
        if unknown:
            raise ValueError(f"unknown field(s) {unknown}; accepted: {', '.join(STAGE_KEYS)}")
        return replace(STAGE_DEFAULTS[name], **{STAGE_KEYS[k]: _int(v) for k, v in value.items()})
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

    def bad(key: str, value: Any, accepted: str) -> None:
        errors.append(f"{PROJECT}:{key} = {_show(value)} is out of range (accepted: {accepted})")

    for key, spec in FIELDS.items():
        accepts: Accepts | None = spec.metadata["accepts"]
        value = getattr(s, spec.name)
        if accepts is not None and not accepts.ok(value):
            bad(key, value, accepts.text)
    if not errors and s.dlq_retention_days <= s.queue_retention_days:
        bad("dlqRetentionDays", s.dlq_retention_days, f"more than queueRetentionDays ({s.queue_retention_days}) and at most 14")
    if (s.jwt_issuer is None) != (s.jwt_audience is None) or not (s.jwt_issuer or "https://").startswith("https://"):
        bad("jwtIssuer", s.jwt_issuer, "an https:// issuer URL, set together with jwtAudience (or neither: IAM auth)")
    if s.upload_scopes and s.jwt_issuer is None:
        bad("uploadScopes", s.upload_scopes, "empty unless jwtIssuer and jwtAudience are set (scopes are a JWT feature)")
    if s.upload_burst_limit < s.upload_rate_limit:
        bad("uploadBurstLimit", s.upload_burst_limit, f"at least uploadRateLimit ({s.upload_rate_limit})")
    if (s.cdn_domain is None) != (s.cdn_certificate_arn is None):
        bad("cdnDomain", s.cdn_domain, "set together with cdnCertificateArn (or neither: the distribution's own domain)")
    if s.cdn_certificate_arn is not None and not s.cdn_certificate_arn.startswith("arn:aws:acm:us-east-1:"):
        bad("cdnCertificateArn", s.cdn_certificate_arn, "an ACM certificate ARN in us-east-1 (CloudFront reads certificates only there)")
    for name in STAGE_DEFAULTS:
        _validate_stage(FIELDS_BY_NAME[name].metadata["key"], s.stage(name), errors)
    if not errors:
        _validate_memory(s, errors)
    if not errors:
        from infra import capacity  # it models the stack from these settings: imported once they are whole

        errors.extend(f"{PROJECT}:{problem}" for problem in capacity.problems(s))
    if errors:
        raise SettingsError("invalid configuration:\n  " + "\n  ".join(errors))
    return s


def _show(value: Any) -> str:
    return repr(list(value)) if isinstance(value, tuple) else repr(value)


def _validate_stage(name: str, st: StageSettings, errors: list[str]) -> None:
    def bad(field_name: str, value: Any, accepted: str) -> None:
        errors.append(f"{PROJECT}:{name}.{field_name} = {value!r} is out of range (accepted: {accepted})")

    for key, (low, high) in _STAGE_LIMITS.items():
        value = getattr(st, STAGE_KEYS[key])
        if not low <= value <= high:
            bad(key, value, f"{low:,} to {high:,}")
    if st.batch_size > 10 and st.batching_window < 1:
        bad("batchingWindow", st.batching_window, "at least 1 when batchSize is over 10 (an SQS event source rule)")
    minimum = VISIBILITY_FACTOR * st.timeout + st.batching_window
    if st.visibility_timeout is not None and not minimum <= st.visibility_timeout <= MAX_VISIBILITY_TIMEOUT:
        bad("visibilityTimeout", st.visibility_timeout,
            f"{minimum:,} to {MAX_VISIBILITY_TIMEOUT:,} seconds: at least {VISIBILITY_FACTOR} x timeout ({st.timeout}) "
            f"+ batchingWindow ({st.batching_window})")


def _validate_memory(s: Settings, errors: list[str]) -> None:
    """The worst decode maxPixels allows, in any allowed format, must fit the thumbnail function's memory."""
    budget = s.thumbnails.memory * MEMORY_HEADROOM
    over = {f: mb for f, mb in s.thumbnail_peak_mb().items() if mb > budget}
    if over:
        worst = max(over, key=lambda f: over[f])
        needed = math.ceil(over[worst] / MEMORY_HEADROOM)
        fits = math.floor((budget - FUNCTION_FOOTPRINT_MB) * 2**20 / DECODE_BYTES_PER_PIXEL[worst])
        errors.append(
            f"{PROJECT}:thumbnails.memory = {s.thumbnails.memory} is too small for maxPixels = {s.max_pixels:,}: a "
            f"{worst.upper()} of that size may need {over[worst]:,} MB to decode (accepted: thumbnails.memory of at least "
            f"{needed:,}, or maxPixels of at most {fits:,})")


def describe(spec: dataclasses.Field) -> str:
    """A setting's description and what it accepts, as Pulumi.yaml and the README show it."""
    accepts = spec.metadata["accepts"]
    return spec.metadata["description"] + (f" Accepted: {accepts.text}." if accepts else "")


def pulumi_yaml_config() -> dict[str, Any]:
    """The `config:` block Pulumi.yaml declares, from the fields above (types the CLI's schema accepts)."""
    types = {"int": "integer", "str": "string", "bool": "boolean", "list": "array"}
    declared: dict[str, Any] = {}
    for key, spec in FIELDS.items():
        if not spec.metadata["declared"]:
            continue
        kind = spec.metadata["kind"]
        entry: dict[str, Any] = {"type": types[kind]}
        default: Any = spec.default
        if kind == "list":
            item = "integer" if default and isinstance(default[0], int) else "string"
            entry["items"] = {"type": item}
            default = list(default)
        entry["description"] = describe(spec)
        entry["default"] = default
        declared[key] = entry
    return declared


def readme_rows() -> list[tuple[str, str, str]]:
    """One row per setting for the README: key, default, description and what is accepted."""
    rows = []
    for key, spec in FIELDS.items():
        if key == "labelsEmulated":
            continue
        meta, default = spec.metadata, spec.default
        if meta["kind"] == "stage":
            shown = ", ".join(f"{k} {getattr(default, v)}" for k, v in STAGE_KEYS.items() if k != "visibilityTimeout")
            limits = ", ".join(f"{k} {low:,}–{high:,}" for k, (low, high) in _STAGE_LIMITS.items())
            text = (f"{meta['description']} An object (MB and seconds): {limits} (batchingWindow ≥ 1 when batchSize > 10), "
                    f"visibilityTimeout ≥ {VISIBILITY_FACTOR} × timeout + batchingWindow (the default).")
            rows.append((key, shown, text))
            continue
        shown = "unset" if default is None else f"`{json.dumps(list(default) if isinstance(default, tuple) else default)}`"
        rows.append((key, shown, describe(spec)))
    return rows


if __name__ == "__main__":  # python -m infra.settings: rewrite Pulumi.yaml's config block and the README's table
    from infra import project_file

    project_file.write_config(pulumi_yaml_config())
    project_file.write_readme(project_file.readme_table(readme_rows()))
