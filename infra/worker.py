"""A Lambda function (`build_function`) and a queue-fed one (`QueueWorker`), each written once.

A QueueWorker is queue + DLQ + role + log group + function + event source mapping + alarms; the intake and every
stage are one, and say only what their function is linked to (infra/links.py) and where its messages come from.
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from handlers.names import METRICS_NAMESPACE, Env, service_name
from infra import iam, packaging
from infra.links import Link, combined
from infra.settings import Queues, Runtime, StageSettings

DAY = 86_400


@dataclass(frozen=True)
class Layers:
    """The layers a function may need: AWS's Powertools layer for every function, ours with Pillow for those whose
    code imports it (packaging.FunctionPackage.needs_pillow)."""

    powertools: pulumi.Input[str]
    pillow: pulumi.Input[str]

    def of(self, package: packaging.FunctionPackage) -> list[pulumi.Input[str]]:
        return [self.powertools, *([self.pillow] if package.needs_pillow else [])]


def log_group_name(name: str) -> str:
    """/<Pulumi project>/<stack>/<name>: log group names are per account and Region, so two projects (a fork deployed
    beside this one) or two stacks never share one. For the project named claimcheck they are the names 1.x gave."""
    return f"/{pulumi.get_project()}/{pulumi.get_stack()}/{name}"


@dataclass
class LambdaFunction:
    function: aws.lambda_.Function
    role: aws.iam.Role
    log_group: aws.cloudwatch.LogGroup
    grants: list[pulumi.Resource]  # what must exist before the function, or anything acting as it, is created


def build_function(name: str, function: str, s: Runtime, memory: int, timeout: int, links: Sequence[Link],
                   layers: Layers, opts: pulumi.ResourceOptions, reserved_concurrency: int | None = None,
                   handler: str | None = None) -> LambdaFunction:
    """One function with its own role (writing its own logs, plus what its `links` allow), the environment its links
    name, a log group with retention, tracing and its archive of the project's files its handler imports (`handler`:
    a declared stage's; the project's own functions are found by name). It is created only after everything its
    role is granted."""
    package = packaging.package(function, handler or packaging.FUNCTIONS[function].handler)
    log_group = aws.cloudwatch.LogGroup(
        f"{name}-logs", name=log_group_name(name),
        retention_in_days=s.log_retention_days, opts=opts)
    environment, statements = combined(links)
    logs = iam.allow(["logs:CreateLogStream", "logs:PutLogEvents"], [pulumi.Output.concat(log_group.arn, ":*")])
    role, grants = iam.function_role(name, [logs, *statements], s.tracing, opts)
    lambda_function = aws.lambda_.Function(
        f"{name}-function",
        role=role.arn,
        runtime=s.runtime,
        architectures=[s.architecture],
        handler=package.handler,
        code=pulumi.FileArchive(str(packaging.function_archive(function, package.handler))),
        memory_size=memory,
        timeout=timeout,
        layers=layers.of(package),
        reserved_concurrent_executions=reserved_concurrency,
        environment=aws.lambda_.FunctionEnvironmentArgs(variables={
            Env.SERVICE_NAME: service_name(function),
            Env.METRICS_NAMESPACE: METRICS_NAMESPACE,
            Env.LOG_LEVEL: "INFO",
            **environment,
        }),
        tracing_config=aws.lambda_.FunctionTracingConfigArgs(mode="Active" if s.tracing else "PassThrough"),
        logging_config=aws.lambda_.FunctionLoggingConfigArgs(log_format="JSON", log_group=log_group.name),
        # Lambda checks the role when the function is created and invoked: its grants must exist first.
        opts=pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(depends_on=[*grants, log_group])),
    )
    return LambdaFunction(lambda_function, role, log_group, grants)


def dlq_alarm(name: str, dlq: aws.sqs.Queue, description: str, topic: pulumi.Input[str],
              opts: pulumi.ResourceOptions) -> aws.cloudwatch.MetricAlarm:
    """An alarm (and its all-clear) as soon as anything is in the dead-letter queue `dlq`."""
    return aws.cloudwatch.MetricAlarm(
        name, alarm_description=description, namespace="AWS/SQS", metric_name="ApproximateNumberOfMessagesVisible",
        dimensions={"QueueName": dlq.name}, statistic="Maximum", period=60, evaluation_periods=1,
        threshold=0, comparison_operator="GreaterThanThreshold", treat_missing_data="notBreaching",
        alarm_actions=[topic], ok_actions=[topic], opts=opts)


@dataclass
class QueueWorkerArgs:
    function: str  # a declared stage's name, or one of the pipeline's own queue-fed functions
    sizing: StageSettings
    runtime: Runtime
    queues: Queues
    links: Sequence[Link]  # what the function uses, besides reading its own queue and writing its logs
    layers: Layers
    alarm_topic_arn: pulumi.Input[str]
    # What the handler counts for each message it drops as unreadable (acknowledged, never retried): alarmed.
    dropped_metric: str
    # Deliveries before the DLQ, when this worker needs more than the stack's maxReceiveCount.
    max_receive_count: int | None = None
    handler: str | None = None  # a declared stage's handler (module.function)
    alarmed: Sequence[str] = ()  # metrics of its handler's that need a person whenever they are counted


class QueueWorker(pulumi.ComponentResource):
    """A function fed from its own queue, with a DLQ after maxReceiveCount deliveries and alarms on the DLQ, the
    oldest message's age and the messages the handler dropped."""

    def __init__(self, name: str, args: QueueWorkerArgs, moved_from: pulumi.Resource | None = None,
                 opts: pulumi.ResourceOptions | None = None):
        """`moved_from`: the component these resources belonged to before QueueWorker existed (claimcheck 1.x
        built them straight into the stage, or, for the intake, into the pipeline). The alias keeps their URNs, so
        `pulumi up` updates an existing stack in place instead of replacing its queues and functions. A worker that
        1.x did not have has none."""
        super().__init__("claimcheck:index:QueueWorker", name, None, opts)
        s, stage = args.queues, args.sizing
        self.max_receive_count = max(s.max_receive_count, args.max_receive_count or 0)
        child = pulumi.ResourceOptions(parent=self, aliases=[pulumi.Alias(parent=moved_from)] if moved_from else None)
        self.dlq = aws.sqs.Queue(f"{name}-dlq", sqs_managed_sse_enabled=True,
                                 message_retention_seconds=s.dlq_retention_days * DAY, opts=child)
        self.queue = aws.sqs.Queue(
            f"{name}-queue",
            sqs_managed_sse_enabled=True,  # SSE-SQS: S3 and SNS can still send to it
            visibility_timeout_seconds=stage.queue_visibility_timeout,
            message_retention_seconds=s.queue_retention_days * DAY,
            redrive_policy=self.dlq.arn.apply(lambda arn: json.dumps({"deadLetterTargetArn": arn,
                                                                      "maxReceiveCount": self.max_receive_count})),
            opts=child,
        )
        # What the event source mapping needs of the execution role (Lambda developer guide, "Using Lambda with
        # Amazon SQS", and AWS's AWSLambdaSQSQueueExecutionRole): no more.
        consume = Link(statements=(iam.allow(["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes"],
                                             [self.queue.arn]),))
        built = build_function(name, args.function, args.runtime, memory=stage.memory, timeout=stage.timeout,
                               links=[consume, *args.links], layers=args.layers, opts=child, handler=args.handler)
        self.function, self.role = built.function, built.role
        self.mapping = aws.lambda_.EventSourceMapping(
            f"{name}-mapping",
            event_source_arn=self.queue.arn,
            function_name=self.function.arn,
            batch_size=stage.batch_size,
            maximum_batching_window_in_seconds=stage.batching_window,
            function_response_types=["ReportBatchItemFailures"],
            scaling_config=aws.lambda_.EventSourceMappingScalingConfigArgs(maximum_concurrency=stage.max_concurrency),
            # Lambda checks that the role may read the queue when the mapping is created.
            opts=pulumi.ResourceOptions.merge(child, pulumi.ResourceOptions(depends_on=built.grants)),
        )
        self.alarms = self._alarms(name, args, child)
        self.register_outputs({"queue_url": self.queue.url, "dlq_url": self.dlq.url, "function_name": self.function.name})

    def _alarms(self, name: str, args: QueueWorkerArgs, child: pulumi.ResourceOptions) -> list[aws.cloudwatch.MetricAlarm]:
        s, topic = args.queues, args.alarm_topic_arn
        return [
            dlq_alarm(f"{name}-dlq-alarm", self.dlq, f"Messages in the {name} dead-letter queue: they failed "
                      f"{self.max_receive_count} times.", topic, child),
            aws.cloudwatch.MetricAlarm(
                f"{name}-age-alarm",
                alarm_description=f"The oldest message in the {name} queue is over {s.oldest_message_alarm_seconds} s old.",
                namespace="AWS/SQS", metric_name="ApproximateAgeOfOldestMessage",
                dimensions={"QueueName": self.queue.name}, statistic="Maximum", period=60, evaluation_periods=5,
                threshold=s.oldest_message_alarm_seconds, comparison_operator="GreaterThanThreshold",
                treat_missing_data="notBreaching", alarm_actions=[topic], opts=child),
            # A malformed message is logged, counted and acknowledged (no retry can fix it); someone must still hear of it.
            self._counted(f"{name}-dropped-alarm", args, args.dropped_metric,
                          f"The {name} function dropped messages it could not read ({args.dropped_metric}); "
                          "see its logs for each one.", child),
            *(self._counted(f"{name}-{metric.lower()}-alarm", args, metric,
                            f"The {name} function counted {metric}: a person is needed (see its logs).", child)
              for metric in args.alarmed),
        ]

    @staticmethod
    def _counted(name: str, args: QueueWorkerArgs, metric: str, description: str,
                 child: pulumi.ResourceOptions) -> aws.cloudwatch.MetricAlarm:
        return counted_alarm(name, args.function, metric, description, args.alarm_topic_arn, child)


def counted_alarm(name: str, function: str, metric: str, description: str, topic: pulumi.Input[str],
                  opts: pulumi.ResourceOptions) -> aws.cloudwatch.MetricAlarm:
    """An alarm whenever `function`'s handler counts `metric` in five minutes."""
    return aws.cloudwatch.MetricAlarm(
        name, alarm_description=description, namespace=METRICS_NAMESPACE, metric_name=metric,
        dimensions={"service": service_name(function)}, statistic="Sum", period=300, evaluation_periods=1,
        threshold=0, comparison_operator="GreaterThanThreshold", treat_missing_data="notBreaching",
        alarm_actions=[topic], ok_actions=[topic], opts=opts)
