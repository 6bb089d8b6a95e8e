"""Through the local cloud with the edges on: the upload API's presigned PUT, held by the strict emulator to what
S3 enforces; one grant buys one upload; who sent each image reaches its record; an iPhone photo; CDN URLs; the
per-owner quota, counted in the stack's own table with exactly the function's permission."""
from __future__ import annotations

import hashlib
import http.client
import json
import threading
from urllib.parse import urlsplit

import pytest
import requests
from botocore.exceptions import ClientError

from localcloud import samples
from localcloud.__main__ import UPLOAD_CONFIG, wait_until_settled
from localcloud.cloud import LocalCloud

LIMIT = 300_000
CAROL = "arn:aws:iam::123456789012:user/carol"
DAVE = "arn:aws:iam::123456789012:user/dave"
QUOTA = 4  # uploads per owner a day: more than any other caller here asks for


@pytest.fixture(scope="module")
def uploaded(tmp_path_factory):
    config = {**UPLOAD_CONFIG, "maxUploadBytes": LIMIT, "uploadQuota": {"uploads": QUOTA}}
    with LocalCloud(config=config, workdir=tmp_path_factory.mktemp("upload")) as cloud:
        results = {
            "iphone": cloud.upload_through_api("IMG_4021.HEIC", samples.heic(1200, 900, orientation=6)),
            "jpeg": cloud.upload_through_api("holiday.jpg", samples.jpeg(800, 600), caller=CAROL),
            "path": cloud.upload_through_api("../../etc/passwd.jpg", samples.jpeg()),
            "svg": cloud.upload_through_api("logo.svg", b"<svg/>", "image/svg+xml"),
            "too-big": cloud.upload_through_api("big.jpg", b"\xff" * (LIMIT + 1)),
            # A client that lies about the size: the signed Content-Length no longer matches, S3 refuses the PUT.
            "liar": cloud.upload_through_api("liar.png", samples.png(200, 200) + b"\0" * 1000, declared_size=1000),
        }
        replay = {}
        grant = results["jpeg"].grant
        original = samples.jpeg(800, 600)
        replay["again"] = cloud.put_with_grant(grant, original)
        replay["swap"] = cloud.put_with_grant(grant, bytes(reversed(original)))  # other bytes of the signed length
        replay["longer"] = cloud.put_with_grant(grant, original + b"\0")  # the signed length is part of the grant
        front_door = front_door_answers(cloud.upload_api_url)
        at_once = ask_at_once(cloud.upload_api_url, DAVE, 10)
        # Someone who may put objects in the bucket (here the local cloud's administrator) files an image under
        # carol's namespace directly, not through the API: the bucket policy refuses it.
        try:
            cloud.client("s3").put_object(Bucket=cloud.outputs["uploadsBucket"], Key="uploads/api/carol/forged.jpg",
                                          Body=samples.jpeg(64, 64), IfNoneMatch="*")
            direct = "stored"
        except ClientError as refused:
            direct = refused.response["Error"]["Code"]
        keys = [r.key for r in results.values() if r.key and r.s3_status == 200]
        summary = wait_until_settled(cloud, keys, timeout=90)
        versions = cloud.client("s3").list_object_versions(Bucket=cloud.outputs["uploadsBucket"], Prefix=grant["key"])
        accepted = cloud.metrics()["intake"].get("Accepted", 0)
        status = status_answers(cloud.upload_api_url, results["jpeg"].grant["id"])
        return {"results": results, "summary": summary, "cdn": cloud.outputs["thumbnailsUrl"], "replay": replay,
                "status": status,
                "versions": versions.get("Versions", []), "front_door": front_door, "accepted": accepted, "direct": direct,
                "logs": (cloud.workdir / "logs" / "upload_api.log").read_text(), "at_once": at_once}


def test_only_the_api_files_an_image_under_an_owner(uploaded):
    assert uploaded["direct"] == "AccessDenied"


def test_the_api_chooses_unique_keys_in_the_callers_namespace(uploaded):
    results = uploaded["results"]
    assert results["iphone"].api_status == 201 and results["iphone"].s3_status == 200
    assert results["iphone"].key.startswith("uploads/api/") and results["iphone"].key.endswith("-IMG_4021.heic")
    carol = hashlib.sha256(CAROL.encode()).hexdigest()[:24]
    assert results["jpeg"].key.startswith(f"uploads/api/{carol}/")


def test_a_replayed_grant_never_reaches_the_stages(uploaded):
    # S3's conditional write refuses the second PUT, with the same bytes or others.
    assert uploaded["replay"] == {"again": 412, "swap": 412, "longer": 403}
    assert len(uploaded["versions"]) == 1
    record = uploaded["summary"].records[uploaded["results"]["jpeg"].key]
    assert record["status"] == "done" and record["version_id"] == uploaded["versions"][0]["VersionId"]
    assert uploaded["accepted"] == 2  # the iPhone photo and the JPEG, each once


def test_who_sent_each_image_is_on_its_record_and_in_the_grant_log(uploaded):
    carol = hashlib.sha256(CAROL.encode()).hexdigest()[:24]
    record = uploaded["summary"].records[uploaded["results"]["jpeg"].key]
    assert record["owner"] == carol
    granted = [json.loads(line) for line in uploaded["logs"].splitlines() if '"upload granted"' in line]
    assert any(g["principal"] == CAROL and g["owner"] == carol for g in granted)


