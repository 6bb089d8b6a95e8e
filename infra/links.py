"""What a function is given, one thing at a time: a `Link` to a table, a topic, a bucket or a set of settings
carries both the environment variables that tell the handler where it is (named in handlers/names.py, read by
handlers/environment.py) and the IAM statements that let it use it. Nothing else adds to a function's
environment or its role, so neither can drift from the other (stelvio's Link is the model). A stage's declaration
names the links it needs (NAMED) and grants of its own; its settings are a link too (`settings_of`).
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_aws as aws

from handlers.names import API_UPLOADS_PREFIX, STATUS_TAG, THUMBNAILS_PREFIX, UPLOADS_PREFIX, Env, Status, UploadApiKind
from handlers.settings import to_environment
from handlers.stages import Grant
from handlers.upload_api import UploadSettings
from infra import iam
from infra.settings import Settings


@dataclass(frozen=True)
class Link:
    environment: Mapping[str, pulumi.Input[str]] = field(default_factory=dict)
    statements: tuple[dict[str, Any], ...] = ()


def combined(links: Iterable[Link]) -> tuple[dict[str, pulumi.Input[str]], list[dict[str, Any]]]:
    """(environment, statements) of all `links`; a variable set by two of them is a mistake in the program."""
    environment: dict[str, pulumi.Input[str]] = {}
    statements: list[dict[str, Any]] = []
    for link in links:
        for name, value in link.environment.items():
            if name in environment:
                raise ValueError(f"two links of one function set {name}")
            environment[name] = value
        statements.extend(link.statements)
    return environment, statements


def records(table: aws.dynamodb.Table) -> Link:
    """Read and conditionally update image records."""
    return Link({Env.TABLE_NAME: table.name}, (iam.allow(["dynamodb:GetItem", "dynamodb:UpdateItem"], [table.arn]),))


def claim_checks(topic: aws.sns.Topic, key: aws.kms.Key) -> Link:
    """Publish claim checks to the topic, encrypted with its key."""
    return Link({Env.TOPIC_ARN: topic.arn}, (iam.allow(["sns:Publish"], [topic.arn]),
                                             iam.allow(["kms:GenerateDataKey", "kms:Decrypt"], [key.arn])))


def uploads(bucket: aws.s3.Bucket) -> Link:
    """Read any version of an upload (the bucket comes in each event, so no variable names it)."""
    return Link({}, tuple(iam.read_uploads(bucket.arn, UPLOADS_PREFIX)))


def original_status_tags(bucket: aws.s3.Bucket) -> Link:
    """Tag an original with its status when it is rejected or failed (a lifecycle rule expires those). The uploads
    bucket is versioned and every event names its version, so the stages tag one version: s3:PutObjectVersionTagging
    (tagging the current object, without a version id, would be s3:PutObjectTagging, which nothing here needs)."""
    return Link({}, (iam.allow(["s3:PutObjectVersionTagging"], [iam.s3_objects(bucket.arn, UPLOADS_PREFIX)]),))


def rekognition_reads(bucket: aws.s3.Bucket) -> Link:
    """Rekognition reads an upload from S3 with its caller's permissions: reading any version of one."""
    return Link({}, (iam.allow(["s3:GetObject", "s3:GetObjectVersion"], [iam.s3_objects(bucket.arn, UPLOADS_PREFIX)]),))


# Only while an original's version is tagged quarantined (S3 User Guide, "Tagging and access control policies").
_QUARANTINED_ONLY = {"StringEquals": {f"s3:ExistingObjectTag/{STATUS_TAG}": Status.QUARANTINED}}


def held_originals(bucket: aws.s3.Bucket) -> Link:
    """Look at an original a gate stage held back: read its version (a presigned GET carries this permission), only
    while the version is tagged quarantined (S3 User Guide, "Tagging and access control policies":
    s3:ExistingObjectTag). Any other original stays unreadable."""
    return Link({}, (iam.allow(["s3:GetObjectVersion"], [iam.s3_objects(bucket.arn, UPLOADS_PREFIX)],
                               condition=_QUARANTINED_ONLY),))


def held_releases(bucket: aws.s3.Bucket) -> Link:
    """Release an original a person approved: read a version's tags, and delete them only while it is tagged
    quarantined (s3:ExistingObjectTag applies to DeleteObjectVersionTagging too, same page)."""
    return Link({}, (iam.allow(["s3:GetObjectVersionTagging"], [iam.s3_objects(bucket.arn, UPLOADS_PREFIX)]),
                     iam.allow(["s3:DeleteObjectVersionTagging"], [iam.s3_objects(bucket.arn, UPLOADS_PREFIX)],
                               condition=_QUARANTINED_ONLY)))


