"""Lambda's SQS event source mapping, played locally (and its DynamoDB stream one: StreamPoller, at the end).

For each mapping the program declared, up to `maximumConcurrency` execution
environments (one process each, see runtime.py) take batches of up to
`batchSize` messages, gathered for up to `maximumBatchingWindowInSeconds`.
Messages are deleted only when the invocation succeeds and the message is not
in `batchItemFailures`; everything else becomes visible again when the
queue's visibility timeout ends, and the queue's own redrive policy moves it to
its DLQ after maxReceiveCount receives. An invocation that outlives the
function's timeout is killed, like Lambda does, and its batch is retried.

`Chaos` makes delivery as hostile as SQS is allowed to be, from outside the
handlers: a message delivered twice (as a second SQS message), a message held
back so later ones overtake it, an execution environment killed mid-batch.
"""
from __future__ import annotations

import json
import random
import selectors
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from localcloud import runtime as runtime_module
from localcloud.lambda_events import sqs_event, sqs_record, stream_record
from localcloud.seams import moto_server as seams

RUNTIME_SCRIPT = Path(runtime_module.__file__).resolve()
# Marks a copy made by Chaos, so a copy is not copied again.
DUPLICATE_MARK = "localcloud-duplicate"
INIT_TIMEOUT_S = 30.0
# Lambda's pollers long-poll (up to 20 s); 1 s here keeps stopping quick, and costs the emulator nothing while idle.
LONG_POLL_S = 1
# How often a paused poller looks whether its mapping is enabled again.
PAUSED_LOOK_S = 0.5


@dataclass(frozen=True)
class FunctionSpec:
    name: str  # the function's physical name
    handler: str
    code_dir: Path
    timeout: float
    memory: int
    environment: dict[str, str]


@dataclass(frozen=True)
class MappingSpec:
    queue_url: str
    queue_arn: str
    batch_size: int
    batching_window: float
    concurrency: int
    uuid: str = ""  # the event source mapping's, whose Enabled state (UpdateEventSourceMapping) pauses the poller


@dataclass(frozen=True)
class Chaos:
    """Per-delivery probabilities of what at-least-once, unordered delivery allows."""

    duplicate_rate: float = 0.0  # the message is sent again as a new SQS message
    delay_rate: float = 0.0  # the message is held back 1-3 s, so later messages overtake it
    kill_rate: float = 0.0  # the execution environment is killed while handling the batch
    seed: int | None = None


class FunctionTimeout(Exception):
    pass


class ExecutionEnvironment:
    """One warm process running one function."""

    def __init__(self, function: FunctionSpec, log: Any):
        self.function = function
        self.process = subprocess.Popen(
            [sys.executable, str(RUNTIME_SCRIPT), str(function.code_dir), function.handler],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, text=True, bufsize=1,
            env=function.environment, cwd=function.code_dir)
        assert self.process.stdin is not None and self.process.stdout is not None  # both are pipes
        self._requests, self._replies = self.process.stdin, self.process.stdout
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._replies, selectors.EVENT_READ)
        ready = self._read(INIT_TIMEOUT_S)
        if not ready.get("ready"):
            raise RuntimeError(f"{function.name} failed to start")

    def _read(self, timeout: float) -> dict[str, Any]:
        if not self._selector.select(timeout):
            raise FunctionTimeout(f"{self.function.name} did not answer within {timeout:.1f} s")
        line = self._replies.readline()
        if not line:
            raise RuntimeError(f"{self.function.name} exited (code {self.process.poll()})")
        return json.loads(line)

    def invoke(self, event: dict[str, Any], kill_after: float | None = None) -> dict[str, Any]:
        self._requests.write(json.dumps({"event": event, "timeout": self.function.timeout}) + "\n")
        self._requests.flush()
        if kill_after is not None:
            time.sleep(kill_after)
            self.process.kill()
            raise RuntimeError(f"{self.function.name} was killed mid-batch")
        return self._read(self.function.timeout)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        self._selector.close()
        for stream in (self._requests, self._replies):
            try:
                stream.close()
            except OSError:
                pass


