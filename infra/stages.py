"""The worker stages: a queue subscribed to the claim-check topic and the function that drains it.

`Stage` holds everything a stage has in common; `ThumbnailStage` and
`LabelStage` say only what differs: which handler, what it may touch, which
claim checks it wants.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws

from infra import iam
from infra.settings import DECODE_BYTES_PER_PIXEL, Settings
from infra.worker import WorkerArgs, build_worker


@dataclass
class StageArgs:
    settings: Settings
    topic_arn: pulumi.Input[str]
    table_name: pulumi.Input[str]
    table_arn: pulumi.Input[str]
    uploads_bucket_arn: pulumi.Input[str]
    alarm_topic_arn: pulumi.Input[str]
    thumbnails_bucket_name: pulumi.Input[str] | None = None
    thumbnails_bucket_arn: pulumi.Input[str] | None = None
    pillow_layer_arn: pulumi.Input[str] | None = None
    powertools_layer_arn: pulumi.Input[str] | None = None
    thumbnails_base_url: pulumi.Input[str] | None = None  # CloudFront, when it serves the thumbnails
    distribution_id: pulumi.Input[str] | None = None  # ... and the distribution whose cache must forget deleted ones
    distribution_arn: pulumi.Input[str] | None = None


class Stage(pulumi.ComponentResource):
    """Queue + DLQ + topic subscription (+ filter) + worker function + mapping + alarms."""

    type_token = "claimcheck:index:Stage"
    function = ""

    def __init__(self, name: str, args: StageArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__(self.type_token, name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        read_record = iam.allow(["dynamodb:GetItem", "dynamodb:UpdateItem"], [args.table_arn])
        self.worker = build_worker(name, WorkerArgs(
            function=self.function,
            settings=args.settings,
            environment={"TABLE_NAME": args.table_name, **self._environment(args)},
            statements=[read_record, *self._statements(args)],
            alarm_topic_arn=args.alarm_topic_arn,
            layers=self._layers(args),
        ), parent=self)
        queue = self.worker.queue
        # Only this topic may send to the stage's queue.
        aws.sqs.QueuePolicy(f"{name}-queue-policy", queue_url=queue.id, policy=iam.document([{
            "Sid": "ClaimChecksFromTopic", "Effect": "Allow", "Principal": {"Service": "sns.amazonaws.com"},
            "Action": "sqs:SendMessage", "Resource": queue.arn,
            "Condition": {"ArnEquals": {"aws:SourceArn": args.topic_arn}},
        }]), opts=child)
        filter_policy = self._filter_policy(args.settings)
        self.subscription = aws.sns.TopicSubscription(
            f"{name}-subscription", topic=args.topic_arn, protocol="sqs", endpoint=queue.arn,
            raw_message_delivery=True,  # the queue receives the claim check itself, not an SNS envelope
            filter_policy=json.dumps(filter_policy) if filter_policy else None,
            filter_policy_scope="MessageAttributes" if filter_policy else None,
            opts=child)
        self.queue_url = queue.url
        self.dlq_url = self.worker.dlq.url
        self.function_name = self.worker.function.name
        self.register_outputs({"queue_url": self.queue_url, "dlq_url": self.dlq_url, "function_name": self.function_name})

    def _environment(self, args: StageArgs) -> dict[str, pulumi.Input[str]]:
        raise NotImplementedError

    def _statements(self, args: StageArgs) -> list[dict[str, Any]]:
        raise NotImplementedError

    def _layers(self, args: StageArgs) -> list[pulumi.Input[str]]:
        return [layer for layer in (args.powertools_layer_arn,) if layer is not None]

    def _filter_policy(self, settings: Settings) -> dict[str, Any] | None:
        return None


class ThumbnailStage(Stage):
    """Every claim check (created and removed) -> thumbnails in the thumbnails bucket."""

    type_token = "claimcheck:index:ThumbnailStage"
    function = "thumbnails"

    def _environment(self, args: StageArgs) -> dict[str, pulumi.Input[str]]:
        s = args.settings
        return {
            "THUMBNAILS_BUCKET": args.thumbnails_bucket_name,
            "THUMBNAIL_SIZES": ",".join(map(str, s.thumbnail_sizes)),
            "OUTPUT_FORMAT": s.output_format,
            "OUTPUT_QUALITY": str(s.output_quality),
            "MAX_PIXELS": str(s.max_pixels),
            "MAX_FRAMES": str(s.max_frames),
            "MAX_JPEG_SCANS": str(s.max_jpeg_scans),
            "MAX_JPEG_SEGMENTS": str(s.max_jpeg_segments),
            "IMAGE_CPU_SECONDS": str(s.image_cpu_seconds),
            "DECODE_BYTES_PER_PIXEL": ",".join(f"{f}:{b}" for f, b in DECODE_BYTES_PER_PIXEL.items()),
            "STORE_GPS": str(s.store_gps).lower(),
            **({"THUMBNAILS_BASE_URL": args.thumbnails_base_url} if args.thumbnails_base_url is not None else {}),
            **({"DISTRIBUTION_ID": args.distribution_id} if args.distribution_id is not None else {}),
        }

    def _statements(self, args: StageArgs) -> list[dict[str, Any]]:
        return [
            *iam.read_uploads(args.uploads_bucket_arn, "uploads/"),
            iam.allow(["s3:PutObject", "s3:DeleteObject"], [iam.s3_objects(args.thumbnails_bucket_arn, "thumbnails/")]),
            iam.allow(["s3:ListBucket"], [args.thumbnails_bucket_arn],
                      condition={"StringLike": {"s3:prefix": ["thumbnails/*"]}}),
            # Removed thumbnails must also leave the CDN's cache (it keeps them a year): this distribution only.
            *([iam.allow(["cloudfront:CreateInvalidation"], [args.distribution_arn])] if args.distribution_arn else []),
        ]

    def _layers(self, args: StageArgs) -> list[pulumi.Input[str]]:
        return [*super()._layers(args), args.pillow_layer_arn]


class LabelStage(Stage):
    """Claim checks for formats Rekognition reads -> labels on the image record."""

    type_token = "claimcheck:index:LabelStage"
    function = "labels"

    def _environment(self, args: StageArgs) -> dict[str, pulumi.Input[str]]:
        s = args.settings
        return {
            "LABEL_FORMATS": ",".join(s.label_formats),
            "MAX_LABELS": str(s.max_labels),
            "MIN_CONFIDENCE": str(s.min_confidence),
            "LABELS_EMULATED": str(s.labels_emulated).lower(),
        }

    def _statements(self, args: StageArgs) -> list[dict[str, Any]]:
        return [
            # DetectLabels has no resource-level permissions: '*' is the only form it takes.
            iam.allow(["rekognition:DetectLabels"], ["*"]),
            # Rekognition reads the S3 object with the caller's permissions.
            iam.allow(["s3:GetObject", "s3:GetObjectVersion"], [iam.s3_objects(args.uploads_bucket_arn, "uploads/")]),
        ]

    def _filter_policy(self, settings: Settings) -> dict[str, Any]:
        return {"format": list(settings.label_formats), "event": ["created"]}
