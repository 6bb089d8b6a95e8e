"""How a setting is declared, checked and carried to a function, written once for the program and the handlers.

A setting is a field of a frozen dataclass, made with `setting()`: its config key (what `pulumi config set` takes),
kind, default, what it accepts and, when a function reads it, the environment variable that carries it there. The
program reads the stack's config into these dataclasses (infra/settings.py); each function gets its own settings
in its environment through `to_environment()` and reads them back with `from_environment()`, so a value is encoded
and decoded by one codec and its default is written once. `shared()` makes a field that is a pipeline-wide setting
(`Shared`) read by several functions, declared once there.

This module imports only the standard library and handlers.names: the handlers import it in Lambda, and the program
without the handlers' own dependencies.
"""
from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

# Lambda allocates CPU in proportion to memory: 1,769 MB is one vCPU (Lambda developer guide, "Memory and computing power").
MB_PER_VCPU = 1769
# Lambda's guidance for SQS sources: visibility timeout >= 6 x function timeout (+ batching window).
VISIBILITY_FACTOR = 6
# Image formats the pipeline knows how to sniff and thumbnail.
KNOWN_FORMATS = ("jpeg", "png", "webp", "gif", "tiff", "heic", "avif")


class ConfigurationError(RuntimeError):
    """A function's environment lacks a setting, or holds one that does not parse."""


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


def setting(default: Any, key: str | None, kind: str, description: str, accepts: Accepts | None = None, *,
            declared: bool = True, env: str | None = None) -> Any:
    """A settings field. `key`: its config key (None: not configured, only computed). `kind`: int, float, str, bool,
    list, json. `declared`: in Pulumi.yaml (an optional key without a default is not: the CLI would require it).
    `env`: the environment variable that carries it to the functions that read it."""
    if isinstance(default, (list, dict)):
        raise TypeError("use a tuple for list defaults")
    return field(default=default, metadata={"key": key, "kind": kind, "description": description, "accepts": accepts,
                                            "declared": declared, "env": env})


def shared(key: str) -> Any:
    """A field that is the pipeline-wide setting `key` of `Shared`: its value, kind and variable are that one's."""
    spec = SHARED_FIELDS[key]
    return field(default=spec.default, metadata={**spec.metadata, "shared": True})


def spec_of(cls: type, name: str) -> dataclasses.Field:
    return next(f for f in dataclasses.fields(cls) if f.name == name)


def is_shared(spec: dataclasses.Field) -> bool:
    return bool(spec.metadata.get("shared"))


# --- the codec -------------------------------------------------------------------------------------------------

def parse(spec: dataclasses.Field, raw: str) -> Any:
    """A value as `pulumi config` hands it to the program (text; lists and objects as JSON) -> the field's value."""
    kind = spec.metadata["kind"]
    if kind == "str":
        return raw.strip() or None
    if kind == "int":
        return whole(raw)
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
    if kind == "json":
        return value
    raise AssertionError(kind)


def whole(raw: Any) -> int:
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


def encode(spec: dataclasses.Field, value: Any) -> str:
    """A value as its environment variable holds it."""
    kind = spec.metadata["kind"]
    if kind == "bool":
        return "true" if value else "false"
    if kind == "list":
        return ",".join(map(str, value or ()))  # an unset list (None) as an empty one
    if kind == "json":
        return json.dumps(value, separators=(",", ":"))
    return "" if value is None else str(value)


def decode(spec: dataclasses.Field, text: str) -> Any:
    """An environment variable's text -> the field's value (the inverse of `encode`)."""
    kind = spec.metadata["kind"]
    if kind == "list":
        items = tuple(part.strip() for part in text.split(",") if part.strip())
        default: Any = spec.default
        numeric = bool(default) and isinstance(default[0], int)
        return tuple(int(item) for item in items) if numeric else items
    if kind == "json":
        return json.loads(text)
    if kind == "str":
        return text or None
    return parse(spec, text)


def to_environment(settings: Any) -> dict[str, str]:
    """The environment variables that carry `settings` (a settings dataclass) to a function."""
    return {spec.metadata["env"]: encode(spec, getattr(settings, spec.name))
            for spec in dataclasses.fields(settings) if spec.metadata.get("env")}


T = TypeVar("T")


def from_environment(cls: type[T], environ: Mapping[str, str] | None = None) -> T:
    """`cls`'s settings as the program put them in this function's environment; a variable that is missing or does
    not parse is a ConfigurationError naming it (a default is never taken for one the program should have set)."""
    environ = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    for spec in dataclasses.fields(cls):  # type: ignore[arg-type]
        variable = spec.metadata.get("env")
        if not variable:
            continue
        if variable not in environ:
            raise ConfigurationError(f"environment variable {variable} is not set")
        try:
            values[spec.name] = decode(spec, environ[variable])
        except (ValueError, TypeError) as exc:
            raise ConfigurationError(f"environment variable {variable}={environ[variable]!r} is not a {spec.metadata['kind']}: "
                                     f"{exc}") from exc
    return cls(**values)


# --- a function's size and feed --------------------------------------------------------------------------------

@dataclass(frozen=True)
class StageSettings:
    """How one queue-fed function is sized and fed from its queue."""

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


# The object a stage's sizing is configured as (`pulumi config set --path claimcheck:thumbnails.memory 2048`).
STAGE_KEYS = {"memory": "memory", "timeout": "timeout", "batchSize": "batch_size",
              "batchingWindow": "batching_window", "maxConcurrency": "max_concurrency",
              "visibilityTimeout": "visibility_timeout"}
STAGE_LIMITS = {"memory": (128, 10240), "timeout": (1, 900), "batchSize": (1, 10000),
                "batchingWindow": (0, 300), "maxConcurrency": (2, 1000)}


# --- what several functions read ------------------------------------------------------------------------------

def _formats_ok(value: Any) -> bool:
    return (isinstance(value, tuple) and bool(value) and all(f in KNOWN_FORMATS for f in value)
            and len(set(value)) == len(value))


@dataclass(frozen=True)
class Shared:
    """The pipeline-wide settings more than one function reads (a stage names those it reads with `shared()`)."""

    allowed_formats: tuple[str, ...] = setting(
        ("jpeg", "png", "webp", "gif"), "allowedFormats", "list", "Image formats accepted at intake, judged by content.",
        Accepts(_formats_ok, f"a non-empty list without repeats of {', '.join(KNOWN_FORMATS)}"), env="ALLOWED_FORMATS")
    max_upload_bytes: int = setting(25 * 1024 * 1024, "maxUploadBytes", "int",
                                    "Largest upload accepted, in bytes (5 GiB at most).", between(1, 5 * 1024**3),
                                    env="MAX_UPLOAD_BYTES")
    max_pixels: int = setting(50_000_000, "maxPixels", "int",
                              "Largest image accepted, in pixels (width x height), checked on the header before decoding.",
                              between(1, 1_000_000_000), env="MAX_PIXELS")


SHARED_FIELDS = {spec.metadata["key"]: spec for spec in dataclasses.fields(Shared)}
