"""GET /uploads/{id} on the upload API: what a web page needs to show its caller's upload, without DynamoDB credentials.

`{id}` is the `id` of the grant's answer: the key's part below the caller's folder, with its slashes as dashes
(2026-12-01-656e1deec74f4e65-IMG_4021.jpg). The key is rebuilt under the caller's own folder (the owner hash of who
asks), so an id can only ever name the caller's own uploads: another caller asking for it gets 404 (their folder
holds no such key), never 403, and nothing tells a stranger that an id exists.

The answer: status and reason; with status done, the renditions (each with a URL: the CDN's, or a presigned GET of
five minutes) and the placeholder; labels; and the fields later stages add when the record has them. Until the
intake has recorded the upload (not uploaded yet, or its event on its way) the answer is the same 404 as for an id
that is not the caller's.
"""
from __future__ import annotations

import re
from typing import Any

from handlers import aws, environment, records
from handlers.contracts import image_id
from handlers.names import API_UPLOADS_PREFIX, FOCAL_POINT, LABEL_LIST, Function, StageStatus, Status

# How long a rendition's presigned GET is valid: a page loads it right away, and asks again for a fresh one.
LINK_SECONDS = 300
# What a grant's id looks like: the day folders and the file name of upload_api.upload_key.
# ASCII digits only: Python's \d also matches other scripts' digits (Arabic-Indic, Devanagari...), which no grant writes.
_ID = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})-([0-9a-f]{16}-[A-Za-z0-9_-]{1,60}\.[a-z]{3,4})")
# Record attributes a page may use as they are, when a stage wrote them (focal point, duplicates: issue 30).
PASSED_ON = (FOCAL_POINT, "duplicate_of")
# An id of a shape no grant gives: 400 at once, rather than a 404 that invites polling for an upload that cannot come.
# It tells nothing about anyone's uploads: the shape alone decides it, before any read.
NOT_AN_ID = "not an id a grant gives: use the \"id\" of the grant's answer, such as 2026-12-01-656e1deec74f4e65-IMG_4021.jpg"
NOT_FOUND = ("no upload of yours has this id, or the pipeline has not seen it yet: an upload answers here once its "
             "event has reached the intake, seconds after the PUT")


def upload_id(key: str, owner: str) -> str:
    """The id the grant's answer gives for `key` (a key upload_api.upload_key made under `owner`'s folder)."""
    return key.removeprefix(f"{API_UPLOADS_PREFIX}{owner}/").replace("/", "-")


def key_of(upload: str, owner: str) -> str | None:
    """The key `upload` names in `owner`'s folder; None when it is not an id a grant gives."""
    found = _ID.fullmatch(upload)
    if found is None:
        return None
    year, month, day, name = found.groups()
    return f"{API_UPLOADS_PREFIX}{owner}/{year}/{month}/{day}/{name}"


def status(upload: str, owner: str) -> dict[str, Any] | None:
    """What a page gets for the caller `owner`'s upload `upload`; None when it is not theirs (or no id at all)."""
    key = key_of(upload, owner)
    if key is None:
        return None
    env = environment.load()
    record = records.get(env.table_name, image_id(env.uploads_bucket, key))
    # No record: not uploaded yet, its event on its way, or no grant ever named it; the same 404 for each, so that
    # whether a key exists is never told (the intake writes the key's folder as the owner: another one is not theirs).
    if record is None or record.item.get("owner") != owner:
        return None
    item = record.item
    answer: dict[str, Any] = {"id": upload, "key": key, "status": item.get("status"), "reason": item.get("reason") or "",
                              "updated_at": item.get("updated_at")}
    thumbnails = item.get(Function.THUMBNAILS) or {}
    # Renditions only once the image is done: a held (quarantined) or failed image publishes nothing.
    if item.get("status") == Status.DONE and thumbnails.get("status") == StageStatus.DONE:
        answer["renditions"] = [_rendition(output, env) for output in records.renditions(thumbnails.get("outputs", []))]
        if thumbnails.get("placeholder"):
            answer["placeholder"] = thumbnails["placeholder"]
    labels = item.get(Function.LABELS) or {}
    if labels.get(LABEL_LIST):
        answer[LABEL_LIST] = [{"name": label["name"], "confidence": label["confidence"]} for label in labels[LABEL_LIST]]
        if labels.get("source"):
            answer["labels_source"] = labels["source"]
    for name in PASSED_ON:
        if item.get(name) is not None:
            answer[name] = item[name]
    return records.plain(answer)


def _rendition(output: dict[str, Any], env: environment.Environment) -> dict[str, Any]:
    """One stored thumbnail (presigned once, however many boxes it serves), the boxes it serves, and its URL: at the
    stack's CDN when it has one (from the key, not the record's `url`: a record made before the CDN, or under another
    domain, has none or a stale one; and the function may not read the bucket then), else a presigned GET. A URL
    presigned with the function's role session stops working when the session expires, even before LINK_SECONDS (S3
    User Guide, "Download and upload objects with presigned URLs", expiration): a page asks again when a URL fails."""
    if env.thumbnails_base_url:
        url = f"{env.thumbnails_base_url}/{output['key']}"
    else:
        url = aws.s3_presigner().generate_presigned_url(
            "get_object", Params={"Bucket": env.thumbnails_bucket, "Key": output["key"]}, ExpiresIn=LINK_SECONDS)
    # A crop ("256x256", cut around its own focal point) says so: a page picks it by name, not by width.
    cropped = {name: output[name] for name in ("crop", FOCAL_POINT) if output.get("crop") and name in output}
    return {"width": output["width"], "height": output["height"], "bytes": output.get("bytes"),
            "content_type": output.get("content_type"), "format": output["format"],
            "key": output["key"], "boxes": output["boxes"], "url": url, **cropped}
