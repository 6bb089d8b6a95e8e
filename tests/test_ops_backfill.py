"""`python -m ops backfill` through the local cloud, with the operator policy's rights only: a bucket that held ~100
objects before the pipeline (mixed formats, some not images, some already processed), the walk killed halfway and
resumed, every object accounted for; run again, it skips them all; an S3 Inventory list is walked the same way."""
from __future__ import annotations

import contextlib
import csv
import gzip
import io
import json
import os
from unittest import mock

import pytest

from handlers.names import StackOutput
from localcloud import samples
from localcloud.cloud import LocalCloud
from ops.__main__ import main as ops_main
from ops.target import LOCAL_HOME_VARIABLE
from tests.backfill_bucket import accounted, events_off, generate, killed_halfway, ops
from tests.infra_helpers import unused_grants

# A local cloud and ~100 objects walked, killed and resumed: about a minute, so it runs with the 2,100-object story in
# make test-backfill (.ci/run), not in make test.
pytestmark = pytest.mark.backfill
BATCH = 5


@pytest.fixture(scope="module")
def cloud(tmp_path_factory):
    with LocalCloud(config={"batchOperations": True}, workdir=tmp_path_factory.mktemp("backfill")) as running:
        running.write_discovery()
        yield running


@pytest.fixture(scope="module")
def generated(cloud):
    return generate(cloud, count=96, processed=8)


def test_a_backfill_killed_halfway_resumes_and_accounts_for_every_object(cloud, generated):
    saved = killed_halfway(cloud, ["--prefix", "archive/", "--rate", "20", "--batch", str(BATCH)], sent_at_least=40)
    assert 40 <= saved["tally"]["sent"] < len(generated.keys)
    status, run = ops(cloud, "backfill", "--prefix", "archive/", "--rate", "50", "--batch", str(BATCH))
    assert status == 0 and run["resumed_from"] == saved["tally"]["sent"]
    assert run["sent"] - run["resumed_from"] <= len(generated.keys) - saved["tally"]["sent"] + BATCH
    accounted(cloud, generated, run, BATCH)
    assert not list((cloud.workdir / "ops").glob("backfill-*.json"))  # finished: nothing left to resume


def test_a_second_backfill_skips_every_object_it_judged(cloud, generated):
    status, run = ops(cloud, "backfill", "--prefix", "archive/", "--rate", "100", "--batch", "20")
    assert status == 0 and run["resumed_from"] == 0
    assert (run["skipped"], run["processed"], run["rejected"], run["failed"]) == (len(generated.keys), 0, 0, 0)


def test_an_inventory_list_is_walked_from_its_manifest(cloud):
    uploads = cloud.outputs[StackOutput.UPLOADS_BUCKET]
    where = cloud.outputs[StackOutput.BATCH_OPERATIONS]["inventoryManifests"] + "2026-12-07T00-00Z/"
    logs, _, folder = where[len("s3://"):].partition("/")
    s3 = cloud.client("s3")
    with events_off(cloud):
        for key, body in {"uploads/listed/a.jpg": samples.jpeg(32, 24), "uploads/listed/b c+d.png": samples.png(32, 24),
                          "uploads/listed/notes.txt": b"plain text"}.items():
            s3.put_object(Bucket=uploads, Key=key, Body=body)
    rows = io.StringIO()
    # Inventory writes keys URL-encoded; a delete marker and a key outside uploads/ are not objects to judge.
    csv.writer(rows).writerows([[uploads, "uploads/listed/a.jpg", "true", "false"],
                                [uploads, "uploads/listed/b+c%2Bd.png", "true", "false"],
                                [uploads, "uploads/listed/notes.txt", "true", "false"],
                                [uploads, "uploads/listed/gone.jpg", "true", "true"]])
    data = f"{folder}data/part-1.csv.gz"
    s3.put_object(Bucket=logs, Key=data, Body=gzip.compress(rows.getvalue().encode()))
    s3.put_object(Bucket=logs, Key=f"{folder}manifest.json", Body=json.dumps({
        "sourceBucket": uploads, "destinationBucket": f"arn:aws:s3:::{logs}", "fileFormat": "CSV",
        "fileSchema": "Bucket, Key, IsLatest, IsDeleteMarker", "files": [{"key": data, "size": 1, "MD5checksum": "-"}]}))
    status, run = ops(cloud, "backfill", "--manifest", f"{where}manifest.json", "--rate", "50")
    assert status == 0 and (run["processed"], run["rejected"], run["skipped"], run["failed"]) == (2, 1, 0, 0), run
    records = cloud.records()
    assert records["uploads/listed/b c+d.png"]["status"] == "done"
    assert records["uploads/listed/notes.txt"]["reason"].startswith("not an image")


def test_a_manifest_of_another_bucket_is_refused_with_the_reason(cloud, tmp_path):
    manifest = tmp_path / "manifest.json"
    manifest.write_text(json.dumps({"sourceBucket": "someone-elses", "fileFormat": "CSV", "fileSchema": "Bucket, Key",
                                    "files": []}))
    errors = io.StringIO()
    with contextlib.redirect_stderr(errors), mock.patch.dict(os.environ, {LOCAL_HOME_VARIABLE: str(cloud.workdir)}):
        assert ops_main(["--local", "backfill", "--manifest", str(manifest)]) == 1
    uploads = cloud.outputs[StackOutput.UPLOADS_BUCKET]
    assert errors.getvalue().strip() == (f"error: {manifest} lists the bucket someone-elses; this stack's uploads "
                                         f"bucket is {uploads}")


def test_the_backfill_function_s_role_allows_what_it_used_and_nothing_else(cloud):
    """Every call it made above was judged against its role (the intake's rights); each right was used."""
    deployment = cloud.deployed
    used = cloud.emulator.stats()["used"].get(deployment.named("claimcheck-backfill-function").state["name"], [])
    assert used and unused_grants(deployment, "claimcheck-backfill-function", used, reads_uploads=True) == set()


class _Records:
    """A table of records by image id: what `_settle` reads."""

    def __init__(self, statuses: dict[str, str]) -> None:
        self.statuses = statuses

    def get_item(self, TableName: str, ConsistentRead: bool, Key: dict) -> dict:  # noqa: N803 (boto3's names)
        return {"Item": {"status": {"S": self.statuses[Key["image_id"]["S"]]}}}


def test_keys_stuck_accepted_do_not_hide_the_others_from_settling():
    from handlers.contracts import image_id
    from handlers.names import Status
    from ops.backfill import LOOK_AT_THE_END, Tally, _settle

    keys = [f"uploads/{n:04}.jpg" for n in range(1000)]
    stuck = set(keys[:LOOK_AT_THE_END])  # the oldest, whose stage messages were dead-lettered
    records = _Records({image_id("bucket", key): Status.ACCEPTED if key in stuck else Status.DONE for key in keys})
    target = mock.Mock(outputs={StackOutput.TABLE_NAME: "table", StackOutput.UPLOADS_BUCKET: "bucket"})
    target.client.return_value = records
    tally = Tally(pending=list(keys))
    for _ in range(len(keys) // LOOK_AT_THE_END):
        _settle(target, tally, LOOK_AT_THE_END)
    assert tally.processed == len(keys) - len(stuck)
    assert sorted(tally.pending) == sorted(stuck)
    assert tally.accounted == 1000
