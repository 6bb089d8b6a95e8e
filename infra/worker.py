"""A queue-fed Lambda function, written once: queue + DLQ + role + log group + function +
event source mapping + alarms. The intake and every stage are built from it."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_aws as aws

from infra import iam, packaging
from infra.settings import Settings

DAY = 86_400
METRICS_NAMESPACE = "claimcheck"  # Powertools' EMF namespace; each function adds the dimension service=claimcheck-<function>


@dataclass
class WorkerArgs:
    function: str  # a key of packaging.FUNCTIONS
    settings: Settings
    environment: dict[str, pulumi.Input[str]]
    statements: list[dict[str, Any]]  # what the handler calls, besides reading its own queue and logging
    alarm_topic_arn: pulumi.Input[str]
    layers: list[pulumi.Input[str]] = field(default_factory=list)
    # The metric the handler emits for each message it drops as malformed (acknowledged, never retried).
    dropped_metric: str = "InvalidClaimChecks"


@dataclass
class Worker:
    queue: aws.sqs.Queue
    dlq: aws.sqs.Queue
    function: aws.lambda_.Function
    role: aws.iam.Role
    log_group: aws.cloudwatch.LogGroup
    mapping: aws.lambda_.EventSourceMapping
    alarms: list[aws.cloudwatch.MetricAlarm]


def service_name(function: str) -> str:
    return f"claimcheck-{function}"


def build_function(name: str, function: str, s: Settings, memory: int, timeout: int,
                   environment: dict[str, pulumi.Input[str]], statements: list[dict[str, Any]],
                   layers: list[pulumi.Input[str]], parent: pulumi.Resource, reserved_concurrency: int | None = None,
                   ) -> tuple[aws.lambda_.Function, aws.iam.Role, aws.cloudwatch.LogGroup, list[pulumi.Resource]]:
    """One function with its own role (its `statements` plus writing its own logs), log group with retention,
    tracing and its archive of handler files. It is created only after everything its role is granted."""
    package = packaging.FUNCTIONS[function]
    log_group = aws.cloudwatch.LogGroup(
        f"{name}-logs", name=f"/claimcheck/{pulumi.get_stack()}/{name}",
        retention_in_days=s.log_retention_days, opts=pulumi.ResourceOptions(parent=parent))
    logs = iam.allow(["logs:CreateLogStream", "logs:PutLogEvents"], [pulumi.Output.concat(log_group.arn, ":*")])
    role, grants = iam.function_role(name, [logs, *statements], s.tracing, parent)
    lambda_function = aws.lambda_.Function(
        f"{name}-function",
        role=role.arn,
        runtime=s.runtime,
        architectures=[s.architecture],
        handler=package.handler,
        code=pulumi.FileArchive(str(packaging.function_archive(function))),
        memory_size=memory,
        timeout=timeout,
        layers=layers,
        reserved_concurrent_executions=reserved_concurrency,
        environment=aws.lambda_.FunctionEnvironmentArgs(variables={
            "POWERTOOLS_SERVICE_NAME": service_name(function),
            "POWERTOOLS_METRICS_NAMESPACE": METRICS_NAMESPACE,
            "POWERTOOLS_LOG_LEVEL": "INFO",
            **environment,
        }),
        tracing_config=aws.lambda_.FunctionTracingConfigArgs(mode="Active" if s.tracing else "PassThrough"),
        logging_config=aws.lambda_.FunctionLoggingConfigArgs(log_format="JSON", log_group=log_group.name),
        # Lambda checks the role when the function is created and invoked: its grants must exist first.
        opts=pulumi.ResourceOptions(parent=parent, depends_on=[*grants, log_group]),
    )
    return lambda_function, role, log_group, grants


def build_worker(name: str, args: WorkerArgs, parent: pulumi.Resource) -> Worker:
    """Create the worker's resources as children of `parent`."""
    s = args.settings
    stage = s.stage(args.function)
    opts = pulumi.ResourceOptions(parent=parent)

    dlq = aws.sqs.Queue(f"{name}-dlq", sqs_managed_sse_enabled=True,
                        message_retention_seconds=s.dlq_retention_days * DAY, opts=opts)
    queue = aws.sqs.Queue(
        f"{name}-queue",
        sqs_managed_sse_enabled=True,  # SSE-SQS: S3 and SNS can still send to it
        visibility_timeout_seconds=stage.queue_visibility_timeout,
        message_retention_seconds=s.queue_retention_days * DAY,
        redrive_policy=dlq.arn.apply(lambda arn: json.dumps({"deadLetterTargetArn": arn,
                                                              "maxReceiveCount": s.max_receive_count})),
        opts=opts,
    )
    # What the event source mapping needs of the execution role (Lambda developer guide, "Using Lambda with
    # Amazon SQS", and AWS's AWSLambdaSQSQueueExecutionRole): no more.
    consume = iam.allow(["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes"], [queue.arn])
    function, role, log_group, grants = build_function(
        name, args.function, s, memory=stage.memory, timeout=stage.timeout, environment=args.environment,
        statements=[consume, *args.statements], layers=args.layers, parent=parent)
    mapping = aws.lambda_.EventSourceMapping(
        f"{name}-mapping",
        event_source_arn=queue.arn,
        function_name=function.arn,
        batch_size=stage.batch_size,
        maximum_batching_window_in_seconds=stage.batching_window,
        function_response_types=["ReportBatchItemFailures"],
        scaling_config=aws.lambda_.EventSourceMappingScalingConfigArgs(maximum_concurrency=stage.max_concurrency),
        # Lambda checks that the role may read the queue when the mapping is created.
        opts=pulumi.ResourceOptions(parent=parent, depends_on=grants),
    )
    actions = {"alarm_actions": [args.alarm_topic_arn], "ok_actions": [args.alarm_topic_arn]}
    alarms = [
        aws.cloudwatch.MetricAlarm(
            f"{name}-dlq-alarm",
            alarm_description=f"Messages in the {name} dead-letter queue: they failed {s.max_receive_count} times.",
            namespace="AWS/SQS", metric_name="ApproximateNumberOfMessagesVisible",
            dimensions={"QueueName": dlq.name}, statistic="Maximum", period=60, evaluation_periods=1,
            threshold=0, comparison_operator="GreaterThanThreshold", treat_missing_data="notBreaching", **actions, opts=opts),
        aws.cloudwatch.MetricAlarm(
            f"{name}-age-alarm",
            alarm_description=f"The oldest message in the {name} queue is over {s.oldest_message_alarm_seconds} s old.",
            namespace="AWS/SQS", metric_name="ApproximateAgeOfOldestMessage",
            dimensions={"QueueName": queue.name}, statistic="Maximum", period=60, evaluation_periods=5,
            threshold=s.oldest_message_alarm_seconds, comparison_operator="GreaterThanThreshold",
            treat_missing_data="notBreaching", alarm_actions=[args.alarm_topic_arn], opts=opts),
        # A malformed message is logged, counted and acknowledged (no retry can fix it); someone must still hear of it.
        aws.cloudwatch.MetricAlarm(
            f"{name}-dropped-alarm",
            alarm_description=f"The {name} function dropped messages it could not read ({args.dropped_metric}); "
                              "see its logs for each one.",
            namespace=METRICS_NAMESPACE, metric_name=args.dropped_metric,
            dimensions={"service": service_name(args.function)}, statistic="Sum", period=300, evaluation_periods=1,
            threshold=0, comparison_operator="GreaterThanThreshold", treat_missing_data="notBreaching", **actions, opts=opts),
    ]
    return Worker(queue, dlq, function, role, log_group, mapping, alarms)
