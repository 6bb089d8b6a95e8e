"""Day two through the local cloud: `python -m ops` with exactly the stack's operator policy (the emulator allows its
credentials what that policy allows), the same commands a deployed stack gets. An incident from dead letter to
redrive, failures listed from the index, a stage paused and resumed, a settings change reprocessed (and a run
killed halfway resumed), a backfill of what it has seen, and the policy allowing exactly what the commands used."""
from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from unittest import mock

import pytest
from botocore.exceptions import ClientError

from handlers.names import STATUS_TAG, thumbnail_settings
from localcloud import samples
from localcloud.__main__ import wait_until_settled
from localcloud.cloud import LocalCloud
from ops.__main__ import main as ops_main
from ops.target import LOCAL_HOME_VARIABLE
from tests.conftest import wait_until

ROOT = Path(__file__).resolve().parent.parent
# A broken dependency the thumbnail stage meets for one upload: every read of it fails, so it is dead-lettered.
INCIDENT = {"thumbnails": [{"operation": "s3.GetObject", "match": {"Key": "incident"}, "code": "InternalError",
                            "status": 500}]}
# Short timeouts so the incident reaches the DLQ in well under a minute (visibility 13 s, three receives).
# Timeouts of 2 s dead-letter a poison message in seconds; a batch of the largest images maxPixels allows must still
# fit in them (the settings refuse it otherwise), and these tests' photos are small.
FAST = {"intake": {"timeout": 2}, "thumbnails": {"timeout": 2}, "labels": {"timeout": 2}, "maxReceiveCount": 3,
        "maxPixels": 4_000_000}


@pytest.fixture(scope="module")
def cloud(tmp_path_factory):
    with LocalCloud(config=FAST, faults=INCIDENT, workdir=tmp_path_factory.mktemp("ops")) as running:
        running.write_discovery()
        yield running


