"""moto, past its public API (in the emulator's processes only): S3 events made to say what S3 says, SQS queues made
safe to use concurrently, DynamoDB results written out directly (and, for in-process tests, its conditional writes
made atomic), the backend lookup done once per host, and what the emulator reads of moto's own state. Each patch
says what moto does and why it is not enough. Written for the version in localcloud.seams.WRITTEN_FOR."""
from __future__ import annotations

import itertools
import json
import threading
import time
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

_sequence = itertools.count(1)
_sequence_lock = threading.Lock()
_quiet = threading.local()


def make_moto_strict() -> None:
    """Install every moto patch below (in an emulator process, before it serves)."""
    from functools import cache

    from moto import backends
    from moto.moto_server import werkzeug_app
    from moto.s3 import notifications
    from moto.s3.models import S3Backend
    from moto.sqs.models import Queue, SQSBackend

    original_event = notifications._get_s3_event
    original_send = notifications.send_event

    def event_like_s3(event_name: str, bucket: Any, key: Any, notification_id: str) -> dict[str, Any]:
        event = original_event(event_name, bucket, key, notification_id)
        obj = event["Records"][0]["s3"]["object"]
        with _sequence_lock:
            obj["sequencer"] = format(next(_sequence), "016X")
        version = getattr(key, "version_id", None)
        if version and version != "null":
            obj["versionId"] = version
        if event_name.startswith("s3:ObjectRemoved"):
            obj.pop("size", None)  # S3 describes a removal by key, version and sequencer only
            obj.pop("eTag", None)
        return event

    def send_unless_quiet(account_id: str, event_name: Any, bucket: Any, key: Any) -> None:
        if getattr(_quiet, "removals", False) and str(event_name).startswith("s3:ObjectRemoved"):
            return
        original_send(account_id, event_name, bucket, key)

    notifications._get_s3_event = event_like_s3
    notifications.send_event = send_unless_quiet
    removed_event = notifications.S3NotificationEvent.OBJECT_REMOVED_DELETE_EVENT
    marker_event = notifications.S3NotificationEvent.OBJECT_REMOVED_DELETE_MARKER_CREATED_EVENT

    original_marker = S3Backend._set_delete_marker

    def set_delete_marker_and_notify(self: S3Backend, bucket_name: str, key_name: str) -> Any:
        marker = original_marker(self, bucket_name, key_name)
        removed = SimpleNamespace(name=key_name, etag="", size=0, version_id=marker.version_id)
        original_send(self.account_id, marker_event, self.get_bucket(bucket_name), removed)
        return marker

    original_delete = S3Backend.delete_object

    def delete_object_and_notify(self: S3Backend, bucket_name: str, key_name: str, version_id: str | None = None,
                                 bypass: bool = False) -> Any:
        bucket = self.get_bucket(bucket_name)
        if not bucket.is_versioned or version_id is None:
            return original_delete(self, bucket_name, key_name, version_id, bypass)
        existed = any(str(k.version_id) == str(version_id) for k in bucket.keys.getlist(key_name, []))
        _quiet.removals = True
        try:
            result = original_delete(self, bucket_name, key_name, version_id, bypass)
        finally:
            _quiet.removals = False
        if existed:
            removed = SimpleNamespace(name=key_name, etag="", size=0, version_id=version_id)
            original_send(self.account_id, removed_event, bucket, removed)
        return result

    S3Backend._set_delete_marker = set_delete_marker_and_notify
    S3Backend.delete_object = delete_object_and_notify

    def under_queue_lock(method: Callable[..., Any]) -> Callable[..., Any]:
        def locked(self: SQSBackend, queue_name: str, *args: Any, **kwargs: Any) -> Any:
            queue = self.get_queue(queue_name)
            with queue._messages_lock:  # an RLock-based Condition: a long poll's wait releases it
                return method(self, queue_name, *args, **kwargs)
        return locked

    SQSBackend.receive_message = under_queue_lock(SQSBackend.receive_message)
    SQSBackend.change_message_visibility = under_queue_lock(SQSBackend.change_message_visibility)
    original_queue_delete = Queue.delete_message

    def delete_locked(self: Queue, receipt_handle: str) -> None:
        with self._messages_lock:
            original_queue_delete(self, receipt_handle)

    Queue.delete_message = delete_locked

    # moto serializes every response (and parses every request) generically, walking botocore's shapes: about 8 ms
    # per DynamoDB call, more than the call itself. DynamoDB's wire format is the JSON the backend already holds,
    # so its plain results are written out directly (anything else, errors included, goes moto's way).
    from moto.core.responses import ActionResult
    from moto.dynamodb.responses import DynamoHandler, DynamoResult

    original_serialized = DynamoHandler.serialized
    item_operations = {"GetItem", "UpdateItem", "PutItem", "DeleteItem", "Query", "Scan"}

    def serialized_directly(self: DynamoHandler, action_result: ActionResult) -> Any:
        result = action_result.result
        if (type(action_result) in (ActionResult, DynamoResult) and isinstance(result, dict)
                and self._get_action() in item_operations):
            try:
                body = json.dumps(result)
            except TypeError:
                return original_serialized(self, action_result)
            return 200, {**self.response_headers, "Content-Type": "application/x-amz-json-1.0"}, body
        return original_serialized(self, action_result)

    DynamoHandler.serialized = serialized_directly

    # moto finds the backend for every request by listing its own package directory and trying every service's
    # URL patterns, all under one lock: the same host always gives the same backend, so it is looked up once.
    modules = tuple(backends.list_of_moto_modules())
    werkzeug_app.backends.list_of_moto_modules = lambda: modules
    werkzeug_app.DomainDispatcherApplication.get_backend_for_host = cache(
        werkzeug_app.DomainDispatcherApplication.get_backend_for_host)



