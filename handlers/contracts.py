"""The claim check: the only message that travels between stages.

A claim check is a small, versioned JSON reference to one S3 object event,
never the bytes. This module owns its schema, the image id, the rules for
comparing S3 sequencers and where an image's thumbnails live, so every stage
(and every tool) reads them the same way.
"""
from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any
from urllib.parse import quote

from handlers.names import THUMBNAILS_PREFIX, ClaimAttribute, ClaimEvent, Decision, GateState

CLAIM_CHECK_VERSION = 1
# S3 sequencers are hex strings of varying length; AWS says to pad the shorter
# one with zeros on the right and compare lexicographically. Storing them
# padded to one width lets DynamoDB compare them in condition expressions.
SEQUENCER_WIDTH = 32


def attributes(fmt: str | None, event: str, passed: bool = False, gate: str | None = None) -> dict[str, str]:
    """The message attributes a claim check is published with, which subscriptions filter on: its format ("none"
    for a removal), its event, and whether a gate stage must see it first (handlers/stages.py, gates): a creation or
    reprocess request is PENDING until a gate passes it; a removal never waits. `gate`: the state a gate that is not
    the last passes it on with."""
    waits = event != ClaimEvent.REMOVED and not passed
    return {ClaimAttribute.FORMAT: fmt or "none", ClaimAttribute.EVENT: event,
            ClaimAttribute.GATE: gate or (GateState.PENDING if waits else GateState.CLEAR)}


class InvalidClaimCheck(ValueError):
    """A message that is not a claim check this code understands (permanent)."""


def image_id(bucket: str, key: str) -> str:
    """Stable id of an image: the same bucket and key always give the same record."""
    return hashlib.sha256(f"{bucket}/{key}".encode()).hexdigest()[:32]


def thumbnail_prefix(image_id: str) -> str:
    """Where every thumbnail of an image lives: thumbnails/<image id>/<version>/<box>.<ext>."""
    return f"{THUMBNAILS_PREFIX}{image_id}/"


def version_tag(version_id: str | None, sequencer: str) -> str:
    """The <version> part of a thumbnail key: the object's version id (opaque; a new version never reuses an old
    one's, which an ETag, the content's MD5, would); for an unversioned object the event's sequencer, as opaque."""
    return (version_id or sequencer).replace("/", "_")


# The sequencer of a version S3 sent no event for (it was in the bucket before the pipeline; a backfill judges it):
# below every sequencer S3 or the event time gives, so any real event about the key orders after it.
BACKFILL_SEQUENCER = "0" * SEQUENCER_WIDTH


def normalize_sequencer(sequencer: str | None, event_time: str) -> str:
    """Return a sequencer that orders events on one key by string comparison.

    Real S3 always sends `sequencer`; when it is missing (some emulators) the
    event time stands in, which orders events to the millisecond.
    """
    if sequencer:
        value = sequencer.strip().upper()
        if not value or any(c not in "0123456789ABCDEF" for c in value) or len(value) > SEQUENCER_WIDTH:
            raise InvalidClaimCheck(f"sequencer {sequencer!r} is not a hex string of at most {SEQUENCER_WIDTH} digits")
        return value.ljust(SEQUENCER_WIDTH, "0")
    try:
        when = datetime.fromisoformat(event_time)  # "…Z" included (Python 3.11+)
    except (TypeError, ValueError) as exc:
        raise InvalidClaimCheck(f"event has neither a sequencer nor a valid eventTime ({event_time!r})") from exc
    if when.tzinfo is None:
        # S3 writes eventTime in UTC with its offset (…Z); a time without one would be read in the machine's zone.
        raise InvalidClaimCheck(f"event has no sequencer and its eventTime has no UTC offset ({event_time!r})")
    micros = int(when.timestamp() * 1_000_000)
    # A leading "T" keeps time-derived values apart from real hex sequencers.
    return ("T" + format(micros, "X").rjust(SEQUENCER_WIDTH - 1, "0"))


