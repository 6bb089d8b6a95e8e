"""Upload API: hands an authenticated caller one presigned, create-only PUT for one new key.

The server chooses the key, under the caller's own namespace (an opaque hash of who they are: the JWT's
issuer and subject, or the IAM principal); the grant is signed with SigV4 for exactly that key, content type,
length and owner, and with `If-None-Match: *`, so S3 itself refuses a second upload with it (conditional
writes; the bucket policy also refuses any PUT there without that header). Authentication happens before
this code runs: IAM on the function URL, or API Gateway's JWT authorizer. Every bad request gets a 4xx and a
message a person can read.
"""
from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import unicodedata
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, LambdaFunctionUrlResolver, Response
from botocore.exceptions import ClientError

from handlers import aws, environment, upload_status
from handlers.names import API_UPLOADS_PREFIX, OWNER_METADATA, Env, UploadApiKind
from handlers.observability import logger
from handlers.settings import setting, shared

# Content-Type a client may declare (any case) -> the format name the settings use.
CONTENT_TYPES = {"image/jpeg": "jpeg", "image/jpg": "jpeg", "image/pjpeg": "jpeg", "image/png": "png",
                 "image/webp": "webp", "image/gif": "gif", "image/tiff": "tiff", "image/heic": "heic",
                 "image/heif": "heic", "image/avif": "avif"}
CANONICAL_TYPES = {"jpeg": "image/jpeg", "png": "image/png", "webp": "image/webp", "gif": "image/gif",
                   "tiff": "image/tiff", "heic": "image/heic", "avif": "image/avif"}
EXTENSIONS = {"jpeg": "jpg", "png": "png", "webp": "webp", "gif": "gif", "tiff": "tif", "heic": "heic", "avif": "avif"}
MAX_BODY_BYTES = 16 * 1024  # a request is a few fields; anything larger is refused before it is parsed
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")
_SHOWN = 80  # characters of a client's value echoed back in a message

# Function URLs and HTTP APIs both send payload format 2.0; the resolver matches how the API is deployed.
app = APIGatewayHttpResolver() if os.environ.get(Env.UPLOAD_API_KIND) == UploadApiKind.HTTP_API else LambdaFunctionUrlResolver()


@dataclass(frozen=True)
class UploadSettings:
    """What the upload API reads of the stack's settings (the program encodes them into its environment)."""

    allowed_formats: tuple[str, ...] = shared("allowedFormats")
    max_upload_bytes: int = shared("maxUploadBytes")
    # The stack's uploadQuota (infra/settings.py), per owner and UTC day; 0: no limit on that one.
    quota_uploads: int = setting(0, None, "int", "Grants per owner per UTC day (0: no limit).", env="UPLOAD_QUOTA_UPLOADS")
    quota_bytes: int = setting(0, None, "int", "Declared bytes per owner per UTC day (0: no limit).",
                               env="UPLOAD_QUOTA_BYTES")


# A day's counter outlives its day by this much before TTL may delete it: housekeeping only, since the key names the
# day and a late deletion never lets a new day count an old one.
QUOTA_KEPT = timedelta(days=1)
QUOTA_KEY, QUOTA_EXPIRY = "owner_day", "expires_at"  # the counters table's key ("<holder>#<YYYY-MM-DD>"), TTL attribute


class Refused(Exception):
    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None, **details: Any):
        super().__init__(message)
        self.status, self.message, self.headers, self.details = status, message, headers or {}, details


def shown(value: Any) -> str:
    """A client's value as a message may quote it: at most _SHOWN characters of it."""
    text = repr(value)
    size = len(value) if isinstance(value, str) else len(text)
    return text if len(text) <= _SHOWN else text[:_SHOWN] + f"… ({size:,} characters)"


def caller(event: dict[str, Any]) -> tuple[str, str]:
    """(principal, owner): who is asking, as the authorizer established it, and the opaque id their keys go under."""
    authorizer = event.get("requestContext", {}).get("authorizer") or {}
    claims = (authorizer.get("jwt") or {}).get("claims") or {}
    if claims.get("sub"):
        principal = f"{claims.get('iss', '')}|{claims['sub']}"
    else:
        iam = authorizer.get("iam") or {}
        principal = iam.get("userArn") or iam.get("callerId") or ""
    if not principal:
        raise Refused(401, "the request carries no authenticated caller")
    return principal, hashlib.sha256(principal.encode()).hexdigest()[:24]


def quota_holder(principal: str) -> str:
    """Whose quota a grant counts against: the caller, except that every session of one assumed role is the role, since
    the caller picks the session name (IAM User Guide, "IAM identifiers", ARNs: an assumed role's is
    arn:aws:sts::account:assumed-role/role-name/role-session-name). The role's path is not in that ARN: its name is."""
    service, _, rest = principal.partition("::")
    account, _, resource = rest.partition(":")
    kind, _, names = resource.partition("/")
    if service.startswith("arn:") and service.endswith(":sts") and kind == "assumed-role" and "/" in names:
        partition = service.split(":")[1]
        return f"arn:{partition}:iam::{account}:role/{names.split('/')[0]}"
    return principal


