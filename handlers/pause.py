"""Pause or resume one stage: the one change an operator may make to the stack's event source mappings.

Operators may invoke this function, never call UpdateEventSourceMapping themselves: IAM can hold that action to
a mapping and to the function it feeds (lambda:FunctionArn), but it has no condition key for what an update
changes, so whoever may call it may also add FilterCriteria (Lambda then deletes every message the filter
rejects), retarget the mapping or change its batching, scaling and response types. This function takes exactly
{"stage": <a stage of this stack>, "enabled": true | false}, refuses anything else with a message that says why,
and sends AWS nothing from the request but the boolean: the mapping's UUID comes from its own configuration.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from handlers import aws, environment
from handlers.observability import logger

STAGE, ENABLED = "stage", "enabled"
_SHOWN = 40  # characters of a caller's stage name quoted back


class PauseRefused(ValueError):
    """A request that is not {"stage": <a stage of this stack>, "enabled": true | false}."""


def pause_request(stage: str, enabled: bool) -> dict[str, Any]:
    """What `python -m ops pause|resume` sends (the one shape `parse` accepts)."""
    return {STAGE: stage, ENABLED: enabled}


def _kind(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(value), "a number" if isinstance(value, int | float) else type(value).__name__)


def parse(event: Any, stages: Mapping[str, str]) -> tuple[str, bool]:
    """(stage, enabled) of a pause request, or PauseRefused naming what is wrong with it."""
    shape = f'send {{"{STAGE}": one of {", ".join(sorted(stages))}, "{ENABLED}": true or false}}'
    if not isinstance(event, dict):
        raise PauseRefused(f"a pause request is an object: {shape} (got {_kind(event)})")
    extra = sorted(str(name)[:_SHOWN] for name in set(event) - {STAGE, ENABLED})
    if extra:
        raise PauseRefused(f"a pause request may ask for a stage and a boolean only, not {', '.join(extra)}: {shape}")
    missing = [name for name in (STAGE, ENABLED) if name not in event]
    if missing:
        raise PauseRefused(f"a pause request needs {' and '.join(missing)}: {shape}")
    stage, enabled = event[STAGE], event[ENABLED]
    if not isinstance(enabled, bool):  # 0 and 1 are not taken for false and true: say which you mean
        raise PauseRefused(f"{ENABLED} must be true or false (got {_kind(enabled)})")
    if not isinstance(stage, str):
        raise PauseRefused(f"{STAGE} must be a stage's name, one of {', '.join(sorted(stages))} (got {_kind(stage)})")
    if stage not in stages:
        raise PauseRefused(f"there is no stage {stage[:_SHOWN]!r} in this stack (its stages: {', '.join(sorted(stages))})")
    return stage, enabled


def handler(event: Any, context: Any) -> dict[str, Any]:
    """Enable or disable the stage's mapping; Lambda answers Enabling or Disabling and settles shortly after."""
    mappings = environment.load().stage_mappings
    stage, enabled = parse(event, mappings)
    answer = aws.client("lambda").update_event_source_mapping(UUID=mappings[stage], Enabled=enabled)
    logger.info("stage mapping updated", extra={"stage": stage, "enabled": enabled, "state": answer["State"]})
    return {STAGE: stage, ENABLED: enabled, "state": answer["State"]}
