"""AWS clients, made once per execution environment.

Clients are created on first use rather than at import so that importing a
handler costs nothing and tests can start their emulator first.
`AWS_ENDPOINT_URL` (set by the local cloud) is honoured by boto3 itself.
"""
from __future__ import annotations

from functools import cache
from time import monotonic, sleep

import boto3
from botocore.config import Config

# Standard retry mode backs off on throttling inside the invocation; what still
# fails is reported as a batch item failure and retried by SQS.
_CONFIG = Config(retries={"mode": "standard", "max_attempts": 3}, connect_timeout=5, read_timeout=20)


@cache
def client(service: str):
    return boto3.client(service, config=_CONFIG)


@cache
def table(name: str):
    return boto3.resource("dynamodb", config=_CONFIG).Table(name)


@cache
def s3_presigner():
    """An S3 client for presigning: SigV4 (S3 refuses SigV2 on buckets created since June 2020, and botocore still
    signs presigned POSTs with SigV2 in older regions unless told), against the bucket's regional virtual-hosted
    endpoint (us-east-1 included: the global one is legacy). With AWS_ENDPOINT_URL on an IP address (an emulator)
    botocore falls back to path style by itself."""
    return boto3.client("s3", config=Config(signature_version="s3v4", s3={
        "addressing_style": "virtual", "us_east_1_regional_endpoint": "regional"}))


class Pace:
    """At most `rate` calls a second from this execution environment (its share of a service's quota, which is per
    account and Region): each call waits for its turn, so a burst waits in the queue instead of being throttled."""

    def __init__(self) -> None:
        self._next = 0.0

    def wait(self, rate: float) -> None:
        if rate <= 0:
            return
        now = monotonic()
        if self._next > now:
            sleep(self._next - now)
        self._next = max(now, self._next) + 1 / rate


def reset() -> None:
    """Forget cached clients (tests that start a fresh emulator call this)."""
    client.cache_clear()
    table.cache_clear()
    s3_presigner.cache_clear()