def upload_key(owner: str, filename: Any, fmt: str) -> str:
    """A new, unguessable key under the owner's namespace, named after the file; the extension is the type's."""
    if not isinstance(filename, str) or not filename.strip():
        raise Refused(400, "filename is required: the name of the file you will upload, such as photo.jpg")
    if len(filename) > 255:
        raise Refused(400, f"filename is longer than 255 characters ({len(filename):,})")
    if "/" in filename or "\\" in filename or any(ord(c) < 32 or ord(c) == 127 for c in filename):
        raise Refused(400, f"filename must be a plain file name, without folders or control characters (got {shown(filename)})")
    stem = filename.rsplit(".", 1)[0] if "." in filename.strip(".") else filename
    ascii_stem = unicodedata.normalize("NFKD", stem).encode("ascii", "ignore").decode()
    safe = _UNSAFE.sub("-", ascii_stem).strip("-")[:60] or "upload"
    day = datetime.now(UTC).strftime("%Y/%m/%d")
    return f"{API_UPLOADS_PREFIX}{owner}/{day}/{uuid.uuid4().hex[:16]}-{safe}.{EXTENSIONS[fmt]}"


def _body(event: dict[str, Any]) -> dict[str, Any]:
    raw = event.get("body") or ""
    if event.get("isBase64Encoded"):
        try:
            raw = base64.b64decode(raw, validate=True).decode("utf-8")
        except (ValueError, UnicodeDecodeError):
            raise Refused(400, "the request body is not valid base64 UTF-8") from None
    if len(raw.encode("utf-8", "replace")) > MAX_BODY_BYTES:
        raise Refused(413, f"the request body is over {MAX_BODY_BYTES:,} bytes; send only the upload's description")
    content_type = {k.lower(): v for k, v in (event.get("headers") or {}).items()}.get("content-type", "")
    if content_type.split(";")[0].strip().lower() != "application/json":
        raise Refused(415, f"send the request as application/json (got Content-Type {shown(content_type)})")
    try:
        body = json.loads(raw) if raw else None
    except (ValueError, RecursionError):
        body = None
    if not isinstance(body, dict):
        raise Refused(400, 'send a JSON object: {"filename": "photo.jpg", "contentType": "image/jpeg", "size": 12345}')
    return body


def now() -> datetime:
    return datetime.now(UTC)


def count_against_quota(env: environment.Environment, settings: UploadSettings, principal: str, size: int) -> None:
    """Count one grant of `size` declared bytes against the quota of the principal's `quota_holder` for today (UTC),
    or refuse it with a 429.
    One conditional UpdateItem adds to both counters only if both stay within their limits, so concurrent requests
    cannot pass together what one at a time could not, and a refused grant counts nothing (DynamoDB API Reference,
    UpdateItem, ConditionExpression: "a condition that must be satisfied in order for a conditional update to
    succeed"; on failure ReturnValuesOnConditionCheckFailure hands back the item as it was, so no read is needed)."""
    uploads_limit, bytes_limit = settings.quota_uploads, settings.quota_bytes
    if not (uploads_limit or bytes_limit):
        return
    holder = hashlib.sha256(quota_holder(principal).encode()).hexdigest()[:24]  # the owner's hash, for one not a role
    today = now()
    resets = datetime.combine(today.date() + timedelta(days=1), time(), UTC)
    conditions: list[str] = []
    values: dict[str, Any] = {":one": {"N": "1"}, ":size": {"N": str(size)},
                              ":expires": {"N": str(int((resets + QUOTA_KEPT).timestamp()))}}
    if uploads_limit:
        conditions.append("(attribute_not_exists(#uploads) OR #uploads < :uploads_limit)")
        values[":uploads_limit"] = {"N": str(uploads_limit)}
    if bytes_limit:
        conditions.append("(attribute_not_exists(#bytes) OR #bytes <= :room)")
        values[":room"] = {"N": str(bytes_limit - size)}
    if bytes_limit and size > bytes_limit:  # no day could take it (the settings keep the limit >= maxUploadBytes)
        raise _over_quota(resets, "bytes", f"{bytes_limit:,} bytes a day is your limit, and this file alone "
                          f"is {size:,}")
    try:
        aws.client("dynamodb").update_item(
            TableName=env.quota_table_name, Key={QUOTA_KEY: {"S": f"{holder}#{today.date().isoformat()}"}},
            # The item names its day: TTL deletes it some time after `expires_at` (typically within days: DynamoDB
            # Developer Guide, "Time to Live (TTL)"), which is only housekeeping.
            UpdateExpression=f"ADD #uploads :one, #bytes :size SET {QUOTA_EXPIRY} = :expires",
            ConditionExpression=" AND ".join(conditions),
            ExpressionAttributeNames={"#uploads": "uploads", "#bytes": "bytes"}, ExpressionAttributeValues=values,
            ReturnValuesOnConditionCheckFailure="ALL_OLD")
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
            raise
        item = error.response.get("Item") or {}
        used = int(item.get("uploads", {}).get("N", "0")), int(item.get("bytes", {}).get("N", "0"))
        if uploads_limit and used[0] >= uploads_limit:
            raise _over_quota(resets, "uploads", f"{uploads_limit:,} uploads a day is your limit, and "
                              f"{used[0]:,} were granted today") from None
        raise _over_quota(resets, "bytes", f"{bytes_limit:,} bytes a day is your limit; {used[1]:,} were "
                          f"granted today and this file is {size:,}") from None


