"""Upload API: hands an authenticated caller a presigned POST for one new key under uploads/.

The server chooses the key (the caller only names the file), the POST may
carry only an allowed image type and at most the upload limit, and it expires
quickly. Authentication happens before this code runs: IAM on the function
URL, or API Gateway's JWT authorizer. Bad requests get a 4xx and a message.
"""
from __future__ import annotations

import os
import re
import uuid
from datetime import datetime, timezone
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, LambdaFunctionUrlResolver, Response
from aws_lambda_powertools.event_handler.exceptions import BadRequestError, RequestEntityTooLargeError

from handlers import aws, environment
from handlers.observability import logger

# Content-Type a client may declare -> the format name the settings use.
CONTENT_TYPES = {"image/jpeg": "jpeg", "image/png": "png", "image/webp": "webp", "image/gif": "gif",
                 "image/tiff": "tiff", "image/heic": "heic", "image/heif": "heic", "image/avif": "avif"}
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")

# Function URLs and HTTP APIs both send payload format 2.0; the resolver matches how the API is deployed.
app = APIGatewayHttpResolver() if os.environ.get("UPLOAD_API_KIND") == "http-api" else LambdaFunctionUrlResolver()


def upload_key(filename: str) -> str:
    """A new, unguessable key for `filename` under uploads/, or BadRequestError when the name is not a plain name."""
    if not isinstance(filename, str) or not filename.strip():
        raise BadRequestError("filename is required: the name of the file you will upload, such as photo.jpg")
    if len(filename) > 255:
        raise BadRequestError("filename is longer than 255 characters")
    if "/" in filename or "\\" in filename or ".." in filename or any(ord(c) < 32 for c in filename):
        raise BadRequestError(f"filename must be a plain file name, without folders or '..' (got {filename!r})")
    safe = _UNSAFE.sub("-", filename).strip("-.")[:100] or "upload"
    day = datetime.now(timezone.utc).strftime("%Y/%m/%d")
    return f"uploads/{day}/{uuid.uuid4().hex[:16]}-{safe}"


@app.post("/uploads")
def create_upload() -> Response:
    env = environment.load()
    try:
        body: Any = app.current_event.json_body if app.current_event.body else None
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise BadRequestError('send a JSON object: {"filename": "photo.jpg", "contentType": "image/jpeg", "size": 12345}')
    content_type = body.get("contentType")
    fmt = CONTENT_TYPES.get(content_type) if isinstance(content_type, str) else None
    if fmt is None or fmt not in env.allowed_formats:
        allowed = sorted(t for t, f in CONTENT_TYPES.items() if f in env.allowed_formats)
        return Response(status_code=415, content_type="application/json",
                        body={"message": f"contentType {content_type!r} is not accepted; use one of {', '.join(allowed)}"})
    size = body.get("size")
    if size is not None and (not isinstance(size, int) or isinstance(size, bool) or size < 1):
        raise BadRequestError("size, when given, is the file's length in bytes (a positive whole number)")
    if size is not None and size > env.max_upload_bytes:
        raise RequestEntityTooLargeError(f"the file is {size:,} bytes, over the upload limit of {env.max_upload_bytes:,} bytes")
    key = upload_key(body.get("filename"))
    post = aws.client("s3").generate_presigned_post(
        Bucket=env.uploads_bucket, Key=key,
        Fields={"Content-Type": content_type},
        # S3 itself refuses anything else: another type, an empty file, a file over the limit.
        Conditions=[{"Content-Type": content_type}, ["content-length-range", 1, env.max_upload_bytes]],
        ExpiresIn=env.upload_expiry_seconds)
    logger.info("upload granted", extra={"key": key, "content_type": content_type})
    return Response(status_code=201, content_type="application/json", body={
        "key": key, "url": post["url"], "fields": post["fields"], "expires_in": env.upload_expiry_seconds,
        "max_bytes": env.max_upload_bytes})


@logger.inject_lambda_context(clear_state=True)
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return app.resolve(event, context)
