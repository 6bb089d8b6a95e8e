"""The CloudWatch dashboard: every queue-fed function's queue, DLQ, errors, duration, throttles and oldest message."""
from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

import pulumi

from infra.worker import QueueWorker


def dashboard_name(project: str, stack: str) -> str:
    """CloudWatch dashboard names take only A-Za-z0-9, '-' and '_', up to 255 (PutDashboard API reference);
    stack names may hold '.', and two projects may have a stack of the same name in one account."""
    return re.sub(r"[^A-Za-z0-9_-]", "-", f"{project}-{stack}")[:255]


def body(region: pulumi.Input[str], workers: Mapping[str, QueueWorker], events_function: pulumi.Input[str],
         events_dlq: pulumi.Input[str]) -> pulumi.Output[str]:
    """`events_function`, `events_dlq`: the function that announces settled images (its errors, how far behind the
    table it is) and the queue of the batches it gave up on."""
    names = {stage: pulumi.Output.all(w.queue.name, w.dlq.name, w.function.name) for stage, w in workers.items()}

    def render(args: list[Any]) -> str:
        region_name, events_name, events_dlq_name = args[0], args[1], args[2]
        resolved = dict(zip(names, args[3:], strict=True))

        def widget(title: str, metrics: list[list[Any]], stat: str) -> dict[str, Any]:
            return {"type": "metric", "width": 12, "height": 6, "properties": {
                "title": title, "region": region_name, "stat": stat, "period": 60, "view": "timeSeries",
                "metrics": metrics}}

        def per_queue(metric: str, which: int, label: str) -> list[list[Any]]:
            return [["AWS/SQS", metric, "QueueName", q[which], {"label": label.format(stage=s)}] for s, q in resolved.items()]

        def per_function(metric: str) -> list[list[Any]]:
            return [["AWS/Lambda", metric, "FunctionName", q[2], {"label": s}] for s, q in resolved.items()]

        return json.dumps({"widgets": [
            widget("Queue depth", per_queue("ApproximateNumberOfMessagesVisible", 0, "{stage} queue"), "Maximum"),
            widget("Dead-letter queues", [*per_queue("ApproximateNumberOfMessagesVisible", 1, "{stage} DLQ"), [
                "AWS/SQS", "ApproximateNumberOfMessagesVisible", "QueueName", events_dlq_name, {"label": "image events DLQ"}]],
                "Maximum"),
            widget("Function errors", per_function("Errors"), "Sum"),
            widget("Function duration", per_function("Duration"), "p95"),
            widget("Function throttles", per_function("Throttles"), "Sum"),
            widget("Oldest message age", per_queue("ApproximateAgeOfOldestMessage", 0, "{stage}"), "Maximum"),
            widget("Image events: behind the table (ms) and errors", [
                ["AWS/Lambda", "IteratorAge", "FunctionName", events_name, {"label": "behind", "stat": "Maximum"}],
                ["AWS/Lambda", "Errors", "FunctionName", events_name, {"label": "errors", "stat": "Sum"}]], "Maximum"),
        ]})

    return pulumi.Output.all(region, events_function, events_dlq, *names.values()).apply(render)
