"""Where the local cloud differs from a real deployment, in one place.

Functions keep their deployed timeouts (so their queues keep the deployed visibility timeouts): a busy laptop
makes them slower, never timed out. Tests that want a poison message dead-lettered in seconds ask for short
timeouts themselves and say so. What the emulator answers for real services it cannot run (Rekognition's canned
labels) is marked emulated: every function is told which services are (not a setting of the stack: a deployed
function is told nothing).
"""
from __future__ import annotations

from typing import Any

from handlers import stages

LOCAL_CONFIG: dict[str, Any] = {}
EMULATED_SERVICES = ("rekognition",)

# At most this many execution environments per function: the machine has few cores.
MAX_LOCAL_CONCURRENCY = 2


def showcase() -> dict[str, Any]:
    """The config the demo and `make up` run with besides the stack's defaults: what each declared stage asks for to
    be shown (a stage off by default is turned on there; handlers/stages.py, Stage.demo). `--set` overrides it."""
    return {key: value for stage in stages.declared() for key, value in stage.demo.items()}
