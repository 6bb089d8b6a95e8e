"""Where the local cloud differs from a real deployment, in one place.

Functions keep their deployed timeouts (so their queues keep the deployed visibility timeouts): a busy laptop
makes them slower, never timed out. Tests that want a poison message dead-lettered in seconds ask for short
timeouts themselves and say so. What the emulator answers for real services it cannot run (Rekognition's canned
labels) is marked emulated: every function is told which services are (not a setting of the stack: a deployed
function is told nothing).
"""
from __future__ import annotations

from typing import Any

LOCAL_CONFIG: dict[str, Any] = {}
EMULATED_SERVICES = ("rekognition",)

# At most this many execution environments per function: the machine has few cores.
MAX_LOCAL_CONCURRENCY = 2
