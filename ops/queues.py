"""The stages' queues and event source mappings: depth, dead letters, redrive, pause and resume."""
from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import unquote_plus

from handlers import stages
from handlers.names import METRICS_NAMESPACE, StackOutput, service_name
from handlers.pause import pause_request
from ops.target import Target

PEEK_ROUNDS = 10  # receives per DLQ when listing it (a message seen twice is counted once)


class OpsError(Exception):
    """Something the operator asked for cannot be done as asked; the message says why."""


@dataclass
class QueueState:
    stage: str
    waiting: int
    in_flight: int
    dead_letters: int
    oldest_seconds: float | None  # None: CloudWatch has no recent datapoint
    enabled: bool | None  # whether its event source mapping is enabled (None: unknown)


def _stages(target: Target, only: str | None) -> list[str]:
    stages = list(target.outputs[StackOutput.QUEUE_URLS])
    if only is not None and only not in stages:
        raise OpsError(f"there is no stage {only!r} in this stack (its stages: {', '.join(stages)})")
    return [only] if only else stages


def depth(target: Target, url: str) -> tuple[int, int]:
    attributes = target.client("sqs").get_queue_attributes(QueueUrl=url, AttributeNames=[
        "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"])["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"]), int(attributes["ApproximateNumberOfMessagesNotVisible"])


def states(target: Target) -> list[QueueState]:
    """Every stage's queue, DLQ, oldest message and mapping, now."""
    ages = oldest_ages(target)
    found = []
    for stage in _stages(target, None):
        waiting, flying = depth(target, target.outputs[StackOutput.QUEUE_URLS][stage])
        lettered = sum(depth(target, target.outputs[StackOutput.DEAD_LETTER_QUEUE_URLS][stage]))
        found.append(QueueState(stage, waiting, flying, lettered, ages.get(stage), mapping_enabled(target, stage)))
    return found


def _metric_queries(queries: Mapping[str, tuple[str, str, dict[str, str], str]], period: int) -> list[dict[str, Any]]:
    return [{"Id": query_id, "MetricStat": {"Metric": {"Namespace": namespace, "MetricName": metric,
                                                        "Dimensions": [{"Name": k, "Value": v} for k, v in dims.items()]},
                                             "Period": period, "Stat": stat}}
            for query_id, (namespace, metric, dims, stat) in queries.items()]


def _metric_values(target: Target, queries: Mapping[str, tuple[str, str, dict[str, str], str]], since: timedelta,
                   period: int) -> dict[str, list[float]]:
    now = datetime.now(UTC)
    answer = target.client("cloudwatch").get_metric_data(
        MetricDataQueries=_metric_queries(queries, period), StartTime=now - since, EndTime=now + timedelta(minutes=1))
    return {r["Id"]: list(r.get("Values", [])) for r in answer["MetricDataResults"]}


def oldest_ages(target: Target) -> dict[str, float]:
    """The age of the oldest message in each stage's queue over the last five minutes (SQS's own metric)."""
    names = {stage: url.rstrip("/").rsplit("/", 1)[-1] for stage, url in target.outputs[StackOutput.QUEUE_URLS].items()}
    queries = {f"q{i}": ("AWS/SQS", "ApproximateAgeOfOldestMessage", {"QueueName": name}, "Maximum")
               for i, name in enumerate(names.values())}
    values = _metric_values(target, queries, timedelta(minutes=5), 60)
    return {stage: max(values[f"q{i}"]) for i, stage in enumerate(names) if values.get(f"q{i}")}


def hourly(target: Target) -> list[tuple[str, str, str]]:
    """What the last hour's counts are made of, (words, function, metric): each of the stack's stages declares what it
    reports, in the order an upload meets them; a count two stages report (dropped claim checks) is their sum."""
    deployed = target.outputs.get(StackOutput.QUEUE_URLS) or {}
    return [(words, stage.name, metric) for stage in stages.declared() if not deployed or stage.name in deployed
            for words, metric in stage.reported]


def last_hour(target: Target) -> dict[str, int]:
    """What the handlers counted in the last hour (their EMF metrics)."""
    counted = hourly(target)
    queries = {f"m{i}": (METRICS_NAMESPACE, metric, {"service": service_name(function)}, "Sum")
               for i, (_, function, metric) in enumerate(counted)}
    values = _metric_values(target, queries, timedelta(hours=1), 3600)
    totals: dict[str, int] = {}
    for i, (words, _, _) in enumerate(counted):
        totals[words] = totals.get(words, 0) + int(sum(values.get(f"m{i}", [])))
    return totals


@dataclass
class DeadLetter:
    stage: str
    key: str | None
    version: str | None
    event: str  # what the message asked: an S3 event's name or a claim check's event
    receives: int
    first_sent: str


