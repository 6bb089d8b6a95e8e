"""The image record's writes: ordering by sequencer, one record per key, and settling in one write when it can."""
from __future__ import annotations

import json
import re
from decimal import Decimal

from handlers import aws, records
from handlers.records import Outcome

# The stages whose results a newer event clears (what the intake is told: the declared stages that write results).
RESULTS = ("thumbnails", "labels")
IMAGE = "0" * 32
SEQ = "1".rjust(32, "0")


def updates(table_name: str) -> list[dict]:
    """Record every UpdateItem the records module sends from now on."""
    sent: list[dict] = []
    aws.table(table_name).meta.client.meta.events.register(
        "provide-client-params.dynamodb.UpdateItem", lambda params, **_: sent.append(params))
    return sent


def accepted(cloud, expected=("thumbnails", "labels")) -> records.ImageRecord:
    records.record_event("images", IMAGE, SEQ, {"status": "accepted", "reason": "", "key": "uploads/x.jpg",
                                                 "expected_stages": list(expected)}, stages=RESULTS)
    return records.get("images", IMAGE)


def stored(cloud) -> dict:
    return records.get("images", IMAGE).item


def test_the_last_stage_settles_the_image_in_one_write(cloud):
    accepted(cloud)
    records.record_stage("images", IMAGE, SEQ, "labels", {"status": "done", "labels": []})
    known = records.get("images", IMAGE)
    sent = updates("images")
    result = records.record_stage("images", IMAGE, SEQ, "thumbnails", {"status": "done", "outputs": []}, known=known)
    assert result.outcome == Outcome.WRITTEN and len(sent) == 1
    record = stored(cloud)
    assert (record["status"], record["reason"], record["thumbnails"]["status"]) == ("done", "", "done")


def test_a_failed_stage_settles_as_failed_with_its_reason(cloud):
    known = accepted(cloud, expected=("thumbnails",))
    records.record_stage("images", IMAGE, SEQ, "thumbnails", {"status": "failed", "reason": "bad bytes"}, known=known)
    record = stored(cloud)
    assert (record["status"], record["reason"]) == ("failed", "thumbnails: bad bytes")


def test_a_stage_that_read_the_record_before_the_other_finished_still_settles_it(cloud):
    known = accepted(cloud)  # read before the label stage wrote
    records.record_stage("images", IMAGE, SEQ, "labels", {"status": "done", "labels": []})
    sent = updates("images")
    records.record_stage("images", IMAGE, SEQ, "thumbnails", {"status": "done", "outputs": []}, known=known)
    assert len(sent) == 2  # the stage result, then the settled status, from the record as it is now
    assert stored(cloud)["status"] == "done"


def test_one_write_does_not_settle_on_results_that_changed_since_they_were_read(cloud):
    accepted(cloud)
    records.record_stage("images", IMAGE, SEQ, "labels", {"status": "unavailable", "reason": "x"})
    known = records.ImageRecord({**records.get("images", IMAGE).item, "labels": {"status": "done"}})  # no longer stored
    records.record_stage("images", IMAGE, SEQ, "thumbnails", {"status": "done", "outputs": []}, known=known)
    record = stored(cloud)
    assert record["status"] == "done" and record["labels"]["status"] == "unavailable"


def test_a_newer_event_wins_over_a_late_stage_result(cloud):
    known = accepted(cloud, expected=("thumbnails",))
    newer = "2".rjust(32, "0")
    records.record_event("images", IMAGE, newer, {"status": "accepted", "reason": "", "key": "uploads/x.jpg",
                                                   "expected_stages": ["thumbnails"]}, stages=RESULTS)
    result = records.record_stage("images", IMAGE, SEQ, "thumbnails", {"status": "done", "outputs": []}, known=known)
    assert result.outcome == Outcome.STALE and result.record.sequencer == newer
    record = stored(cloud)
    assert (record["status"], record["sequencer"]) == ("accepted", newer) and "thumbnails" not in record


