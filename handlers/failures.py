"""Failure classes, in one place.

Permanent failures (bad input, object gone, formats a service refuses) are
recorded on the image and acknowledged. Everything else is transient: the
message is reported in batchItemFailures, retried, and finally dead-lettered.
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from botocore.exceptions import ClientError

# Error codes that no retry can fix, with the reason a person reads.
PERMANENT_ERRORS: dict[str, str] = {
    "NoSuchKey": "the object is gone (deleted before it was processed)",
    "NoSuchVersion": "this version of the object is gone (deleted before it was processed)",
    "404": "the object is gone (deleted before it was processed)",
    "PreconditionFailed": "the object changed after the event (overwritten before it was processed)",
    "412": "the object changed after the event (overwritten before it was processed)",
    "InvalidRange": "the object is empty",
    "InvalidImageFormatException": "Rekognition cannot read this image format",
    "ImageTooLargeException": "the image is larger than Rekognition accepts",
    "InvalidS3ObjectException": "Rekognition could not read the object from S3",
    "InvalidParameterException": "Rekognition refused the image (too small or invalid dimensions)",
}


# What S3 answers for a GET of a version that is not there: deleted (NoSuchKey, NoSuchVersion; a HEAD has only the
# status), overwritten since (412, when an unversioned object is read with If-Match), or a delete marker's version id
# (405: S3 API reference, GetObject, "If the specified version is a delete marker").
GONE_OBJECT_ERRORS = frozenset({"NoSuchKey", "NoSuchVersion", "404", "PreconditionFailed", "412", "MethodNotAllowed",
                                "405"})


class PermanentFailure(Exception):
    """A failure that retrying cannot fix; `reason` is what the record says."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def error_code(exc: BaseException) -> str | None:
    if isinstance(exc, ClientError):
        return str(exc.response.get("Error", {}).get("Code", "")) or None
    return None


def names_a_gone_object(exc: BaseException) -> bool:
    """Whether S3 answered that the object version asked for is not there (any more)."""
    return error_code(exc) in GONE_OBJECT_ERRORS


def as_permanent(exc: BaseException) -> PermanentFailure | None:
    """The permanent failure `exc` stands for, or None when it is transient."""
    if isinstance(exc, PermanentFailure):
        return exc
    code = error_code(exc)
    if code in PERMANENT_ERRORS:
        return PermanentFailure(PERMANENT_ERRORS[code])
    return None


@contextmanager
def classified() -> Iterator[None]:
    """Inside, an error no retry can fix comes out as a PermanentFailure with the reason a person reads (the caller
    records it and acknowledges the message); anything else comes out unchanged, to be retried by SQS."""
    try:
        yield
    except Exception as exc:
        permanent = as_permanent(exc)
        if permanent is None or permanent is exc:
            raise
        raise permanent from exc