def upload_versions(bucket: aws.s3.Bucket) -> Link:
    """List an upload's versions and delete each for good. S3 takes no tag condition on a delete (S3 User Guide,
    "Tagging and access control policies": not for DELETE Object), so this reaches every upload."""
    return Link({}, (
        iam.allow(["s3:ListBucketVersions"], [bucket.arn], condition={"StringLike": {"s3:prefix": [f"{UPLOADS_PREFIX}*"]}}),
        iam.allow(["s3:DeleteObjectVersion"], [iam.s3_objects(bucket.arn, UPLOADS_PREFIX)])))


def thumbnails(bucket: aws.s3.Bucket) -> Link:
    """Write and remove thumbnails, and list an image's to find what to remove."""
    return Link({Env.THUMBNAILS_BUCKET: bucket.bucket}, (
        iam.allow(["s3:PutObject", "s3:DeleteObject"], [iam.s3_objects(bucket.arn, THUMBNAILS_PREFIX)]),
        iam.allow(["s3:ListBucket"], [bucket.arn], condition={"StringLike": {"s3:prefix": [f"{THUMBNAILS_PREFIX}*"]}})))


def cdn(url: pulumi.Input[str], purges: aws.sqs.Queue) -> Link:
    """Each thumbnail's URL at the distribution (`url`); removed thumbnails must also leave its cache (it keeps them
    a year): the purge function's queue takes a request for each removal."""
    return Link({Env.THUMBNAILS_BASE_URL: url, Env.PURGE_QUEUE_URL: purges.url},
                (iam.allow(["sqs:SendMessage"], [purges.arn]),))


def invalidations(distribution: aws.cloudfront.Distribution, thumbnails_bucket: aws.s3.Bucket) -> Link:
    """What the purge function does: invalidate on this distribution only, after it saw in the bucket that the
    thumbnails are gone."""
    return Link({Env.DISTRIBUTION_ID: distribution.id, Env.THUMBNAILS_BUCKET: thumbnails_bucket.bucket}, (
        iam.allow(["cloudfront:CreateInvalidation"], [distribution.arn]),
        iam.allow(["s3:ListBucket"], [thumbnails_bucket.arn],
                  condition={"StringLike": {"s3:prefix": [f"{THUMBNAILS_PREFIX}*"]}})))


def record_stream(table: aws.dynamodb.Table) -> Link:
    """What Lambda's event source mapping reads the table's stream with, as the function's execution role: the four
    stream actions on this table's streams only (DynamoDB Developer Guide, "IAM policy to allow an AWS Lambda
    function to access DynamoDB stream records")."""
    return Link({}, (iam.allow(["dynamodb:DescribeStream", "dynamodb:GetRecords", "dynamodb:GetShardIterator",
                                "dynamodb:ListStreams"], [pulumi.Output.concat(table.arn, "/stream/*")]),))


def event_bus(name: pulumi.Input[str], arn: pulumi.Input[str]) -> Link:
    """Put events on this one bus."""
    return Link({Env.EVENT_BUS_NAME: name}, (iam.allow(["events:PutEvents"], [arn]),))


def failed_batches(queue: aws.sqs.Queue) -> Link:
    """A stream mapping's on-failure destination is sent to with the function's execution role (Lambda Developer
    Guide, "Retain discarded batch records for a DynamoDB event source in Lambda")."""
    return Link({}, (iam.allow(["sqs:SendMessage"], [queue.arn]),))


def record_reader(table: aws.dynamodb.Table) -> Link:
    """Read image records, never write them."""
    return Link({Env.TABLE_NAME: table.name}, (iam.allow(["dynamodb:GetItem"], [table.arn]),))


def stage_mappings(mappings: Mapping[str, tuple[aws.lambda_.EventSourceMapping, aws.lambda_.Function]]) -> Link:
    """Enable or disable each stage's event source mapping: the stage -> UUID table as the function's environment,
    lambda:UpdateEventSourceMapping on exactly those mappings, each held to the function it feeds by
    lambda:FunctionArn, the condition key Lambda lists for the action (Lambda Developer Guide, "Resources and
    conditions for Lambda actions", Event source mappings). No key describes what an update changes: the function
    that holds this link is what sends only Enabled (handlers/pause.py)."""
    return Link({Env.STAGE_MAPPINGS: pulumi.Output.json_dumps({stage: m.uuid for stage, (m, _) in mappings.items()})},
                tuple(iam.allow(["lambda:UpdateEventSourceMapping"], [m.arn],
                                condition={"ArnEquals": {"lambda:FunctionArn": fn.arn}})
                      for m, fn in mappings.values()))


def thumbnail_reads(bucket: aws.s3.Bucket) -> Link:
    """Read thumbnails: what a presigned GET of one carries (the upload API's answers link renditions this way)."""
    return Link({Env.THUMBNAILS_BUCKET: bucket.bucket},
                (iam.allow(["s3:GetObject"], [iam.s3_objects(bucket.arn, THUMBNAILS_PREFIX)]),))


