"""Throttling is backlog, never loss: a burst well over Rekognition's quota through the local cloud, whose emulator
refuses DetectLabels over the stack's rekognitionTps as Rekognition does (a token bucket, localcloud/controls.py).

The drain time is held to what `capacity` predicts for this machine: the same model (infra/capacity.py) with the
local cloud's environments (MAX_LOCAL_CONCURRENCY per function, started at once: no event-source ramp) and the
thumbnail engine's time scaled by its speed here (its measured time on these photos in this process over make
bench's time for their size). Rekognition's quota binds, so the prediction is about burst / rekognitionTps.

Marked `capacity` (a minute): .ci/run runs it after `make test`; `make test-capacity` runs it by hand.
"""
from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from bench import engines
from handlers.names import LABEL_LIST, Function, StageStatus, Status
from infra import capacity
from localcloud import samples
from localcloud.cloud import LocalCloud
from localcloud.overrides import MAX_LOCAL_CONCURRENCY

TPS = 4  # calls a second the emulated quota allows
BURST = 120  # uploads at once: 30 s of the quota
WIDTH, HEIGHT = 320, 240
# The local cloud's pollers, its emulator and the uploads share two cores with everything else: the drain may take
# up to this many times the prediction; it cannot beat the quota (the bucket holds one second's calls).
SLOWER_AT_MOST = 2.0


def engine_speed(photos: list[bytes]) -> float:
    """This machine's thumbnail engine time on these photos over make bench's (what infra/capacity.py assumes)."""
    from handlers.names import Function
    from handlers.thumbnails import engine_seconds
    from infra.settings import Settings

    s = Settings().configured(Function.THUMBNAILS).settings
    started = time.perf_counter()
    for data in photos:
        engines.engine(data, s.thumbnail_sizes, s.output_format, s.output_quality)
    measured = (time.perf_counter() - started) / len(photos)
    return measured / engine_seconds(WIDTH * HEIGHT / 1e6, "jpeg")


@pytest.mark.capacity
def test_a_burst_over_the_rekognition_quota_waits_in_the_queue_and_every_upload_is_labelled(tmp_path):
    photos = [samples.jpeg(WIDTH, HEIGHT, orientation=None if i % 2 else 6) for i in range(BURST)]
    speed = engine_speed(photos[:10])
    with LocalCloud(config={"rekognitionTps": TPS}, workdir=tmp_path) as cloud:
        s = cloud.settings()
        keys = [f"uploads/burst/{i:03}.jpg" for i in range(BURST)]
        started = time.monotonic()
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda i: cloud.upload(keys[i], photos[i], "image/jpeg"), range(BURST)))
        deadline = started + 300
        records: dict = {}
        while time.monotonic() < deadline:
            records = cloud.records()
            labelled = [k for k in keys if (records.get(k, {}).get(Function.LABELS) or {}).get("status") == StageStatus.DONE]
            if len(labelled) == BURST and cloud.idle():
                break
            time.sleep(0.5)
        drained = time.monotonic() - started
        refused = cloud.emulator.stats()["refused_over_quota"].get("rekognition.DetectLabels", 0)
        letters = cloud.dead_letters()
    predicted = capacity.plan(s, 0.0, BURST, WIDTH * HEIGHT / 1e6, "jpeg", speed=speed,
                              concurrency_cap=MAX_LOCAL_CONCURRENCY, ramp=False)
    labels = predicted.stages[Function.LABELS]
    print(f"\n{BURST} uploads at rekognitionTps {TPS}: every one labelled in {drained:.1f} s; predicted "
          f"{predicted.drain_seconds:.1f} s (binding: {labels.binding.name}; engine speed here x{speed:.2f} of make "
          f"bench's); calls refused over the quota {refused}; dead letters {len(letters)}")
    assert [k for k in keys if records.get(k, {}).get("status") != Status.DONE] == []
    assert all(records[k][Function.LABELS]["source"] == "emulated" and records[k][Function.LABELS][LABEL_LIST]
               for k in keys)
    assert letters == []
    assert labels.binding.name.startswith("Rekognition") and predicted.drain_seconds == labels.drain_seconds
    # The quota cannot be beaten: a full bucket (TPS calls), then TPS a second.
    assert drained >= (BURST - TPS) / TPS
    assert drained <= SLOWER_AT_MOST * predicted.drain_seconds


def test_the_emulated_quota_refuses_what_is_over_it_and_refills_at_its_rate():
    from localcloud.controls import Quotas

    quotas = Quotas()
    quotas.configure({"rekognition.DetectLabels": 4})
    admitted = [quotas.admits("rekognition.DetectLabels") for _ in range(6)]
    assert admitted == [True] * 4 + [False] * 2 and quotas.refused == {"rekognition.DetectLabels": 2}
    time.sleep(0.3)  # 1.2 calls' worth of tokens come back
    assert quotas.admits("rekognition.DetectLabels") and not quotas.admits("rekognition.DetectLabels")
    assert all(quotas.admits("s3.GetObject") for _ in range(100))  # no quota configured: never refused
