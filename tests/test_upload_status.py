"""GET /uploads/{id} on the upload API: the owner gets what a page needs (status, reason, renditions with URLs, the
placeholder, labels); anyone else gets 404, an unauthenticated caller 401; an upload in progress answers its status."""
from __future__ import annotations

import json
from urllib.parse import parse_qs, urlsplit

import requests

from handlers import intake, thumbnails, upload_api, upload_status
from localcloud import samples
from localcloud.lambda_events import LambdaContext
from tests.conftest import invoke, s3_message
from tests.test_upload_api import ALICE, api, http_event  # noqa: F401 - api is a fixture

BOB = "arn:aws:iam::123456789012:user/bob"


def ask(upload: str, caller: str | None = ALICE) -> tuple[int, dict]:
    response = upload_api.handler(http_event(None, method="GET", path=f"/uploads/{upload}", caller=caller),
                                  LambdaContext(function_name="upload-api"))
    return response["statusCode"], json.loads(response["body"])


def granted(api, name: str = "beach.webp") -> dict:  # noqa: F811
    status, grant = api({"filename": name, "contentType": "image/webp", "size": 1000})
    assert status == 201
    return grant


def uploaded(cloud, key: str, data: bytes) -> None:
    """The object under the grant's key (as the grant's PUT leaves it), through the intake."""
    response = cloud.s3.put_object(Bucket=cloud.uploads, Key=key, Body=data, Metadata={"owner": key.split("/")[2]})
    event = cloud.s3_event("ObjectCreated:Put", key, size=len(data), etag=response["ETag"].strip('"'),
                           version_id=response["VersionId"])
    assert invoke(intake, [s3_message(event)])["batchItemFailures"] == []


def test_the_grant_names_the_id_and_the_owner_sees_the_upload_in_progress_then_done(api, cloud):  # noqa: F811
    grant = granted(api)
    assert upload_status.key_of(grant["id"], grant["owner"]) == grant["key"]
    # GIVEN a grant not used yet: nothing to tell (the same 404 as a stranger's id)
    assert ask(grant["id"]) == (404, {"message": upload_status.NOT_FOUND})
    # WHEN it is uploaded and accepted: in progress, nothing to show yet
    uploaded(cloud, grant["key"], samples.webp(400, 200))
    status, answer = ask(grant["id"])
    assert (status, answer["status"]) == (200, "accepted") and "renditions" not in answer and "placeholder" not in answer
    # THEN once the thumbnail stage is done: the renditions, each with a URL that serves it, and the placeholder
    invoke(thumbnails, [json.dumps(claim["claim"]) for claim in cloud.published()])
    status, answer = ask(grant["id"])
    record = cloud.record(grant["key"])
    assert (status, answer["status"], answer["reason"]) == (200, "done", "")
    assert answer["placeholder"] == record["thumbnails"]["placeholder"]
    assert [(r["width"], r["height"], r["content_type"], r["format"], r["key"]) for r in answer["renditions"]] == [
        (int(o["width"]), int(o["height"]), o["content_type"], o["format"], o["key"]) for o in record["thumbnails"]["outputs"]]
    first = answer["renditions"][0]
    assert parse_qs(urlsplit(first["url"]).query)["X-Amz-Expires"] == ["300"]
    served = requests.get(first["url"], timeout=10)
    assert served.status_code == 200 and len(served.content) == first["bytes"]


def test_another_caller_gets_404_and_an_unauthenticated_one_401(api, cloud):  # noqa: F811
    grant = granted(api)
    uploaded(cloud, grant["key"], samples.webp(400, 200))
    assert ask(grant["id"], caller=BOB) == (404, {"message": upload_status.NOT_FOUND})
    assert ask(grant["id"], caller=None) == (401, {"message": "the request carries no authenticated caller"})
    # nor can an id that is no grant's reach outside the caller's folder: it is refused as no id at all (400, the
    # same for every caller and whether or not anything exists), never taken for an upload still to come (404)
    for probe in ("..%2F..%2Fx", "nothing", "٢٠٢٦-12-01-0123456789abcdef-x.jpg"):  # Arabic-Indic digits: \d takes them
        status, answer = ask(probe)
        assert status == 400 and answer["message"].startswith(upload_status.NOT_AN_ID), probe
    # a path with more segments is no route of the API at all
    assert ask("2026-12-01-0123456789abcdef-x.jpg/../../y") == (404, {"statusCode": 404, "message": "Not found"})
    assert ask("2026-12-01-0123456789abcdef-x.jpg") == (404, {"message": upload_status.NOT_FOUND})  # a grant's shape


