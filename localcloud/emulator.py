"""The AWS emulator: moto's server, in this process, on a free loopback port.

moto's S3 notifications leave out `sequencer` and `versionId`, which real S3
sends and the handlers rely on for ordering and exact-version reads; the
emulator adds them here (a monotonic sequencer, the object's version), so the
handlers run unchanged against behaviour that matches AWS.
"""
from __future__ import annotations

import itertools
import logging
import os
import threading
from typing import Any

from moto.s3 import notifications
from moto.server import ThreadedMotoServer

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
    return event


class Emulator:
    """moto server on 127.0.0.1; `endpoint` is what AWS_ENDPOINT_URL should say."""

    def __init__(self) -> None:
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self.endpoint = ""

    def start(self) -> Emulator:
        notifications._get_s3_event = _event_like_s3
        # AWS's managed policies (AWSXRayDaemonWriteAccess) exist in every account; moto loads them on request.
        os.environ["MOTO_IAM_LOAD_MANAGED_POLICIES"] = "true"
        logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no line per emulated request
        self._server.start()
        host, port = self._server.get_host_and_port()
        self.endpoint = f"http://{host}:{port}"
        return self

    def stop(self) -> None:
        self._server.stop()
        notifications._get_s3_event = _original_event

    def environment(self) -> dict[str, str]:
        """What a client (a handler, the AWS CLI, boto3) needs to reach the emulator."""
        return {**FAKE_CREDENTIALS, "AWS_ENDPOINT_URL": self.endpoint}

    def apply_to_process(self) -> None:
        os.environ.update(self.environment())
        os.environ.pop("AWS_PROFILE", None)