def test_expression_names_are_only_those_the_expressions_use(cloud):
    # DynamoDB refuses a request whose ExpressionAttributeNames holds a name no expression uses.
    sent = updates("images")
    known = accepted(cloud, expected=("thumbnails",))
    records.record_stage("images", IMAGE, SEQ, "thumbnails", {"status": "done", "outputs": []}, known=known)
    for params in sent:
        used = set(re.findall(r"#\w+", " ".join(params[k] for k in ("UpdateExpression", "ConditionExpression") if k in params)))
        assert used == set(params["ExpressionAttributeNames"]), params


def test_every_record_read_is_strongly_consistent(cloud):
    # DynamoDB reads are eventually consistent unless asked: a stage could read the record from before the intake's
    # write, take its claim check for stale and acknowledge it, leaving the image `accepted` for good.
    sent: list[dict] = []
    aws.table("images").meta.client.meta.events.register(
        "provide-client-params.dynamodb.GetItem", lambda params, **_: sent.append(params))
    accepted(cloud)
    records.record_stage("images", IMAGE, SEQ, "labels", {"status": "done", "labels": []})
    assert sent and all(params.get("ConsistentRead") is True for params in sent)


def test_a_refused_write_hands_back_the_record_that_refused_it_without_a_second_read(cloud):
    known = accepted(cloud, expected=("thumbnails",))
    newer = "2".rjust(32, "0")
    records.record_event("images", IMAGE, newer, {"status": "rejected", "reason": "not an image", "key": "uploads/x.jpg",
                                                   "expected_stages": []}, stages=RESULTS)
    reads: list[dict] = []
    aws.table("images").meta.client.meta.events.register(
        "provide-client-params.dynamodb.GetItem", lambda params, **_: reads.append(params))
    sent = updates("images")
    result = records.record_stage("images", IMAGE, SEQ, "thumbnails", {"status": "done", "outputs": []}, known=known)
    # The write that would have settled the image at once, then the plain one: both refused, neither followed by a read.
    assert [p.get("ReturnValuesOnConditionCheckFailure") for p in sent] == ["ALL_OLD", "ALL_OLD"] and reads == []
    assert (result.outcome, result.record.status, result.record.sequencer) == (Outcome.STALE, "rejected", newer)
    again = records.record_event("images", IMAGE, newer, {"status": "rejected", "reason": "", "key": "uploads/x.jpg"}, stages=RESULTS)
    assert again.outcome == Outcome.DUPLICATE and again.record.item["reason"] == "not an image" and reads == []


def test_a_record_settles_only_when_every_expected_stage_has_a_final_result():
    record = records.ImageRecord({"status": "accepted", "sequencer": SEQ, "expected_stages": ["thumbnails", "labels"],
                                  "thumbnails": {"status": "done"}})
    assert record.settled() is None and record.awaits(SEQ) and not record.awaits("2".rjust(32, "0"))
    labelled = records.ImageRecord({**record.item, "labels": {"status": "unavailable", "reason": "GIF"}})
    assert labelled.settled() == ("done", "")
    failed = records.ImageRecord({**record.item, "labels": {"status": "failed", "reason": "x"},
                                  "thumbnails": {"status": "failed"}})
    assert failed.settled() == ("failed", "thumbnails: failed; labels: x")
    assert records.ImageRecord({**record.item, "labels": {"status": "working"}}).settled() is None


def test_the_attention_index_holds_an_image_only_while_it_may_need_a_person(cloud):
    known = accepted(cloud, expected=("thumbnails",))
    assert known.item["attention"] == "accepted#0"  # IMAGE is all zeros: shard 0
    records.record_stage("images", IMAGE, SEQ, "thumbnails", {"status": "done", "outputs": []}, known=known)
    assert "attention" not in stored(cloud)
    newer = "2".rjust(32, "0")
    records.record_event("images", IMAGE, newer, {"status": "accepted", "reason": "", "key": "uploads/x.jpg",
                                                   "expected_stages": ["thumbnails", "labels"]}, stages=RESULTS)
    records.record_stage("images", IMAGE, newer, "labels", {"status": "done", "labels": []})
    records.record_stage("images", IMAGE, newer, "thumbnails", {"status": "failed", "reason": "bad bytes"})
    assert (stored(cloud)["status"], stored(cloud)["attention"]) == ("failed", "failed#0")


