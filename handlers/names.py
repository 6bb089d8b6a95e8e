"""The names every part of claimcheck shares, each written once: key prefixes, statuses, function and stage
names, environment variables and metrics.

The handlers, the Pulumi program (infra/), the local cloud and the operator tools all import them from here, and
tests/test_names.py fails on a copy of one of these literals anywhere else. It imports only the standard library,
so the program loads it without the handlers' own dependencies (boto3, Powertools, Pillow).
"""
from __future__ import annotations

import hashlib
from collections.abc import Iterable
from enum import StrEnum

# The Pulumi project; it names the metrics namespace and each function's Powertools service too.
PROJECT = "claimcheck"
# Uploads are processed under this prefix of the uploads bucket; the upload API mints keys under its own part of it.
UPLOADS_PREFIX = "uploads/"
API_UPLOADS_PREFIX = f"{UPLOADS_PREFIX}api/"
# The object metadata (x-amz-meta-owner) an upload grant signs in: who uploaded it.
OWNER_METADATA = "owner"
# The S3 object tag a rejected or failed original carries (its status): a lifecycle rule expires those.
STATUS_TAG = f"{PROJECT}-status"
# Thumbnails live under thumbnails/<image id>/<version>/<settings>/<box>.<ext> in the thumbnails bucket.
THUMBNAILS_PREFIX = "thumbnails/"


def thumbnail_settings(sizes: Iterable[int], output_format: str, quality: int, crops: Iterable[str] = ()) -> str:
    """The name of one set of thumbnail settings: part of every thumbnail key (a key's content never changes, so
    CDNs may cache it for good) and kept on the record, so a settings change is seen image by image. Without crops
    the name is the one it was before crops existed: no stack's thumbnails are made again for them."""
    described = f"{','.join(map(str, sorted(set(sizes), reverse=True)))}|{output_format.lower()}|{quality}"
    described += f"|crops {','.join(sorted(set(crops)))}" if crops else ""
    return hashlib.sha256(described.encode()).hexdigest()[:10]


class Status(StrEnum):
    """An image record's status."""

    ACCEPTED = "accepted"  # the intake took it; the stages are working on it
    REJECTED = "rejected"  # not an image this pipeline takes (the reason says why)
    DONE = "done"
    FAILED = "failed"  # a stage could not finish it (the reason says which and why)
    DELETED = "deleted"  # the key has no current version any more
    QUARANTINED = "quarantined"  # a gate stage held it back: nothing is published until a person releases it


# What "settled" means: the image needs nothing more from the pipeline (a quarantined one waits for a person).
SETTLED = frozenset({Status.DONE, Status.REJECTED, Status.FAILED, Status.DELETED, Status.QUARANTINED})
# The EventBridge event each settled status publishes (handlers/image_events.py): its `source` and `detail-type`.
EVENT_SOURCE = PROJECT
DETAIL_TYPES = {Status.DONE: "image.ready", Status.REJECTED: "image.rejected", Status.FAILED: "image.failed",
                Status.QUARANTINED: "image.quarantined", Status.DELETED: "image.deleted"}
# A done image whose stage outputs changed at the same version (a reprocess's new thumbnails, the old ones deleted).
UPDATED_DETAIL_TYPE = "image.updated"
EVENT_VERSION = 1  # the `v` of every event's detail (schemas/events/)
# The statuses that may need a person: listed by `python -m ops failures` through the table's sparse index ATTENTION
# (an image in progress is "stuck" once it has been accepted for longer than it should take).
NEEDS_ATTENTION = (Status.ACCEPTED, Status.REJECTED, Status.FAILED, Status.QUARANTINED)
ATTENTION_INDEX = "attention"
ATTENTION_SHARDS = 16  # the index's partition key is "<status>#<0-f>": one GSI partition per status would cap writes


class StageStatus(StrEnum):
    """One stage's outcome on an image record; each of them is final."""

    DONE = "done"
    FAILED = "failed"
    UNAVAILABLE = "unavailable"  # the stage cannot do this image (Rekognition refuses its format); not a failure
    HELD = "held"  # a gate stage holds the image back (the record becomes quarantined); only a gate records it
    REJECTED = "rejected"  # a gate refuses the image for good (a duplicate, with `duplicates: reject`): it settles rejected


class ClaimEvent(StrEnum):
    """What a claim check says happened to its key (handlers/contracts.py)."""

    CREATED = "created"  # a version to process
    REMOVED = "removed"  # the key no longer holds a version the stages should show
    REPROCESS = "reprocess"  # an operator asks: make this done image's thumbnails with the current settings


