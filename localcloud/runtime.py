"""A Lambda execution environment for one function, in its own process.

Started as `python runtime.py CODE_DIR HANDLER`: imports the handler from the
function's unpacked archive (the archive's directory is first on sys.path, the
project directory is not on it at all), then answers invocations read from
stdin, one JSON line each, on a private pipe. The handler's own stdout (its
logs) goes to stderr, as Lambda sends it to CloudWatch Logs.

`LOCALCLOUD_FAULTS` (JSON) injects AWS errors from outside the handler, through
botocore's event hooks, so the code under test is the real, unchanged handler.
"""
from __future__ import annotations

import importlib
import json
import os
import random
import sys
import time
import traceback
import uuid
from dataclasses import dataclass, field
from typing import Any


@dataclass
class LambdaContext:
    """The attributes of Lambda's context object that handlers and Powertools read."""

    function_name: str
    memory_limit_in_mb: int = 128
    timeout_s: float = 30.0
    function_version: str = "$LATEST"
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    invoked_function_arn: str = ""
    _deadline: float = field(default=0.0, repr=False)

    def __post_init__(self) -> None:
        self._deadline = time.monotonic() + self.timeout_s
        self.invoked_function_arn = self.invoked_function_arn or (
            f"arn:aws:lambda:us-east-1:123456789012:function:{self.function_name}")
        self.log_group_name = f"/aws/lambda/{self.function_name}"
        self.log_stream_name = f"local/{self.aws_request_id}"

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


def _session() -> Any:
    import boto3

    if boto3.DEFAULT_SESSION is None:
        boto3.setup_default_session()
    return boto3.DEFAULT_SESSION


def install_faults(rules: list[dict[str, Any]]) -> None:
    """Make matching AWS calls fail: {"operation": "s3.GetObject", "match": {"Key": "poison"}, "code", "status", "rate"}."""
    from botocore.exceptions import ClientError

    session = _session()
    for rule in rules:
        service, operation = rule["operation"].split(".", 1)

        def fail(params: dict[str, Any], rule: dict[str, Any] = rule, operation: str = operation, **_: Any) -> None:
            matches = all(str(value) in str(params.get(name, "")) for name, value in rule.get("match", {}).items())
            if matches and random.random() < rule.get("rate", 1.0):
                raise ClientError({"Error": {"Code": rule.get("code", "InternalError"), "Message": "injected by the local cloud"},
                                   "ResponseMetadata": {"HTTPStatusCode": rule.get("status", 500)}}, operation)

        session.events.register(f"provide-client-params.{service}.{operation}", fail)


def main(code_dir: str, handler_path: str) -> None:
    protocol = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # the handler's prints and logs go to stderr
    sys.stdout = sys.stderr
    sys.path.insert(0, code_dir)
    faults = os.environ.get("LOCALCLOUD_FAULTS")
    if faults:
        install_faults(json.loads(faults))
    module_name, function_name = handler_path.rsplit(".", 1)
    handler = getattr(importlib.import_module(module_name), function_name)
    protocol.write(json.dumps({"ready": True}) + "\n")
    name = os.environ.get("AWS_LAMBDA_FUNCTION_NAME", module_name)
    memory = int(os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128"))
    for line in sys.stdin:
        request = json.loads(line)
        context = LambdaContext(function_name=name, memory_limit_in_mb=memory, timeout_s=request["timeout"])
        try:
            result = handler(request["event"], context)
            reply = {"ok": True, "result": result}
        except Exception as exc:
            traceback.print_exc()
            reply = {"ok": False, "error": f"{type(exc).__name__}: {exc}", "errorType": type(exc).__name__,
                     "errorMessage": str(exc)}
        protocol.write(json.dumps(reply, default=str) + "\n")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