def test_attention_keys_spread_over_sixteen_shards_by_image_id():
    keys = {records.attention_key("rejected", f"{digit}{'0' * 31}") for digit in "0123456789abcdef"}
    assert keys == {f"rejected#{digit}" for digit in "0123456789abcdef"}


def test_a_newer_version_accepted_between_a_stage_result_and_its_settling_write_stays_accepted(cloud, monkeypatch):
    # Kills the settling write's condition weakened to `#seq = :seq OR #status = :accepted`: the newer version is
    # accepted too, so only the sequencer keeps the old version's result from settling it. A conditional UpdateItem
    # writes only when its condition is true (DynamoDB Developer Guide, "Condition expressions"); moto evaluates it.
    accepted(cloud, expected=("thumbnails",))
    newer = "2".rjust(32, "0")
    write = records._update

    def newer_upload_lands_after_the_first_write(*args, **kwargs):
        result = write(*args, **kwargs)
        if kwargs["condition_values"].get(":seq") == SEQ:
            records.record_event("images", IMAGE, newer, {"status": "accepted", "reason": "", "key": "uploads/x.jpg",
                                                           "expected_stages": ["thumbnails", "labels"]}, stages=RESULTS)
        return result

    monkeypatch.setattr(records, "_update", newer_upload_lands_after_the_first_write)
    records.record_stage("images", IMAGE, SEQ, "thumbnails", {"status": "failed", "reason": "bad bytes"})
    record = stored(cloud)
    assert (record["status"], record["sequencer"], record["reason"]) == ("accepted", newer, "")
    assert "thumbnails" not in record and record["attention"] == "accepted#0"


def test_a_stage_result_delivered_again_after_the_image_settled_changes_nothing(cloud):
    # Kills the stage write's condition weakened to OR (the record is done, the sequencer the same) and the
    # duplicate-versus-stale classification of the refused write.
    known = accepted(cloud, expected=("thumbnails",))
    records.record_stage("images", IMAGE, SEQ, "thumbnails", {"status": "done", "outputs": ["a"]}, known=known)
    again = records.record_stage("images", IMAGE, SEQ, "thumbnails", {"status": "failed", "reason": "late"}, known=known)
    assert again.outcome == Outcome.DUPLICATE and again.record.status == "done"
    record = stored(cloud)
    assert (record["status"], record["reason"], record["thumbnails"]["status"], record["thumbnails"]["outputs"]) == (
        "done", "", "done", ["a"])
    later = records.record_stage("images", IMAGE, SEQ, "thumbnails", {"status": "failed", "reason": "late"})
    assert later.outcome == Outcome.DUPLICATE and stored(cloud)["thumbnails"]["status"] == "done"


def test_a_late_result_of_an_older_version_is_stale_and_holds_nothing_of_it(cloud):
    accepted(cloud, expected=("thumbnails",))
    newer = "2".rjust(32, "0")
    records.record_event("images", IMAGE, newer, {"status": "accepted", "reason": "", "key": "uploads/x.jpg",
                                                   "expected_stages": ["thumbnails"]}, stages=RESULTS)
    late = records.record_stage("images", IMAGE, SEQ, "thumbnails", {"status": "done", "outputs": ["old"]})
    assert (late.outcome, late.record.sequencer) == (Outcome.STALE, newer)
    older = records.record_event("images", IMAGE, SEQ, {"status": "accepted", "reason": "", "key": "uploads/x.jpg"},
                                   stages=RESULTS)
    assert (older.outcome, older.record.sequencer) == (Outcome.STALE, newer)
    assert stored(cloud)["sequencer"] == newer and "thumbnails" not in stored(cloud)


def test_only_the_first_version_of_a_key_is_made_by_its_event(cloud, monkeypatch):
    # Whether an earlier version's thumbnails must be cleared (handlers/thumbnails.py) rests on this: the first
    # write stamps created_at and updated_at alike, every later one only updated_at.
    stamps = (f"2026-11-23T10:00:0{n}.000Z" for n in range(10))
    monkeypatch.setattr(records, "now", lambda: next(stamps))
    first = accepted(cloud, expected=("thumbnails",))
    assert first.made_by_its_event
    records.record_event("images", IMAGE, "2".rjust(32, "0"), {"status": "accepted", "reason": "", "key": "uploads/x.jpg",
                                                                "expected_stages": ["thumbnails"]}, stages=RESULTS)
    second = records.get("images", IMAGE)
    assert second.item["created_at"] == first.item["created_at"] and not second.made_by_its_event
    assert not records.ImageRecord({"status": "accepted"}).made_by_its_event  # no stamps: nothing says it was first