@dataclass(frozen=True)
class ClaimCheck:
    bucket: str
    key: str
    version_id: str | None
    etag: str | None
    size: int
    format: str | None
    sequencer: str
    event: str  # a ClaimEvent
    event_time: str
    v: int = CLAIM_CHECK_VERSION

    @property
    def image_id(self) -> str:
        return image_id(self.bucket, self.key)

    @property
    def thumbnail_prefix(self) -> str:
        """Where the thumbnails of exactly this version go."""
        return f"{thumbnail_prefix(self.image_id)}{version_tag(self.version_id, self.sequencer)}/"

    def object_version(self) -> dict[str, str]:
        """GetObject/HeadObject parameters for exactly the object version this event names: its VersionId in a
        versioned bucket; otherwise its ETag as If-Match, so S3 answers 412 if the key was overwritten since."""
        params = {"Bucket": self.bucket, "Key": self.key}
        if self.version_id:
            params["VersionId"] = self.version_id
        elif self.etag:
            params["IfMatch"] = f'"{self.etag}"'
        return params

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"), sort_keys=True)

    def message_attributes(self, passed: bool = False, gate: str | None = None) -> dict[str, dict[str, str]]:
        """Its `attributes` as SNS Publish takes them (`passed`: a gate stage passed it; `gate`: as what)."""
        return {name: {"DataType": "String", "StringValue": value}
                for name, value in attributes(self.format, self.event, passed, gate).items()}

    @classmethod
    def of_record(cls, record: Any, event: str) -> ClaimCheck:
        """The claim check an image record stands for (the one the intake published for it, with `event`)."""
        return cls(bucket=record["bucket"], key=record["key"], version_id=record.get("version_id"),
                   etag=record.get("etag"), size=int(record.get("size") or 0), format=record.get("format"),
                   sequencer=record["sequencer"], event=event, event_time=record.get("event_time", ""))

    @classmethod
    def from_json(cls, body: str) -> ClaimCheck:
        try:
            data: Any = json.loads(body)
        except (TypeError, ValueError) as exc:
            raise InvalidClaimCheck(f"message body is not JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise InvalidClaimCheck("message body is not a JSON object")
        if data.get("v") != CLAIM_CHECK_VERSION:
            raise InvalidClaimCheck(f"unsupported claim check version {data.get('v')!r} (expected {CLAIM_CHECK_VERSION})")
        expected = set(cls.__dataclass_fields__)
        if set(data) != expected:
            missing, extra = sorted(expected - set(data)), sorted(set(data) - expected)
            raise InvalidClaimCheck(f"claim check fields differ from v1: missing {missing}, unexpected {extra}")
        claim = cls(**data)
        if claim.event not in tuple(ClaimEvent):
            raise InvalidClaimCheck(f"unknown claim check event {claim.event!r}")
        if not isinstance(claim.bucket, str) or not isinstance(claim.key, str) or not claim.bucket or not claim.key:
            raise InvalidClaimCheck("claim check has no bucket or key")
        if not isinstance(claim.size, int) or claim.size < 0:
            raise InvalidClaimCheck(f"claim check size {claim.size!r} is not a byte count")
        if not isinstance(claim.sequencer, str) or len(claim.sequencer) != SEQUENCER_WIDTH:
            raise InvalidClaimCheck("claim check sequencer is not normalized")
        return claim


DECISION_REQUEST_VERSION = 1
DECISION_KIND = "decision"


@dataclass(frozen=True)
class DecisionRequest:
    """A person's decision on an image its gate held back, sent by `python -m ops review` to the gate's own queue.
    The gate checks it against the record (quarantined, by it, at this very version and sequencer) and carries it
    out with its role; operators hold no write on the table. `by` and `at` are what the sender states (the caller
    as STS names it, and the time): the record keeps them as the decision's author."""

    bucket: str
    key: str
    version_id: str
    sequencer: str
    decision: str  # a names.Decision
    by: str
    at: str
    v: int = DECISION_REQUEST_VERSION
    kind: str = DECISION_KIND

    @property
    def image_id(self) -> str:
        return image_id(self.bucket, self.key)

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"), sort_keys=True)

    @staticmethod
    def is_one(body: str) -> bool:
        """Whether a message on a gate's queue is a decision rather than a claim check (it says so itself)."""
        try:
            data: Any = json.loads(body)
        except (TypeError, ValueError):
            return False
        return isinstance(data, dict) and data.get("kind") == DECISION_KIND

    @classmethod
    def from_json(cls, body: str) -> DecisionRequest:
        data: Any = json.loads(body)
        expected = set(cls.__dataclass_fields__)
        if not isinstance(data, dict) or data.get("v") != DECISION_REQUEST_VERSION or set(data) != expected:
            raise InvalidClaimCheck(f"not a v{DECISION_REQUEST_VERSION} decision: {str(body)[:80]!r}")
        request = cls(**data)
        if request.decision not in tuple(Decision):
            raise InvalidClaimCheck(f"unknown decision {str(request.decision)[:40]!r}")
        texts = (request.bucket, request.key, request.version_id, request.sequencer, request.by, request.at)
        if not all(isinstance(text, str) and 0 < len(text) <= 2048 for text in texts):
            raise InvalidClaimCheck("a decision names a bucket, key, version, sequencer, author and time, each a string")
        return request


PURGE_REQUEST_VERSION = 1
# An image has at most ten sizes, and a clean-up may find two sets of settings' worth (and 1.x's keys).
MAX_PURGE_KEYS = 100
_PURGEABLE = re.compile(rf"{re.escape(THUMBNAILS_PREFIX)}[0-9a-f]{{32}}/[^\x00-\x20*?#\x7f]{{1,900}}")


class InvalidPurgeRequest(ValueError):
    """A message on the purge queue that is not a purge request this code understands (permanent)."""


@dataclass(frozen=True)
class PurgeRequest:
    """Thumbnail keys the thumbnail stage deleted (or is about to), for the CDN to forget. Only keys of the
    thumbnails prefix, each naming one object (no wildcard: CloudFront allows 3,000 file paths in progress per
    distribution against 15 wildcard ones, CloudFront Developer Guide, "Concurrent invalidation request maximum")."""

    keys: tuple[str, ...]
    v: int = PURGE_REQUEST_VERSION

    def to_json(self) -> str:
        return json.dumps({"v": self.v, "keys": list(self.keys)}, separators=(",", ":"))

    @classmethod
    def from_json(cls, body: str) -> PurgeRequest:
        try:
            data: Any = json.loads(body)
        except (TypeError, ValueError) as exc:
            raise InvalidPurgeRequest(f"message body is not JSON: {exc}") from exc
        if not isinstance(data, dict) or data.get("v") != PURGE_REQUEST_VERSION or set(data) != {"v", "keys"}:
            raise InvalidPurgeRequest(f"not a v{PURGE_REQUEST_VERSION} purge request: {str(body)[:80]!r}")
        keys = data["keys"]
        if not isinstance(keys, list) or not 1 <= len(keys) <= MAX_PURGE_KEYS:
            raise InvalidPurgeRequest(f"a purge request names 1 to {MAX_PURGE_KEYS} thumbnail keys")
        bad = [k for k in keys if not isinstance(k, str) or not _PURGEABLE.fullmatch(k)]
        if bad:
            raise InvalidPurgeRequest(f"not a thumbnail key: {str(bad[0])[:80]!r}")
        return cls(tuple(dict.fromkeys(keys)))

    @property
    def images(self) -> set[str]:
        """The thumbnail prefix of every image the request names."""
        return {key[: len(THUMBNAILS_PREFIX) + 33] for key in self.keys}


def invalidation_path(key: str) -> str:
    """The CloudFront path of a thumbnail key: the key as its URL carries it, with what RFC 1738 calls unsafe
    percent-encoded (CloudFront Developer Guide, "Specifying the files to invalidate")."""
    return "/" + quote(key, safe="/+=!$&'(),;:@")
