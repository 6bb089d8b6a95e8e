"""The claim check's schema and the sequencer's order: what every stage relies on reading the same way."""
from __future__ import annotations

import json
from decimal import Decimal

import pytest

from handlers import contracts
from handlers.contracts import SEQUENCER_WIDTH, ClaimCheck, InvalidClaimCheck, normalize_sequencer

VALID = {"bucket": "uploads-bucket", "key": "uploads/a.jpg", "version_id": "v1", "etag": "e", "size": 10,
         "format": "jpeg", "sequencer": "0" * SEQUENCER_WIDTH, "event": "created", "event_time": "2026-01-01T00:00:00Z",
         "v": 1}


def body(**changes) -> str:
    return json.dumps({**VALID, **changes})


def test_a_valid_claim_check_round_trips_exactly():
    claim = ClaimCheck.from_json(body())
    assert ClaimCheck.from_json(claim.to_json()) == claim
    assert json.loads(claim.to_json()) == VALID
    assert claim.to_json() == json.dumps(VALID, separators=(",", ":"), sort_keys=True)  # compact and stable


def test_the_image_id_is_stable_per_bucket_and_key_only():
    assert contracts.image_id("b", "k") == contracts.image_id("b", "k")
    assert len(contracts.image_id("b", "k")) == 32
    assert contracts.image_id("b", "k") != contracts.image_id("b", "k2") != contracts.image_id("b2", "k")
    assert ClaimCheck.from_json(body()).image_id == contracts.image_id("uploads-bucket", "uploads/a.jpg")


@pytest.mark.parametrize("raw, message", [
    ("not json", "message body is not JSON"),
    (None, "message body is not JSON"),
    ("[1, 2]", "message body is not a JSON object"),
    ('"a string"', "message body is not a JSON object"),
    (body(v=2), "unsupported claim check version 2 (expected 1)"),
    (json.dumps({k: v for k, v in VALID.items() if k != "v"}), "unsupported claim check version None"),
    (json.dumps({k: v for k, v in VALID.items() if k != "etag"}), "claim check fields differ from v1: missing ['etag'], unexpected []"),
    (body(extra=1), "claim check fields differ from v1: missing [], unexpected ['extra']"),
    (body(event="updated"), "unknown claim check event 'updated'"),
    (body(bucket=""), "claim check has no bucket or key"),
    (body(key=""), "claim check has no bucket or key"),
    (body(bucket=7), "claim check has no bucket or key"),
    (body(key=["k"]), "claim check has no bucket or key"),
    (body(size=-1), "claim check size -1 is not a byte count"),
    (body(size="10"), "claim check size '10' is not a byte count"),
    (body(sequencer="ABC"), "claim check sequencer is not normalized"),
    (body(sequencer=5), "claim check sequencer is not normalized"),
])
def test_what_is_not_a_claim_check_is_refused_with_a_reason(raw, message):
    with pytest.raises(InvalidClaimCheck) as refused:
        ClaimCheck.from_json(raw)
    assert str(refused.value).startswith(message)


def test_a_version_is_one_segment_of_a_thumbnail_key():
    # A version id is opaque: a slash in it must not add a level to the key; an unversioned object has the sequencer.
    assert contracts.version_tag("3HL4kqtJvjVBH40Nr/jfkd_sl", "S") == "3HL4kqtJvjVBH40Nr_jfkd_sl"
    assert contracts.version_tag(None, "0000005F") == "0000005F"


def test_a_removed_claim_and_an_empty_object_are_valid():
    assert ClaimCheck.from_json(body(event="removed", size=0, etag=None, format=None)).event == "removed"


def test_sequencers_are_padded_on_the_right_and_compare_as_s3_says():
    # S3: compare sequencers of the same key by padding the shorter one with zeros on the right.
    short, long = normalize_sequencer("0055AED6DCD90281E5", ""), normalize_sequencer("0055AED6DCD90281E50", "")
    assert short == "0055AED6DCD90281E5".ljust(SEQUENCER_WIDTH, "0") and len(short) == SEQUENCER_WIDTH
    assert normalize_sequencer(" 00ab ", "") == "00AB".ljust(SEQUENCER_WIDTH, "0")
    assert normalize_sequencer("00AB", "") < normalize_sequencer("00AC", "") < normalize_sequencer("01", "")
    assert short == long  # equal once padded: the same point in the order
    assert normalize_sequencer("F" * SEQUENCER_WIDTH, "") == "F" * SEQUENCER_WIDTH


