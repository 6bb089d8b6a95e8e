"""What every stage does with one SQS record: read the claim check, then hand it to the stage's work."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

from handlers import contracts, records
from handlers.observability import count, logger

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord


def for_claim_check(work: Callable[[contracts.ClaimCheck], None]) -> Callable[[SQSRecord], None]:
    """A record handler that parses the claim check (a malformed one is logged and dropped:
    no retry can fix it) and runs `work` with the image id in every log line."""

    def record_handler(record: SQSRecord) -> None:
        try:
            claim = contracts.ClaimCheck.from_json(record.body)
        except contracts.InvalidClaimCheck as exc:
            logger.error("not a claim check this stage understands; dropped", extra={"error": str(exc)})
            count("InvalidClaimChecks")
            return
        logger.append_keys(image_id=claim.image_id, key=claim.key)
        try:
            work(claim)
        finally:
            logger.remove_keys(["image_id", "key"])

    return record_handler


def pending_record(table_name: str, claim: contracts.ClaimCheck) -> dict[str, Any] | None:
    """The image record if it still waits for this claim check's work, else None (stale or settled)."""
    current = records.get(table_name, claim.image_id)
    if current is None or current.get("sequencer") != claim.sequencer or current.get("status") != records.ACCEPTED:
        logger.info("claim check is stale or already settled; nothing to do")
        count("SkippedClaimChecks")
        return None
    return current