# The writes a gate and an operator make on a settled image: each on the version it judged, once, and only while the
# record is as they saw it (a conditional UpdateItem writes only when its condition is true: DynamoDB Developer Guide,
# "Condition expressions"; moto evaluates it). Each test reads the whole record back.
STAMP = "2026-12-07T10:00:00.000Z"
NEWER = "2".rjust(32, "0")


def done(cloud, monkeypatch) -> records.ImageRecord:
    known = accepted(cloud, expected=("thumbnails",))
    records.record_stage("images", IMAGE, SEQ, "thumbnails", {"status": "done", "outputs": ["a"]}, known=known)
    monkeypatch.setattr(records, "now", lambda: STAMP)
    return records.get("images", IMAGE)


def test_a_gates_verdict_on_a_done_image_quarantines_the_version_it_judged_with_its_reason(cloud, monkeypatch):
    before = done(cloud, monkeypatch).item
    held = {"status": "held", "reason": "explicit nudity (97.1%)", "labels": ["Nudity"]}
    assert not records.record_verdict_on_done("images", IMAGE, NEWER, "moderation", held, records.Status.QUARANTINED)
    assert stored(cloud) == before  # another version's verdict: nothing written
    assert records.record_verdict_on_done("images", IMAGE, SEQ, "moderation", held, records.Status.QUARANTINED)
    record = stored(cloud)
    assert (record["status"], record["reason"], record["gate"], record["attention"], record["updated_at"]) == (
        "quarantined", "explicit nudity (97.1%)", "moderation", "quarantined#0", STAMP)
    assert record["moderation"] == {**held, "updated_at": STAMP} and record["thumbnails"]["outputs"] == ["a"]


def test_a_holding_verdict_without_a_reason_quarantines_with_an_empty_reason(cloud, monkeypatch):
    done(cloud, monkeypatch)
    assert records.record_verdict_on_done("images", IMAGE, SEQ, "moderation", {"status": "held"}, records.Status.QUARANTINED)
    assert (stored(cloud)["status"], stored(cloud)["reason"]) == ("quarantined", "")


def test_a_passing_verdict_on_a_done_image_names_its_gate_and_a_second_verdict_is_refused(cloud, monkeypatch):
    done(cloud, monkeypatch)
    assert records.record_verdict_on_done("images", IMAGE, SEQ, "moderation", {"status": "done"}, records.Status.DONE)
    record = stored(cloud)
    assert (record["status"], record["reason"], record["gate"], record["updated_at"]) == ("done", "", "moderation", STAMP)
    assert record["moderation"] == {"status": "done", "updated_at": STAMP} and "attention" not in record
    # The gate's verdict is there: the same version's second verdict (a redelivered reprocess) changes nothing.
    assert not records.record_verdict_on_done("images", IMAGE, SEQ, "moderation", {"status": "held", "reason": "r"},
                                              records.Status.QUARANTINED)
    assert stored(cloud) == record


def test_a_verdict_on_an_image_that_is_not_done_is_refused(cloud, monkeypatch):
    accepted(cloud, expected=("thumbnails",))
    before = stored(cloud)
    assert not records.record_verdict_on_done("images", IMAGE, SEQ, "moderation", {"status": "held", "reason": "r"},
                                              records.Status.QUARANTINED)
    assert stored(cloud) == before


def quarantined(cloud, monkeypatch) -> records.ImageRecord:
    done(cloud, monkeypatch)
    held = {"status": "held", "reason": "explicit", "labels": ["Nudity"]}
    records.record_verdict_on_done("images", IMAGE, SEQ, "moderation", held, records.Status.QUARANTINED)
    return records.get("images", IMAGE)


