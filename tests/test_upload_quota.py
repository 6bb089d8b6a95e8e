"""The upload API's per-owner daily quota: one conditional counter per owner and UTC day, counted when a grant is
minted; over it, a 429 that says which limit and when it resets. The counters' table and its permission are in
tests/test_edges_infra.py; the quota through the local cloud's endpoint in tests/test_local_upload.py."""
from __future__ import annotations

import json
import threading
from datetime import UTC, datetime

import boto3
import pytest

from handlers import upload_api
from localcloud.lambda_events import LambdaContext
from localcloud.seams.moto_server import make_dynamodb_writes_atomic
from tests.conftest import REGION
from tests.test_upload_api import ALICE, http_event, owner_of

BOB = "arn:aws:iam::123456789012:user/bob"
NOON = datetime(2026, 12, 7, 12, 0, 0, tzinfo=UTC)
MIDNIGHT = "2026-12-08T00:00:00Z"


@pytest.fixture
def quota(cloud, monkeypatch):
    """A quota table as the program declares it, and a function that sets the limits and asks for a grant. moto's
    conditional writes are made atomic, as DynamoDB's (and the local cloud's emulator's) are: localcloud/seams/
    moto_server.py says why."""
    make_dynamodb_writes_atomic()
    dynamodb = boto3.client("dynamodb", region_name=REGION)
    dynamodb.create_table(TableName="quotas", BillingMode="PAY_PER_REQUEST",
                          KeySchema=[{"AttributeName": "owner_day", "KeyType": "HASH"}],
                          AttributeDefinitions=[{"AttributeName": "owner_day", "AttributeType": "S"}])
    monkeypatch.setenv("UPLOADS_BUCKET", cloud.uploads)
    monkeypatch.setenv("UPLOAD_EXPIRY_SECONDS", "120")
    monkeypatch.setenv("QUOTA_TABLE_NAME", "quotas")
    monkeypatch.setattr(upload_api, "now", lambda: NOON)

    def limits(uploads: int = 0, size: int = 0) -> None:
        monkeypatch.setenv("UPLOAD_QUOTA_UPLOADS", str(uploads))
        monkeypatch.setenv("UPLOAD_QUOTA_BYTES", str(size))

    def ask(size: int = 1000, caller: str = ALICE) -> tuple[int, dict, dict]:
        response = upload_api.handler(http_event({"filename": "a.jpg", "contentType": "image/jpeg", "size": size},
                                                 caller=caller), LambdaContext(function_name="upload-api"))
        return response["statusCode"], json.loads(response["body"]), response.get("headers") or {}

    def counter(caller: str = ALICE) -> dict:
        key = {"owner_day": {"S": f"{owner_of(caller)}#2026-12-07"}}
        return dynamodb.get_item(TableName="quotas", Key=key).get("Item", {})

    return limits, ask, counter


def test_exactly_the_quota_of_concurrent_requests_get_a_grant(quota):
    limits, ask, counter = quota
    limits(uploads=5)
    start = threading.Barrier(20)
    statuses: list[int] = []

    def one() -> None:
        start.wait()
        statuses.append(ask()[0])

    threads = [threading.Thread(target=one) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(statuses) == [201] * 5 + [429] * 15
    assert counter()["uploads"] == {"N": "5"} and counter()["bytes"] == {"N": "5000"}  # refused grants counted nothing


def test_over_the_uploads_limit_the_429_says_which_limit_and_when_it_resets(quota):
    limits, ask, _ = quota
    limits(uploads=2)
    assert [ask()[0], ask()[0]] == [201, 201]
    status, body, headers = ask()
    assert status == 429
    assert body == {"message": "upload quota reached: 2 uploads a day is your limit, and 2 were granted today; "
                               f"it resets at {MIDNIGHT} (midnight UTC)", "limit": "uploads", "resets_at": MIDNIGHT}
    assert headers["Retry-After"] == str(12 * 3600)  # noon to midnight
    assert ask(caller=BOB)[0] == 201  # another owner's day is their own


def test_every_session_of_one_assumed_role_shares_the_role_s_quota(quota):
    limits, ask, counter = quota
    limits(uploads=2)
    role = "arn:aws:sts::123456789012:assumed-role/uploader/"
    other_role = "arn:aws:sts::123456789012:assumed-role/other-uploader/"
    assert [ask(caller=role + "first")[0], ask(caller=role + "second")[0]] == [201, 201]
    status, body, _ = ask(caller=role + "a-fresh-session")  # a new session name buys no new day
    assert (status, body["limit"]) == (429, "uploads")
    assert counter("arn:aws:iam::123456789012:role/uploader")["uploads"] == {"N": "2"}
    status, granted, _ = ask(caller=other_role + "first")
    assert status == 201  # another role's day is its own
    assert granted["key"].split("/")[2] == owner_of(other_role + "first")  # the folder is still the session's, as before


def test_the_bytes_limit_counts_declared_sizes_and_a_refused_grant_takes_none(quota):
    limits, ask, counter = quota
    limits(size=5_000_000)
    assert ask(size=3_000_000)[0] == 201
    status, body, headers = ask(size=2_500_000)  # 5.5 MB in all: over
    assert (status, body["limit"], body["resets_at"], headers["Retry-After"]) == (429, "bytes", MIDNIGHT, "43200")
    assert body["message"] == ("upload quota reached: 5,000,000 bytes a day is your limit; 3,000,000 were "
                               f"granted today and this file is 2,500,000; it resets at {MIDNIGHT} (midnight UTC)")
    assert ask(size=2_000_000)[0] == 201  # exactly the limit: the refused 2.5 MB took nothing
    assert counter()["bytes"] == {"N": "5000000"} and counter()["uploads"] == {"N": "2"}


def test_each_days_counter_expires_by_itself_a_day_after_the_day_it_names(quota):
    limits, ask, counter = quota
    limits(uploads=10, size=10_000_000)
    ask()
    # TTL deletes it some time after this; until then the key's day keeps it from counting tomorrow.
    assert int(counter()["expires_at"]["N"]) == int(datetime(2026, 12, 9, tzinfo=UTC).timestamp())


def test_a_request_refused_for_anything_else_counts_nothing(quota):
    limits, ask, counter = quota
    limits(uploads=1)
    response = upload_api.handler(http_event({"filename": "../x.jpg", "contentType": "image/jpeg", "size": 5}),
                                  LambdaContext(function_name="upload-api"))
    assert response["statusCode"] == 400 and counter() == {}
    assert ask()[0] == 201 and ask()[0] == 429


def test_without_a_quota_nothing_is_counted(quota, monkeypatch):
    limits, ask, counter = quota
    limits()
    monkeypatch.delenv("QUOTA_TABLE_NAME")  # the program sets no table without a quota
    assert [ask()[0] for _ in range(3)] == [201, 201, 201] and counter() == {}