_dynamodb_writes = threading.RLock()


def make_dynamodb_writes_atomic() -> None:
    """For in-process tests that write from several threads (mock_aws): DynamoDB applies a conditional write only
    if its condition holds for the item it changes (DynamoDB API Reference, UpdateItem, ConditionExpression), but
    moto reads the item, parses the condition, checks it and writes in separate steps with no lock, so concurrent
    writers can all pass a condition only some of them should (20 threads against an upload quota of 5 all got a
    grant). Each item write and transaction runs under one lock here. The local cloud's
    emulator serializes its DynamoDB calls itself (localcloud/emulator.py). Safe to call more than once."""
    from moto.dynamodb.models import DynamoDBBackend

    for name in ("put_item", "update_item", "delete_item", "transact_write_items"):
        method = getattr(DynamoDBBackend, name)
        if getattr(method, "_atomic", False):
            continue

        def atomic(self: DynamoDBBackend, *args: Any, _method: Callable[..., Any] = method, **kwargs: Any) -> Any:
            with _dynamodb_writes:
                return _method(self, *args, **kwargs)

        atomic._atomic = True  # type: ignore[attr-defined]
        setattr(DynamoDBBackend, name, atomic)


def _sqs(account: str, region: str) -> Any:
    from moto.sqs.models import sqs_backends

    return sqs_backends[account][region]


def queue_depths(account: str, region: str) -> dict[str, tuple[int, int]]:
    """(waiting, in flight) of every queue, by name, from moto's SQS backend itself."""
    return {name: (q.approximate_number_of_messages, q.approximate_number_of_messages_not_visible)
            for name, q in list(_sqs(account, region).queues.items())}


def oldest_ages(account: str, region: str) -> dict[str, float]:
    """Seconds since the oldest message still in each queue was sent (what SQS reports to CloudWatch as
    ApproximateAgeOfOldestMessage), by queue name; 0 for an empty queue."""
    now_ms = time.time() * 1000
    ages = {}
    for name, queue in list(_sqs(account, region).queues.items()):
        with queue._messages_lock:
            sent = [int(m.sent_timestamp) for m in queue._messages]
        ages[name] = round((now_ms - min(sent)) / 1000, 1) if sent else 0.0
    return ages


def queue_names(account: str, region: str) -> set[str]:
    return set(_sqs(account, region).queues)


def dead_letter_sources(account: str, region: str, dlq_arn: str) -> list[str]:
    """The queues whose redrive policy sends to `dlq_arn` (what ListDeadLetterSourceQueues answers)."""
    found = []
    for name, queue in list(_sqs(account, region).queues.items()):
        policy = queue.redrive_policy if isinstance(queue.redrive_policy, dict) else json.loads(queue.redrive_policy or "{}")
        if policy.get("deadLetterTargetArn") == dlq_arn:
            found.append(name)
    return sorted(found)


def move_messages(account: str, region: str, source: str, destination: str, count: int) -> int:
    """Move up to `count` messages from `source` to `destination`, each sent as a new message with its body and
    attributes, then deleted from `source`; the number moved."""
    backend = _sqs(account, region)
    messages = backend.receive_message(source, count, 0, 30, message_attribute_names=["All"])
    for message in messages:
        backend.send_message(destination, message.body, message_attributes=message.message_attributes or None)
        backend.delete_message(source, message.receipt_handle)
    return len(messages)


def _s3_object(account: str, bucket: str, key: str, version_id: str | None) -> Any:
    from moto.s3.exceptions import MissingBucket
    from moto.s3.models import s3_backends

    try:
        return s3_backends[account]["aws"].get_object(bucket, key, version_id or None)
    except MissingBucket:
        return None


def object_bytes(account: str, bucket: str, key: str, version_id: str | None) -> bytes | None:
    """The bytes of one object version, from moto's S3 backend (None: no such object or version)."""
    found = _s3_object(account, bucket, key, version_id)
    return None if found is None else bytes(found.value)


def object_tags(account: str, bucket: str, key: str, version_id: str | None) -> dict[str, str]:
    """The tags of one object version ({} when it has none, or is not there)."""
    from moto.s3.models import s3_backends

    found = _s3_object(account, bucket, key, version_id)
    return {} if found is None else dict(s3_backends[account]["aws"].tagger.get_tag_dict_for_resource(found.arn))


def moto_app() -> tuple[Any, Any]:
    """(the WSGI application serving every moto backend, the request handler it expects)."""
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app

    return DomainDispatcherApplication(create_backend_app), MotoRequestHandler


def pattern_matches(pattern: dict[str, Any], event: dict[str, Any]) -> bool:
    """Whether `event` matches an EventBridge-style pattern, by moto's own matcher (what its EventBridge rules use):
    Lambda's event filtering takes the same pattern syntax (Lambda Developer Guide, "Control which events Lambda sends
    to your function"), and moto runs no event source mapping filter of its own for the local cloud to reuse."""
    from moto.events.models import EventPattern

    return bool(EventPattern(None, pattern).matches_event(event))  # type: ignore[arg-type]  # any JSON object