def test_bad_requests_are_refused_with_4xx_and_a_message(uploaded):
    results = uploaded["results"]
    assert (results["path"].api_status, results["path"].key) == (400, None)
    assert "plain file name" in results["path"].message
    assert results["svg"].api_status == 415 and "not accepted" in results["svg"].message
    assert results["too-big"].api_status == 413 and "over the upload limit" in results["too-big"].message


def test_a_body_longer_than_the_grant_is_refused_by_the_emulator_as_by_s3(uploaded):
    liar = uploaded["results"]["liar"]
    assert liar.api_status == 201 and liar.s3_status == 403
    assert liar.key not in uploaded["summary"].records


def test_an_iphone_photo_gets_upright_thumbnails_served_through_the_distribution(uploaded):
    record = uploaded["summary"].records[uploaded["results"]["iphone"].key]
    assert (record["status"], record["format"]) == ("done", "heic")
    assert (record["metadata"]["width"], record["metadata"]["height"]) == (900, 1200)
    outputs = record["thumbnails"]["outputs"]
    assert [(int(o["width"]), int(o["height"])) for o in outputs] == [(768, 1024), (384, 512), (96, 128)]
    assert all(o["url"] == f"{uploaded['cdn']}/{o['key']}" for o in outputs)
    assert "labels" not in record  # HEIC never goes to Rekognition


def test_everything_uploaded_is_accounted_for(uploaded):
    assert uploaded["summary"].unaccounted() == []


def ask_at_once(endpoint: str, caller: str, count: int) -> list[tuple[int, dict, str | None]]:
    """`count` grant requests from one caller sent together: (status, body, Retry-After) of each."""
    from localcloud.api import CALLER_HEADER

    start, answers = threading.Barrier(count), []

    def ask() -> None:
        start.wait()
        response = requests.post(f"{endpoint}/uploads", json={"filename": "a.jpg", "contentType": "image/jpeg", "size": 100},
                                 headers={CALLER_HEADER: caller}, timeout=60)
        answers.append((response.status_code, response.json(), response.headers.get("Retry-After")))

    threads = [threading.Thread(target=ask) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return answers


def test_an_owner_gets_exactly_the_quota_of_grants_asked_for_at_once_then_429s_until_midnight(uploaded):
    answers = sorted(uploaded["at_once"], key=lambda answer: answer[0])
    assert [status for status, _, _ in answers] == [201] * QUOTA + [429] * (10 - QUOTA)
    for _, body, retry_after in answers[QUOTA:]:
        assert body["limit"] == "uploads" and body["resets_at"].endswith("T00:00:00Z")
        assert f"{QUOTA} uploads a day is your limit, and {QUOTA} were granted today" in body["message"]
        assert retry_after is not None and 0 < int(retry_after) <= 86_400


def raw_request(endpoint: str, headers: dict[str, str], body: bytes = b"") -> int:
    parts = urlsplit(endpoint)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    connection.putrequest("POST", "/uploads", skip_host=True, skip_accept_encoding=True)
    for name, value in headers.items():
        connection.putheader(name, value)
    connection.endheaders(body)
    status = connection.getresponse().status
    connection.close()
    return status


def status_answers(endpoint: str, upload: str) -> dict[str, tuple[int, dict]]:
    """GET /uploads/{id} through the local endpoint, by its owner, by another caller, and from a browser's page."""
    from localcloud.api import CALLER_HEADER

    asked = {"owner": requests.get(f"{endpoint}/uploads/{upload}", headers={CALLER_HEADER: CAROL}, timeout=30),
             "stranger": requests.get(f"{endpoint}/uploads/{upload}", timeout=30)}
    return {who: (answer.status_code, answer.json()) for who, answer in asked.items()}


def test_the_owner_reads_its_upload_through_the_endpoint_and_a_stranger_gets_404(uploaded):
    status, answer = uploaded["status"]["owner"]
    record = uploaded["summary"].records[uploaded["results"]["jpeg"].key]
    assert (status, answer["status"]) == (200, record["status"]) and answer["placeholder"] == record["thumbnails"]["placeholder"]
    # with the CDN on, each rendition's URL is the distribution's, as the record has it
    assert [r["url"] for r in answer["renditions"]] == [o["url"] for o in record["thumbnails"]["outputs"]]
    assert answer["labels"] and answer["labels_source"] == "emulated"
    assert uploaded["status"]["stranger"][0] == 404


def front_door_answers(endpoint: str) -> dict[str, int]:
    host = urlsplit(endpoint).netloc
    json_type = {"Content-Type": "application/json"}
    cross_site = requests.post(f"{endpoint}/uploads", data='{"filename": "a.jpg", "contentType": "image/jpeg", "size": 5}',
                               headers={"Content-Type": "text/plain"}, timeout=10)
    return {
        "negative length": raw_request(endpoint, {"Host": host, "Content-Length": "-1", **json_type}),
        "text length": raw_request(endpoint, {"Host": host, "Content-Length": "abc", **json_type}),
        "huge length": raw_request(endpoint, {"Host": host, "Content-Length": str(10**14), **json_type}),
        "foreign host": raw_request(endpoint, {"Host": "evil.example.com", "Content-Length": "2", **json_type}, b"{}"),
        "cross-site form": cross_site.status_code,
    }


def test_the_local_endpoint_refuses_what_a_front_door_should(uploaded):
    assert uploaded["front_door"] == {"negative length": 400, "text length": 400, "huge length": 413,
                                      "foreign host": 421, "cross-site form": 415}
