"""The AWS emulator: moto's server, in this process, on a free loopback port.

moto's S3 notifications leave out `sequencer` and `versionId`, which real S3
sends and the handlers rely on for ordering and exact-version reads, and send
nothing when a delete in a versioned bucket creates a delete marker (S3 sends
s3:ObjectRemoved:DeleteMarkerCreated). The emulator adds these here, so the
handlers run unchanged against behaviour that matches AWS.
"""
from __future__ import annotations

import itertools
import logging
import os
import threading
import urllib.request
from types import SimpleNamespace
from typing import Any

from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
from moto.s3 import notifications
from moto.s3.models import S3Backend
from werkzeug.serving import make_server

REGION = "us-east-1"
FAKE_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "localcloud", "AWS_SECRET_ACCESS_KEY": "localcloud",
                    "AWS_SESSION_TOKEN": "localcloud", "AWS_DEFAULT_REGION": REGION, "AWS_REGION": REGION}

_sequence = itertools.count(1)
_sequence_lock = threading.Lock()
_original_event = notifications._get_s3_event


def _event_like_s3(event_name: str, bucket: Any, key: Any, notification_id: str) -> dict[str, Any]:
    event = _original_event(event_name, bucket, key, notification_id)
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


_original_set_delete_marker = S3Backend._set_delete_marker


def _set_delete_marker_and_notify(self: S3Backend, bucket_name: str, key_name: str) -> Any:
    marker = _original_set_delete_marker(self, bucket_name, key_name)
    removed = SimpleNamespace(name=key_name, etag="", size=0, version_id=marker.version_id)
    notifications.send_event(self.account_id, notifications.S3NotificationEvent.OBJECT_REMOVED_DELETE_MARKER_CREATED_EVENT,
                             self.get_bucket(bucket_name), removed)
    return marker


class _OneRequestAtATime:
    """moto's backends are not thread-safe: an SQS receive racing a send (an S3 notification) can drop
    the message. The emulator answers one request at a time, which one Python process does anyway."""

    def __init__(self, app: Any) -> None:
        self._app = app
        self._lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Any) -> list[bytes]:
        with self._lock:
            return list(self._app(environ, start_response))


class Emulator:
    """moto's server on 127.0.0.1, in this process; `endpoint` is what AWS_ENDPOINT_URL should say.

    Requests are served one at a time (see _OneRequestAtATime), so clients must not long-poll:
    the pollers use short receives."""

    def __init__(self, port: int = 0) -> None:
        self._port = port  # 0 asks the OS for a free one
        self._server: Any = None
        self._thread: threading.Thread | None = None
        self.endpoint = ""
        self._saved_managed_policies: str | None = None

    def start(self) -> Emulator:
        notifications._get_s3_event = _event_like_s3
        S3Backend._set_delete_marker = _set_delete_marker_and_notify
        # AWS's managed policies (AWSXRayDaemonWriteAccess) exist in every account; moto loads them on request.
        self._saved_managed_policies = os.environ.get("MOTO_IAM_LOAD_MANAGED_POLICIES")
        os.environ["MOTO_IAM_LOAD_MANAGED_POLICIES"] = "true"
        logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no line per emulated request
        app = _OneRequestAtATime(DomainDispatcherApplication(create_backend_app))
        # Loopback only, never 0.0.0.0.
        self._server = make_server("127.0.0.1", self._port, app, threaded=True, request_handler=MotoRequestHandler)
        self._thread = threading.Thread(target=self._server.serve_forever, name="emulator", daemon=True)
        self._thread.start()
        host, port = self._server.server_address[:2]
        self.endpoint = f"http://{host}:{port}"
        self.reset()  # moto keeps its state per process: every local cloud starts empty
        return self

    def reset(self) -> None:
        urllib.request.urlopen(urllib.request.Request(f"{self.endpoint}/moto-api/reset", method="POST"), timeout=10).close()

    def stop(self) -> None:
        self.reset()
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join()
        notifications._get_s3_event = _original_event
        S3Backend._set_delete_marker = _original_set_delete_marker
        if self._saved_managed_policies is None:
            os.environ.pop("MOTO_IAM_LOAD_MANAGED_POLICIES", None)
        else:
            os.environ["MOTO_IAM_LOAD_MANAGED_POLICIES"] = self._saved_managed_policies

    def environment(self) -> dict[str, str]:
        """What a client (a handler, the AWS CLI, boto3) needs to reach the emulator."""
        return {**FAKE_CREDENTIALS, "AWS_ENDPOINT_URL": self.endpoint}
