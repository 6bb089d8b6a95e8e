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


def is_pending(current: dict[str, Any] | None, claim: contracts.ClaimCheck) -> bool:
    """Whether the image record still waits for this claim check's work (not stale, not settled)."""
    if current is None or current.get("sequencer") != claim.sequencer or current.get("status") != records.ACCEPTED:
        logger.info("claim check is stale or already settled; nothing to do")
        count("SkippedClaimChecks")
        return False
    return True
