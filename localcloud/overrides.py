"""Where the local cloud differs from a real deployment, in one place.

Functions keep their deployed timeouts (so their queues keep the deployed visibility timeouts): a busy laptop
makes them slower, never timed out. Tests that want a poison message dead-lettered in seconds ask for short
timeouts themselves and say so. Labels come from moto's canned Rekognition and are marked as emulated.
"""
from __future__ import annotations

from typing import Any

LOCAL_CONFIG: dict[str, Any] = {
    "labelsEmulated": True,
}

# At most this many execution environments per function: the machine has few cores.
MAX_LOCAL_CONCURRENCY = 2
