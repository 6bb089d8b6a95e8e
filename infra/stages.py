"""The pipeline's three stages. Each is a QueueWorker (infra/worker.py) plus what feeds its queue, and says only
what differs: which function, what it is linked to, where its messages come from.

  IntakeStage     S3 events of the uploads bucket -> claim checks on the topic
  ThumbnailStage  every claim check -> thumbnails in the thumbnails bucket
  LabelStage      claim checks of formats Rekognition reads -> labels on the image record
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import pulumi
import pulumi_aws as aws

from handlers.names import UPLOADS_PREFIX, ClaimAttribute, ClaimEvent, Function, Metric
from infra import iam, links, policies
from infra.edges import ThumbnailCdn
from infra.links import Link
from infra.settings import Settings
from infra.worker import Layers, QueueWorker, QueueWorkerArgs


class _StageArgs(Protocol):
    """What every stage's args hold for its worker."""

    settings: Settings
    layers: Layers
    alarm_topic_arn: pulumi.Input[str]


def _worker(stage: pulumi.ComponentResource, name: str, function: Function, args: _StageArgs, uses: Sequence[Link],
            dropped: Metric = Metric.INVALID_CLAIM_CHECKS, moved_from: pulumi.Resource | None = None) -> QueueWorker:
    """The stage's queue-fed function, linked to what it `uses`."""
    return QueueWorker(name, QueueWorkerArgs(function, args.settings, uses, args.layers, args.alarm_topic_arn, dropped),
                       moved_from=moved_from or stage, opts=pulumi.ResourceOptions(parent=stage))


@dataclass
class IntakeStageArgs:
    settings: Settings
    uploads: aws.s3.Bucket  # whose events it takes, and whose uploads it reads
    account_id: pulumi.Input[str]  # the uploads bucket's account: S3 may send only its events
    table: aws.dynamodb.Table
    claim_checks: aws.sns.Topic
    topic_key: aws.kms.Key
    layers: Layers
    alarm_topic_arn: pulumi.Input[str]