def ops(cloud: LocalCloud, *args: str) -> tuple[int, dict | str]:
    """Run `python -m ops --local ...` as the README writes it, in this process, with the local cloud's folder where
    this cloud wrote its up.json: (exit status, its JSON or its text)."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out), mock.patch.dict(os.environ, {LOCAL_HOME_VARIABLE: str(cloud.workdir)}):
        status = ops_main(["--local", *args])
    text = out.getvalue()
    return status, json.loads(text) if "--json" in args else text


def record(cloud: LocalCloud, key: str) -> dict:
    return cloud.records().get(key, {})


def test_uploads_arrive_and_one_meets_a_broken_dependency(cloud):
    """The incident starts: three uploads, one of which the thumbnail stage cannot read. Its three tries take ~40 s;
    the tests below run meanwhile, and the incident is handled after them."""
    for key, data in {"uploads/day/a.webp": samples.webp(400, 300), "uploads/day/b.png": samples.png(300, 200),
                      "uploads/incident/c.webp": samples.webp(320, 240)}.items():
        cloud.upload(key, data)
    wait_until(lambda: all(record(cloud, key).get("status") == "done" for key in ("uploads/day/a.webp", "uploads/day/b.png")))
    assert record(cloud, "uploads/incident/c.webp")["status"] == "accepted"


def test_failures_are_listed_from_the_index_with_reasons_and_expiry(cloud):
    cloud.upload("uploads/bad/notes.jpg", b"meeting notes, not a photo\n")
    cloud.upload("uploads/bad/cut.webp", samples.webp(400, 300)[:600])
    wait_until(lambda: {record(cloud, k).get("status") for k in ("uploads/bad/notes.jpg", "uploads/bad/cut.webp")}
               == {"rejected", "failed"})
    status, listed = ops(cloud, "--json", "failures", "--since", "1h")
    found = {f["key"]: f for f in listed["failures"]}
    assert found["uploads/bad/notes.jpg"]["kind"] == "rejected"
    assert found["uploads/bad/notes.jpg"]["reason"] == "not an image: the content is a text file despite its .jpg name"
    assert found["uploads/bad/cut.webp"]["kind"] == "failed" and found["uploads/bad/cut.webp"]["reason"].startswith("thumbnails:")
    uploaded = record(cloud, "uploads/bad/notes.jpg")["event_time"]
    assert found["uploads/bad/notes.jpg"]["expires"] > uploaded and found["uploads/bad/notes.jpg"]["expires"].endswith("T00:00:00Z")
    # through the index: a Query per status and shard; nothing the operator ran so far scanned the table
    used = set(map(tuple, cloud.emulator.stats()["used"][operator(cloud)]))
    assert ("dynamodb:Query", f"{table_arn(cloud)}/index/attention") in used
    assert not any(action == "dynamodb:Scan" for action, _ in used)
    # the rejected original carries its status, for the lifecycle rule that expires it
    tags = cloud.client("s3").get_object_tagging(Bucket=cloud.outputs["uploadsBucket"], Key="uploads/bad/notes.jpg")
    assert tags["TagSet"] == [{"Key": STATUS_TAG, "Value": "rejected"}]
    status, text = ops(cloud, "show", "bad/cut.webp")
    assert status == 0 and text.startswith("uploads/bad/cut.webp  FAILED: thumbnails:")


def test_a_paused_stage_leaves_its_messages_waiting_and_resume_drains_them(cloud):
    status, paused = ops(cloud, "--json", "pause", "thumbnails")
    assert status == 0 and paused["state"] == "Disabled"
    cloud.upload("uploads/day/paused.webp", samples.webp(200, 150))
    waiting = wait_until(lambda: cloud.queue_depths()[cloud.outputs["queueUrls"]["thumbnails"]][0] >= 1, timeout=30)
    time.sleep(3)  # long enough for a running poller to have taken it
    assert waiting and record(cloud, "uploads/day/paused.webp")["status"] == "accepted"
    assert cloud.queue_depths()[cloud.outputs["queueUrls"]["thumbnails"]][0] >= 1
    status, seen = ops(cloud, "--json", "status")
    assert {s["stage"]: s["enabled"] for s in seen["stages"]}["thumbnails"] is False
    status, resumed = ops(cloud, "--json", "resume", "thumbnails")
    assert status == 0 and resumed["state"] == "Enabled"
    wait_until(lambda: record(cloud, "uploads/day/paused.webp").get("status") == "done")


def operator_client(cloud: LocalCloud, service: str):
    """A client holding exactly the operator policy (what `python -m ops --local` uses)."""
    from ops.target import from_local

    return from_local(cloud.workdir / "up.json").client(service)


def test_the_operator_may_not_filter_retarget_or_even_pause_a_mapping_directly(cloud):
    """What lambda:UpdateEventSourceMapping would let an operator do: add a filter (Lambda deletes every message that
    fails it), send the stage's messages to another function, or switch it past the pause function. The operator
    policy has no such grant, so each is refused, and the mapping stays as it was."""
    lam = operator_client(cloud, "lambda")
    uuid = cloud.outputs["eventSourceMappings"]["thumbnails"]
    functions = cloud.deployed.functions()
    for asked in ({"FilterCriteria": {"Filters": [{"Pattern": json.dumps({"body": {"event": ["never-sent"]}})}]}},
                  {"FunctionName": functions["intake"].state["arn"]}, {"Enabled": False}):
        with pytest.raises(ClientError) as refused:
            lam.update_event_source_mapping(UUID=uuid, **asked)
        assert refused.value.response["Error"]["Code"] == "AccessDeniedException", asked
        assert refused.value.response["Error"]["Message"].endswith(
            f"is not authorized to perform: lambda:UpdateEventSourceMapping on resource: "
            f"arn:aws:lambda:us-east-1:123456789012:event-source-mapping:{uuid}")
    mapping = lam.get_event_source_mapping(UUID=uuid)
    assert (mapping["State"], mapping["FunctionArn"]) == ("Enabled", functions["thumbnails"].state["arn"])
    assert "FilterCriteria" not in mapping


def test_the_pause_function_takes_a_stage_and_a_boolean_and_nothing_else(cloud):
    """The operator may invoke the pause function; a request that asks it for a filter is refused with the reason,
    as a function error, and the mapping is untouched."""
    lam = operator_client(cloud, "lambda")
    uuid = cloud.outputs["eventSourceMappings"]["thumbnails"]
    asked = {"stage": "thumbnails", "enabled": False, "FilterCriteria": {"Filters": [{"Pattern": "{}"}]}}
    answer = lam.invoke(FunctionName=cloud.outputs["pauseFunctionName"], Payload=json.dumps(asked).encode())
    error = json.loads(answer["Payload"].read())
    assert (answer["FunctionError"], error["errorType"]) == ("Unhandled", "PauseRefused")
    assert error["errorMessage"] == ('a pause request may ask for a stage and a boolean only, not FilterCriteria: send '
                                     '{"stage": one of intake, labels, thumbnails, "enabled": true or false}')
    assert lam.get_event_source_mapping(UUID=uuid)["State"] == "Enabled"


def test_the_pause_function_s_role_may_switch_a_mapping_for_its_own_function_only(cloud):
    """Its role holds each mapping to the function it feeds (lambda:FunctionArn): with its credentials, retargeting the
    thumbnail stage's mapping to the intake function is refused; enabling it for its own function is not."""
    import boto3

    creds = cloud.credentials[cloud.outputs["pauseFunctionName"]]
    lam = boto3.client("lambda", aws_access_key_id=creds["AWS_ACCESS_KEY_ID"], aws_secret_access_key=creds["AWS_SECRET_ACCESS_KEY"],
                       aws_session_token=None, endpoint_url=cloud.endpoint, region_name="us-east-1")
    uuid = cloud.outputs["eventSourceMappings"]["thumbnails"]
    intake = cloud.deployed.functions()["intake"].state["arn"]
    for asked in ({"FunctionName": intake}, {"FunctionName": intake, "Enabled": True}):
        with pytest.raises(ClientError) as refused:
            lam.update_event_source_mapping(UUID=uuid, **asked)
        assert refused.value.response["Error"]["Code"] == "AccessDeniedException"
    assert lam.update_event_source_mapping(UUID=uuid, Enabled=True)["FunctionArn"] == \
        cloud.deployed.functions()["thumbnails"].state["arn"]