@dataclass
class Poller:
    """Feeds one function from one queue until stopped."""

    function: FunctionSpec
    mapping: MappingSpec
    log_path: Path
    chaos: Chaos = field(default_factory=Chaos)
    stats: Counter = field(default_factory=Counter)
    # Whether the mapping is enabled now (Lambda stops polling a disabled mapping; its messages wait in the queue).
    enabled: Callable[[], bool] = field(default=lambda: True)
    # The local cloud's own credentials (this run's, from the emulator), for what it does beside the function.
    local_credentials: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        # Lambda's event source mapping reads the queue with the function's execution role, so the poller uses
        # the function's own credentials: a role that may not receive from its queue fails here, as on AWS.
        env = self.function.environment
        where = {"endpoint_url": env.get("AWS_ENDPOINT_URL"), "region_name": env.get("AWS_DEFAULT_REGION")}
        self._sqs = boto3.client("sqs", aws_access_key_id=env.get("AWS_ACCESS_KEY_ID"),
                                 aws_secret_access_key=env.get("AWS_SECRET_ACCESS_KEY"), aws_session_token=None, **where)
        # Duplicates are the local cloud's own doing, not the function's: sent with the local cloud's credentials.
        self._chaos_sqs = boto3.client("sqs", aws_access_key_id=self.local_credentials.get("AWS_ACCESS_KEY_ID"),
                                       aws_secret_access_key=self.local_credentials.get("AWS_SECRET_ACCESS_KEY"),
                                       aws_session_token=None, **where)
        self._lock = threading.Lock()
        self.busy = 0
        self.pids: list[int] = []  # every execution environment it started
        self._random = random.Random(self.chaos.seed)

    def start(self) -> None:
        for index in range(self.mapping.concurrency):
            thread = threading.Thread(target=self._run, name=f"poller-{self.function.name}-{index}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop_soon(self) -> None:
        """Tell its threads to stop without waiting for them (stop() waits): a local cloud tells every poller first,
        so their last long polls end together rather than one after another."""
        self._stop.set()

    def stop(self) -> None:
        self.stop_soon()
        for thread in self._threads:
            thread.join(timeout=self.function.timeout + 5)

    def _start_environment(self, log: Any) -> ExecutionEnvironment:
        environment = ExecutionEnvironment(self.function, log)
        self.pids.append(environment.process.pid)
        self._count("cold_starts")
        return environment

    def _run(self) -> None:
        environment: ExecutionEnvironment | None = None
        with open(self.log_path, "a", buffering=1) as log:
            try:
                # The first environment starts with the poller, as Lambda readies an environment before its first
                # invocation; its imports overlap the uploads instead of delaying the first batch.
                environment = self._start_environment(log)
                while not self._stop.is_set():
                    if not self.enabled():
                        self._stop.wait(PAUSED_LOOK_S)
                        continue
                    try:
                        messages = self._receive()
                    except (BotoCoreError, ClientError):
                        # The emulator is not thread-safe everywhere; Lambda's poller retries too.
                        self._count("poller_errors")
                        time.sleep(0.2)
                        continue
                    if not messages:
                        continue
                    if environment is None:
                        environment = self._start_environment(log)
                    with self._lock:
                        self.busy += 1
                    try:
                        environment = self._deliver(environment, messages)
                    except (BotoCoreError, ClientError):
                        # The messages were not deleted: they come back after their visibility timeout.
                        self._count("poller_errors")
                    finally:
                        with self._lock:
                            self.busy -= 1
            finally:
                if environment is not None:
                    environment.kill()

    def _count(self, name: str, n: int = 1) -> None:
        with self._lock:
            self.stats[name] += n

    def _receive(self) -> list[dict[str, Any]]:
        batch: list[dict[str, Any]] = []
        deadline: float | None = None
        while len(batch) < self.mapping.batch_size and not self._stop.is_set():
            # A long poll for the first message; then, within the batching window, whatever else is there.
            response = self._sqs.receive_message(
                QueueUrl=self.mapping.queue_url, MaxNumberOfMessages=min(10, self.mapping.batch_size - len(batch)),
                WaitTimeSeconds=0 if batch else LONG_POLL_S, AttributeNames=["All"], MessageAttributeNames=["All"])
            found = response.get("Messages", [])
            batch.extend(found)
            if not batch:
                break
            deadline = deadline or time.monotonic() + self.mapping.batching_window
            if time.monotonic() >= deadline or (not found and self.mapping.batching_window == 0):
                break
            if not found:
                self._stop.wait(0.05)
        return batch

    def _roll(self, rate: float) -> bool:
        with self._lock:
            return rate > 0 and self._random.random() < rate

    def _disturb(self, messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Apply Chaos on a message's first delivery (as producers do): duplicate some, hold some back.
        Returns what is delivered now."""
        delivered = []
        for message in messages:
            first = message.get("Attributes", {}).get("ApproximateReceiveCount", "1") == "1"
            attributes = message.get("MessageAttributes", {})
            if first and DUPLICATE_MARK not in attributes and self._roll(self.chaos.duplicate_rate):
                self._chaos_sqs.send_message(QueueUrl=self.mapping.queue_url, MessageBody=message["Body"], MessageAttributes={
                    **attributes, DUPLICATE_MARK: {"DataType": "String", "StringValue": "true"}})
                self._count("duplicated")
            if first and self._roll(self.chaos.delay_rate):
                self._chaos_sqs.change_message_visibility(QueueUrl=self.mapping.queue_url, ReceiptHandle=message["ReceiptHandle"],
                                                    VisibilityTimeout=self._random.randint(1, 3))
                self._count("delayed")
                continue
            delivered.append(message)
        return delivered

    def _deliver(self, environment: ExecutionEnvironment, messages: list[dict[str, Any]]) -> ExecutionEnvironment | None:
        messages = self._disturb(messages)
        if not messages:
            return environment
        records = [sqs_record(m["Body"], self.mapping.queue_arn, message_id=m["MessageId"],
                              receipt_handle=m["ReceiptHandle"], attributes=m.get("Attributes"),
                              message_attributes=m.get("MessageAttributes")) for m in messages]
        self._count("invocations")
        self._count("messages", len(messages))
        retries = sum(1 for m in messages if int(m.get("Attributes", {}).get("ApproximateReceiveCount", "1")) > 1)
        self._count("redeliveries", retries)
        kill_after = self._random.uniform(0, 0.05) if self._roll(self.chaos.kill_rate) else None
        try:
            reply = environment.invoke(sqs_event(records), kill_after=kill_after)
        except (FunctionTimeout, RuntimeError):
            # Like Lambda: the environment is discarded and the whole batch is retried.
            self._count("killed" if kill_after is not None else "timeouts")
            self._count("failed_deliveries", len(messages))
            environment.kill()
            return None
        if not reply.get("ok"):
            self._count("function_errors")
            self._count("failed_deliveries", len(messages))
            return environment
        failed = {item["itemIdentifier"] for item in (reply.get("result") or {}).get("batchItemFailures", [])}
        self._count("item_failures", len(failed))
        self._count("failed_deliveries", len(failed))
        done = [m for m in messages if m["MessageId"] not in failed]
        for start in range(0, len(done), 10):
            try:
                self._sqs.delete_message_batch(QueueUrl=self.mapping.queue_url, Entries=[
                    {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(done[start:start + 10])])
            except (BotoCoreError, ClientError):
                self._count("poller_errors")  # not deleted: redelivered later, which handlers must tolerate
        return environment


@dataclass(frozen=True)
class StreamMappingSpec:
    """An event source mapping on a DynamoDB stream, as the program declared it."""

    stream_arn: str
    batch_size: int
    batching_window: float
    filters: tuple[dict[str, Any], ...]  # FilterCriteria's patterns: a record passes when one matches
    bisect: bool
    max_retries: int
    on_failure_queue_url: str | None
    endpoint: str  # where the emulator serves DynamoDB (and its streams)
    uuid: str = ""
    # Where an earlier poller of this mapping stopped (a settings change restarts the functions): Lambda keeps a
    # mapping's position across function updates, so reading resumes after it instead of from the stream's start.
    resume_after: str | None = None


class StreamPoller:
    """Lambda's DynamoDB stream event source mapping, played locally, for one function and the table's one shard.

    From the stream's start (TRIM_HORIZON), records that pass the mapping's filters are handed to the function in
    batches of up to `batchSize`, in stream order, one batch at a time (a parallelization factor of 1); records no
    filter matches are dropped, as Lambda drops them. The function's `batchItemFailures` (sequence numbers) make the
    batch be retried from the first of them; a function error retries the batch, split in two when the mapping
    bisects. After `maximumRetryAttempts` retries the batch's description goes to the on-failure queue (sent with the
    function's own credentials, as Lambda sends it with the execution role) and the poller moves on. Like Lambda's, it
    reads the stream with the function's credentials: a role that may not read it fails here, as on AWS."""

    RETRY_PAUSE_S = 0.2
    IDLE_POLL_S = 0.25  # Lambda polls a stream's shards about four times a second

    def __init__(self, function: FunctionSpec, mapping: StreamMappingSpec, log_path: Path,
                 enabled: Callable[[], bool] = lambda: True) -> None:
        self.function, self.mapping, self.log_path, self.enabled = function, mapping, log_path, enabled
        self.stats: Counter = Counter()
        self.pids: list[int] = []
        self.busy = 0
        self.caught_up = False  # the last read found nothing new and nothing waits to be delivered
        self.reads = 0  # GetRecords answered so far: a read that began after a write has seen it
        self.checkpoint = mapping.resume_after  # the last record handled (delivered, given up on, or filtered out)
        env = function.environment
        credentials = {"aws_access_key_id": env.get("AWS_ACCESS_KEY_ID"), "aws_secret_access_key": env.get("AWS_SECRET_ACCESS_KEY"),
                       "aws_session_token": None, "region_name": env.get("AWS_DEFAULT_REGION")}
        self._streams = boto3.client("dynamodbstreams", endpoint_url=mapping.endpoint, **credentials)
        self._sqs = boto3.client("sqs", endpoint_url=env.get("AWS_ENDPOINT_URL"), **credentials)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"stream-poller-{function.name}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop_soon(self) -> None:
        self._stop.set()

    def stop(self) -> None:
        self.stop_soon()
        self._thread.join(timeout=self.function.timeout + 5)

    def _run(self) -> None:
        environment: ExecutionEnvironment | None = None
        with open(self.log_path, "a", buffering=1) as log:
            try:
                environment = ExecutionEnvironment(self.function, log)
                self.pids.append(environment.process.pid)
                iterator = self._iterator()
                pending: list[dict[str, Any]] = []
                first_seen = 0.0
                while not self._stop.is_set():
                    if not self.enabled():
                        self._stop.wait(PAUSED_LOOK_S)
                        continue
                    try:
                        answer = self._streams.get_records(ShardIterator=iterator)
                    except (BotoCoreError, ClientError):
                        self.stats["poller_errors"] += 1
                        self._stop.wait(self.IDLE_POLL_S)
                        continue
                    iterator = answer["NextShardIterator"]
                    self.reads += 1
                    fresh = [r for r in (stream_record(r, self.mapping.stream_arn) for r in answer.get("Records", []))
                             if self._passes(r)]
                    self.stats["filtered_out"] += len(answer.get("Records", [])) - len(fresh)
                    if answer.get("Records") and not fresh and not pending:  # all filtered out: handled
                        self.checkpoint = answer["Records"][-1]["dynamodb"]["SequenceNumber"]
                    if fresh and not pending:
                        first_seen = time.monotonic()
                    pending.extend(fresh)
                    waited = time.monotonic() - first_seen >= self.mapping.batching_window
                    if not pending or (len(pending) < self.mapping.batch_size and not waited):
                        self.caught_up = not pending
                        self._stop.wait(self.IDLE_POLL_S if not pending else 0.05)
                        continue
                    self.caught_up = False
                    batch, pending = pending[:self.mapping.batch_size], pending[self.mapping.batch_size:]
                    first_seen = time.monotonic()
                    self.busy = 1
                    try:
                        environment = self._deliver(environment, log, batch, retries=0)
                        if not self._stop.is_set():
                            self.checkpoint = batch[-1]["dynamodb"]["SequenceNumber"]
                    finally:
                        self.busy = 0
            finally:
                if environment is not None:
                    environment.kill()

    def _iterator(self) -> str:
        while True:
            try:
                description = self._streams.describe_stream(StreamArn=self.mapping.stream_arn)["StreamDescription"]
                shard = description["Shards"][0]["ShardId"]
                where = ({"ShardIteratorType": "AFTER_SEQUENCE_NUMBER", "SequenceNumber": self.checkpoint}
                         if self.checkpoint else {"ShardIteratorType": "TRIM_HORIZON"})
                return self._streams.get_shard_iterator(StreamArn=self.mapping.stream_arn, ShardId=shard,
                                                        **where)["ShardIterator"]
            except (BotoCoreError, ClientError):
                self.stats["poller_errors"] += 1
                if self._stop.wait(self.IDLE_POLL_S):
                    raise

    def _passes(self, record: dict[str, Any]) -> bool:
        if not self.mapping.filters:
            return True
        plain = json.loads(json.dumps(record, default=str))
        return any(seams.pattern_matches(pattern, plain) for pattern in self.mapping.filters)

    def _deliver(self, environment: ExecutionEnvironment, log: Any, batch: list[dict[str, Any]],
                 retries: int) -> ExecutionEnvironment:
        """Invoke on `batch` until it succeeds, is retried out (then the on-failure queue), or the poller stops."""
        while batch and not self._stop.is_set():
            self.stats["invocations"] += 1
            self.stats["records"] += len(batch)
            try:
                reply = environment.invoke({"Records": batch})
            except (FunctionTimeout, RuntimeError):
                self.stats["timeouts"] += 1
                environment.kill()
                environment = ExecutionEnvironment(self.function, log)
                self.pids.append(environment.process.pid)
                reply = {"ok": False}
            if reply.get("ok"):
                failed = {item.get("itemIdentifier") for item in (reply.get("result") or {}).get("batchItemFailures", [])}
                if not failed:
                    return environment
                self.stats["item_failures"] += len(failed)
                # Lambda checkpoints before the first reported record and retries from it.
                at = min((i for i, r in enumerate(batch) if r["dynamodb"]["SequenceNumber"] in failed), default=0)
                batch = batch[at:]
            else:
                self.stats["function_errors"] += 1
                if self.mapping.bisect and len(batch) > 1 and retries < self.mapping.max_retries:
                    half = len(batch) // 2
                    environment = self._deliver(environment, log, batch[:half], retries + 1)
                    batch, retries = batch[half:], retries  # the second half is retried below as a batch of its own
            if retries >= self.mapping.max_retries:
                self._give_up(batch)
                return environment
            retries += 1
            self._stop.wait(self.RETRY_PAUSE_S)
        return environment

    def _give_up(self, batch: list[dict[str, Any]]) -> None:
        """The batch's description to the on-failure queue, shaped as Lambda's for a stream (its DDBStreamBatchInfo)."""
        self.stats["dead_lettered_batches"] += 1
        if not self.mapping.on_failure_queue_url:
            return
        sequence = [r["dynamodb"]["SequenceNumber"] for r in batch]
        created = [r["dynamodb"].get("ApproximateCreationDateTime") for r in batch]
        description = {
            "version": "1.0", "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime()),
            "requestContext": {"functionArn": self.function.name, "condition": "RetryAttemptsExhausted",
                               "approximateInvokeCount": self.mapping.max_retries + 1},
            "DDBStreamBatchInfo": {"shardId": "local", "startSequenceNumber": sequence[0], "endSequenceNumber": sequence[-1],
                                   "approximateArrivalOfFirstRecord": created[0], "approximateArrivalOfLastRecord": created[-1],
                                   "batchSize": len(batch), "streamArn": self.mapping.stream_arn}}
        try:
            self._sqs.send_message(QueueUrl=self.mapping.on_failure_queue_url, MessageBody=json.dumps(description))
        except (BotoCoreError, ClientError):
            self.stats["poller_errors"] += 1