def test_a_rejected_upload_answers_its_reason_and_no_renditions(api, cloud):  # noqa: F811
    grant = granted(api, "notes.webp")
    uploaded(cloud, grant["key"], b"meeting notes, not a photo\n")
    status, answer = ask(grant["id"])
    assert (status, answer["status"]) == (200, "rejected") and answer["reason"].startswith("not an image")
    assert "renditions" not in answer


def test_labels_and_what_later_stages_add_reach_the_owner_as_plain_json(api, cloud):  # noqa: F811
    from decimal import Decimal

    from handlers.contracts import image_id

    grant = granted(api)
    uploaded(cloud, grant["key"], samples.webp(400, 200))
    # GIVEN a record with labels and the fields issue 30's other stages write (a focal point, a duplicate)
    cloud.table.update_item(
        Key={"image_id": image_id(cloud.uploads, grant["key"])},
        UpdateExpression="SET labels = :l, focal_point = :f, duplicate_of = :d",
        ExpressionAttributeValues={":l": {"status": "done", "source": "emulated", "labels": [
            {"name": "Beach", "confidence": Decimal("98.5")}]}, ":f": {"x": Decimal("0.25"), "y": Decimal("0.5")},
            ":d": "uploads/api/x/2026/12/01/0123456789abcdef-first.webp"})
    status, answer = ask(grant["id"])
    assert status == 200 and answer["labels"] == [{"name": "Beach", "confidence": 98.5}]
    assert answer["labels_source"] == "emulated" and answer["focal_point"] == {"x": 0.25, "y": 0.5}
    assert answer["duplicate_of"].endswith("-first.webp")


def test_a_photo_smaller_than_every_box_answers_one_rendition_for_all_of_them(api, cloud):  # noqa: F811
    grant = granted(api)
    uploaded(cloud, grant["key"], samples.webp(60, 40))
    invoke(thumbnails, [json.dumps(claim["claim"]) for claim in cloud.published()])
    outputs = cloud.record(grant["key"])["thumbnails"]["outputs"]
    # GIVEN the record: one output per box, all three naming the one stored key
    assert len(outputs) == 3 and len({o["key"] for o in outputs}) == 1
    status, answer = ask(grant["id"])
    # THEN the page gets it once (a srcset with one width descriptor), with every box it serves
    assert status == 200
    assert [(r["width"], r["height"], r["boxes"]) for r in answer["renditions"]] == [
        (60, 40, sorted((int(o["box"]) for o in outputs), reverse=True))]
    assert "box" not in answer["renditions"][0]


def test_with_a_cdn_every_rendition_is_linked_there_and_nothing_is_presigned(api, cloud, monkeypatch):  # noqa: F811
    from handlers import environment

    grant = granted(api)
    uploaded(cloud, grant["key"], samples.webp(400, 200))
    invoke(thumbnails, [json.dumps(claim["claim"]) for claim in cloud.published()])  # made before the CDN: no url
    # GIVEN the stack's CDN (the function has its base URL, and no bucket to presign from)
    monkeypatch.setenv("THUMBNAILS_BASE_URL", "https://img.example.com/")
    monkeypatch.delenv("THUMBNAILS_BUCKET", raising=False)
    environment.load.cache_clear()
    status, answer = ask(grant["id"])
    record = cloud.record(grant["key"])
    assert status == 200 and [r["url"] for r in answer["renditions"]] == [
        f"https://img.example.com/{o['key']}" for o in record["thumbnails"]["outputs"]]