def test_an_incident_from_dead_letter_to_redrive(cloud):
    summary = wait_until_settled(cloud, ["uploads/day/a.webp", "uploads/day/b.png", "uploads/incident/c.webp"], 120)
    assert summary.status("uploads/incident/c.webp") == "dead-lettered"
    # status: the alarm's DLQ, at a glance. The functions' metrics reach CloudWatch from their log lines, as EMF's do
    # (a line still being written waits for the next period): read until the five acceptances are counted.

    def counted() -> tuple[int, dict] | None:
        cloud.publish_metrics()
        found = ops(cloud, "--json", "status")
        return found if found[1]["last_hour"]["accepted"] >= 5 else None

    status, seen = wait_until(counted, timeout=60, every=1.0)  # each look publishes metrics and reads them all
    stages = {s["stage"]: s for s in seen["stages"]}
    assert status == 0 and seen["emulated"] is True
    assert (stages["thumbnails"]["dead_letters"], stages["intake"]["dead_letters"]) == (1, 0)
    assert all(s["enabled"] for s in stages.values())
    # accepted: a, b, c, the truncated WebP and the one uploaded while paused (the text file was rejected)
    assert seen["last_hour"]["accepted"] == 5 and seen["attention"]["in progress"] == 1  # c is accepted, not settled
    # dlq: which upload, which version, how often it was tried
    status, letters = ops(cloud, "--json", "dlq", "--stage", "thumbnails")
    [letter] = letters["dead_letters"]
    assert (letter["key"], letter["event"]) == ("uploads/incident/c.webp", "claim check: created")
    assert letter["receives"] >= 3 and letter["version"] == record(cloud, "uploads/incident/c.webp")["version_id"]
    # the fix is deployed (here: the broken dependency is gone), then the dead letter goes back
    cloud.faults = {}
    cloud.update({})
    status, moved = ops(cloud, "--json", "redrive", "--stage", "thumbnails")
    assert status == 0 and [(m["stage"], m["moved"], m["status"]) for m in moved["moves"]] == [("thumbnails", 1, "COMPLETED")]
    wait_until(lambda: record(cloud, "uploads/incident/c.webp").get("status") == "done")
    status, text = ops(cloud, "redrive")
    assert status == 0 and text.strip() == "Nothing to redrive: the dead-letter queues are empty."


