"""ImageEvents: the EventBridge bus settled images are announced on, and the function that reads the results table's
stream to announce them (handlers/image_events.py).

  results table --stream (NEW_AND_OLD_IMAGES)--> mapping (filter: new status settled) --> events fn --> event bus
                                                  failed batches --> DLQ + alarm

Not a Stage: a stage is fed claim checks from a queue, this function a table's stream. It is built from the same
parts as QueueWorker (build_function: its own role, log group and links; the DLQ alarm; a counted-metric alarm).
"""
from __future__ import annotations

import json
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from handlers.names import SETTLED, Function, Metric
from infra import links
from infra.settings import Settings
from infra.worker import DAY, Layers, build_function, counted_alarm, dlq_alarm

MEMORY, TIMEOUT = 256, 30
BATCH_SIZE, BATCHING_WINDOW = 100, 1
# A batch that keeps failing is split (to isolate the record at fault) and tried again this many times before it
# goes to the DLQ; a record older than a day is not worth announcing late (the stream keeps records 24 hours).
MAXIMUM_RETRY_ATTEMPTS = 10
MAXIMUM_RECORD_AGE_S = DAY
# Only records whose new image has a settled status reach the function (Lambda Developer Guide, "Control which events
# Lambda sends to your function": filtering DynamoDB events on `dynamodb.NewImage` in its typed form); it checks
# the rest (that the change is a transition into a settle).
STREAM_FILTER = {"eventName": ["INSERT", "MODIFY"],
                 "dynamodb": {"NewImage": {"status": {"S": sorted(str(s) for s in SETTLED)}}}}


@dataclass
class ImageEventsArgs:
    settings: Settings
    table: aws.dynamodb.Table  # with its stream on (NEW_AND_OLD_IMAGES)
    layers: Layers
    alarm_topic_arn: pulumi.Input[str]
    partition: pulumi.Input[str]
    region: pulumi.Input[str]
    account_id: pulumi.Input[str]


class ImageEvents(pulumi.ComponentResource):
    def __init__(self, name: str, args: ImageEventsArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("claimcheck:index:ImageEvents", name, None, opts)
        s, child = args.settings, pulumi.ResourceOptions(parent=self)
        if s.event_bus_name:
            # A bus that already exists (another team's, or the account's default): named, never managed here.
            self.bus_name: pulumi.Output[str] = pulumi.Output.from_input(s.event_bus_name)
            self.bus_arn: pulumi.Output[str] = pulumi.Output.concat(
                "arn:", args.partition, ":events:", args.region, ":", args.account_id, ":event-bus/", s.event_bus_name)
        else:
            bus = aws.cloudwatch.EventBus(f"{name}-bus", opts=child)
            self.bus_name, self.bus_arn = bus.name, bus.arn
        self.dlq = aws.sqs.Queue(f"{name}-dlq", sqs_managed_sse_enabled=True,
                                 message_retention_seconds=s.dlq_retention_days * DAY, opts=child)
        built = build_function(name, Function.IMAGE_EVENTS, s.functions, memory=MEMORY, timeout=TIMEOUT, links=[
            links.record_stream(args.table), links.event_bus(self.bus_name, self.bus_arn), links.failed_batches(self.dlq)],
            layers=args.layers, opts=child)
        self.function, self.role = built.function, built.role
        self.mapping = aws.lambda_.EventSourceMapping(
            f"{name}-mapping",
            event_source_arn=args.table.stream_arn,
            function_name=self.function.arn,
            # The stream is turned on with this mapping: from its start, nothing settled since is missed.
            starting_position="TRIM_HORIZON",
            batch_size=BATCH_SIZE,
            maximum_batching_window_in_seconds=BATCHING_WINDOW,
            # One batch at a time per shard: an image's events go out in the order its record changed.
            parallelization_factor=1,
            function_response_types=["ReportBatchItemFailures"],
            bisect_batch_on_function_error=True,
            maximum_retry_attempts=MAXIMUM_RETRY_ATTEMPTS,
            maximum_record_age_in_seconds=MAXIMUM_RECORD_AGE_S,
            filter_criteria=aws.lambda_.EventSourceMappingFilterCriteriaArgs(filters=[
                aws.lambda_.EventSourceMappingFilterCriteriaFilterArgs(pattern=json.dumps(STREAM_FILTER, sort_keys=True))]),
            destination_config=aws.lambda_.EventSourceMappingDestinationConfigArgs(
                on_failure=aws.lambda_.EventSourceMappingDestinationConfigOnFailureArgs(destination_arn=self.dlq.arn)),
            # Lambda checks that the role may read the stream when the mapping is created.
            opts=pulumi.ResourceOptions.merge(child, pulumi.ResourceOptions(depends_on=built.grants)),
        )
        topic = args.alarm_topic_arn
        self.alarms = [
            dlq_alarm(f"{name}-dlq-alarm", self.dlq, f"Settled images whose events did not get through after "
                      f"{MAXIMUM_RETRY_ATTEMPTS} retries: the DLQ names each batch's stream records.", topic, child),
            counted_alarm(f"{name}-dropped-alarm", Function.IMAGE_EVENTS, Metric.INVALID_STREAM_RECORDS,
                          f"The {name} function skipped settled records it could not describe (see its logs).",
                          topic, child),
            # Events late: the stream's oldest unread record (Lambda's IteratorAge, in milliseconds).
            aws.cloudwatch.MetricAlarm(
                f"{name}-age-alarm",
                alarm_description=f"Image events are over {s.oldest_message_alarm_seconds} s behind the table.",
                namespace="AWS/Lambda", metric_name="IteratorAge", dimensions={"FunctionName": self.function.name},
                statistic="Maximum", period=60, evaluation_periods=5, threshold=s.oldest_message_alarm_seconds * 1000,
                comparison_operator="GreaterThanThreshold", treat_missing_data="notBreaching", alarm_actions=[topic],
                opts=child),
        ]
        self.register_outputs({"bus_name": self.bus_name, "bus_arn": self.bus_arn, "dlq_url": self.dlq.url,
                               "function_name": self.function.name})