def test_an_approval_accepts_the_held_version_again_keeps_the_gates_labels_and_clears_the_other_results(cloud, monkeypatch):
    held = quarantined(cloud, monkeypatch)
    monkeypatch.setattr(records, "now", lambda: "2026-12-07T11:00:00.000Z")
    decided = {"decision": "approved", "by": "ops"}
    assert records.record_decision("images", held, "moderation", decided, approved=True)
    record = stored(cloud)
    assert (record["status"], record["reason"], record["attention"], record["decision"], record["updated_at"]) == (
        "accepted", "", "accepted#0", decided, "2026-12-07T11:00:00.000Z")
    assert record["moderation"] == {"status": "done", "reason": "explicit", "labels": ["Nudity"],
                                    "updated_at": "2026-12-07T11:00:00.000Z"}
    assert "thumbnails" not in record  # made again after the approval, from the accepted record


def test_a_rejection_keeps_the_image_held_and_a_second_decision_is_refused(cloud, monkeypatch):
    held = quarantined(cloud, monkeypatch)
    decided = {"decision": "rejected", "by": "ops"}
    assert records.record_decision("images", held, "moderation", decided, approved=False)
    record = stored(cloud)
    assert (record["status"], record["reason"], record["attention"], record["decision"]) == (
        "quarantined", "explicit", "quarantined#0", decided)
    assert record["thumbnails"]["outputs"] == ["a"] and record["moderation"]["status"] == "held"
    assert not records.record_decision("images", records.get("images", IMAGE), "moderation",
                                       {"decision": "approved", "by": "ops"}, approved=True)
    assert stored(cloud) == record


def test_a_decision_on_a_version_the_record_no_longer_holds_is_refused(cloud, monkeypatch):
    held = quarantined(cloud, monkeypatch)
    before = stored(cloud)
    other = records.ImageRecord({**held.item, "sequencer": NEWER})  # what the operator saw was another version
    assert not records.record_decision("images", other, "moderation", {"decision": "approved", "by": "ops"}, approved=True)
    assert stored(cloud) == before
    passed = records.ImageRecord({**held.item, "moderation": {"status": "done"}})
    aws.table("images").put_item(Item=dict(passed.item))  # the gate no longer holds it
    assert not records.record_decision("images", passed, "moderation", {"decision": "approved", "by": "ops"}, approved=True)
    assert "decision" not in stored(cloud)


def test_a_failed_reprocess_is_noted_on_the_done_version_it_tried_and_nowhere_else(cloud, monkeypatch):
    before = done(cloud, monkeypatch).item
    note = {"status": "failed", "reason": "the original is gone"}
    assert not records.record_reprocess_failure("images", IMAGE, NEWER, note)
    assert stored(cloud) == before
    assert records.record_reprocess_failure("images", IMAGE, SEQ, note)
    record = stored(cloud)
    assert record["reprocess"] == {**note, "updated_at": STAMP}
    assert (record["status"], record["thumbnails"]["outputs"]) == ("done", ["a"])
    records.record_event("images", IMAGE, NEWER, {"status": "accepted", "reason": "", "key": "uploads/x.jpg",
                                                   "expected_stages": ["thumbnails"]}, stages=RESULTS)
    accepted_now = stored(cloud)
    assert not records.record_reprocess_failure("images", IMAGE, NEWER, note)  # not done: nothing to note on
    assert stored(cloud) == accepted_now


def test_thumbnails_made_again_clear_the_note_of_an_earlier_failed_attempt(cloud, monkeypatch):
    done(cloud, monkeypatch)
    records.record_reprocess_failure("images", IMAGE, SEQ, {"status": "failed", "reason": "throttled"})
    again = records.record_reprocessed("images", IMAGE, SEQ, "thumbnails", {"status": "done", "outputs": ["b"],
                                                                            "settings": "v2"}, made_with=None)
    record = stored(cloud)
    assert again.outcome == Outcome.WRITTEN and record["thumbnails"]["outputs"] == ["b"] and "reprocess" not in record


