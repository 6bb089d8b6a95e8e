"""A small soak (make test-soak, .ci/run): hostile delivery and failing AWS calls at high rates, and nothing lost."""
from __future__ import annotations

import pytest

from localcloud import soak

# Beside make test's other worker it took 287 s of make test's ten minutes (78 s alone): CI runs it after make test.
pytestmark = pytest.mark.soak


def test_nothing_is_lost_under_high_fault_rates(tmp_path):
    # Three receives (the fewest the settings allow) before the DLQ: the poison upload is dead-lettered in ~40 s, and
    # the random faults may dead-letter others too, which must then be accounted for like it.
    plan = soak.SoakPlan(images=24, fault_rate=0.1, duplicate_rate=0.3, delay_rate=0.15, kill_rate=0.1,
                         function_timeout=2, max_receive_count=3, seed=11, timeout=240)
    result = soak.run(plan, workdir=tmp_path)
    print(result.line())
    assert result.problems == []
    assert result.lost == 0
    assert result.keys == result.done + result.rejected + result.failed + result.deleted + result.dead_lettered
    assert result.dead_lettered >= 1  # the poison upload, after maxReceiveCount deliveries
    stats = result.poller_stats
    # The faults really happened: duplicates, delays, kills and retries, all survived.
    assert sum(s.get("duplicated", 0) for s in stats.values()) > 0
    assert sum(s.get("killed", 0) for s in stats.values()) > 0
    assert result.retried > 0 and result.duplicates_suppressed > 0
