"""Every tunable of the pipeline, read from `pulumi config` into one validated object.

Each setting is declared once, as a dataclass field made with `handlers.settings.setting()`: the pipeline's own
(`Settings` below), those several functions read (`handlers.settings.Shared`), and each declared stage's (its
settings dataclass and its size object, in its module: handlers/stages.py). Its config key, kind, default, accepted
range and description live together, and `Pulumi.yaml`'s `config:` block and the README's table are generated from
them (`python -m infra.settings` rewrites both; a test fails when they are stale). A bad value stops the program with
a message naming the key and what it accepts, every bad key at once.
"""
from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from handlers import stages
from handlers.names import PROJECT, Function
from handlers.settings import (
    KNOWN_FORMATS,
    MB_PER_VCPU,
    SHARED_FIELDS,
    STAGE_KEYS,
    STAGE_LIMITS,
    VISIBILITY_FACTOR,
    Accepts,
    Shared,
    StageSettings,
    between,
    is_shared,
    one_of,
    parse,
    setting,
    whole,
)
from handlers.stages import Configured
from infra import concurrency

__all__ = ["KNOWN_FORMATS", "MB_PER_VCPU", "Configured", "Settings", "SettingsError", "StageSettings", "load"]

# Formats whose decoder is not in Pillow itself: the layer adds pillow-heif for them.
HEIF_FORMATS = ("heic",)
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
# The CDN purge function is the pipeline's own, not a stage: its size is one of the pipeline's settings.
# With a CDN: batches of up to 100 purge requests a few seconds apart become one invalidation each (at most 1,000
# paths; the rest wait); two at a time (the least an SQS event source takes) keep inside CloudFront's 3,000 paths in
# progress.
CDN_PURGE_SIZING = StageSettings(memory=256, timeout=30, batch_size=100, batching_window=5, max_concurrency=2)


class SettingsError(ValueError):
    """One or more config values are out of range; the message lists each."""


def _strings_ok(value: Any) -> bool:
    return isinstance(value, tuple) and all(isinstance(v, str) and v and " " not in v for v in value)


QUOTA_KEYS = ("uploads", "bytes")
# A host name as ACM and API Gateway take it: lower case (API Gateway refuses upper case), labels of 1-63 letters,
# digits and hyphens, at most 253 characters, no wildcard (the stack serves one name).
DOMAIN = re.compile(r"(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}")
DOMAIN_TEXT = "a lower-case host name such as images.example.com, or unset"
ZONE_TEXT = "a Route 53 hosted zone ID such as Z0123456789ABCDEFGHIJ, or unset"


def _domain_ok(value: Any) -> bool:
    return value is None or (isinstance(value, str) and DOMAIN.fullmatch(value) is not None)


def _zone_ok(value: Any) -> bool:
    return value is None or (isinstance(value, str) and re.fullmatch(r"Z[A-Z0-9]{1,31}", value) is not None)


def _quota_ok(value: Any) -> bool:
    return value is None or (isinstance(value, dict) and bool(value) and set(value) <= set(QUOTA_KEYS) and all(
        isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value.values()))


def _origins_ok(value: Any) -> bool:
    return _strings_ok(value) and all(v == "*" or v.startswith(("https://", "http://localhost", "http://127.0.0.1"))
                                      for v in value) and len(value) <= 100


@dataclass(frozen=True)
class Runtime:
    """What every function of the stack is built with."""

    runtime: str
    architecture: str
    tracing: bool
    log_retention_days: int


@dataclass(frozen=True)
class Queues:
    """What every queue-fed function's queues are made with."""

    queue_retention_days: int
    dlq_retention_days: int
    max_receive_count: int
    oldest_message_alarm_seconds: int