def done_images(cloud: LocalCloud) -> dict[str, dict]:
    return {key: r for key, r in cloud.records().items() if r.get("status") == "done"}


def changed_settings(cloud: LocalCloud, sizes: list[int]) -> str:
    """`pulumi config set thumbnailSizes …` and `pulumi up`: the functions restart with the new settings."""
    cloud.update({"thumbnailSizes": sizes})
    cloud.write_discovery()
    return thumbnail_settings(sizes, "jpeg", 82)


def test_a_settings_change_is_reprocessed_exactly_once(cloud):
    settings = changed_settings(cloud, [300, 100])
    images = done_images(cloud)
    status, run = ops(cloud, "--json", "reprocess", "--all", "--rate", "50")
    assert status == 0 and run["requested"] == len(images) >= 4 and run["settings"] == settings
    wait_until(lambda: all(r["thumbnails"].get("settings") == settings for r in done_images(cloud).values()))
    wait_until(cloud.idle)
    for key, r in done_images(cloud).items():
        assert sorted(int(o["box"]) for o in r["thumbnails"]["outputs"]) == [100, 300], key
    stored = {o["Key"] for o in cloud.client("s3").list_objects_v2(Bucket=cloud.outputs["thumbnailsBucket"])["Contents"]}
    assert stored == {o["key"] for r in done_images(cloud).values() for o in r["thumbnails"]["outputs"]}
    status, again = ops(cloud, "--json", "reprocess", "--all")
    assert (status, again["requested"]) == (0, 0)


def test_a_reprocess_killed_halfway_resumes_from_its_checkpoint(cloud):
    settings = changed_settings(cloud, [200])
    images = done_images(cloud)
    command = [sys.executable, "-m", "ops", "--local", "reprocess", "--all", "--rate", "2", "--page-size", "2"]
    killed = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              env={**os.environ, LOCAL_HOME_VARIABLE: str(cloud.workdir)})
    checkpoints = cloud.workdir / "ops"
    try:
        wait_until(lambda: list(checkpoints.glob("reprocess-*.json")), timeout=60, every=0.2)
    finally:
        killed.send_signal(signal.SIGKILL)
        killed.wait()
    saved = json.loads(next(checkpoints.glob("reprocess-*.json")).read_text())
    assert 2 <= saved["requested"] < len(images) and saved["settings"] == settings
    status, run = ops(cloud, "--json", "reprocess", "--all", "--rate", "50", "--page-size", "2")
    assert status == 0 and run["resumed_from"] == saved["requested"] and run["requested"] >= len(images)
    assert not list(checkpoints.glob("reprocess-*.json"))  # finished: nothing left to resume
    wait_until(lambda: all(r["thumbnails"].get("settings") == settings for r in done_images(cloud).values()))
    for key, r in done_images(cloud).items():
        assert [int(o["box"]) for o in r["thumbnails"]["outputs"]] == [200], key


