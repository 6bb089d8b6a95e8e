"""What Lambda hands a function: SQS batch events and a context object."""
from __future__ import annotations

import hashlib
import time
import uuid
from typing import Any

from localcloud.runtime import LambdaContext


def sqs_record(body: str, queue_arn: str, message_id: str | None = None, receipt_handle: str | None = None,
               attributes: dict[str, Any] | None = None, message_attributes: dict[str, Any] | None = None) -> dict[str, Any]:
    """One record of an SQS event, shaped as Lambda's event source mapping delivers it."""
    region = queue_arn.split(":")[3] if queue_arn.count(":") >= 5 else "us-east-1"
    return {
        "messageId": message_id or str(uuid.uuid4()),
        "receiptHandle": receipt_handle or uuid.uuid4().hex,
        "body": body,
        "attributes": {"ApproximateReceiveCount": "1", "SentTimestamp": str(int(time.time() * 1000)), **(attributes or {})},
        "messageAttributes": {
            name: {"stringValue": value.get("StringValue"), "dataType": value.get("DataType", "String"),
                   "stringListValues": [], "binaryListValues": []}
            for name, value in (message_attributes or {}).items()
        },
        "md5OfBody": hashlib.md5(body.encode()).hexdigest(),
        "eventSource": "aws:sqs",
        "eventSourceARN": queue_arn,
        "awsRegion": region,
    }


def sqs_event(records: list[dict[str, Any]]) -> dict[str, Any]:
    return {"Records": records}


def stream_record(record: dict[str, Any], stream_arn: str) -> dict[str, Any]:
    """One DynamoDB stream record (as GetRecords returns it) shaped as Lambda's event source mapping delivers it: with
    eventSourceARN, and ApproximateCreationDateTime in epoch seconds."""
    change = dict(record["dynamodb"])
    created = change.get("ApproximateCreationDateTime")
    if created is not None and hasattr(created, "timestamp"):
        change["ApproximateCreationDateTime"] = float(int(created.timestamp()))
    return {**{k: v for k, v in record.items() if k != "dynamodb"}, "dynamodb": change, "eventSourceARN": stream_arn}


__all__ = ["LambdaContext", "sqs_event", "sqs_record", "stream_record"]