def thumbnail_urls(url: pulumi.Input[str]) -> Link:
    """Each thumbnail's URL at the distribution, and no access to the bucket: with a CDN the upload API's answers link
    renditions there, so nothing is presigned and the function needs no s3:GetObject."""
    return Link({Env.THUMBNAILS_BASE_URL: url}, ())


def api_uploads(bucket: aws.s3.Bucket) -> Link:
    """Presign uploads under the API's prefix: the PUT a grant signs is allowed by exactly this statement."""
    return Link({Env.UPLOADS_BUCKET: bucket.bucket},
                (iam.allow(["s3:PutObject"], [iam.s3_objects(bucket.arn, API_UPLOADS_PREFIX)]),))


def duplicates_index(table: aws.dynamodb.Table) -> Link:
    """Look an upload's hash up in its owner's band items (one BatchGetItem) and add it to them (an UpdateItem per
    band): the index's table only, nothing else in DynamoDB (the records are read through `records`)."""
    return Link({Env.DUPLICATES_TABLE_NAME: table.name},
                (iam.allow(["dynamodb:BatchGetItem", "dynamodb:UpdateItem"], [table.arn]),))


def upload_quotas(table: aws.dynamodb.Table) -> Link:
    """Count grants against each owner's daily quota: one conditional UpdateItem per grant on a table of counters
    only, so nothing else in DynamoDB is reachable (no read: the failed condition returns the counts)."""
    return Link({Env.QUOTA_TABLE_NAME: table.name}, (iam.allow(["dynamodb:UpdateItem"], [table.arn]),))


# Settings the handlers read: environment only, no permissions, encoded by the one codec (handlers/settings.py).

def settings_of(values: Any) -> Link:
    """A function's settings (a dataclass of handlers.settings fields), as the variables its handler decodes."""
    return Link(to_environment(values))


def upload_api_settings(s: Settings, kind: UploadApiKind) -> Link:
    return Link({
        **to_environment(UploadSettings(allowed_formats=s.allowed_formats, max_upload_bytes=s.max_upload_bytes,
                                        quota_uploads=s.quota[0], quota_bytes=s.quota[1])),
        Env.UPLOAD_EXPIRY_SECONDS: str(s.upload_expiry_seconds),
        Env.UPLOAD_API_KIND: kind,
    })


# --- what a stage's declaration may name (handlers/stages.py, `uses`) -------------------------------------------

@dataclass(frozen=True)
class Resources:
    """The stack's resources a stage may be linked to."""

    uploads: aws.s3.Bucket
    thumbnails: aws.s3.Bucket
    table: aws.dynamodb.Table
    claim_checks: aws.sns.Topic
    topic_key: aws.kms.Key
    cdn_url: pulumi.Input[str] | None = None  # with a CDN: its URL, and the purge function's queue
    purges: aws.sqs.Queue | None = None
    duplicates_index: aws.dynamodb.Table | None = None  # with `duplicates`: the index of hashes by owner and band


NAMED: dict[str, Callable[[Resources], Link | None]] = {
    "records": lambda r: records(r.table),
    "record_reader": lambda r: record_reader(r.table),
    "uploads": lambda r: uploads(r.uploads),
    "status_tags": lambda r: original_status_tags(r.uploads),
    "rekognition_reads_uploads": lambda r: rekognition_reads(r.uploads),
    "claim_checks": lambda r: claim_checks(r.claim_checks, r.topic_key),
    "thumbnail_writes": lambda r: thumbnails(r.thumbnails),
    # What a stage's operator commands may need (handlers/stages.py, Stage.operator).
    "held_originals": lambda r: held_originals(r.uploads),
    "held_releases": lambda r: held_releases(r.uploads),
    "upload_versions": lambda r: upload_versions(r.uploads),
    # Only with a CDN: each thumbnail's URL there, and the purge function's queue to ask for invalidations.
    "cdn": lambda r: cdn(r.cdn_url, r.purges) if r.cdn_url is not None and r.purges is not None else None,
    # Only with `duplicates`: its index.
    "duplicates_index": lambda r: duplicates_index(r.duplicates_index) if r.duplicates_index is not None else None,
}


def used(uses: Iterable[str | Grant], resources: Resources) -> list[Link]:
    """The links a stage's declaration asks for: the stack's named ones, and its own grants."""
    found: list[Link] = []
    for use in uses:
        if isinstance(use, Grant):
            found.append(Link(statements=(iam.allow(list(use.actions), list(use.resources)),)))
            continue
        if use not in NAMED:
            raise KeyError(f"a stage uses {use!r}, which is none of the stack's links ({', '.join(NAMED)})")
        link = NAMED[use](resources)
        if link is not None:
            found.append(link)
    return found
