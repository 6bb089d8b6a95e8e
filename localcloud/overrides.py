"""Where the local cloud differs from a real deployment, in one place.

Short timeouts make visibility timeouts short, so a failed message is retried
in seconds and a poison message reaches its dead-letter queue in well under a
minute instead of tens of minutes. Labels come from moto's canned Rekognition
and are marked as emulated.
"""
from __future__ import annotations

from typing import Any

LOCAL_CONFIG: dict[str, Any] = {
    "intake": {"timeout": 2, "batchSize": 10, "batchingWindow": 0, "maxConcurrency": 2},
    "thumbnails": {"timeout": 2, "batchSize": 5, "batchingWindow": 0, "maxConcurrency": 2},
    "labels": {"timeout": 2, "batchSize": 10, "batchingWindow": 0, "maxConcurrency": 2},
    "maxReceiveCount": 3,
    "labelsEmulated": True,
}

# At most this many execution environments per function: the machine has few cores.
MAX_LOCAL_CONCURRENCY = 2