@pytest.mark.parametrize("sequencer", ["XYZ", "00X1", "00AB-", "0" * (SEQUENCER_WIDTH + 1), "  "])
def test_a_sequencer_that_is_not_hex_is_refused(sequencer):
    with pytest.raises(InvalidClaimCheck, match=f"is not a hex string of at most {SEQUENCER_WIDTH} digits"):
        normalize_sequencer(sequencer, "2026-01-01T00:00:00Z")


def test_without_a_sequencer_the_event_time_orders_events_and_never_looks_like_hex():
    first = normalize_sequencer(None, "2026-01-01T00:00:00.001Z")
    second = normalize_sequencer("", "2026-01-01T00:00:00.002Z")
    assert first < second
    assert len(first) == SEQUENCER_WIDTH and first.startswith("T")
    # The value is the event's microseconds since the epoch, in hex, right-aligned.
    assert first[1:] == format(1_767_225_600_001_000, "X").rjust(SEQUENCER_WIDTH - 1, "0")
    # A claim check carrying it is valid (the stages compare it like any other sequencer).
    assert ClaimCheck.from_json(body(sequencer=first)).sequencer == first
    assert normalize_sequencer(None, "2026-01-01T01:00:00+01:00") == normalize_sequencer(None, "2026-01-01T00:00:00Z")


@pytest.mark.parametrize("event_time", ["", "yesterday", None])
def test_without_either_the_event_is_refused(event_time):
    with pytest.raises(InvalidClaimCheck, match="neither a sequencer nor a valid eventTime"):
        normalize_sequencer(None, event_time)


def test_an_event_time_without_its_utc_offset_is_refused_rather_than_read_in_the_machine_s_zone():
    with pytest.raises(InvalidClaimCheck, match="its eventTime has no UTC offset"):
        normalize_sequencer(None, "2026-01-01T00:00:00")


def test_an_unversioned_claim_reads_its_object_only_while_the_etag_still_matches():
    claim = ClaimCheck.from_json(body(version_id=None, etag="0123abcd"))
    assert claim.object_version() == {"Bucket": claim.bucket, "Key": claim.key, "IfMatch": '"0123abcd"'}
    versioned = ClaimCheck.from_json(body(version_id="v1", etag="0123abcd"))
    assert versioned.object_version() == {"Bucket": versioned.bucket, "Key": versioned.key, "VersionId": "v1"}


@pytest.mark.parametrize("args, expected", [
    (("jpeg", "created"), {"format": "jpeg", "event": "created", "gate": "pending"}),  # only a gate stage takes it
    (("webp", "reprocess"), {"format": "webp", "event": "reprocess", "gate": "pending"}),
    (("jpeg", "created", True), {"format": "jpeg", "event": "created", "gate": "clear"}),  # the last gate passed it
    (("png", "created", True, "pending"), {"format": "png", "event": "created", "gate": "pending"}),  # to the next gate
    ((None, "removed"), {"format": "none", "event": "removed", "gate": "clear"}),  # a removal never waits for a gate
])
def test_a_claim_checks_attributes_say_its_format_event_and_whether_a_gate_must_see_it_first(args, expected):
    # The subscriptions' filter policies read exactly these (infra/stages.py): a wrong one sends it to the wrong stage.
    assert contracts.attributes(*args) == expected


def test_a_backfilled_version_orders_below_every_sequencer_s3_sends_and_both_have_the_stored_width():
    # Records already in a table hold 32 digits: another width would order new sequencers against them by length.
    assert len(normalize_sequencer("0055AED6DCD90281E5", "")) == 32
    assert contracts.BACKFILL_SEQUENCER == "0" * 32
    assert normalize_sequencer("0000000000000000001", "2026-01-01T00:00:00.000Z") > contracts.BACKFILL_SEQUENCER


def test_each_version_of_an_image_has_thumbnails_of_its_own():
    claim = ClaimCheck.from_json(body())
    prefix = f"thumbnails/{contracts.image_id('uploads-bucket', 'uploads/a.jpg')}/"
    assert claim.thumbnail_prefix == prefix + "v1/"
    assert ClaimCheck.from_json(body(version_id="v2")).thumbnail_prefix == prefix + "v2/"
    sequencer = normalize_sequencer("00AB", "")
    unversioned = ClaimCheck.from_json(body(version_id=None, sequencer=sequencer))
    assert unversioned.thumbnail_prefix == prefix + sequencer + "/"  # no version id: the event's sequencer


