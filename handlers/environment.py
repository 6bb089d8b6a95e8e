"""What a function is given: where the stack's resources are (a Link of the program sets each variable), its own
settings (decoded by handlers.settings from the variables its declaration names), and what the local cloud
emulates. Read once per execution environment, each part on first use, so a function needs only what it uses; a
missing or malformed variable is a ConfigurationError naming it.
"""
from __future__ import annotations

import json
import os
from functools import cache, cached_property
from typing import Any, TypeVar

from handlers.names import Env, thumbnail_settings
from handlers.settings import ConfigurationError, from_environment

__all__ = ["ConfigurationError", "Environment", "load", "thumbnail_settings"]

T = TypeVar("T")


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
    """Each variable is read on first use."""

    def __init__(self) -> None:
        self._settings: dict[type, Any] = {}

    def settings(self, cls: type[T]) -> T:
        """This function's settings of the dataclass `cls` (its stage's declaration), as the program encoded them."""
        if cls not in self._settings:
            self._settings[cls] = from_environment(cls)
        return self._settings[cls]

    def emulates(self, service: str) -> bool:
        """Whether the local cloud emulates `service` for this function (its answers are marked emulated)."""
        return service in os.environ.get(Env.EMULATED, "").split(",")

    table_name = property(lambda self: _get(Env.TABLE_NAME))
    topic_arn = property(lambda self: _get(Env.TOPIC_ARN))
    thumbnails_bucket = property(lambda self: _get(Env.THUMBNAILS_BUCKET))
    uploads_bucket = property(lambda self: _get(Env.UPLOADS_BUCKET))
    event_bus_name = property(lambda self: _get(Env.EVENT_BUS_NAME))
    upload_expiry_seconds = cached_property(lambda self: _int(Env.UPLOAD_EXPIRY_SECONDS))
    quota_table_name = property(lambda self: _get(Env.QUOTA_TABLE_NAME))
    duplicates_table_name = property(lambda self: _get(Env.DUPLICATES_TABLE_NAME))
    # Set when thumbnails are served through CloudFront: each output gets its URL.
    thumbnails_base_url = cached_property(lambda self: os.environ.get(Env.THUMBNAILS_BASE_URL, "").rstrip("/"))
    # The distribution the purge function invalidates thumbnails in.
    distribution_id = cached_property(lambda self: os.environ.get(Env.DISTRIBUTION_ID, ""))
    # Set when thumbnails are served through CloudFront: the thumbnail stage asks the purge function, through this
    # queue, to invalidate what it deletes.
    purge_queue_url = cached_property(lambda self: os.environ.get(Env.PURGE_QUEUE_URL, ""))
    # The pause function's table: stage -> its event source mapping's UUID.
    stage_mappings = cached_property(lambda self: _string_table(Env.STAGE_MAPPINGS))
    # Lambda sets it to the function's memory; the local cloud too.
    function_memory_mb = cached_property(lambda self: _int("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "1024"))


@cache
def load() -> Environment:
    """The function's environment, one instance per execution environment."""
    return Environment()