def _over_quota(resets: datetime, limit: str, why: str) -> Refused:
    """A 429 that says which limit and when it resets: Retry-After in seconds (RFC 9110, section 10.2.3)."""
    at = resets.strftime("%Y-%m-%dT%H:%M:%SZ")
    wait = max(1, int((resets - now()).total_seconds() + 0.999))
    return Refused(429, f"upload quota reached: {why}; it resets at {at} (midnight UTC)",
                   {"Retry-After": str(wait)}, limit=limit, resets_at=at)


def grant(event: dict[str, Any]) -> dict[str, Any]:
    env = environment.load()
    settings = env.settings(UploadSettings)
    principal, owner = caller(event)
    body = _body(event)
    declared = body.get("contentType")
    fmt = CONTENT_TYPES.get(declared.strip().lower()) if isinstance(declared, str) else None
    if fmt is None or fmt not in settings.allowed_formats:
        allowed = sorted(CANONICAL_TYPES[f] for f in settings.allowed_formats if f in CANONICAL_TYPES)
        raise Refused(415, f"contentType {shown(declared)} is not accepted; use one of {', '.join(allowed)}")
    size = body.get("size")
    if not isinstance(size, int) or isinstance(size, bool) or size < 1:
        raise Refused(400, f"size is required: the file's length in bytes, a positive whole number (got {shown(size)})")
    if size > settings.max_upload_bytes:
        raise Refused(413, f"the file is {size:,} bytes, over the upload limit of {settings.max_upload_bytes:,} bytes")
    key = upload_key(owner, body.get("filename"), fmt)
    count_against_quota(env, settings, principal, size)  # last: a request refused for anything else counts nothing
    content_type = CANONICAL_TYPES[fmt]
    # Everything below is signed: S3 refuses the PUT unless it carries exactly these headers, this length, and
    # finds no object at the key (If-None-Match: *), so the grant buys one upload.
    headers = {"Content-Type": content_type, "If-None-Match": "*", f"x-amz-meta-{OWNER_METADATA}": owner}
    url = aws.s3_presigner().generate_presigned_url("put_object", ExpiresIn=env.upload_expiry_seconds, Params={
        "Bucket": env.uploads_bucket, "Key": key, "ContentType": content_type, "ContentLength": size,
        "IfNoneMatch": "*", "Metadata": {OWNER_METADATA: owner}})
    logger.info("upload granted", extra={"key": key, "owner": owner, "principal": principal,
                                         "content_type": content_type, "size": size})
    return {"key": key, "url": url, "method": "PUT", "headers": headers, "size": size, "owner": owner,
            "expires_in": env.upload_expiry_seconds, "max_bytes": settings.max_upload_bytes}


def _json(status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> Response:
    return Response(status_code=status, content_type="application/json", body=json.dumps(body), headers=headers)


@app.post("/uploads")
def create_upload() -> Response:
    try:
        granted = grant(app.current_event.raw_event)
        # What the caller asks GET /uploads/{id} about, later.
        return _json(201, {"key": granted["key"], "id": upload_status.upload_id(granted["key"], granted["owner"]), **granted})
    except Refused as refused:
        logger.info("upload refused", extra={"status": refused.status, "reason": refused.message})
        return _json(refused.status, {"message": refused.message, **refused.details}, refused.headers)


@app.get("/uploads/<upload>")
def get_upload(upload: str) -> Response:
    """The caller's own upload (handlers/upload_status.py); anyone else's, or none yet, is 404; an id no grant could
    give is 400."""
    try:
        _, owner = caller(app.current_event.raw_event)
    except Refused as refused:
        return _json(refused.status, {"message": refused.message})
    if upload_status.key_of(upload, owner) is None:
        return _json(400, {"message": f"{upload_status.NOT_AN_ID} (got {shown(upload)})"})
    found = upload_status.status(upload, owner)
    if found is None:
        return _json(404, {"message": upload_status.NOT_FOUND})
    return _json(200, found)


@logger.inject_lambda_context(clear_state=True)
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return app.resolve(event, context)