class ClaimAttribute(StrEnum):
    """The SNS message attributes every claim check is published with; subscriptions filter on them."""

    FORMAT = "format"  # the format the intake sniffed ("none" for a removal)
    EVENT = "event"  # a ClaimEvent
    GATE = "gate"  # a GateState: whether a gate stage (if the stack has one) must see it before the other stages


class GateState(StrEnum):
    """The claim check's GATE attribute (handlers/stages.py, "gates"). Without a gate deployed no filter reads it."""

    PENDING = "pending"  # a creation or reprocess request no gate has passed yet: only gate stages take it
    CLEAR = "clear"  # a gate passed it (it publishes it again, so marked), or it needs none (a removal)


class Decision(StrEnum):
    """What a person decided about an image a gate stage held back (records.DECISION)."""

    APPROVED = "approved"  # released: it goes on to the other stages as if its gate had passed it
    REJECTED = "rejected"  # deleted, every version of it


class Function(StrEnum):
    """The pipeline's functions; each one's handler is handlers/<value>.py. A declared stage's function is named by
    its declaration (handlers/stages.py); these are the names the pipeline's own parts and tools use."""

    INTAKE = "intake"
    THUMBNAILS = "thumbnails"
    LABELS = "labels"
    UPLOAD_API = "upload_api"
    CDN_PURGE = "cdn_purge"  # makes CloudFront forget deleted thumbnails (only with a CDN)
    PAUSE = "pause"  # pauses or resumes one stage's event source mapping: what operators may invoke instead
    BACKFILL = "backfill"  # puts objects already in the uploads bucket on the intake's path (ops backfill, S3 Batch Operations)
    IMAGE_EVENTS = "image_events"  # publishes an event to EventBridge when an image record settles (its table's stream)


# The list inside the label stage's result ({"status", "labels": [{"name", "confidence"}], "source"}) and a gate's
# ({"status", "labels": [{"name", "parent", "confidence", "level"}], "screened", "source", …}).
LABEL_LIST = "labels"
# The record's point of the image's subject ({"x", "y", "source"}: fractions of the displayed image; handlers/focal.py),
# given by the label stage (its boxes) or the thumbnail stage (saliency); the status route passes it on.
FOCAL_POINT = "focal_point"


class Env(StrEnum):
    """The environment variables of the stack's resources the program sets and the handlers read
    (handlers/environment.py); a setting's variable is named by its declaration (handlers/settings.py)."""

    TABLE_NAME = "TABLE_NAME"
    TOPIC_ARN = "TOPIC_ARN"
    UPLOADS_BUCKET = "UPLOADS_BUCKET"
    THUMBNAILS_BUCKET = "THUMBNAILS_BUCKET"
    THUMBNAILS_BASE_URL = "THUMBNAILS_BASE_URL"
    DISTRIBUTION_ID = "DISTRIBUTION_ID"
    PURGE_QUEUE_URL = "PURGE_QUEUE_URL"
    UPLOAD_EXPIRY_SECONDS = "UPLOAD_EXPIRY_SECONDS"
    UPLOAD_API_KIND = "UPLOAD_API_KIND"
    QUOTA_TABLE_NAME = "QUOTA_TABLE_NAME"  # with an upload quota: the table of each owner's counters per day
    DUPLICATES_TABLE_NAME = "DUPLICATES_TABLE_NAME"  # with `duplicates`: the index of each owner's hashes by band
    EVENT_BUS_NAME = "EVENT_BUS_NAME"  # where settled images' events go (the stack's bus, or eventBusName)
    STAGE_MAPPINGS = "STAGE_MAPPINGS"  # JSON: each stage's event source mapping UUID (the pause function's table)
    EMULATED = "CLAIMCHECK_EMULATED"  # the services the local cloud emulates for a function (their answers say so)
    # Powertools reads these itself.
    SERVICE_NAME = "POWERTOOLS_SERVICE_NAME"
    METRICS_NAMESPACE = "POWERTOOLS_METRICS_NAMESPACE"
    LOG_LEVEL = "POWERTOOLS_LOG_LEVEL"


class UploadApiKind(StrEnum):
    """How the upload API is reached (Env.UPLOAD_API_KIND): both send API Gateway's payload format 2.0."""

    FUNCTION_URL = "function-url"  # an IAM-authenticated function URL (the default)
    HTTP_API = "http-api"  # an HTTP API with a JWT authorizer


# Powertools' EMF namespace; each function adds the dimension service=<service_name(function)>.
METRICS_NAMESPACE = PROJECT


def service_name(function: str) -> str:
    return f"{PROJECT}-{function}"


