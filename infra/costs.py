"""Dollars per million images, from durations and the configured memory and architecture: the one price table the
benchmark (`make bench`) and the capacity plan (`python -m ops … capacity`) both use."""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass

from handlers.stages import Configured

# us-east-1 list prices, USD, as published by AWS; checked 2026-11-23. Change them here, nowhere else.
PRICES_DATE = "2026-11-23"
LAMBDA_GB_SECOND: dict[str, float] = {"arm64": 0.0000133334, "x86_64": 0.0000166667}  # by architecture
PRICES: dict[str, float] = {
    "lambda_request": 0.20 / 1e6,
    "sqs_request": 0.40 / 1e6,  # standard queue; a batch of up to 10 counts as one request
    "sns_publish": 0.50 / 1e6,  # SNS to SQS deliveries are free
    "dynamodb_write": 0.625 / 1e6,  # on-demand write request unit
    "dynamodb_read": 0.125 / 1e6,  # on-demand read request unit (strongly consistent, <= 4 KB)
    "s3_put": 0.005 / 1000,  # PUT, COPY, POST, LIST
    "s3_get": 0.0004 / 1000,  # GET and all other requests
    "rekognition_image": 1.00 / 1000,  # DetectLabels, first million images a month
}
# The item of the cost table each priced request falls under.
ITEMS = {"sns_publish": "sns", "s3_get": "s3", "s3_put": "s3", "rekognition_image": "rekognition",
         "dynamodb_write": "dynamodb", "dynamodb_read": "dynamodb"}


@dataclass(frozen=True)
class StageCost:
    """What one image costs in one stage: its time at its memory, its batch size, and its priced requests."""

    seconds: float
    memory_mb: int
    batch_size: int
    priced: Mapping[str, float]  # requests per image, by PRICES key (or one of the stage's own prices)
    prices: Mapping[str, tuple[float, str]] = dataclasses.field(default_factory=dict)  # its own: key -> (USD, item)

    @classmethod
    def of(cls, configured: Configured, seconds: float) -> StageCost:
        model = configured.stage.capacity
        assert model is not None
        return cls(seconds, configured.sizing.memory, configured.sizing.batch_size, {
            **model.priced(configured), "dynamodb_write": model.record_writes, "dynamodb_read": model.record_reads},
            {key: (usd, item) for key, usd, item, _ in model.prices})

    def price(self, key: str) -> tuple[float, str]:
        """(USD per request, the cost table's item) of a priced request."""
        if key in self.prices:
            return self.prices[key]
        if key not in PRICES:
            raise KeyError(f"no price for {key!r}: add it to infra/costs.py's PRICES or to the stage's Capacity.prices")
        return PRICES[key], ITEMS[key]


def per_million(stages: list[StageCost], architecture: str) -> dict[str, float]:
    """Cost of one million accepted images going through `stages`, by item, in USD."""
    gb_s, n = LAMBDA_GB_SECOND[architecture], 1e6
    own = [item for stage in stages for _, item in stage.prices.values()]
    items = dict.fromkeys(["lambda_compute", "lambda_requests", "sqs", *dict.fromkeys([*ITEMS.values(), *own])], 0.0)
    for stage in stages:
        items["lambda_compute"] += n * stage.seconds * stage.memory_mb / 1024 * gb_s
        items["lambda_requests"] += n / stage.batch_size * PRICES["lambda_request"]
        # Per message and queue: one send, then receive and delete shared by a batch.
        items["sqs"] += n * (1 + 2 / stage.batch_size) * PRICES["sqs_request"]
        for key, count in stage.priced.items():
            usd, item = stage.price(key)
            items[item] += n * count * usd
    items["total"] = sum(items.values())
    return {k: round(v, 2) for k, v in items.items()}
