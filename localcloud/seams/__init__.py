"""Where the local cloud reaches past Pulumi's and moto's public APIs, all in one place, with the versions it was
written for. tests/test_seams.py fails when requirements-dev.txt pins another version of either: read
pulumi_sdk.py or moto_server.py against the new one, then change WRITTEN_FOR with the pin.

Pulumi (the Python SDK): running a program under mocks outside `@pulumi.runtime.test` needs its private event
loop helpers (`_sync_await`, `run_pulumi_func`) and a fresh root stack per run; what the mock monitor was asked
(each resource's parent, dependencies and aliases) is read by subclassing `MockMonitor`.

moto (in the emulator's processes only): S3 events made to say what S3 says, SQS queues made safe to use
concurrently, DynamoDB results written out directly, and the backend lookup done once per host. Each patch says
what moto does and why it is not enough. One more, for in-process tests that write from several threads: DynamoDB's
conditional writes made atomic (the emulator serializes DynamoDB itself).
"""
from __future__ import annotations

WRITTEN_FOR = {"pulumi": "3.272.0", "moto": "5.2.5"}
