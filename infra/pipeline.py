"""ClaimCheckPipeline: the whole pipeline as one component.

  uploads bucket --S3 notification--> IntakeStage --claim checks--> topic --> ThumbnailStage, LabelStage, …
  (every stage its module declares: handlers/stages.py); every stage writes its part of one record per image in the
  results table; each has a DLQ and alarms, and an alarm topic and a dashboard watch them all. UploadApi and
  ThumbnailCdn are the optional edges.

`__init__` composes; each private builder below builds one part.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws

from handlers import stages
from handlers.names import ATTENTION_INDEX, PROJECT, STATUS_TAG, UPLOADS_PREFIX, Function, Metric, StackOutput, Status
from infra import backfill, dashboard, iam, links, operators, packaging, policies
from infra.edges import ThumbnailCdn, ThumbnailCdnArgs, UploadApi, UploadApiArgs
from infra.image_events import ImageEvents, ImageEventsArgs
from infra.settings import RUNTIME_GLIBC, Settings
from infra.stages import StageArgs, component
from infra.storage import PrivateBucket, expire_after, private_bucket
from infra.worker import Layers, QueueWorker, QueueWorkerArgs

ACCESS_LOGS_PREFIX = "uploads-bucket/"
PURGE_RECEIVES = 100
CDN_LOGS_PREFIX = "cdn/"


class PowertoolsLayerNotFound(pulumi.RunError):
    """The Powertools layer cannot be found for this stack: the message names the parameter and the setting."""


def powertools_layer(s: Settings) -> str:
    """The Powertools layer's version ARN: `powertoolsLayerArn` when set (no lookup then), otherwise what AWS's public
    SSM parameter for the pinned version holds in this Region. A parameter AWS has not published there (it has
    happened: one release's were published under a placeholder name) stops the program here, in words, instead of
    failing preview with the provider's bare error."""
    if s.powertools_layer_arn:
        return s.powertools_layer_arn
    parameter = packaging.powertools_parameter(s.runtime, s.architecture)
    try:
        # A plain (not Output) invoke, so that its failure can be caught and explained before anything is declared.
        return aws.ssm.get_parameter(name=parameter).value
    except Exception as error:  # the SDK raises a bare Exception for a failed invoke
        raise PowertoolsLayerNotFound(
            f"{PROJECT}: the Powertools layer cannot be looked up: the public SSM parameter {parameter} cannot be "
            f"read in this Region ({error}). Set {PROJECT}:powertoolsLayerArn to a Powertools layer version ARN for "
            f"{s.runtime} on {s.architecture} in this Region (Powertools' documentation, \"Lambda Layer\", lists "
            "them), or pin an aws-lambda-powertools version whose parameter exists there in requirements.txt.") from None


@dataclass(frozen=True)
class Account:
    """Where the stack is deployed; `root` is the account itself as a principal (whatever IAM in it allows)."""

    id: pulumi.Output[str]
    region: pulumi.Output[str]
    partition: pulumi.Output[str]
    root: pulumi.Output[str]

    @classmethod
    def current(cls) -> Account:
        account_id = aws.get_caller_identity_output().account_id
        partition = aws.get_partition_output().partition
        return cls(account_id, aws.get_region_output().region, partition, iam.account_root(partition, account_id))


@dataclass
class Stores:
    uploads: PrivateBucket
    thumbnails: PrivateBucket
    table: aws.dynamodb.Table
    cdn: ThumbnailCdn | None


@dataclass
class Topics:
    claim_checks: aws.sns.Topic
    alarms: aws.sns.Topic
    key: aws.kms.Key


class ClaimCheckPipeline(pulumi.ComponentResource):
    def __init__(self, name: str, settings: Settings, opts: pulumi.ResourceOptions | None = None):
        super().__init__("claimcheck:index:ClaimCheckPipeline", name, None, opts)
        self._name, self._settings, self._account = name, settings, Account.current()
        self._opts = pulumi.ResourceOptions(parent=self)
        stores = self._stores()
        topics = self._topics()
        layers = self._layers()
        workers = self._stages(stores, topics, layers)
        # Every settle of an image record, announced on EventBridge for whatever comes next.
        self.events = ImageEvents(f"{name}-image-events", ImageEventsArgs(
            settings, stores.table, layers, topics.alarms.arn, self._account.partition, self._account.region,
            self._account.id), opts=self._opts)
        dashboard_url = self._observability(workers)
        self._backfill(stores, layers)
        self._operators(workers, stores, topics, layers)
        self.upload_api = UploadApi(f"{name}-upload-api", UploadApiArgs(
            settings, stores.uploads.bucket, layers, stores.table, stores.thumbnails.bucket,
            stores.cdn.url if stores.cdn else None),
            opts=self._opts) if settings.upload_api else None
        self._uploads_policy(stores.uploads)

        self.outputs = self._outputs(stores, topics, workers, dashboard_url)
        self.register_outputs({
            "uploads_bucket": stores.uploads.bucket.bucket, "thumbnails_bucket": stores.thumbnails.bucket.bucket,
            "table_name": stores.table.name, "claim_check_topic_arn": topics.claim_checks.arn,
            "alarm_topic_arn": topics.alarms.arn, "dashboard_url": dashboard_url,
        })

    def _outputs(self, stores: Stores, topics: Topics, workers: dict[str, QueueWorker],
                 dashboard_url: pulumi.Output[str]) -> dict[str, Any]:
        """The stack's outputs, by name (handlers.names.StackOutput): what `python -m ops` and the local cloud read,
        and each deployed stage's own (its declaration's `outputs`)."""
        s = self._settings
        found: dict[str, Any] = {
            StackOutput.UPLOADS_BUCKET: stores.uploads.bucket.bucket,
            StackOutput.THUMBNAILS_BUCKET: stores.thumbnails.bucket.bucket,
            StackOutput.TABLE_NAME: stores.table.name,
            StackOutput.CLAIM_CHECK_TOPIC_ARN: topics.claim_checks.arn,
            StackOutput.ALARM_TOPIC_ARN: topics.alarms.arn,
            StackOutput.QUEUE_URLS: {function: w.queue.url for function, w in workers.items()},
            StackOutput.DEAD_LETTER_QUEUE_URLS: {function: w.dlq.url for function, w in workers.items()},
            StackOutput.DASHBOARD_URL: dashboard_url,
            StackOutput.QUEUE_ARNS: {function: w.queue.arn for function, w in workers.items()},
            StackOutput.DEAD_LETTER_QUEUE_ARNS: {function: w.dlq.arn for function, w in workers.items()},
            StackOutput.EVENT_SOURCE_MAPPINGS: {function: w.mapping.uuid for function, w in workers.items()},
            **{name: value for configured in s.deployed for name, value in configured.stage.outputs(configured.settings).items()},
            StackOutput.REJECTED_RETENTION_DAYS: s.rejected_retention_days,
            StackOutput.PAUSE_FUNCTION_NAME: self.pause_function.name,
            StackOutput.OPERATOR_POLICY_ARN: self.operator_policy.arn,
            StackOutput.BACKFILL_FUNCTION_NAME: self.backfill_function.name,
            StackOutput.EVENT_BUS_NAME: self.events.bus_name,
            StackOutput.EVENT_BUS_ARN: self.events.bus_arn,
        }
        if self.batch_operations and self._logs:
            found[StackOutput.BATCH_OPERATIONS] = self.batch_operations.outputs(
                self.backfill_function, self._logs.bucket, stores.uploads.bucket, self._account.id)
        if self.upload_api:
            found[StackOutput.UPLOAD_API_URL] = self.upload_api.url
            found[StackOutput.UPLOAD_API_AUTH] = self.upload_api.auth
            # What a caller needs: the policy to attach (IAM), or what the route requires of a token (JWT).
            if self.upload_api.uploader_policy:
                found[StackOutput.UPLOADER_POLICY_ARN] = self.upload_api.uploader_policy.arn
            if self.upload_api.uploader_jwt:
                found[StackOutput.UPLOADER_JWT] = self.upload_api.uploader_jwt
            if self.upload_api.dns_records is not None:
                found[StackOutput.UPLOAD_API_DNS_RECORDS] = self.upload_api.dns_records
        if stores.cdn:
            found[StackOutput.THUMBNAILS_URL] = stores.cdn.url
            if stores.cdn.dns_records is not None:
                found[StackOutput.CDN_DNS_RECORDS] = stores.cdn.dns_records
        return found

    def _stores(self) -> Stores:
        """The uploads bucket (versioned, its events to the intake), the thumbnails bucket (behind CloudFront when
        `cdn`), their access logs, and the results table."""
        name, s = self._name, self._settings
        uploads = private_bucket(f"{name}-uploads", self, versioned=True, force_destroy=s.force_destroy, lifecycle_rules=[
            aws.s3.BucketLifecycleConfigurationRuleArgs(
                id="originals-to-infrequent-access", status="Enabled",
                filter=aws.s3.BucketLifecycleConfigurationRuleFilterArgs(prefix=UPLOADS_PREFIX),
                transitions=[aws.s3.BucketLifecycleConfigurationRuleTransitionArgs(
                    days=s.originals_transition_days, storage_class="STANDARD_IA")],
                noncurrent_version_expiration=aws.s3.BucketLifecycleConfigurationRuleNoncurrentVersionExpirationArgs(
                    noncurrent_days=s.noncurrent_version_days)),
            # Once a deleted upload's old versions have expired, only its delete marker is left: remove it too.
            # (S3 User Guide, "Removing expired object delete markers"; it takes no Days and no tag filter.)
            aws.s3.BucketLifecycleConfigurationRuleArgs(
                id="expired-delete-markers", status="Enabled",
                filter=aws.s3.BucketLifecycleConfigurationRuleFilterArgs(prefix=UPLOADS_PREFIX),
                expiration=aws.s3.BucketLifecycleConfigurationRuleExpirationArgs(expired_object_delete_marker=True)),
            *self._expire_tagged_originals(),
        ])
        logs = self._access_logs(uploads) if s.access_logging else None  # (bucket, the policy admitting delivery)
        self._logs: PrivateBucket | None = logs[0] if logs else None
        self._logs_policy: aws.s3.BucketPolicy | None = logs[1] if logs else None
        if s.upload_allowed_origins:
            # Browsers PUT straight to S3 with the grant the upload API hands out.
            aws.s3.BucketCorsConfiguration(f"{name}-uploads-cors", bucket=uploads.bucket.id, cors_rules=[{
                "allowed_methods": ["PUT"], "allowed_origins": list(s.upload_allowed_origins),
                "allowed_headers": ["content-type", "content-length", "if-none-match", "x-amz-meta-owner"],
                "expose_headers": ["etag", "x-amz-version-id"], "max_age_seconds": 3000}],
                opts=pulumi.ResourceOptions(parent=uploads.bucket))
        thumbnails = private_bucket(f"{name}-thumbnails", self, versioned=False, lifecycle_rules=[],
                                    force_destroy=s.force_destroy)
        cdn = ThumbnailCdn(f"{name}-cdn", ThumbnailCdnArgs(
            s, thumbnails.bucket.bucket_regional_domain_name,
            logs=(logs[0].bucket.arn, CDN_LOGS_PREFIX, logs[1]) if logs else None), opts=self._opts) if s.cdn else None
        thumbnails.tls_only_policy(*([cdn.read_statement(thumbnails.bucket.arn)] if cdn else []))
        table = aws.dynamodb.Table(
            f"{name}-images", billing_mode="PAY_PER_REQUEST", hash_key="image_id",
            attributes=[aws.dynamodb.TableAttributeArgs(name=attribute, type="S")
                        for attribute in ("image_id", "attention", "updated_at")],
            # Records that may need a person, newest first per status (handlers/records.py writes `attention` only
            # while they do): `python -m ops failures` queries it instead of scanning the table.
            global_secondary_indexes=[aws.dynamodb.TableGlobalSecondaryIndexArgs(
                name=ATTENTION_INDEX, projection_type="INCLUDE",
                key_schemas=[aws.dynamodb.TableGlobalSecondaryIndexKeySchemaArgs(attribute_name="attention", key_type="HASH"),
                             aws.dynamodb.TableGlobalSecondaryIndexKeySchemaArgs(attribute_name="updated_at", key_type="RANGE")],
                non_key_attributes=["key", "status", "reason", "bucket", "version_id", "event_time", "format", "size",
                                    "owner"])],
            point_in_time_recovery=aws.dynamodb.TablePointInTimeRecoveryArgs(enabled=True),
            server_side_encryption=aws.dynamodb.TableServerSideEncryptionArgs(enabled=True),
            # Every change with the item before and after it: the image events function (infra/image_events.py) tells
            # a settle from the other writes by the two.
            stream_enabled=True, stream_view_type="NEW_AND_OLD_IMAGES",
            deletion_protection_enabled=not s.force_destroy,
            opts=self._opts)
        return Stores(uploads, thumbnails, table, cdn)

    def _expire_tagged_originals(self) -> list[aws.s3.BucketLifecycleConfigurationRuleArgs]:
        """Rejected, failed and quarantined originals, tagged with their status by the intake and the stages, expire
        `rejectedRetentionDays` after they were uploaded (S3 counts from the object's creation and rounds up to the
        next midnight UTC: S3 User Guide, "Lifecycle configuration elements"); 0 keeps them."""
        days = self._settings.rejected_retention_days
        if not days:
            return []
        # With a gate deployed, what it holds back (tagged quarantined) too, unless a person releases it first.
        held = (Status.QUARANTINED,) if any(c.stage.gate for c in self._settings.deployed) else ()
        return [aws.s3.BucketLifecycleConfigurationRuleArgs(
            id=f"{status}-originals-expire", status="Enabled",
            filter=aws.s3.BucketLifecycleConfigurationRuleFilterArgs(and_=aws.s3.BucketLifecycleConfigurationRuleFilterAndArgs(
                prefix=UPLOADS_PREFIX, tags={STATUS_TAG: status})),
            expiration=aws.s3.BucketLifecycleConfigurationRuleExpirationArgs(days=days))
            for status in (Status.REJECTED, Status.FAILED, *held)]

    def _uploads_policy(self, uploads: PrivateBucket) -> None:
        """TLS only; under the upload API's prefix, only the upload function's grants, each of them create-only."""
        api = self.upload_api
        uploads.tls_only_policy(
            policies.api_uploads_only_through_the_api(uploads.bucket.arn, api.function.role if api else None),
            *([policies.api_uploads_create_only(uploads.bucket.arn)] if api else []))

    def _access_logs(self, uploads: PrivateBucket) -> tuple[PrivateBucket, aws.s3.BucketPolicy]:
        """Server access logs of the uploads bucket (who read or wrote which original) and, with the CDN, CloudFront's
        standard logs, kept for a while in a private bucket of their own (SSE-S3, as server access logging requires).
        S3 log delivery sets the bucket-owner-full-control ACL, the one ACL an owner-enforced bucket takes."""
        name, s, account = self._name, self._settings, self._account
        logs = private_bucket(f"{name}-access-logs", self, versioned=False, force_destroy=s.force_destroy, lifecycle_rules=[
            expire_after("expire-access-logs", ACCESS_LOGS_PREFIX, s.access_log_retention_days),
            *([expire_after("expire-cdn-logs", CDN_LOGS_PREFIX, s.access_log_retention_days)] if s.cdn else []),
            *backfill.log_bucket_rules(s)])
        policy = logs.tls_only_policy(
            policies.server_access_logs(logs.bucket.arn, ACCESS_LOGS_PREFIX, uploads.bucket.arn, account.id),
            *backfill.log_bucket_statements(s, logs.bucket, uploads.bucket, account.id),
            *([policies.cdn_standard_logs(logs.bucket.arn, CDN_LOGS_PREFIX, account.partition, account.id)]
              if s.cdn else []))
        # S3 checks the log bucket admits the logging service when logging is switched on.
        aws.s3.BucketLogging(f"{name}-uploads-access-logging", bucket=uploads.bucket.id, target_bucket=logs.bucket.id,
                             target_prefix=ACCESS_LOGS_PREFIX,
                             opts=pulumi.ResourceOptions(parent=uploads.bucket, depends_on=[policy]))
        return logs, policy

    def _topics(self) -> Topics:
        """The claim-check topic (this account only) and the alarm topic, both encrypted with a key CloudWatch may
        use too (the AWS-managed SNS key would refuse alarms)."""
        name, s, account = self._name, self._settings, self._account
        key = aws.kms.Key(f"{name}-topics-key", description="claimcheck topics", enable_key_rotation=True,
                          deletion_window_in_days=30, policy=iam.document(policies.topic_key(account.root, account.id)),
                          opts=self._opts)
        alarms = aws.sns.Topic(f"{name}-alarms", kms_master_key_id=key.arn, opts=self._opts)
        if s.alarm_email:
            aws.sns.TopicSubscription(f"{name}-alarm-email", topic=alarms.arn, protocol="email",
                                      endpoint=s.alarm_email, opts=self._opts)
        claim_checks = aws.sns.Topic(f"{name}-claim-checks", kms_master_key_id=key.arn, opts=self._opts)
        aws.sns.TopicPolicy(f"{name}-claim-checks-policy", arn=claim_checks.arn,
                            policy=iam.document([policies.topic_owner_only(claim_checks.arn, account.root)]),
                            opts=self._opts)
        return Topics(claim_checks, alarms, key)

    def _layers(self) -> Layers:
        """AWS's public Powertools layer for the version requirements.txt pins, in this region; ours with Pillow."""
        name, s = self._name, self._settings
        powertools = powertools_layer(s)
        archive = packaging.pillow_layer(s.architecture, s.runtime, RUNTIME_GLIBC[s.runtime], heif=s.needs_heif)
        pillow = aws.lambda_.LayerVersion(
            f"{name}-pillow", layer_name=f"{name}-pillow-{s.architecture}", code=pulumi.FileArchive(str(archive)),
            compatible_runtimes=[s.runtime], compatible_architectures=[s.architecture],
            description=f"{packaging.PILLOW_REQUIREMENT}{' + ' + packaging.HEIF_REQUIREMENT if s.needs_heif else ''} "
                        f"for {s.runtime} on {s.architecture}", opts=self._opts)
        return Layers(powertools=powertools, pillow=pillow.arn)

    def _stages(self, stores: Stores, topics: Topics, layers: Layers) -> dict[str, QueueWorker]:
        """Every declared stage the stack deploys (handlers/stages.py), and with a CDN the function that makes it
        forget deleted thumbnails; their workers by function."""
        name, s, alarms = self._name, self._settings, topics.alarms.arn
        purge = self._cdn_purge(stores, layers, alarms) if stores.cdn else None
        indexed = any(c.stage.uses and "duplicates_index" in c.stage.uses for c in s.deployed)
        resources = self._resources = links.Resources(
            uploads=stores.uploads.bucket, thumbnails=stores.thumbnails.bucket, table=stores.table,
            claim_checks=topics.claim_checks, topic_key=topics.key, cdn_url=stores.cdn.url if stores.cdn else None,
            purges=purge.queue if purge else None, duplicates_index=self._duplicates_index() if indexed else None)
        workers: dict[str, QueueWorker] = {}
        filters = stages.subscriptions(s.deployed)
        for configured in s.deployed:
            declared = configured.stage
            workers[configured.name] = component(declared.component)(f"{name}-{declared.resource}", StageArgs(
                configured, s.functions, s.queues, resources, layers, alarms, self._account.id,
                filters.get(configured.name)), opts=self._opts).worker
        if purge:
            workers[Function.CDN_PURGE] = purge
        return workers

    def _duplicates_index(self) -> aws.dynamodb.Table:
        """The duplicates gate's index (handlers/duplicates.py): one item per owner, band and band value, holding
        the hashes of that owner's images with that value. A table of its own: the gate's permissions on it reach
        no image record, and a lookup's BatchGetItem reads only these items."""
        return aws.dynamodb.Table(
            f"{self._name}-duplicates", billing_mode="PAY_PER_REQUEST", hash_key="band",
            attributes=[aws.dynamodb.TableAttributeArgs(name="band", type="S")],
            point_in_time_recovery=aws.dynamodb.TablePointInTimeRecoveryArgs(enabled=True),
            server_side_encryption=aws.dynamodb.TableServerSideEncryptionArgs(enabled=True),
            deletion_protection_enabled=not self._settings.force_destroy, opts=self._opts)

    def _cdn_purge(self, stores: Stores, layers: Layers, alarms: pulumi.Input[str]) -> QueueWorker:
        """The CDN's purge function (handlers/cdn_purge.py): the thumbnail stage asks it, through its queue, to make
        CloudFront forget what it deletes. A purge CloudFront keeps refusing is tried PURGE_RECEIVES times (every
        visibility timeout, ~3 min by default: hours in all) before it is dead-lettered; its queue's oldest-message
        alarm fires long before."""
        s, cdn = self._settings, stores.cdn
        assert cdn is not None
        return QueueWorker(f"{self._name}-cdn-purge", QueueWorkerArgs(
            Function.CDN_PURGE, s.cdn_purge, s.functions, s.queues,
            [links.invalidations(cdn.distribution, stores.thumbnails.bucket), links.record_reader(stores.table)],
            layers, alarms, Metric.INVALID_PURGE_REQUESTS, max_receive_count=PURGE_RECEIVES),
            opts=pulumi.ResourceOptions(parent=cdn))

    def _backfill(self, stores: Stores, layers: Layers) -> None:
        """The function that puts objects already in the uploads bucket on the intake's path, with the intake's own
        links and settings; with `batchOperations`, what a Batch Operations job over the bucket needs."""
        s = self._settings
        [intake] = [c for c in s.deployed if c.name == Function.INTAKE]
        self.backfill_function = backfill.backfill_function(
            self._name, s, [*links.used(intake.stage.uses, self._resources), links.settings_of(intake.settings)],
            layers, self._opts).function
        self.batch_operations = backfill.batch_operations(
            self._name, self.backfill_function, stores.uploads.bucket, self._logs.bucket, self._account.id, self._opts,
            [self._logs_policy]) if s.batch_operations and self._logs and self._logs_policy else None

    def _operators(self, workers: dict[str, QueueWorker], stores: Stores, topics: Topics, layers: Layers) -> None:
        """The policy to give the people who run the pipeline (`python -m ops`), and the function that pauses and
        resumes a stage for them."""
        self.pause_function = operators.pause_function(self._name, self._settings, workers, layers, self._opts)
        self.operator_policy = operators.operator_policy(
            self._name, workers, stores.table, topics.claim_checks, topics.key, self.pause_function,
            stores.thumbnails.bucket.arn, self._opts, operators.Backfill(
                self.backfill_function, stores.uploads.bucket,
                iam.s3_objects(self._logs.bucket.arn, backfill.INVENTORY_PREFIX)
                if self.batch_operations and self._logs else None),
            links.used([use for c in self._settings.deployed for use in c.stage.operator], self._resources))

    def _observability(self, workers: dict[str, QueueWorker]) -> pulumi.Output[str]:
        """The dashboard (every worker's queue, DLQ and function); returns its console URL. The alarms are each
        worker's own."""
        region = self._account.region
        board = aws.cloudwatch.Dashboard(
            f"{self._name}-dashboard", dashboard_name=dashboard.dashboard_name(pulumi.get_project(), pulumi.get_stack()),
            dashboard_body=dashboard.body(region, workers, self.events.function.name, self.events.dlq.name), opts=self._opts)
        return pulumi.Output.concat("https://", region, ".console.aws.amazon.com/cloudwatch/home?region=", region,
                                    "#dashboards:name=", board.dashboard_name)