class IntakeStage(pulumi.ComponentResource):
    """S3 event -> validated image record -> one claim check. It owns its queue's policy and the bucket's
    notification, which S3 checks against each other when the notification is put."""

    def __init__(self, name: str, args: IntakeStageArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("claimcheck:index:IntakeStage", name, None, opts)
        # claimcheck 1.x declared all of this straight under the pipeline; the aliases keep those URNs.
        pipeline = opts.parent if opts else None
        assert pipeline is not None, "the intake stage belongs to a pipeline"
        self.worker = _worker(self, name, Function.INTAKE, args, [
            links.uploads(args.uploads), links.records(args.table), links.claim_checks(args.claim_checks, args.topic_key),
            links.original_status_tags(args.uploads), links.intake_settings(args.settings)],
            dropped=Metric.INVALID_EVENTS, moved_from=pipeline)
        queue = self.worker.queue
        moved = pulumi.ResourceOptions(parent=self, aliases=[pulumi.Alias(parent=pipeline)])
        policy = aws.sqs.QueuePolicy(f"{name}-queue-policy", queue_url=queue.id, policy=iam.document([
            policies.queue_from_bucket(queue.arn, args.uploads.arn, args.account_id)]), opts=moved)
        # S3 checks that it may send to the queue when the notification is put (PutBucketNotificationConfiguration).
        # A lifecycle rule's expiry is an event of its own kind (S3 User Guide, "Event notification types"): without
        # it, an original that expired would leave its record saying it is still there.
        aws.s3.BucketNotification(f"{name}-upload-events", bucket=args.uploads.id, queues=[
            aws.s3.BucketNotificationQueueArgs(queue_arn=queue.arn, filter_prefix=UPLOADS_PREFIX, events=[
                "s3:ObjectCreated:*", "s3:ObjectRemoved:*", "s3:LifecycleExpiration:*"]),
        ], opts=pulumi.ResourceOptions(parent=self, depends_on=[policy], aliases=[
            pulumi.Alias(name=f"{pipeline.pulumi_resource_name}-upload-events", parent=pipeline)]))
        self.register_outputs({"queue_url": queue.url})


def _subscribe(stage: pulumi.ComponentResource, name: str, worker: QueueWorker, topic: aws.sns.Topic,
               filter_policy: dict[str, Any] | None = None) -> aws.sns.TopicSubscription:
    """The stage's queue takes claim checks from the topic, and from nothing else."""
    child = pulumi.ResourceOptions(parent=stage)
    aws.sqs.QueuePolicy(f"{name}-queue-policy", queue_url=worker.queue.id, policy=iam.document([
        policies.queue_from_topic(worker.queue.arn, topic.arn)]), opts=child)
    return aws.sns.TopicSubscription(
        f"{name}-subscription", topic=topic.arn, protocol="sqs", endpoint=worker.queue.arn,
        raw_message_delivery=True,  # the queue receives the claim check itself, not an SNS envelope
        filter_policy=json.dumps(filter_policy) if filter_policy else None,
        filter_policy_scope="MessageAttributes" if filter_policy else None,
        opts=child)


@dataclass
class ThumbnailStageArgs:
    settings: Settings
    claim_checks: aws.sns.Topic
    uploads: aws.s3.Bucket
    table: aws.dynamodb.Table
    thumbnails: aws.s3.Bucket
    cdn: ThumbnailCdn | None  # when CloudFront serves the thumbnails: their URLs, and invalidations
    layers: Layers
    alarm_topic_arn: pulumi.Input[str]


# A purge CloudFront keeps refusing is tried this many times (every visibility timeout, ~3 min by default: hours in
# all) before it is dead-lettered; its queue's oldest-message alarm fires long before.
PURGE_RECEIVES = 100


class ThumbnailStage(pulumi.ComponentResource):
    """Every claim check (created and removed) -> thumbnails in the thumbnails bucket. With a CDN, a second worker
    makes CloudFront forget the thumbnails the stage deletes (handlers/cdn_purge.py)."""

    def __init__(self, name: str, args: ThumbnailStageArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("claimcheck:index:ThumbnailStage", name, None, opts)
        self.purge = QueueWorker(f"{name}-cdn-purge", QueueWorkerArgs(
            Function.CDN_PURGE, args.settings, [links.invalidations(args.cdn.distribution, args.thumbnails),
                                                links.record_reader(args.table)],
            args.layers, args.alarm_topic_arn, Metric.INVALID_PURGE_REQUESTS, max_receive_count=PURGE_RECEIVES),
            opts=pulumi.ResourceOptions(parent=self)) if args.cdn else None
        self.worker = _worker(self, name, Function.THUMBNAILS, args, [
            links.records(args.table), links.uploads(args.uploads), links.original_status_tags(args.uploads),
            links.thumbnails(args.thumbnails), *([links.cdn(args.cdn.url, self.purge.queue)] if self.purge and args.cdn else []),
            links.thumbnail_settings(args.settings)])
        self.subscription = _subscribe(self, name, self.worker, args.claim_checks)
        self.register_outputs({"queue_url": self.worker.queue.url})


@dataclass
class LabelStageArgs:
    settings: Settings
    claim_checks: aws.sns.Topic
    uploads: aws.s3.Bucket
    table: aws.dynamodb.Table
    layers: Layers
    alarm_topic_arn: pulumi.Input[str]


class LabelStage(pulumi.ComponentResource):
    """Claim checks of new uploads in formats Rekognition reads -> labels on the image record."""

    def __init__(self, name: str, args: LabelStageArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("claimcheck:index:LabelStage", name, None, opts)
        self.worker = _worker(self, name, Function.LABELS, args, [
            links.records(args.table), links.labelling(args.uploads), links.label_settings(args.settings)])
        self.subscription = _subscribe(self, name, self.worker, args.claim_checks, {
            ClaimAttribute.FORMAT: list(args.settings.label_formats), ClaimAttribute.EVENT: [ClaimEvent.CREATED]})
        self.register_outputs({"queue_url": self.worker.queue.url})
