"""The image record's writes: ordering by sequencer, one record per key, and settling in one write when it can."""
from __future__ import annotations

from handlers import aws, records

IMAGE = "0" * 32
SEQ = "1".rjust(32, "0")


def updates(table_name: str) -> list[dict]:
    """Record every UpdateItem the records module sends from now on."""
    sent: list[dict] = []
    aws.table(table_name).meta.client.meta.events.register(
        "provide-client-params.dynamodb.UpdateItem", lambda params, **_: sent.append(params))
    return sent


def accepted(cloud, expected=("thumbnails", "labels")) -> dict:
    records.record_event("images", IMAGE, SEQ, {"status": "accepted", "reason": "", "key": "uploads/x.jpg",
                                                 "expected_stages": list(expected)})
    return records.get("images", IMAGE)


def test_the_last_stage_settles_the_image_in_one_write(cloud):
    accepted(cloud)
    records.record_stage("images", IMAGE, SEQ, "labels", {"status": "done", "labels": []})
    known = records.get("images", IMAGE)
    sent = updates("images")
    result = records.record_stage("images", IMAGE, SEQ, "thumbnails", {"status": "done", "outputs": []}, known=known)
    assert result.outcome == records.WRITTEN and len(sent) == 1
    record = records.get("images", IMAGE)
    assert (record["status"], record["reason"], record["thumbnails"]["status"]) == ("done", "", "done")


def test_a_failed_stage_settles_as_failed_with_its_reason(cloud):
    known = accepted(cloud, expected=("thumbnails",))
    records.record_stage("images", IMAGE, SEQ, "thumbnails", {"status": "failed", "reason": "bad bytes"}, known=known)
    record = records.get("images", IMAGE)
    assert (record["status"], record["reason"]) == ("failed", "thumbnails: bad bytes")


def test_a_stage_that_read_the_record_before_the_other_finished_still_settles_it(cloud):
    known = accepted(cloud)  # read before the label stage wrote
    records.record_stage("images", IMAGE, SEQ, "labels", {"status": "done", "labels": []})
    sent = updates("images")
    records.record_stage("images", IMAGE, SEQ, "thumbnails", {"status": "done", "outputs": []}, known=known)
    assert len(sent) == 2  # the stage result, then the settled status, from the record as it is now
    assert records.get("images", IMAGE)["status"] == "done"


def test_one_write_does_not_settle_on_results_that_changed_since_they_were_read(cloud):
    accepted(cloud)
    records.record_stage("images", IMAGE, SEQ, "labels", {"status": "unavailable", "reason": "x"})
    known = records.get("images", IMAGE)
    known["labels"] = {"status": "done"}  # what the stage believes, no longer what is stored
    records.record_stage("images", IMAGE, SEQ, "thumbnails", {"status": "done", "outputs": []}, known=known)
    record = records.get("images", IMAGE)
    assert record["status"] == "done" and record["labels"]["status"] == "unavailable"


def test_a_newer_event_wins_over_a_late_stage_result(cloud):
    known = accepted(cloud, expected=("thumbnails",))
    newer = "2".rjust(32, "0")
    records.record_event("images", IMAGE, newer, {"status": "accepted", "reason": "", "key": "uploads/x.jpg",
                                                   "expected_stages": ["thumbnails"]})
    result = records.record_stage("images", IMAGE, SEQ, "thumbnails", {"status": "done", "outputs": []}, known=known)
    assert result.outcome == records.STALE
    record = records.get("images", IMAGE)
    assert (record["status"], record["sequencer"]) == ("accepted", newer) and "thumbnails" not in record


def test_expression_names_are_only_those_the_expressions_use(cloud):
    # DynamoDB refuses a request whose ExpressionAttributeNames holds a name no expression uses.
    sent = updates("images")
    known = accepted(cloud, expected=("thumbnails",))
    records.record_stage("images", IMAGE, SEQ, "thumbnails", {"status": "done", "outputs": []}, known=known)
    for params in sent:
        used = " ".join(params[k] for k in ("UpdateExpression", "ConditionExpression") if k in params)
        assert all(name in used for name in params["ExpressionAttributeNames"]), params


def test_every_record_read_is_strongly_consistent(cloud):
    # DynamoDB reads are eventually consistent unless asked: a stage could read the record from before the intake's
    # write, take its claim check for stale and acknowledge it, leaving the image `accepted` for good.
    sent: list[dict] = []
    aws.table("images").meta.client.meta.events.register(
        "provide-client-params.dynamodb.GetItem", lambda params, **_: sent.append(params))
    accepted(cloud)
    records.record_stage("images", IMAGE, SEQ, "labels", {"status": "done", "labels": []})
    assert sent and all(params.get("ConsistentRead") is True for params in sent)
