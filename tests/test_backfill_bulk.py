"""The heavier backfill suite (make test-backfill, after make test in .ci/run): 2,000 objects that were in the
uploads bucket before the pipeline, tiny images of four formats, every eighth not an image, 100 already processed,
backfilled through the whole local cloud, the walk SIGKILLed halfway and resumed: every object is accounted for
once, and its record says what its count says. tests/test_ops_backfill.py runs the same story with ~100 objects."""
from __future__ import annotations

import time

import pytest

from localcloud.cloud import LocalCloud
from tests.backfill_bucket import accounted, generate, killed_halfway, ops

pytestmark = pytest.mark.backfill
COUNT, PROCESSED, BATCH = 2_000, 100, 25


@pytest.fixture(scope="module")
def cloud(tmp_path_factory):
    with LocalCloud(workdir=tmp_path_factory.mktemp("backfill-bulk")) as running:
        running.write_discovery()
        yield running


def test_two_thousand_objects_and_a_hundred_processed_killed_halfway_and_resumed_are_all_accounted_for(cloud):
    started = time.monotonic()
    generated = generate(cloud, count=COUNT, processed=PROCESSED)
    made = time.monotonic()
    args = ["--all", "--rate", "40", "--batch", str(BATCH)]
    saved = killed_halfway(cloud, args, sent_at_least=COUNT // 2, within=1800)
    assert COUNT // 2 <= saved["tally"]["sent"] < COUNT
    status, run = ops(cloud, "backfill", *args, "--wait", "1200")
    assert status == 0 and run["resumed_from"] == saved["tally"]["sent"]
    accounted(cloud, generated, run, BATCH)
    print(f"\n{COUNT + PROCESSED} objects: generated in {made - started:.0f} s, backfilled (killed and resumed) in "
          f"{time.monotonic() - made:.0f} s: " + ", ".join(f"{k} {run[k]}" for k in ("processed", "skipped", "rejected",
                                                                                  "failed", "sent", "resumed_from")))
