"""The upload API: a presigned POST for one new, server-chosen key; 4xx with a message for bad requests."""
from __future__ import annotations

import json

import pytest

from handlers import upload_api
from localcloud.lambda_events import LambdaContext


def http_event(body, method: str = "POST", path: str = "/uploads") -> dict:
    """A payload-format-2.0 request, as a function URL (or an HTTP API) delivers it."""
    return {"version": "2.0", "routeKey": "$default", "rawPath": path, "rawQueryString": "",
            "headers": {"content-type": "application/json"},
            "requestContext": {"http": {"method": method, "path": path, "sourceIp": "127.0.0.1", "protocol": "HTTP/1.1",
                                        "userAgent": "test"}, "requestId": "r", "accountId": "123456789012",
                               "domainName": "x.lambda-url.us-east-1.on.aws", "stage": "$default"},
            "body": body if isinstance(body, str) or body is None else json.dumps(body), "isBase64Encoded": False}


@pytest.fixture
def api(cloud, monkeypatch):
    monkeypatch.setenv("UPLOADS_BUCKET", cloud.uploads)
    monkeypatch.setenv("UPLOAD_EXPIRY_SECONDS", "120")

    def call(body, **kwargs):
        response = upload_api.handler(http_event(body, **kwargs), LambdaContext(function_name="upload-api"))
        return response["statusCode"], json.loads(response["body"])

    return call


def test_a_good_request_gets_a_presigned_post_for_a_new_key(api, cloud):
    status, body = api({"filename": "Holiday photo.JPG", "contentType": "image/jpeg", "size": 1234})
    assert status == 201
    assert body["key"].startswith("uploads/") and body["key"].endswith("-Holiday-photo.JPG")
    assert body["fields"]["key"] == body["key"] and body["fields"]["Content-Type"] == "image/jpeg"
    policy = json.loads(__import__("base64").b64decode(body["fields"]["policy"]))
    assert ["content-length-range", 1, 5000000] in policy["conditions"]
    assert {"Content-Type": "image/jpeg"} in policy["conditions"]
    assert body["expires_in"] == 120 and body["max_bytes"] == 5000000
    again = api({"filename": "Holiday photo.JPG", "contentType": "image/jpeg"})[1]
    assert again["key"] != body["key"]  # never the same key twice: no overwrites through the API


@pytest.mark.parametrize("request_body, status, message", [
    ({"contentType": "image/jpeg"}, 400, "filename is required"),
    ({"filename": "   ", "contentType": "image/jpeg"}, 400, "filename is required"),
    ({"filename": "../../etc/passwd", "contentType": "image/jpeg"}, 400, "filename must be a plain file name"),
    ({"filename": "a/b.jpg", "contentType": "image/jpeg"}, 400, "filename must be a plain file name"),
    ({"filename": "x.jpg\x00.png", "contentType": "image/jpeg"}, 400, "filename must be a plain file name"),
    ({"filename": "x.svg", "contentType": "image/svg+xml"}, 415, "contentType 'image/svg+xml' is not accepted"),
    ({"filename": "x.heic", "contentType": "image/heic"}, 415, "use one of image/gif, image/jpeg, image/png, image/webp"),
    ({"filename": "big.jpg", "contentType": "image/jpeg", "size": 6_000_000}, 413, "over the upload limit of 5,000,000 bytes"),
    ({"filename": "x.jpg", "contentType": "image/jpeg", "size": -1}, 400, "positive whole number"),
    ("not json at all", 400, "send a JSON object"),
    (None, 400, "send a JSON object"),
])
def test_bad_requests_get_a_4xx_with_a_message(api, request_body, status, message):
    got_status, body = api(request_body)
    assert got_status == status
    assert message in body["message"]


def test_other_routes_are_not_found(api):
    status, _ = api({"filename": "x.jpg", "contentType": "image/jpeg"}, method="GET", path="/uploads")
    assert status == 404