def test_renditions_name_each_stored_file_once_with_its_format_and_every_box_it_serves():
    outputs = [
        {"key": "t/a.v1.256.jpg", "box": 256, "width": 100, "content_type": "image/jpeg"},
        {"key": "t/a.v1.256.jpg", "box": 512, "width": 100, "content_type": "image/jpeg"},  # smaller than both boxes
        {"key": "t/a.v1.256.webp", "box": 256, "content_type": "image/webp"},
        {"key": "t/a.v1.256.avif", "box": 256, "content_type": "image/avif"},
        {"key": "t/a.v1.256.png", "box": 256, "content_type": "image/png"},
        {"key": "t/b.v1.x.jpg", "content_type": "image/png"},  # the content type says it before the key does
        {"key": "t/b.v1.x.webp", "format": "avif", "content_type": "image/webp"},  # a recorded format stands
        # Made before content types were recorded: the key's last extension (the name may hold dots).
        {"key": "t/old.v1.128.jpg", "box": 128}, {"key": "t/old.v1.png"}, {"key": "t/old.v1.webp"},
        {"key": "t/old.v1.avif"}, {"key": "t/old.v1.gif"},
    ]
    assert [(r["key"], r["format"], r["boxes"]) for r in records.renditions(outputs)] == [
        ("t/a.v1.256.jpg", "jpeg", [256, 512]), ("t/a.v1.256.webp", "webp", [256]), ("t/a.v1.256.avif", "avif", [256]),
        ("t/a.v1.256.png", "png", [256]), ("t/b.v1.x.jpg", "png", []), ("t/b.v1.x.webp", "avif", []),
        ("t/old.v1.128.jpg", "jpeg", [128]), ("t/old.v1.png", "png", []), ("t/old.v1.webp", "webp", []),
        ("t/old.v1.avif", "avif", []), ("t/old.v1.gif", None, []),
    ]
    first = records.renditions(outputs)[0]
    assert first == {"key": "t/a.v1.256.jpg", "width": 100, "content_type": "image/jpeg", "format": "jpeg",
                     "boxes": [256, 512]}  # no `box`: a rendition serves its `boxes`


def test_thumbnails_made_again_replace_the_done_versions_result_once_and_no_other_versions(cloud, monkeypatch):
    before = done(cloud, monkeypatch).item
    again = {"status": "done", "outputs": ["b"], "settings": "v2"}
    refused = records.record_reprocessed("images", IMAGE, NEWER, "thumbnails", again, made_with=None)
    assert refused.outcome == Outcome.STALE and stored(cloud) == before  # another version's: nothing written
    monkeypatch.setattr(records, "now", lambda: "2026-12-07T12:00:00.000Z")
    assert records.record_reprocessed("images", IMAGE, SEQ, "thumbnails", again, made_with=None).outcome == Outcome.WRITTEN
    record = stored(cloud)
    assert record["thumbnails"] == {**again, "updated_at": "2026-12-07T12:00:00.000Z"}
    assert (record["status"], record["updated_at"]) == ("done", "2026-12-07T12:00:00.000Z")
    # Made again already (its settings are not the ones this request found): a second copy changes nothing.
    assert records.record_reprocessed("images", IMAGE, SEQ, "thumbnails", {**again, "outputs": ["c"]},
                                      made_with=None).outcome == Outcome.STALE
    assert stored(cloud) == record


def test_a_record_is_given_as_json_takes_it():
    # The status route's answer and the image events' detail: DynamoDB's Decimal, sets and binary, as JSON types.
    item = {"width": Decimal("4000"), "focal": {"x": Decimal("0.25")}, "boxes": [Decimal("256"), Decimal("1.5")],
            "tags": {"b", "a"}, "note": b"caf\xc3\xa9 \xff", "status": "done", "flag": True}
    given = records.plain(item)
    assert given == {"width": 4000, "focal": {"x": 0.25}, "boxes": [256, 1.5], "tags": ["a", "b"],
                     "note": "café \ufffd", "status": "done", "flag": True}
    assert type(given["width"]) is int and type(given["boxes"][1]) is float
    assert json.loads(json.dumps(given)) == given


def test_a_record_without_a_version_names_no_size_and_a_stored_size_is_an_int():
    # A deleted key's record holds no object: its size is None, not an error; DynamoDB gives numbers as Decimal.
    assert records.ImageRecord({"status": "deleted"}).size is None
    assert records.ImageRecord({"status": "done", "size": Decimal(2048)}).size == 2048
    assert type(records.ImageRecord({"size": Decimal(2048)}).size) is int
