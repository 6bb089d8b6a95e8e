"""Each outcome is counted under its own metric name, so a dashboard or alarm built on them sees what happened."""
from __future__ import annotations

import json

import pytest

from handlers import intake, labels, stage, thumbnails
from localcloud import samples as images
from tests.conftest import invoke, s3_message


@pytest.fixture
def emitted(monkeypatch):
    """(metric, value) as the handlers emit them (Powertools' EMF is what these calls write)."""
    seen: list[tuple[str, float]] = []
    for module in (intake, thumbnails, labels, stage):
        monkeypatch.setattr(module, "count", lambda name, value=1: seen.append((name, value)))
        if hasattr(module, "duration"):
            monkeypatch.setattr(module, "duration", lambda name, millis: seen.append((name, millis)))
    return seen


def names(seen: list[tuple[str, float]]) -> list[str]:
    return [name for name, _ in seen]


def test_the_intake_counts_accepted_rejected_duplicate_stale_and_deleted(cloud, emitted):
    event = cloud.put("uploads/a.jpg", images.jpeg(64, 48))
    invoke(intake, [s3_message(event)])
    assert names(emitted) == ["Accepted"]
    invoke(intake, [s3_message(event)])  # the same event again, while the image is pending: published again
    assert names(emitted)[1:] == ["DuplicateEvents", "Accepted"]
    invoke(intake, [s3_message(cloud.put("uploads/notes.jpg", b"plain text\n"))])
    assert names(emitted)[3:] == ["Rejected"]
    invoke(intake, [s3_message(cloud.delete("uploads/a.jpg"))])
    assert names(emitted)[4:] == ["Deleted"]
    invoke(intake, [s3_message(event)])  # the first upload's event, late: older than the delete
    assert names(emitted)[5:] == ["StaleEvents"]


def test_a_late_delete_is_counted_stale_and_publishes_nothing(cloud, emitted):
    invoke(intake, [s3_message(cloud.put("uploads/gone.jpg", images.jpeg(64, 48)))])
    earlier, later = cloud.delete("uploads/gone.jpg"), cloud.delete("uploads/gone.jpg")  # two delete markers
    invoke(intake, [s3_message(later)])
    cloud.published()
    emitted.clear()
    invoke(intake, [s3_message(earlier)])  # delivered after the later one
    assert names(emitted) == ["StaleEvents"] and cloud.published() == []
    assert cloud.record("uploads/gone.jpg")["status"] == "deleted"


def test_the_thumbnail_stage_counts_processed_failed_and_skipped_and_times_its_work(cloud, emitted):
    invoke(intake, [s3_message(cloud.put("uploads/ok.webp", images.webp(200, 100)))])  # no labels: done after this
    invoke(intake, [s3_message(cloud.put("uploads/cut.png", images.png(200, 100)[:300]))])
    claims = [json.dumps(p["claim"]) for p in cloud.published()]
    emitted.clear()
    invoke(thumbnails, claims[:1])
    assert names(emitted) == ["ThumbnailDuration", "Processed"] and emitted[0][1] > 0
    emitted.clear()
    invoke(thumbnails, claims[1:])
    assert names(emitted) == ["Failed"]
    emitted.clear()
    invoke(thumbnails, claims[:1])  # done already: skipped
    assert names(emitted) == ["SkippedClaimChecks"]
    emitted.clear()
    invoke(thumbnails, ["{not a claim check"])
    assert names(emitted) == ["InvalidClaimChecks"]


def test_the_label_stage_counts_processed_and_times_its_work(cloud, emitted, monkeypatch):
    monkeypatch.setenv("CLAIMCHECK_EMULATED", "rekognition")
    invoke(intake, [s3_message(cloud.put("uploads/cat.jpg", images.jpeg(64, 48)))])
    claims = [json.dumps(p["claim"]) for p in cloud.published()]
    emitted.clear()
    invoke(labels, claims)
    assert names(emitted) == ["LabelDuration", "Processed"] and emitted[0][1] > 0
