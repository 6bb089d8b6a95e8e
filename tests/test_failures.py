"""What is permanent and what is retried, and the pixel limit's wording: the words a record carries."""
from __future__ import annotations

import pytest
from botocore.exceptions import ClientError

from handlers import limits
from handlers.failures import PERMANENT_ERRORS, PermanentFailure, as_permanent, classified, error_code, names_a_gone_object


def client_error(response: dict) -> ClientError:
    return ClientError(response, "GetObject")


def test_a_permanent_failure_reads_as_its_reason():
    failure = PermanentFailure("the object is empty")
    assert failure.reason == str(failure) == "the object is empty"
    assert failure.args == ("the object is empty",)


@pytest.mark.parametrize("response", [{}, {"Error": {}}, {"Error": {"Code": ""}}, {"Error": {"Message": "x"}}],
                         ids=["no error", "no code", "empty code", "message only"])
def test_a_client_error_without_a_code_has_none_and_is_transient(response):
    error = client_error(response)
    assert error_code(error) is None
    assert as_permanent(error) is None  # retried, then dead-lettered: nothing says it is the image's fault


def test_error_codes_of_other_exceptions_are_none():
    assert error_code(ValueError("NoSuchKey")) is None
    assert as_permanent(TimeoutError()) is None


GONE = "the object is gone (deleted before it was processed)"
CHANGED = "the object changed after the event (overwritten before it was processed)"
# Written out, not read from PERMANENT_ERRORS: a code dropped from the table must fail here, not vanish from the cases.
REASONS = {
    "NoSuchKey": GONE,
    "NoSuchVersion": "this version of the object is gone (deleted before it was processed)",
    "404": GONE,
    "PreconditionFailed": CHANGED,
    "412": CHANGED,
    "InvalidRange": "the object is empty",
    "InvalidImageFormatException": "Rekognition cannot read this image format",
    "ImageTooLargeException": "the image is larger than Rekognition accepts",
    "InvalidS3ObjectException": "Rekognition could not read the object from S3",
    "InvalidParameterException": "Rekognition refused the image (too small or invalid dimensions)",
}


@pytest.mark.parametrize("code", sorted(REASONS))
def test_each_permanent_code_becomes_its_reason(code):
    failure = as_permanent(client_error({"Error": {"Code": code, "Message": "m"}}))
    assert failure is not None and failure.reason == REASONS[code]


def test_the_permanent_codes_are_exactly_these():
    assert PERMANENT_ERRORS == REASONS


def test_reading_an_object_overwritten_since_its_event_is_permanent_with_that_reason(cloud):
    # S3 answers a GET or HEAD whose If-Match no longer matches with 412 (Amazon S3 API Reference, GetObject and
    # HeadObject, "If-Match"): PreconditionFailed with an error body, a bare 412 for HEAD, which has none.
    bucket, key = cloud.thumbnails, "uploads/x.jpg"  # an unversioned bucket: the claim check names the ETag
    etag = cloud.s3.put_object(Bucket=bucket, Key=key, Body=b"first")["ETag"]
    cloud.s3.put_object(Bucket=bucket, Key=key, Body=b"second")
    for read in (cloud.s3.get_object, cloud.s3.head_object):
        with pytest.raises(PermanentFailure) as failed, classified():
            read(Bucket=bucket, Key=key, IfMatch=etag)
        assert failed.value.reason == CHANGED, read
    cloud.s3.delete_object(Bucket=bucket, Key=key)
    with pytest.raises(PermanentFailure) as failed, classified():
        cloud.s3.get_object(Bucket=bucket, Key=key)
    assert failed.value.reason == GONE


def test_a_transient_error_leaves_the_classification_unchanged():
    throttled = client_error({"Error": {"Code": "SlowDown"}})
    with pytest.raises(ClientError) as raised, classified():
        raise throttled
    assert raised.value is throttled


@pytest.mark.parametrize("code", ["InternalError", "SlowDown", "ThrottlingException", "AccessDenied", "500", "503"])
def test_throttling_server_and_permission_errors_are_retried(code):
    assert as_permanent(client_error({"Error": {"Code": code}})) is None


def test_a_permanent_failure_is_itself():
    failure = PermanentFailure("x")
    assert as_permanent(failure) is failure


@pytest.mark.parametrize("count, text", [(0, "0 pixels"), (99_999, "99,999 pixels"), (100_000, "0.1 MP"), (450_000, "0.5 MP"),
                                         (12_345_678, "12.3 MP"), (50_000_000, "50.0 MP")])
def test_pixel_counts_are_described_as_people_say_them(count, text):
    assert limits.describe_pixels(count) == text


@pytest.mark.parametrize("width, height", [(0, 10), (10, 0), (-1, 10), (10, -5)])
def test_an_empty_or_negative_size_is_refused_with_the_size(width, height):
    with pytest.raises(PermanentFailure) as failed:
        limits.check_pixels(width, height, 1000)
    assert failed.value.reason == f"the image header declares an empty size ({width}x{height})"


def test_the_pixel_limit_is_inclusive_and_names_both_sizes():
    limits.check_pixels(1000, 1000, 1_000_000)  # exactly the limit passes
    limits.check_pixels(1, 1, 1)
    with pytest.raises(PermanentFailure) as failed:
        limits.check_pixels(1001, 1000, 1_000_000)
    assert failed.value.reason == "the image is 1001x1000 (1.0 MP), over the limit of 1.0 MP"
    with pytest.raises(PermanentFailure) as failed:
        limits.check_pixels(300, 300, 50_000)
    assert failed.value.reason == "the image is 300x300 (90,000 pixels), over the limit of 50,000 pixels"


# Written out: what S3 answers for a version that is not there (deleted, overwritten since, a delete marker's), which
# the stages take for "the object is gone" (acknowledged, its outputs cleared), not for a failure to retry.
GONE_CODES = ["NoSuchKey", "NoSuchVersion", "404", "PreconditionFailed", "412", "MethodNotAllowed", "405"]


@pytest.mark.parametrize("code", GONE_CODES)
def test_each_answer_that_the_version_is_not_there_names_a_gone_object(code):
    assert names_a_gone_object(client_error({"Error": {"Code": code, "Message": "m"}}))


@pytest.mark.parametrize("code", ["AccessDenied", "SlowDown", "InternalError", "403", "503", "InvalidRange"])
def test_an_answer_about_anything_else_names_no_gone_object(code):
    assert not names_a_gone_object(client_error({"Error": {"Code": code}}))
    assert not names_a_gone_object(ValueError("NoSuchKey"))
