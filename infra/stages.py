"""Every declared stage (handlers/stages.py), built from its declaration: a QueueWorker (infra/worker.py) plus what
feeds its queue, linked to what the declaration names. The component's type is the declaration's
(claimcheck:index:IntakeStage, ThumbnailStage, LabelStage, …), so the URNs of every release stay.

  Feed.UPLOADS       S3's events of the uploads bucket (the intake): the queue's policy admits this bucket's events,
                     and the bucket's notification sends them
  Feed.CLAIM_CHECKS  the claim-check topic: the queue's policy admits this topic, and a subscription (raw delivery,
                     the declaration's filter) sends it the claim checks that pass
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from typing import Any

import pulumi
import pulumi_aws as aws

from handlers.names import UPLOADS_PREFIX
from handlers.stages import Configured, Feed
from infra import iam, links, policies
from infra.settings import Queues, Runtime
from infra.worker import Layers, QueueWorker, QueueWorkerArgs


@dataclass
class StageArgs:
    configured: Configured  # the stage's declaration, its settings and its size: all it is given of the stack's settings
    runtime: Runtime
    queues: Queues
    resources: links.Resources  # what its declaration may name
    layers: Layers
    alarm_topic_arn: pulumi.Input[str]
    account_id: pulumi.Input[str]  # the uploads bucket's account: S3 may send only its events (Feed.UPLOADS)
    # Its subscription's filter as the stack applies it (handlers.stages.subscriptions: amended when a gate is deployed)
    filter_policy: dict[str, Any] | None = None


class Stage(pulumi.ComponentResource):
    """One declared stage: its worker, and what feeds its queue."""

    def __init__(self, name: str, args: StageArgs, opts: pulumi.ResourceOptions | None = None):
        declared = args.configured.stage
        super().__init__(f"claimcheck:index:{declared.component}", name, None, opts)
        pipeline = opts.parent if opts else None
        assert pipeline is not None, "a stage belongs to a pipeline"
        # claimcheck 1.x declared the intake's resources straight under the pipeline, and each stage's worker resources
        # straight under the stage: the aliases keep those URNs.
        uploads_fed = declared.feed == Feed.UPLOADS
        self.worker = QueueWorker(name, QueueWorkerArgs(
            declared.name, args.configured.sizing, args.runtime, args.queues,
            [*links.used(declared.uses, args.resources), links.settings_of(args.configured.settings)],
            args.layers, args.alarm_topic_arn, declared.dropped, handler=declared.handler, alarmed=declared.alarmed),
            moved_from=pipeline if uploads_fed else self, opts=pulumi.ResourceOptions(parent=self))
        if uploads_fed:
            self._uploads_feed(name, args, pipeline)
        else:
            self._claim_checks_feed(name, args)
        self.register_outputs({"queue_url": self.worker.queue.url})

    def _uploads_feed(self, name: str, args: StageArgs, pipeline: pulumi.Resource) -> None:
        """The queue takes S3's events of the uploads bucket, and nothing else's. It owns its queue's policy and the
        bucket's notification, which S3 checks against each other when the notification is put."""
        queue, uploads = self.worker.queue, args.resources.uploads
        moved = pulumi.ResourceOptions(parent=self, aliases=[pulumi.Alias(parent=pipeline)])
        policy = aws.sqs.QueuePolicy(f"{name}-queue-policy", queue_url=queue.id, policy=iam.document([
            policies.queue_from_bucket(queue.arn, uploads.arn, args.account_id)]), opts=moved)
        # S3 checks that it may send to the queue when the notification is put (PutBucketNotificationConfiguration).
        # A lifecycle rule's expiry is an event of its own kind (S3 User Guide, "Event notification types"): without
        # it, an original that expired would leave its record saying it is still there.
        aws.s3.BucketNotification(f"{name}-upload-events", bucket=uploads.id, queues=[
            aws.s3.BucketNotificationQueueArgs(queue_arn=queue.arn, filter_prefix=UPLOADS_PREFIX, events=[
                "s3:ObjectCreated:*", "s3:ObjectRemoved:*", "s3:LifecycleExpiration:*"]),
        ], opts=pulumi.ResourceOptions(parent=self, depends_on=[policy], aliases=[
            pulumi.Alias(name=f"{pipeline.pulumi_resource_name}-upload-events", parent=pipeline)]))

    def _claim_checks_feed(self, name: str, args: StageArgs) -> None:
        """The queue takes claim checks from the topic, and from nothing else; its subscription applies the
        declaration's filter as the stack amends it (the one the intake reads to know which stages an image waits for)."""
        child = pulumi.ResourceOptions(parent=self)
        queue, topic = self.worker.queue, args.resources.claim_checks
        aws.sqs.QueuePolicy(f"{name}-queue-policy", queue_url=queue.id, policy=iam.document([
            policies.queue_from_topic(queue.arn, topic.arn)]), opts=child)
        filter_policy = args.filter_policy
        self.subscription = aws.sns.TopicSubscription(
            f"{name}-subscription", topic=topic.arn, protocol="sqs", endpoint=queue.arn,
            raw_message_delivery=True,  # the queue receives the claim check itself, not an SNS envelope
            filter_policy=json.dumps(filter_policy) if filter_policy else None,
            filter_policy_scope="MessageAttributes" if filter_policy else None,
            opts=child)


@cache
def component(type_name: str) -> type[Stage]:
    """The component class of a declared stage: Stage, named as its declaration names its Pulumi type."""
    return type(type_name, (Stage,), {"__doc__": f"The {type_name} component (claimcheck:index:{type_name})."})


def __getattr__(name: str) -> type[Stage]:
    """`from infra.stages import ThumbnailStage`: each declared stage's component, by its type name."""
    from handlers import stages

    if any(declared.component == name for declared in stages.declared()):
        return component(name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
