"""Lambda's SQS event source mapping, played locally.

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
from localcloud.lambda_events import sqs_event, sqs_record

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

    def stop(self) -> None:
        self._stop.set()
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