@dataclass(frozen=True)
class Settings:
    """The stack's settings: the pipeline's own (the fields below), those several functions read (`shared`), and
    each declared stage's, configured (`stages`, by name; `configured(name)`)."""

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
    event_bus_name: str | None = setting(
        None, "eventBusName", "str",
        "The EventBridge bus settled images' events go to, when it exists already (the account's `default`, or another "
        "team's in this account and Region); unset: the stack makes its own.",
        # EventBridge API Reference, CreateEventBus: Name, 1 to 256 of [/.\-_A-Za-z0-9] (a name; not an ARN here).
        Accepts(lambda v: v is None or re.fullmatch(r"[/.\-_A-Za-z0-9]{1,256}", v) is not None,
                "an event bus name (letters, digits, '.', '-', '_', '/'; at most 256), or unset"),
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
    batch_operations: bool = setting(False, "batchOperations", "bool",
                                     "Onboard a bucket too large for one machine with S3 Batch Operations: a daily S3 "
                                     "Inventory of uploads/ into the log bucket, and the role a job assumes to invoke the "
                                     "backfill function over it, its completion report into the log bucket (needs "
                                     "accessLogging).")
    force_destroy: bool = setting(False, "forceDestroy", "bool",
                                  "Let `pulumi destroy` delete the buckets with everything in them and the table "
                                  "(for dev stacks; off keeps data safe).")
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
    backfill_concurrency: int = setting(10, "backfillConcurrency", "int",
                                        "Reserved concurrency of the backfill function with batchOperations: at most "
                                        "this many invocations of an S3 Batch Operations job at once (a job otherwise "
                                        "invokes it as fast as Lambda allows). Without batchOperations nothing is "
                                        "reserved: ops backfill invokes it one request at a time.",
                                        between(0, 1000))
    upload_quota: dict[str, int] | None = setting(
        None, "uploadQuota", "json",
        "Per owner and UTC day, what the upload API grants at most: {\"uploads\": grants, \"bytes\": their declared "
        "sizes summed}; a grant over either gets a 429 that says when the day resets. Unset, or 0 for one: no limit.",
        Accepts(_quota_ok, 'an object {"uploads": N, "bytes": N} of whole numbers from 0 (either may be left out), or unset'),
        declared=False)
    jwt_issuer: str | None = setting(None, "jwtIssuer", "str", "With jwtAudience: the upload API's JWT issuer.",
                                     declared=False)
    jwt_audience: str | None = setting(None, "jwtAudience", "str", "With jwtIssuer: the audience tokens must carry.",
                                       declared=False)
    cdn: bool = setting(False, "cdn", "bool",
                        "Serve thumbnails through CloudFront with Origin Access Control (the bucket stays private).")
    cdn_domain: str | None = setting(
        None, "cdnDomain", "str",
        "A domain of your own for the distribution (with cdn), such as images.example.com, served with TLS 1.2 at "
        "least: the stack requests its ACM certificate in us-east-1, validated by DNS (unless cdnCertificateArn names "
        "one), and thumbnail URLs use it.", Accepts(_domain_ok, DOMAIN_TEXT), declared=False)
    cdn_certificate_arn: str | None = setting(None, "cdnCertificateArn", "str",
                                              "An ACM certificate (us-east-1) of cdnDomain you manage yourself; unset: "
                                              "the stack requests one.", declared=False)
    cdn_hosted_zone_id: str | None = setting(
        None, "cdnHostedZoneId", "str",
        "The Route 53 hosted zone of cdnDomain: the stack writes the certificate's validation record and A/AAAA "
        "aliases to the distribution there. Unset: the records are stack outputs (cdnDnsRecords) for your DNS.",
        Accepts(_zone_ok, ZONE_TEXT), declared=False)
    upload_api_domain: str | None = setting(
        None, "uploadApiDomain", "str",
        "A domain of your own for the upload API (JWT mode only: a function URL cannot take one), with a Regional "
        "ACM certificate the stack requests and validates by DNS, and TLS 1.2.", Accepts(_domain_ok, DOMAIN_TEXT),
        declared=False)
    upload_api_hosted_zone_id: str | None = setting(
        None, "uploadApiHostedZoneId", "str",
        "The Route 53 hosted zone of uploadApiDomain (as cdnHostedZoneId; unset: uploadApiDnsRecords is an output).",
        Accepts(_zone_ok, ZONE_TEXT), declared=False)
    cdn_purge: StageSettings = setting(CDN_PURGE_SIZING, "cdnPurge", "stage",
                                       "The function that makes CloudFront forget deleted thumbnails (with cdn).",
                                       declared=False)
    # Not config keys: the shared settings and each declared stage's, read with the rest by `load`.
    shared: Shared = field(default_factory=Shared, metadata={"key": None})
    stages: Mapping[str, Configured] = field(default_factory=dict, metadata={"key": None})

    def __post_init__(self) -> None:
        if not self.stages:  # the declared stages with their defaults (and the shared settings given)
            object.__setattr__(self, "stages", configure(self.shared, {}, {}))

    # --- the stages --------------------------------------------------------------------------------------------
    def configured(self, name: str) -> Configured:
        return self.stages[name]

    def stage(self, name: str) -> StageSettings:
        """A queue-fed function's size: a declared stage's, or the CDN purge function's."""
        return self.cdn_purge if name == Function.CDN_PURGE else self.stages[name].sizing

    @property
    def deployed(self) -> list[Configured]:
        """The declared stages this stack deploys, in the order an upload meets them."""
        return [c for c in self.stages.values() if c.stage.deployed(c.settings)]

    @property
    def queue_fed_functions(self) -> tuple[str, ...]:
        """The queue-fed functions this stack deploys: its stages, and the CDN purge only with a CDN."""
        return (*(c.name for c in self.deployed), *((Function.CDN_PURGE,) if self.cdn else ()))

    @property
    def concurrency(self) -> concurrency.ConcurrencyBudget:
        """How the stack shares the account's Regional Lambda concurrency quota."""
        reserved = {"upload API": self.upload_api_concurrency} if self.upload_api and self.upload_api_concurrency else {}
        if self.batch_operations and self.backfill_concurrency:
            reserved[Function.BACKFILL.value] = self.backfill_concurrency
        return concurrency.ConcurrencyBudget(
            self.account_concurrency, reserved, {name: self.stage(name).max_concurrency for name in self.queue_fed_functions},
            self.concurrency_reserve)

    # --- what each component is given of them --------------------------------------------------------------------
    @property
    def functions(self) -> Runtime:
        return Runtime(self.runtime, self.architecture, self.tracing, self.log_retention_days)

    @property
    def queues(self) -> Queues:
        return Queues(self.queue_retention_days, self.dlq_retention_days, self.max_receive_count,
                      self.oldest_message_alarm_seconds)

    # --- what several parts of the program read of the shared settings ---------------------------------------------
    @property
    def quota(self) -> tuple[int, int]:
        """(grants, bytes) an owner may have per UTC day; 0 for either: no limit on it."""
        quota = self.upload_quota or {}
        return quota.get("uploads", 0), quota.get("bytes", 0)

    @property
    def allowed_formats(self) -> tuple[str, ...]:
        return self.shared.allowed_formats

    @property
    def max_upload_bytes(self) -> int:
        return self.shared.max_upload_bytes

    @property
    def max_pixels(self) -> int:
        return self.shared.max_pixels

    @property
    def needs_heif(self) -> bool:
        return any(f in HEIF_FORMATS for f in self.allowed_formats)


@dataclass(frozen=True)
class Key:
    """Where a config key's value goes: a pipeline field, a shared one, a stage's setting, or a stage's size."""

    key: str
    spec: dataclasses.Field
    owner: str  # "pipeline", "shared", or a stage's name
    sizing: bool = False  # the stage's size object


def config_keys() -> dict[str, Key]:
    """Every config key the stack takes: the shared ones, then each stage's, then the pipeline's own; one declaration
    each (a key declared twice is a mistake in the program)."""
    found: dict[str, Key] = {}

    def add(entry: Key) -> None:
        if entry.key in found:
            raise AssertionError(f"config key {entry.key!r} is declared twice ({found[entry.key].owner}, {entry.owner})")
        found[entry.key] = entry

    for spec in SHARED_FIELDS.values():
        add(Key(spec.metadata["key"], spec, "shared"))
    for stage in stages.declared():
        for spec in dataclasses.fields(stage.settings):
            if spec.metadata.get("key") and not is_shared(spec):
                add(Key(spec.metadata["key"], spec, stage.name))
        sizing = setting(stage.sizing, stage.config_key, "stage", stage.description, declared=False)
        add(Key(stage.config_key, _named(sizing, stage.config_key), stage.name, sizing=True))
    for spec in dataclasses.fields(Settings):
        if spec.metadata.get("key"):
            add(Key(spec.metadata["key"], spec, "pipeline"))
    return found


def _named(spec: Any, name: str) -> dataclasses.Field:
    """A loose dataclasses.field (not a class's) with the name a message shows."""
    spec.name = name
    return spec


def configure(shared: Shared, options: Mapping[str, Mapping[str, Any]],
              sizes: Mapping[str, StageSettings]) -> dict[str, Configured]:
    """Each declared stage with its options given (by stage, then field name) over its defaults, the shared
    settings it reads, its size, then what it completes from the others (its `complete`)."""
    configured: dict[str, Configured] = {}
    for stage in stages.declared():
        from_shared = {spec.name: getattr(shared, spec.name) for spec in dataclasses.fields(stage.settings)
                       if is_shared(spec)}
        values = stage.settings(**from_shared, **options.get(stage.name, {}))
        configured[stage.name] = Configured(stage, values, sizes.get(stage.name, stage.sizing))
    return {name: replace(c, settings=c.stage.complete(c, configured)) for name, c in configured.items()}


def load(config: Any = None) -> Settings:
    """Read and validate the project's config; raise SettingsError listing every bad key."""
    if config is None:
        import pulumi

        config = pulumi.Config()
    errors: list[str] = []
    pipeline: dict[str, Any] = {}
    shared: dict[str, Any] = {}
    options: dict[str, dict[str, Any]] = {}
    sizes: dict[str, StageSettings] = {}
    for key, entry in config_keys().items():
        raw = config.get(key)
        if raw is None:
            continue
        try:
            if entry.sizing or entry.spec.metadata["kind"] == "stage":
                default: Any = entry.spec.default
                value: Any = _sizing(default, raw)
            else:
                value = parse(entry.spec, raw)
        except (ValueError, TypeError) as exc:
            errors.append(f"{PROJECT}:{key}: {exc}")
            continue
        if entry.owner == "pipeline":
            pipeline[entry.spec.name] = value
        elif entry.owner == "shared":
            shared[entry.spec.name] = value
        elif entry.sizing:
            sizes[entry.owner] = value
        else:
            options.setdefault(entry.owner, {})[entry.spec.name] = value
    if errors:
        raise SettingsError("invalid configuration:\n  " + "\n  ".join(errors))
    common = Shared(**shared)
    return validate(replace(Settings(), **pipeline, shared=common, stages=configure(common, options, sizes)))


def _sizing(default: StageSettings, raw: str) -> StageSettings:
    value = json.loads(raw)
    if not isinstance(value, dict):
        raise ValueError(f"expected an object with {', '.join(STAGE_KEYS)}, got {raw!r}")
    unknown = sorted(set(value) - set(STAGE_KEYS))
    if unknown:
        raise ValueError(f"unknown field(s) {unknown}; accepted: {', '.join(STAGE_KEYS)}")
    return replace(default, **{STAGE_KEYS[k]: whole(v) for k, v in value.items()})


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
    known = config_keys()
    values: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip().removeprefix(f"{PROJECT}:")
        if not sep or key not in known:
            raise SettingsError(f"--set {item!r}: write KEY=VALUE with one of the stack's keys ({', '.join(known)})")
        values[key] = value
    return values


def load_stack(path: Any) -> Settings:
    """The settings a stack file gives (its values over the defaults), checked as `pulumi up` checks them."""
    return load(stack_config(path))


def value_of(s: Settings, entry: Key) -> Any:
    if entry.owner == "pipeline":
        return getattr(s, entry.spec.name)
    if entry.owner == "shared":
        return getattr(s.shared, entry.spec.name)
    configured = s.configured(entry.owner)
    return configured.sizing if entry.sizing else getattr(configured.settings, entry.spec.name)


def validate(s: Settings) -> Settings:
    """Check every value against its accepted range; raise one SettingsError naming each bad key."""
    errors: list[str] = []

    def bad(key: str, value: Any, accepted: str) -> None:
        errors.append(f"{PROJECT}:{key} = {_show(value)} is out of range (accepted: {accepted})")

    for key, entry in config_keys().items():
        accepts: Accepts | None = entry.spec.metadata["accepts"]
        value = value_of(s, entry)
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
    if s.upload_quota is not None and _quota_ok(s.upload_quota):
        if not s.upload_api:
            bad("uploadQuota", s.upload_quota, "unset unless uploadApi is true (the quota is counted when a grant is minted)")
        elif 0 < s.quota[1] < s.max_upload_bytes:
            bad("uploadQuota", s.upload_quota, f"bytes 0 or at least maxUploadBytes ({s.max_upload_bytes:,}): below it, "
                "a file the API accepts could never be granted")
    if s.cdn_domain is not None and not s.cdn:
        bad("cdnDomain", s.cdn_domain, "unset unless cdn is true (it names the distribution)")
    for key, value in (("cdnCertificateArn", s.cdn_certificate_arn), ("cdnHostedZoneId", s.cdn_hosted_zone_id)):
        if value is not None and s.cdn_domain is None:
            bad(key, value, "unset unless cdnDomain is set (it belongs to that domain)")
    if s.upload_api_domain is not None and not (s.upload_api and s.jwt_issuer):
        # Lambda Developer Guide, "Select a method to invoke your Lambda function using an HTTP request": custom
        # domain names are an API Gateway feature; a function URL has only its own lambda-url host.
        bad("uploadApiDomain", s.upload_api_domain, "unset unless uploadApi is true with jwtIssuer and jwtAudience: the "
            "domain is served by API Gateway's HTTP API, and a Lambda function URL (IAM mode) cannot take a custom "
            "domain; put CloudFront in front of it yourself if you need one")
    if s.upload_api_hosted_zone_id is not None and s.upload_api_domain is None:
        bad("uploadApiHostedZoneId", s.upload_api_hosted_zone_id, "unset unless uploadApiDomain is set")
    for key, domain, zone in (("cdnDomain", s.cdn_domain, s.cdn_hosted_zone_id),
                              ("uploadApiDomain", s.upload_api_domain, s.upload_api_hosted_zone_id)):
        # Without a zone the stack's answer is a CNAME, which cannot sit at a zone's apex (RFC 1034, 3.6.2: a CNAME
        # allows no other data, and an apex holds SOA and NS); a name of two labels is always an apex.
        if domain is not None and zone is None and _domain_ok(domain) and domain.count(".") == 1:
            bad(key, domain, f"a name under a zone's apex (such as images.{domain}), or the apex with "
                f"{key.replace('Domain', 'HostedZoneId')} (a Route 53 zone the stack writes A/AAAA aliases in): "
                "without a zone the stack's answer is a CNAME, which cannot sit at an apex")
    if s.batch_operations and not s.backfill_concurrency:
        bad("backfillConcurrency", s.backfill_concurrency, "at least 1 with batchOperations: a job would otherwise invoke "
            "the backfill function as fast as Lambda allows, taking the stages' share of the account's concurrency")
    if s.batch_operations and not s.access_logging:
        bad("batchOperations", s.batch_operations, "false unless accessLogging is on (the inventory and the job's "
            "completion reports go to the log bucket)")
    if s.cdn_certificate_arn is not None and not s.cdn_certificate_arn.startswith("arn:aws:acm:us-east-1:"):
        bad("cdnCertificateArn", s.cdn_certificate_arn, "an ACM certificate ARN in us-east-1 (CloudFront reads certificates only there)")
    _validate_stage("cdnPurge", s.cdn_purge, errors)
    for configured in s.stages.values():
        _validate_stage(configured.stage.config_key, configured.sizing, errors)
    if not errors:  # what cannot work, each stage's in its own words and the whole stack's, all at once
        found = [*(p for configured in s.deployed for p in configured.stage.problems(configured, s)),
                 *(p for configured in s.deployed if configured.stage.feed == stages.Feed.CLAIM_CHECKS
                   for p in stages.filter_problems(configured.name, configured.stage.subscription(configured.settings))),
                 *concurrency.problems(s.concurrency)]
        errors.extend(f"{PROJECT}:{problem}" for problem in found)
    if errors:
        raise SettingsError("invalid configuration:\n  " + "\n  ".join(errors))
    return s


def warnings(s: Settings) -> list[str]:
    """Configurations that work but waste, each stage's in its own words."""
    return [warning for configured in s.deployed for warning in configured.stage.warnings(configured, s)]


def _show(value: Any) -> str:
    return repr(list(value)) if isinstance(value, tuple) else repr(value)


def _validate_stage(name: str, st: StageSettings, errors: list[str]) -> None:
    def bad(field_name: str, value: Any, accepted: str) -> None:
        errors.append(f"{PROJECT}:{name}.{field_name} = {value!r} is out of range (accepted: {accepted})")

    for key, (low, high) in STAGE_LIMITS.items():
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


def describe(spec: dataclasses.Field) -> str:
    """A setting's description and what it accepts, as Pulumi.yaml and the README show it."""
    accepts = spec.metadata["accepts"]
    return spec.metadata["description"] + (f" Accepted: {accepts.text}." if accepts else "")


def pulumi_yaml_config() -> dict[str, Any]:
    """The `config:` block Pulumi.yaml declares, from every declaration (types the CLI's schema accepts)."""
    types = {"int": "integer", "str": "string", "bool": "boolean", "list": "array", "float": "number"}
    declared: dict[str, Any] = {}
    for key, entry in config_keys().items():
        spec = entry.spec
        if not spec.metadata["declared"]:
            continue
        kind = spec.metadata["kind"]
        item: dict[str, Any] = {"type": types[kind]}
        default: Any = spec.default
        if kind == "list":
            item["items"] = {"type": "integer" if default and isinstance(default[0], int) else "string"}
            default = list(default)
        item["description"] = describe(spec)
        item["default"] = default
        declared[key] = item
    return declared


def readme_rows() -> list[tuple[str, str, str]]:
    """One row per setting for the README: key, default, description and what is accepted."""
    rows = []
    for key, entry in config_keys().items():
        spec = entry.spec
        meta, default = spec.metadata, spec.default
        if meta["kind"] == "stage":
            shown = ", ".join(f"{k} {getattr(default, v)}" for k, v in STAGE_KEYS.items() if k != "visibilityTimeout")
            limits = ", ".join(f"{k} {low:,}–{high:,}" for k, (low, high) in STAGE_LIMITS.items())
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
