"""Dollars per million images, from durations and the configured memory and architecture: the one price table the
benchmark (`make bench`) and the capacity plan (`python -m ops … capacity`) both use."""
from __future__ import annotations

from handlers.names import Function

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
# Durations not measured by the benchmark (they are dominated by network calls, not by this code).
ASSUMED_MS: dict[str, float] = {Function.INTAKE: 40.0, Function.LABELS: 300.0}


def per_million(thumbnail_ms: float, memory_mb: dict[str, int], architecture: str, sizes: int,
                batch_size: dict[str, int], labelled_share: float = 1.0) -> dict[str, float]:
    """Cost of one million accepted images, by item, in USD."""
    gb_s = LAMBDA_GB_SECOND[architecture]
    durations: dict[str, float] = {**ASSUMED_MS, Function.THUMBNAILS: thumbnail_ms}
    share: dict[str, float] = {Function.INTAKE: 1.0, Function.THUMBNAILS: 1.0, Function.LABELS: labelled_share}
    n = 1e6
    lambda_compute = sum(share[f] * n * durations[f] / 1000 * memory_mb[f] / 1024 * gb_s for f in durations)
    invocations = sum(share[f] * n / batch_size[f] for f in durations)
    # Per message and queue: one send, then receive and delete shared by a batch.
    sqs = sum(share[f] * n * (1 + 2 / batch_size[f]) for f in durations)
    items = {
        "lambda_compute": lambda_compute,
        "lambda_requests": invocations * PRICES["lambda_request"],
        "sqs": sqs * PRICES["sqs_request"],
        "sns": n * PRICES["sns_publish"],
        # intake: 1 write; each stage: 1 consistent read, 2 writes (its result, then the settled status at most)
        "dynamodb": n * (1 + 2 + 2 * labelled_share) * PRICES["dynamodb_write"] + n * (1 + labelled_share) * PRICES["dynamodb_read"],
        # intake: ranged GET; thumbnails: GET, one PUT per size, one LIST; Rekognition's own GET is not billed to you
        "s3": n * (2 * PRICES["s3_get"] + (sizes + 1) * PRICES["s3_put"]),
        "rekognition": n * labelled_share * PRICES["rekognition_image"],
    }
    items["total"] = sum(items.values())
    return {k: round(v, 2) for k, v in items.items()}
