"""Backfill: an object that was in the uploads bucket before the pipeline, put on the intake's own path.

One task is {bucket, key, versionId?}. S3 says what the key holds now (HEAD); an object whose record already names
that version is not judged again (a settled record is skipped: `ops reprocess` is the way to make one again; one
still accepted is on its way, and said to be); otherwise the intake judges S3's current version exactly as it judges an
upload (handlers/intake.py, `judge_existing`): size, content and pixel gates, the record, one claim check to the
stages. A version that is not the key's current one is skipped: S3 sent, or will send, the event of the one that is.

The function answers S3 Batch Operations' "Invoke AWS Lambda function" operation (S3 User Guide, "Invoke AWS Lambda
function", "Response and result codes"): invocationSchemaVersion 2.0 names the bucket (1.0 its ARN), keys come
URL-encoded, and each task gets Succeeded (with a result string the completion report keeps), TemporaryFailure
(retried before the job ends) or PermanentFailure (with the reason). `python -m ops backfill` sends it the same
request, so both paths are this one unit.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any
from urllib.parse import unquote_plus

from handlers import contracts, environment, intake, records
from handlers.failures import PermanentFailure, as_permanent, error_code
from handlers.names import UPLOADS_PREFIX, Status
from handlers.observability import logger

SCHEMA_VERSIONS = ("1.0", "2.0")
ON_ITS_WAY = "already on its way to the stages at its current version"
# Tasks one invocation takes at most: `ops backfill --batch` sends up to this many (S3 Batch Operations sends one); the
# function's timeout is sized for it (infra/backfill.py).
MAX_TASKS = 100


class ResultCode(StrEnum):
    SUCCEEDED = "Succeeded"
    TEMPORARY_FAILURE = "TemporaryFailure"
    PERMANENT_FAILURE = "PermanentFailure"


class Outcome(StrEnum):
    """What became of a task, the first word of its result string (ops backfill counts them)."""

    ACCEPTED = Status.ACCEPTED  # on its way to the stages
    REJECTED = Status.REJECTED  # recorded with the reason
    SKIPPED = "skipped"  # already judged at its current version, or not the current version
    FAILED = Status.FAILED  # a permanent failure: the task says why


@dataclass(frozen=True)
class Result:
    code: ResultCode
    outcome: Outcome
    reason: str

    @property
    def text(self) -> str:
        return f"{self.outcome}: {self.reason}" if self.reason else str(self.outcome)


class BadRequest(ValueError):
    """A request that is not S3 Batch Operations' invocation."""


def handler(event: Any, context: Any) -> dict[str, Any]:
    if not isinstance(event, Mapping) or event.get("invocationSchemaVersion") not in SCHEMA_VERSIONS \
            or not isinstance(event.get("tasks"), list):
        raise BadRequest("send S3 Batch Operations' invocation: invocationSchemaVersion 1.0 or 2.0, invocationId, and "
                         "tasks [{taskId, s3Bucket (2.0) or s3BucketArn (1.0), s3Key, s3VersionId}]")
    if len(event["tasks"]) > MAX_TASKS:
        raise BadRequest(f"send at most {MAX_TASKS} tasks an invocation (got {len(event['tasks']):,}): the function's "
                         "timeout is sized for that many")
    results = []
    for task in event["tasks"]:
        result = run_task(task)
        results.append({"taskId": task.get("taskId") if isinstance(task, Mapping) else None,
                        "resultCode": result.code, "resultString": result.text})
    return {"invocationSchemaVersion": event["invocationSchemaVersion"], "invocationId": event.get("invocationId"),
            "treatMissingKeysAs": ResultCode.PERMANENT_FAILURE, "results": results}


def run_task(task: Any) -> Result:
    """One task's result; an error no retry can fix is a PermanentFailure with the reason, any other a
    TemporaryFailure (throttling, 5xx, a timeout: Batch Operations tries it again)."""
    try:
        bucket, key, version_id = _task(task)
    except BadRequest as bad:
        return Result(ResultCode.PERMANENT_FAILURE, Outcome.FAILED, str(bad))
    logger.append_keys(image_id=contracts.image_id(bucket, key), key=key)
    try:
        return backfill(bucket, key, version_id)
    except PermanentFailure as failure:
        return Result(ResultCode.PERMANENT_FAILURE, Outcome.FAILED, failure.reason)
    except Exception as exc:
        permanent = as_permanent(exc)
        if permanent is not None:
            return Result(ResultCode.PERMANENT_FAILURE, Outcome.FAILED, permanent.reason)
        logger.warning("backfill task failed; Batch Operations retries it", extra={"error": str(exc)})
        return Result(ResultCode.TEMPORARY_FAILURE, Outcome.FAILED, f"{error_code(exc) or type(exc).__name__}: {exc}")
    finally:
        logger.remove_keys(["image_id", "key", "owner"])


def _task(task: Any) -> tuple[str, str, str | None]:
    if not isinstance(task, Mapping):
        raise BadRequest("a task is an object {taskId, s3Bucket, s3Key, s3VersionId}")
    bucket = task.get("s3Bucket") or str(task.get("s3BucketArn") or "").rpartition(":")[2]
    key = unquote_plus(str(task.get("s3Key") or ""))  # Batch Operations sends keys URL-encoded, as the inventory has them
    if not bucket or not key:
        raise BadRequest("a task names a bucket (s3Bucket, or s3BucketArn) and a key (s3Key)")
    if not key.startswith(UPLOADS_PREFIX):
        raise BadRequest(f"{key!r} is outside {UPLOADS_PREFIX}: the pipeline takes only keys under it")
    return bucket, key, task.get("s3VersionId") or None


def backfill(bucket: str, key: str, version_id: str | None = None) -> Result:
    """Put the key's current version on the intake's path unless its record names that version already."""
    current = intake.current_version(bucket, key)
    if current is None:
        raise PermanentFailure("the key has no current version (deleted since it was listed)")
    if version_id and version_id != current["versionId"]:
        return _skipped(f"version {version_id} is not the key's current one ({current['versionId']})")
    table = environment.load().table_name
    image_id = contracts.image_id(bucket, key)
    found = records.get(table, image_id)
    if found is not None and found.status != Status.DELETED and found.version_id == current["versionId"]:
        if found.status == Status.ACCEPTED:
            # On its way already (an earlier run sent it, or its upload event did): the stages settle it.
            return Result(ResultCode.SUCCEEDED, Outcome.ACCEPTED, ON_ITS_WAY)
        return _skipped(f"already {found.status} at its current version")
    made = current["lastModified"]
    event_time = (made if isinstance(made, datetime) else datetime.fromisoformat(str(made))).astimezone(UTC)
    intake.judge_existing(bucket, key, current, event_time.isoformat(timespec="milliseconds").replace("+00:00", "Z"))
    judged = records.get(table, image_id)
    if judged is None or judged.version_id != current["versionId"] or judged.status == Status.DELETED:
        # An event about the key came first and settles it (an overwrite, a delete during the backfill).
        return _skipped("a newer event about the key settles it")
    if judged.status == Status.REJECTED:
        return Result(ResultCode.SUCCEEDED, Outcome.REJECTED, str(judged.item.get("reason") or ""))
    return Result(ResultCode.SUCCEEDED, Outcome.ACCEPTED, "")


def _skipped(reason: str) -> Result:
    logger.info("backfill skipped", extra={"reason": reason})
    return Result(ResultCode.SUCCEEDED, Outcome.SKIPPED, reason)
