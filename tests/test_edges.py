"""Bad input at the edges, through the whole local cloud: every hostile file ends in a final state with a reason."""
from __future__ import annotations

from pathlib import Path

import pytest

from localcloud import samples
from localcloud.__main__ import wait_until_settled
from localcloud.cloud import LocalCloud

SHARED_CORPUS = Path(__file__).resolve().parent.parent.parent / "shared" / "corpus"


def shared_corpus() -> dict[str, bytes]:
    if not SHARED_CORPUS.is_dir():
        return {}
    return {f"uploads/shared/{p.relative_to(SHARED_CORPUS).as_posix()}": p.read_bytes()
            for p in sorted(SHARED_CORPUS.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def settled(tmp_path_factory):
    nasty = {f"uploads/nasty/{name}": data for name, (data, _) in samples.nasty_set().items()}
    uploads = {**nasty, **shared_corpus()}
    with LocalCloud(workdir=tmp_path_factory.mktemp("edges")) as cloud:
        for key, data in uploads.items():
            cloud.upload(key, data)
        return wait_until_settled(cloud, list(uploads), timeout=120)


@pytest.mark.parametrize("name", sorted(samples.nasty_set()))
def test_each_nasty_file_ends_where_a_person_would_expect(settled, name):
    expected = samples.nasty_set()[name][1]
    key = f"uploads/nasty/{name}"
    record = settled.records[key]
    assert settled.status(key) == expected, record
    if expected != "done":
        assert record["reason"], f"{name} is {expected} without a reason"


def test_reasons_name_the_problem(settled):
    reason = {key.rsplit("/", 1)[-1]: record.get("reason", "") for key, record in settled.records.items()}
    assert reason["bomb.jpg"] == "the image is 60000x60000 (3600.0 MP), over the limit of 50.0 MP"
    assert reason["page.png"] == "not an image: the content is an HTML document despite its .png name"
    assert reason["truncated.png"] == "thumbnails: the image data is truncated"
    assert settled.records["uploads/nasty/really-a-png.gif"]["format"] == "png"


@pytest.mark.skipif(not SHARED_CORPUS.is_dir(), reason="the shared corpus is not present")
def test_every_shared_corpus_file_ends_done_or_rejected_with_a_reason(settled):
    keys = [k for k in settled.uploaded if k.startswith("uploads/shared/")]
    assert keys
    for key in keys:
        record = settled.records[key]
        assert record["status"] in ("done", "rejected"), (key, record.get("status"), record.get("reason"))
        if record["status"] == "rejected":
            assert record["reason"], key
    assert settled.unaccounted() == []