def test_a_claim_check_is_published_with_its_attributes_as_sns_takes_them():
    # SNS Publish: each MessageAttributes value names its DataType and a StringValue (the filter policies read these).
    claim = ClaimCheck.from_json(body(format="png", event="created"))
    assert claim.message_attributes() == {"format": {"DataType": "String", "StringValue": "png"},
                                          "event": {"DataType": "String", "StringValue": "created"},
                                          "gate": {"DataType": "String", "StringValue": "pending"}}
    assert claim.message_attributes(passed=True)["gate"] == {"DataType": "String", "StringValue": "clear"}
    assert claim.message_attributes(True, "pending")["gate"]["StringValue"] == "pending"


def test_the_claim_check_a_record_stands_for_is_the_one_the_intake_published():
    claim = ClaimCheck.from_json(body(size=2048, format="webp", event_time="2026-03-04T05:06:07.000Z"))
    record = {"image_id": claim.image_id, "status": "done", "bucket": claim.bucket, "key": claim.key,
              "version_id": claim.version_id, "etag": claim.etag, "size": Decimal(2048), "format": "webp",
              "sequencer": claim.sequencer, "event_time": claim.event_time, "thumbnails": {"status": "done"}}
    assert ClaimCheck.of_record(record, "reprocess") == ClaimCheck.from_json(body(
        size=2048, format="webp", event_time="2026-03-04T05:06:07.000Z", event="reprocess"))
    bare = {"bucket": "b", "key": "uploads/x.jpg", "sequencer": claim.sequencer}  # a deleted key's record
    assert ClaimCheck.of_record(bare, "removed") == ClaimCheck(
        bucket="b", key="uploads/x.jpg", version_id=None, etag=None, size=0, format=None, sequencer=claim.sequencer,
        event="removed", event_time="")


NAMES = "a decision names a bucket, key, version, sequencer, author and time, each a string"
DECISION = {"bucket": "uploads-bucket", "key": "uploads/a.jpg", "version_id": "v1", "sequencer": "0" * SEQUENCER_WIDTH,
            "decision": "approved", "by": "arn:aws:iam::123456789012:user/ops", "at": "2026-12-07T10:00:00.000Z", "v": 1,
            "kind": contracts.DECISION_KIND}


def test_a_decision_round_trips_as_one_compact_sorted_line_and_says_what_it_is():
    request = contracts.DecisionRequest.from_json(json.dumps(DECISION))
    assert request.to_json() == json.dumps(DECISION, separators=(",", ":"), sort_keys=True)
    assert contracts.DecisionRequest.is_one(request.to_json()) and not contracts.DecisionRequest.is_one(body())
    for other in ("{", None, "[]", '"decision"', json.dumps({**DECISION, "kind": "claim"})):  # not JSON, no object
        assert not contracts.DecisionRequest.is_one(other)  # type: ignore[arg-type]
    assert request.image_id == contracts.image_id("uploads-bucket", "uploads/a.jpg")


@pytest.mark.parametrize("changes, reason", [
    ({"v": 2}, "not a v1 decision"),
    ({"extra": "x"}, "not a v1 decision"),  # a field it does not know: a forged or newer message, not read in part
    ({"by": None}, NAMES),
    ({"decision": "maybe"}, "unknown decision 'maybe'"),
    ({"decision": "x" * 100}, "unknown decision '" + "x" * 40 + "'"),  # quoted to 40 characters
    ({"bucket": ""}, NAMES), ({"key": ""}, NAMES), ({"version_id": ""}, NAMES),
    ({"sequencer": ""}, NAMES), ({"by": ""}, NAMES), ({"at": ""}, NAMES),
    ({"key": "k" * 2049}, NAMES),
], ids=["version", "extra-field", "author-not-a-string", "unknown", "long-unknown", "bucket", "key", "version-id",
        "sequencer", "author", "time", "key-too-long"])
def test_a_decision_that_is_not_exactly_one_is_refused_with_a_reason(changes, reason):
    with pytest.raises(InvalidClaimCheck) as refused:
        contracts.DecisionRequest.from_json(json.dumps({**DECISION, **changes}))
    assert reason in str(refused.value) and (reason != NAMES or str(refused.value) == NAMES)