def test_the_stack_s_gallery_links_thumbnails_the_operator_may_read_and_nothing_else(cloud, tmp_path):
    import html
    import re

    import requests
    from PIL import Image

    status, text = ops(cloud, "gallery", "--out", str(tmp_path), "--prefix", "day/")
    expected = {key: r["status"] for key, r in cloud.records().items() if key.startswith("uploads/day/")}
    assert status == 0 and text.startswith(f"Wrote {tmp_path / 'index.html'}: {len(expected)} upload(s), thumbnails "
                                           "through presigned GETs valid for 3600 s (the local cloud")
    page = (tmp_path / "index.html").read_text()
    tiles = dict(re.findall(r'<article class="tile s-[a-z-]+" data-key="([^"]+)" data-status="([^"]+)"', page))
    assert tiles == expected and {"uploads/day/a.webp", "uploads/day/b.png"} <= set(tiles)  # the prefix: nothing from bad/
    tiles = {key: status for key, status in tiles.items() if status == "done"}
    assert "labels come from an emulated Rekognition" in page
    for key in tiles:
        outputs = {o["key"]: (int(o["width"]), int(o["height"])) for o in record(cloud, key)["thumbnails"]["outputs"]}
        links = [html.unescape(src) for src in re.findall(r'<figure><img src="([^"]+)"', page.split(f'data-key="{key}"')[1].split("</article>")[0])]
        assert len(links) == len(outputs)
        for link in links:
            answer = requests.get(link, timeout=10)  # signed with the operator's credentials
            assert answer.status_code == 200, answer.text
            assert Image.open(io.BytesIO(answer.content)).size in outputs.values()
    # the same signature does not open an original: the operator may read thumbnails, not uploads
    from ops.target import from_local

    target = from_local(cloud.workdir / "up.json")
    original = target.client("s3").generate_presigned_url(
        "get_object", Params={"Bucket": cloud.outputs["uploadsBucket"], "Key": "uploads/day/a.webp"}, ExpiresIn=60)
    assert requests.get(original, timeout=10).status_code == 403


def operator(cloud: LocalCloud) -> str:
    [policy] = [p.state["name"] for p in cloud.deployed.of_type("aws:iam/policy:Policy")]
    return policy


def table_arn(cloud: LocalCloud) -> str:
    return f"arn:aws:dynamodb:us-east-1:123456789012:table/{cloud.outputs['tableName']}"


def test_a_backfill_of_what_the_pipeline_has_seen_skips_it_and_lists_nothing_outside_uploads(cloud):
    """The walk lists uploads/day/ with the operator's s3:ListBucket and invokes the backfill function, which finds
    every object judged already; a listing outside uploads/ is refused."""
    bucket = cloud.outputs["uploadsBucket"]
    there = [o["Key"] for o in cloud.client("s3").list_objects_v2(Bucket=bucket, Prefix="uploads/day/")["Contents"]]
    status, run = ops(cloud, "--json", "backfill", "--prefix", "day/", "--rate", "50")
    assert status == 0 and (run["skipped"], run["processed"], run["sent"]) == (len(there), 0, len(there)) and there
    with pytest.raises(ClientError) as refused:
        operator_client(cloud, "s3").list_objects_v2(Bucket=bucket, Prefix="")
    assert refused.value.response["Error"]["Code"] == "AccessDenied"


def test_the_pause_function_s_role_allows_exactly_what_it_used(cloud):
    """Pause and resume above ran through it: every action its role grants but Lambda's own logging was used."""
    pause = cloud.deployed.functions()["pause"]
    role = next(r.state["name"] for r in cloud.deployed.of_type("aws:iam/role:Role") if r.state["arn"] == pause.inputs["role"])
    [policy] = [p for p in cloud.deployed.of_type("aws:iam/rolePolicy:RolePolicy") if p.inputs["role"] == role]
    granted = {a for s in json.loads(policy.inputs["policy"])["Statement"] for a in s["Action"]}
    used = {action for action, _ in cloud.emulator.stats()["used"][pause.state["name"]]}
    assert granted - {"logs:CreateLogStream", "logs:PutLogEvents"} == used == {"lambda:UpdateEventSourceMapping"}


def test_the_operator_policy_allows_exactly_what_the_commands_used(cloud):
    """Every command above ran with the operator's credentials; every action the policy grants was used."""
    [policy] = cloud.deployed.of_type("aws:iam/policy:Policy")
    granted = {a for s in json.loads(policy.inputs["policy"])["Statement"]
               for a in (s["Action"] if isinstance(s["Action"], list) else [s["Action"]])}
    used = {action for action, _ in cloud.emulator.stats()["used"][operator(cloud)]}
    assert granted == used