def _describe(body: str) -> tuple[str | None, str | None, str]:
    """(key, version, event) of a dead letter: an S3 event notification (the intake's) or a claim check."""
    try:
        data = json.loads(body)
    except ValueError:
        return None, None, "not JSON"
    if isinstance(data, dict) and isinstance(data.get("Records"), list) and data["Records"]:
        record = data["Records"][0]
        obj = record.get("s3", {}).get("object", {})
        return unquote_plus(obj.get("key", "")) or None, obj.get("versionId"), str(record.get("eventName", "S3 event"))
    if isinstance(data, dict) and "key" in data:
        return data.get("key"), data.get("version_id"), f"claim check: {data.get('event')}"
    return None, None, "unknown message"


def dead_letters(target: Target, only: str | None = None, limit: int = 100) -> list[DeadLetter]:
    """What each DLQ holds, decoded, left where it is (received with no visibility timeout, at most `limit` each)."""
    sqs = target.client("sqs")
    found = []
    for stage in _stages(target, only):
        url, seen = target.outputs[StackOutput.DEAD_LETTER_QUEUE_URLS][stage], set[str]()
        for _ in range(PEEK_ROUNDS):
            batch = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=0,
                                        AttributeNames=["All"]).get("Messages", [])
            fresh = [m for m in batch if m["MessageId"] not in seen]
            if not fresh or len(seen) >= limit:
                break
            for message in fresh[: limit - len(seen)]:
                seen.add(message["MessageId"])
                key, version, event = _describe(message["Body"])
                sent = int(message["Attributes"].get("SentTimestamp", "0")) / 1000
                found.append(DeadLetter(stage, key, version, event,
                                        int(message["Attributes"].get("ApproximateReceiveCount", "0")),
                                        datetime.fromtimestamp(sent, UTC).isoformat(timespec="seconds")))
    return found


@dataclass
class Redrive:
    stage: str
    waiting: int  # in its DLQ when asked
    moved: int = 0
    status: str = "not started"  # SQS's task status: RUNNING, COMPLETED, CANCELLED, FAILED


def redrive(target: Target, only: str | None = None, dry_run: bool = False, rate: int | None = None,
            wait_seconds: float = 300.0) -> list[Redrive]:
    """Move every dead letter back to its stage's queue with SQS's own DLQ redrive (StartMessageMoveTask), naming the
    stage's queue as the destination, and wait for each task to finish."""
    sqs = target.client("sqs")
    moves = []
    for stage in _stages(target, only):
        waiting = sum(depth(target, target.outputs[StackOutput.DEAD_LETTER_QUEUE_URLS][stage]))
        if not waiting:
            continue
        move = Redrive(stage, waiting)
        moves.append(move)
        if dry_run:
            continue
        sqs.start_message_move_task(SourceArn=target.outputs[StackOutput.DEAD_LETTER_QUEUE_ARNS][stage],
                                    DestinationArn=target.outputs[StackOutput.QUEUE_ARNS][stage],
                                    **({"MaxNumberOfMessagesPerSecond": rate} if rate else {}))
    deadline = time.monotonic() + wait_seconds
    for move in moves if not dry_run else []:
        while True:
            [task] = sqs.list_message_move_tasks(SourceArn=target.outputs[StackOutput.DEAD_LETTER_QUEUE_ARNS][move.stage],
                                                 MaxResults=1)["Results"]
            move.moved, move.status = int(task.get("ApproximateNumberOfMessagesMoved", 0)), task["Status"]
            if move.status != "RUNNING" or time.monotonic() > deadline:
                break
            time.sleep(1.0)
    return moves


def _mapping(target: Target, stage: str) -> str:
    mappings = target.outputs[StackOutput.EVENT_SOURCE_MAPPINGS]
    if stage not in mappings:
        raise OpsError(f"there is no stage {stage!r} in this stack (its stages: {', '.join(mappings)})")
    return mappings[stage]


def mapping_enabled(target: Target, stage: str) -> bool:
    state = target.client("lambda").get_event_source_mapping(UUID=_mapping(target, stage))["State"]
    return state in ("Enabled", "Enabling")


def set_enabled(target: Target, stage: str, enabled: bool, wait_seconds: float = 120.0) -> str:
    """Have the stack's pause function enable or disable the stage's event source mapping (operators may invoke it,
    never update a mapping themselves: handlers/pause.py says why) and wait until Lambda says it is (a disabled
    mapping takes nothing from the queue; its messages wait there, their retention counting)."""
    lam = target.client("lambda")
    uuid = _mapping(target, stage)
    answer = lam.invoke(FunctionName=target.outputs[StackOutput.PAUSE_FUNCTION_NAME],
                        Payload=json.dumps(pause_request(stage, enabled)).encode())
    reply = json.loads(answer["Payload"].read() or b"null")
    if answer.get("FunctionError"):
        message = reply.get("errorMessage") if isinstance(reply, dict) else None
        raise OpsError(f"the pause function refused: {message or reply}")
    wanted = "Enabled" if enabled else "Disabled"
    deadline = time.monotonic() + wait_seconds
    state = ""
    while time.monotonic() < deadline:
        state = lam.get_event_source_mapping(UUID=uuid)["State"]
        if state == wanted:
            break
        time.sleep(2.0)
    return state