def test_a_decision_missing_a_field_or_not_an_object_is_refused_and_the_longest_names_pass():
    missing = {k: v for k, v in DECISION.items() if k != "by"}
    with pytest.raises(InvalidClaimCheck, match=r"^not a v1 decision: '"):
        contracts.DecisionRequest.from_json(json.dumps(missing))
    assert contracts.DecisionRequest.from_json(json.dumps({**DECISION, "key": "k" * 2048})).key == "k" * 2048
    assert contracts.DecisionRequest.from_json(json.dumps({**DECISION, "by": "x"})).by == "x"  # one character is a name
    with pytest.raises(InvalidClaimCheck) as quoted:
        contracts.DecisionRequest.from_json(json.dumps([DECISION] * 10))
    assert str(quoted.value) == f"not a v1 decision: {json.dumps([DECISION] * 10)[:80]!r}"


THUMB = "thumbnails/" + "a" * 32 + "/v1/256.jpg"


def test_a_purge_request_round_trips_as_one_compact_line_naming_each_key_once_and_its_images():
    other = "thumbnails/" + "b" * 32 + "/v2/1024.webp"
    request = contracts.PurgeRequest.from_json(json.dumps({"v": 1, "keys": [THUMB, other, THUMB]}))
    assert request.keys == (THUMB, other) and request.to_json() == f'{{"v":1,"keys":["{THUMB}","{other}"]}}'
    assert request.images == {"thumbnails/" + "a" * 32 + "/", "thumbnails/" + "b" * 32 + "/"}
    assert len(contracts.PurgeRequest.from_json(json.dumps({"v": 1, "keys": [THUMB] * 100})).keys) == 1


@pytest.mark.parametrize("raw, reason", [
    (None, "message body is not JSON"),  # an SQS body that is not a string at all
    ("{", "message body is not JSON: "),
    (json.dumps({"v": 2, "keys": [THUMB]}), "not a v1 purge request"),
    (json.dumps({"v": 1, "keys": [THUMB], "all": True}), "not a v1 purge request"),
    (json.dumps({"v": 1, "keys": []}), "a purge request names 1 to 100 thumbnail keys"),
    (json.dumps({"v": 1, "keys": [THUMB] * 101}), "a purge request names 1 to 100 thumbnail keys"),
    (json.dumps({"v": 1, "keys": ["thumbnails/*"]}), "not a thumbnail key: 'thumbnails/*'"),
    (json.dumps({"v": 1, "keys": ["uploads/a.jpg"]}), "not a thumbnail key: 'uploads/a.jpg'"),
], ids=["not-a-string", "not-json", "version", "extra-field", "no-keys", "101-keys", "wildcard", "not-a-thumbnail"])
def test_a_purge_request_that_is_not_exactly_one_is_refused_with_a_reason(raw, reason):
    with pytest.raises(contracts.InvalidPurgeRequest) as refused:
        contracts.PurgeRequest.from_json(raw)
    assert str(refused.value).startswith(reason)


def test_a_thumbnail_key_is_purged_by_the_path_its_url_carries():
    # CloudFront Developer Guide, "Specifying the files to invalidate": the path as the URL carries it.
    assert contracts.invalidation_path("thumbnails/" + "a" * 32 + "/v1 (2)/ü+=!$&'(),;:@.jpg") == (
        "/thumbnails/" + "a" * 32 + "/v1%20(2)/%C3%BC+=!$&'(),;:@.jpg")  # a space and non-ASCII encoded, the rest kept


def test_a_refused_purge_request_quotes_what_it_refused_to_80_characters():
    body = json.dumps({"v": 2, "keys": [THUMB] * 5})
    with pytest.raises(contracts.InvalidPurgeRequest) as refused:
        contracts.PurgeRequest.from_json(body)
    assert str(refused.value) == f"not a v1 purge request: {body[:80]!r}"
    bad = "uploads/" + "b" * 200
    with pytest.raises(contracts.InvalidPurgeRequest) as named:
        contracts.PurgeRequest.from_json(json.dumps({"v": 1, "keys": [THUMB, bad]}))
    assert str(named.value) == f"not a thumbnail key: {bad[:80]!r}"