class Metric(StrEnum):
    """What the handlers count (EMF, namespace METRICS_NAMESPACE); alarms and the dashboard watch these names."""

    ACCEPTED = "Accepted"
    REJECTED = "Rejected"
    DELETED = "Deleted"
    RESTORED = "Restored"
    NONCURRENT_VERSIONS_REMOVED = "NoncurrentVersionsRemoved"
    STALE_EVENTS = "StaleEvents"
    RECONCILED = "Reconciled"  # a record whose sequencer no event of S3's current version could pass, set right
    DUPLICATE_EVENTS = "DuplicateEvents"
    INVALID_EVENTS = "InvalidEvents"  # the intake dropped a message that is not an S3 event (alarmed)
    INVALID_CLAIM_CHECKS = "InvalidClaimChecks"  # a stage dropped a message that is not a claim check (alarmed)
    SKIPPED_CLAIM_CHECKS = "SkippedClaimChecks"
    PROCESSED = "Processed"
    FAILED = "Failed"
    INVALIDATIONS = "Invalidations"  # CloudFront invalidations created (each for many images' thumbnails)
    PURGES_DEFERRED = "PurgesDeferred"  # purge requests put back: CloudFront refused, or the thumbnails are still there
    INVALID_PURGE_REQUESTS = "InvalidPurgeRequests"  # the purge function dropped a message it could not read (alarmed)
    REPROCESSED = "Reprocessed"  # thumbnails made again with the current settings
    ALREADY_CURRENT = "AlreadyCurrent"  # a reprocess request for thumbnails made with the current settings
    TAGGED = "Tagged"  # a rejected or failed original tagged with its status
    QUARANTINED = "Quarantined"  # a gate stage held an image back for a person (alarmed: someone must decide)
    DUPLICATES = "Duplicates"  # an upload found to copy an earlier image of its owner (recorded, or rejected)
    EVENTS_PUBLISHED = "EventsPublished"  # settled images' events EventBridge accepted
    EVENTS_REFUSED = "EventsRefused"  # entries EventBridge refused after every retry: their stream records are retried
    INVALID_STREAM_RECORDS = "InvalidStreamRecords"  # a settled record the events function cannot describe (alarmed)
    THUMBNAIL_DURATION = "ThumbnailDuration"
    LABEL_DURATION = "LabelDuration"
    MODERATION_DURATION = "ModerationDuration"


class StackOutput(StrEnum):
    """The stack's outputs: `__main__.py` exports them, `python -m ops` and the local cloud read them back."""

    UPLOADS_BUCKET = "uploadsBucket"
    THUMBNAILS_BUCKET = "thumbnailsBucket"
    TABLE_NAME = "tableName"
    CLAIM_CHECK_TOPIC_ARN = "claimCheckTopicArn"
    ALARM_TOPIC_ARN = "alarmTopicArn"
    QUEUE_URLS = "queueUrls"  # by function
    DEAD_LETTER_QUEUE_URLS = "deadLetterQueueUrls"
    QUEUE_ARNS = "queueArns"
    DEAD_LETTER_QUEUE_ARNS = "deadLetterQueueArns"
    EVENT_SOURCE_MAPPINGS = "eventSourceMappings"
    DASHBOARD_URL = "dashboardUrl"
    REJECTED_RETENTION_DAYS = "rejectedRetentionDays"
    OPERATOR_POLICY_ARN = "operatorPolicyArn"
    PAUSE_FUNCTION_NAME = "pauseFunctionName"
    BACKFILL_FUNCTION_NAME = "backfillFunctionName"
    BATCH_OPERATIONS = "batchOperations"  # with `batchOperations`: what `aws s3control create-job` needs
    UPLOAD_API_URL = "uploadApiUrl"  # with the upload API
    UPLOAD_API_AUTH = "uploadApiAuth"
    UPLOADER_POLICY_ARN = "uploaderPolicyArn"  # IAM mode
    UPLOADER_JWT = "uploaderJwt"  # JWT mode
    THUMBNAILS_URL = "thumbnailsUrl"  # with the CDN
    # With a domain of one's own and no Route 53 zone for it: the records its DNS needs ({name, type, value, why}).
    CDN_DNS_RECORDS = "cdnDnsRecords"
    UPLOAD_API_DNS_RECORDS = "uploadApiDnsRecords"
    EVENT_BUS_NAME = "eventBusName"  # where settled images' events are published
    EVENT_BUS_ARN = "eventBusArn"
    THUMBNAIL_SETTINGS = "thumbnailSettings"  # the thumbnail stage's: the name of its settings deployed now
