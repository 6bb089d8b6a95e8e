"""AWS control-plane APIs the operator tools call that moto does not serve the way the local cloud needs, served by
the emulator itself (in its process) from the same requests a deployed stack would get:

  Lambda   GetEventSourceMapping, UpdateEventSourceMapping (Enabled), ListEventSourceMappings, for the mappings the
           program declared; the local cloud's pollers read whether each is enabled, and pause while it is not.
           (moto runs event source mappings only by invoking functions in Docker.) Invoke, handed to the local
           cloud's process that runs the functions (moto would run them in Docker too).
  CloudFront  CreateInvalidation, GetInvalidation, ListInvalidations for the declared distributions, with CloudFront's
           in-progress limits (class Invalidations).
  SQS      StartMessageMoveTask, ListMessageMoveTasks, CancelMessageMoveTask: a DLQ redrive, moving messages to the
           queue given or to the queue whose redrive policy names the DLQ, oldest first, at most
           MaxNumberOfMessagesPerSecond, each as a new message (SQS Developer Guide, "Configuring a dead-letter
           queue redrive"). moto 5.2.5 has none of the three.

Each answers in the service's own shape (Lambda's REST JSON, SQS's JSON protocol, CloudFront's REST XML), errors
included.
"""
from __future__ import annotations

import base64
import json
import re
import threading
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from typing import Any
from xml.sax.saxutils import escape, unescape

from localcloud.authorizer import INVOKE_PATH
from localcloud.authorizer import MAPPING_PATH as MAPPINGS_PATH
from localcloud.seams import moto_server

# Like Lambda, an update answers Disabling (or Enabling) and finishes a little later: long enough for every poller,
# which looks at most once a second and long-polls for a second, to have stopped taking messages by then.
TRANSITION_S = 2.5
MOVE_OPERATIONS = ("StartMessageMoveTask", "ListMessageMoveTasks", "CancelMessageMoveTask")


class ControlError(Exception):
    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


class EventSourceMappings:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._mappings: dict[str, dict[str, Any]] = {}

    def configure(self, mappings: list[dict[str, Any]]) -> None:
        """The program's mappings ({UUID, FunctionArn, EventSourceArn, BatchSize, ...}); a redeploy keeps each one's
        enabled state, as an update of the stack does."""
        with self._lock:
            self._mappings = {m["UUID"]: {**m, "State": self._mappings.get(m["UUID"], {}).get("State", "Enabled")}
                              for m in mappings}

    def functions(self) -> dict[str, str]:
        """The function each mapping feeds, by UUID: what IAM's lambda:FunctionArn holds for an update of it."""
        with self._lock:
            return {uid: m["FunctionArn"] for uid, m in self._mappings.items()}

    def enabled(self) -> dict[str, bool]:
        """Whether each mapping's pollers should take messages: not from the moment it starts Disabling."""
        with self._lock:
            self._settle()
            return {uid: m["State"] in ("Enabled", "Enabling") for uid, m in self._mappings.items()}

    def _settle(self) -> None:
        now = time.monotonic()
        for mapping in self._mappings.values():
            if mapping["State"] in ("Enabling", "Disabling") and now >= mapping.get("_settles", 0):
                mapping["State"] = mapping["State"].replace("ing", "ed")
                mapping.pop("_settles", None)

    def serve(self, method: str, path: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        found = MAPPINGS_PATH.match(path)
        assert found is not None
        uid = found.group(1)
        with self._lock:
            self._settle()
            if not uid:
                return 200, {"EventSourceMappings": [self._shown(m) for m in self._mappings.values()]}
            mapping = self._mappings.get(uid)
            if mapping is None:
                raise ControlError(404, "ResourceNotFoundException", f"The resource you requested does not exist. (UUID {uid})")
            if method == "PUT":
                others = sorted(set(body) - {"Enabled"})
                if others:  # taken and ignored, they would look applied: say they are not
                    raise ControlError(400, "InvalidParameterValueException", f"the local cloud's event source "
                                       f"mappings take Enabled only, not {', '.join(others)}")
                if "Enabled" in body and (mapping["State"] in ("Enabled", "Enabling")) != bool(body["Enabled"]):
                    mapping["State"] = "Enabling" if body["Enabled"] else "Disabling"
                    mapping["_settles"] = time.monotonic() + TRANSITION_S
                mapping["LastModified"] = time.time()
                mapping["StateTransitionReason"] = "USER_INITIATED"
            return (202 if method == "PUT" else 200), self._shown(mapping)

    @staticmethod
    def _shown(mapping: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in mapping.items() if not k.startswith("_")}


@dataclass
class MoveTask:
    handle: str
    source_arn: str
    destination_arn: str
    rate: int | None
    started: int = field(default_factory=lambda: int(time.time() * 1000))
    status: str = "RUNNING"
    moved: int = 0
    to_move: int = 0
    failure: str = ""
    cancel: threading.Event = field(default_factory=threading.Event)

    def described(self) -> dict[str, Any]:
        found = {"TaskHandle": self.handle, "Status": self.status, "SourceArn": self.source_arn,
                 "DestinationArn": self.destination_arn, "ApproximateNumberOfMessagesMoved": self.moved,
                 "ApproximateNumberOfMessagesToMove": self.to_move, "StartedTimestamp": self.started}
        if self.rate:
            found["MaxNumberOfMessagesPerSecond"] = self.rate
        if self.failure:
            found["FailureReason"] = self.failure
        return found


class MessageMoves:
    def __init__(self, account: str, region: str) -> None:
        self._account, self._region = account, region
        self._lock = threading.Lock()
        self._tasks: dict[str, list[MoveTask]] = {}  # source ARN -> its tasks, newest first

    def serve(self, operation: str, body: dict[str, Any]) -> dict[str, Any]:
        if operation == "StartMessageMoveTask":
            return self._start(body)
        if operation == "ListMessageMoveTasks":
            source = body.get("SourceArn", "")
            self._queue_name(source)
            with self._lock:
                tasks = self._tasks.get(source, [])[: int(body.get("MaxResults") or 1)]
                return {"Results": [t.described() for t in tasks]}
        handle = str(body.get("TaskHandle", ""))
        with self._lock:
            task = next((t for tasks in self._tasks.values() for t in tasks if t.handle == handle), None)
        if task is None or task.status != "RUNNING":
            raise ControlError(400, "ResourceNotFoundException", "The task handle is not valid or the task is not running")
        task.cancel.set()
        return {"ApproximateNumberOfMessagesMoved": task.moved}

    def _queue_name(self, arn: str) -> str:
        prefix = f"arn:aws:sqs:{self._region}:{self._account}:"
        if not arn.startswith(prefix) or arn[len(prefix):] not in moto_server.queue_names(self._account, self._region):
            raise ControlError(400, "ResourceNotFoundException", f"The resource that you specified for the SourceArn "
                                                                  f"parameter doesn't exist: {arn}")
        return arn[len(prefix):]

    def _start(self, body: dict[str, Any]) -> dict[str, Any]:
        source_arn = str(body.get("SourceArn", ""))
        source = self._queue_name(source_arn)
        destination_arn = str(body.get("DestinationArn") or "")
        if destination_arn:
            self._queue_name(destination_arn)
        else:
            sources = moto_server.dead_letter_sources(self._account, self._region, source_arn)
            if len(sources) != 1:
                raise ControlError(400, "InvalidParameterValue", f"{source_arn} is the dead-letter queue of "
                                   f"{len(sources)} queues; the local cloud redrives one source back, or a DestinationArn")
            destination_arn = f"arn:aws:sqs:{self._region}:{self._account}:{sources[0]}"
        rate = body.get("MaxNumberOfMessagesPerSecond")
        if rate is not None and not 1 <= int(rate) <= 500:
            raise ControlError(400, "InvalidParameterValue", "MaxNumberOfMessagesPerSecond must be between 1 and 500")
        with self._lock:
            if any(t.status == "RUNNING" for t in self._tasks.get(source_arn, [])):
                raise ControlError(400, "UnsupportedOperation", "Only one active message movement task is supported per queue")
            handle = base64.b64encode(json.dumps({"taskId": str(uuid.uuid4()), "sourceArn": source_arn}).encode()).decode()
            task = MoveTask(handle, source_arn, destination_arn, int(rate) if rate else None)
            task.to_move = moto_server.queue_depths(self._account, self._region)[source][0]
            self._tasks.setdefault(source_arn, []).insert(0, task)
        threading.Thread(target=self._move, args=(task, source, destination_arn.rsplit(":", 1)[-1]),
                         daemon=True, name="localcloud-move").start()
        return {"TaskHandle": handle}

    def _move(self, task: MoveTask, source: str, destination: str) -> None:
        try:
            while not task.cancel.is_set():
                started = time.monotonic()
                moved = moto_server.move_messages(self._account, self._region, source, destination,
                                                  min(10, task.rate or 10))
                if not moved:
                    break
                task.moved += moved
                if task.rate:
                    time.sleep(max(0.0, moved / task.rate - (time.monotonic() - started)))
            task.status = "CANCELLED" if task.cancel.is_set() else "COMPLETED"
        except Exception as exc:
            task.status, task.failure = "FAILED", f"{type(exc).__name__}: {exc}"


# The header that proves a forwarded Invoke comes from the emulator: the local cloud runs functions for nobody else.
INVOKE_TOKEN_HEADER = "X-Localcloud-Invoke-Token"
# What of Lambda's Invoke answer a client reads (Lambda API reference, Invoke, "Response Syntax"), and the error type.
INVOKE_ANSWER_HEADERS = ("content-type", "x-amz-function-error", "x-amz-executed-version", "x-amzn-errortype")


class Invocations:
    """Lambda's Invoke, once the emulator has judged it: the request goes to the local cloud's invoke address (the
    process that runs every function from its archive, localcloud/api.py InvokeEndpoint), with the token that
    address takes, and its answer comes back as Lambda gives it."""

    def __init__(self) -> None:
        self._address: dict[str, str] = {}

    def configure(self, address: dict[str, str]) -> None:
        """{"url": where the local cloud takes invocations, "token": what it requires}."""
        self._address = dict(address)

    @staticmethod
    def serves(path: str) -> bool:
        return INVOKE_PATH.match(path) is not None

    def forward(self, path: str, query: str, headers: dict[str, str], body: bytes) -> tuple[int, list[tuple[str, str]], bytes]:
        """(status, headers, body) of the invocation."""
        if not self._address:
            raise ControlError(404, "ResourceNotFoundException", "no function runs here: the local cloud that runs "
                                                                 "functions has not registered its invoke address")
        request = urllib.request.Request(f"{self._address['url']}{path}{'?' + query if query else ''}", data=body,
                                         method="POST", headers={
                                             INVOKE_TOKEN_HEADER: self._address["token"],
                                             "X-Amz-Invocation-Type": headers.get("x-amz-invocation-type", "RequestResponse"),
                                             "Content-Type": "application/json"})
        try:
            # Longer than any function may run (900 s): the invoke address enforces each function's own timeout.
            with urllib.request.urlopen(request, timeout=960) as answer:
                status, found, content = answer.status, answer.headers, answer.read()
        except urllib.error.HTTPError as refused:
            status, found, content = refused.code, refused.headers, refused.read()
        except OSError as exc:
            raise ControlError(502, "ServiceException", f"the local cloud's functions did not answer: {exc}") from None
        return status, [(name, found[name]) for name in INVOKE_ANSWER_HEADERS if found.get(name)], content


class Quotas:
    """Calls a second each account-wide quota allows, as token buckets holding a second's worth (a call spends one
    token; tokens come back at the quota's rate)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._buckets: dict[str, list[float]] = {}  # operation -> [rate, tokens, last refill]
        self.refused: dict[str, int] = {}

    def configure(self, rates: dict[str, float]) -> None:
        """operation ("rekognition.DetectLabels") -> calls a second; the buckets start full."""
        with self._lock:
            now = time.monotonic()
            self._buckets = {operation: [float(rate), float(rate), now] for operation, rate in rates.items()}

    def admits(self, operation: str) -> bool:
        with self._lock:
            bucket = self._buckets.get(operation)
            if bucket is None:
                return True
            rate, tokens, last = bucket
            now = time.monotonic()
            tokens = min(rate, tokens + (now - last) * rate)
            admitted = tokens >= 1.0
            bucket[1:] = [tokens - 1.0 if admitted else tokens, now]
            if not admitted:
                self.refused[operation] = self.refused.get(operation, 0) + 1
            return admitted


class BucketCors:
    """S3's CORS evaluation for the buckets that have a CORS configuration (S3 User Guide, "How does Amazon S3
    evaluate the CORS configuration on a bucket?"; the upload endpoint judges its function URL's Cors as one rule): the first rule whose AllowedOrigin matches the Origin (one `*`
    wildcard at most), whose AllowedMethod lists the method and whose AllowedHeader admits every requested header
    (case-insensitively, `*` wildcards) answers; no such rule, no CORS headers (a preflight is refused with 403).
    moto answers every origin (its server allows all), which no browser test could then tell apart."""

    def __init__(self) -> None:
        self._rules: dict[str, list[dict[str, Any]]] = {}

    def configure(self, rules: dict[str, list[dict[str, Any]]]) -> None:
        """bucket -> its CORSRules, as BucketCorsConfiguration declares them (camelCase)."""
        self._rules = rules

    @property
    def configured(self) -> bool:
        return bool(self._rules)

    def rule(self, bucket: str, origin: str | None, method: str, headers: list[str]) -> dict[str, Any] | None:
        if not origin:
            return None
        for rule in self._rules.get(bucket, []):
            if (any(_wildcard(pattern, origin) for pattern in rule.get("allowedOrigins", []))
                    # "*" is a function URL's any-method; S3 refuses it in a bucket's rules, so none has it there
                    and any(m in ("*", method.upper()) for m in (m.upper() for m in rule.get("allowedMethods", [])))
                    and all(any(_wildcard(pattern.lower(), header.lower()) for pattern in rule.get("allowedHeaders", []))
                            for header in headers)):
                return rule
        return None

    def preflight(self, bucket: str, origin: str | None, method: str, headers: list[str]) -> dict[str, str] | None:
        """The preflight's answer headers, or None when no rule admits it."""
        rule = self.rule(bucket, origin, method, headers)
        if rule is None:
            return None
        answer = {**_allowed_origin(rule, origin), "Access-Control-Allow-Methods": ", ".join(rule["allowedMethods"])}
        if headers:
            answer["Access-Control-Allow-Headers"] = ", ".join(headers)
        if rule.get("maxAgeSeconds") is not None:
            answer["Access-Control-Max-Age"] = str(rule["maxAgeSeconds"])
        return answer

    def actual(self, bucket: str, origin: str | None, method: str) -> dict[str, str]:
        """The CORS headers an actual request's response carries (none when no rule matches its origin and method)."""
        rule = self.rule(bucket, origin, method, [])
        if rule is None:
            return {}
        answer = _allowed_origin(rule, origin)
        if rule.get("exposeHeaders"):
            answer["Access-Control-Expose-Headers"] = ", ".join(rule["exposeHeaders"])
        return answer


def requested_headers(value: str | None) -> list[str]:
    """The header names a preflight's Access-Control-Request-Headers lists."""
    return [name.strip() for name in (value or "").split(",") if name.strip()]


def _allowed_origin(rule: dict[str, Any], origin: str | None) -> dict[str, str]:
    return {"Access-Control-Allow-Origin": "*" if "*" in rule["allowedOrigins"] else str(origin), "Vary": "Origin"}


def _wildcard(pattern: str, value: str) -> bool:
    """S3's CORS patterns: literal text with `*` matching any run of characters."""
    return re.fullmatch(".*".join(re.escape(part) for part in pattern.split("*")), value) is not None


def _unescape(text: str) -> str:
    return unescape(text, {"&quot;": '"', "&apos;": "'"})


def _when(seconds: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(seconds))


INVALIDATIONS_PATH = re.compile(r"^/2020-05-31/distribution/([^/]+)/invalidation(?:/([^/]+))?$")
_CLOUDFRONT_NS = "http://cloudfront.amazonaws.com/doc/2020-05-31/"


@dataclass
class Invalidation:
    id: str
    reference: str
    paths: list[str]
    created: float
    completes: float

    @property
    def in_progress(self) -> bool:
        return time.monotonic() < self.completes

    @property
    def status(self) -> str:
        return "InProgress" if self.in_progress else "Completed"

    def xml(self) -> str:
        items = "".join(f"<Path>{escape(p)}</Path>" for p in self.paths)
        return (f"<Id>{self.id}</Id><Status>{self.status}</Status><CreateTime>{_when(self.created)}</CreateTime><InvalidationBatch><Paths><Quantity>{len(self.paths)}</Quantity>"
                f"<Items>{items}</Items></Paths><CallerReference>{escape(self.reference)}</CallerReference>"
                "</InvalidationBatch>")


class Invalidations:
    """CloudFront's CreateInvalidation, GetInvalidation and ListInvalidations for the distributions the program
    declared (the local cloud records them; moto would need each one made in it). It keeps CloudFront's rules that the
    purge function depends on: at most FILES file paths and WILDCARDS wildcard paths in progress per distribution,
    past which CreateInvalidation answers 400 TooManyInvalidationsInProgress (CloudFront Developer Guide,
    "Concurrent invalidation request maximum"); a caller reference seen before answers with its invalidation, or
    409 InvalidationBatchAlreadyExists when the paths differ (API reference, CreateInvalidation). How long one takes
    is not documented as a figure: here each is in progress for `completes_after` seconds (emulated)."""

    FILES, WILDCARDS = 3000, 15

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._distributions: dict[str, list[Invalidation]] = {}
        self.completes_after, self.files, self.wildcards = 30.0, self.FILES, self.WILDCARDS

    def configure(self, document: dict[str, Any]) -> None:
        with self._lock:
            for distribution in document.get("distributions", []):
                self._distributions.setdefault(distribution, [])
            self.completes_after = float(document.get("completesAfter", self.completes_after))
            self.files = int(document.get("files", self.files))
            self.wildcards = int(document.get("wildcards", self.wildcards))

    def serve(self, method: str, path: str, body: bytes) -> tuple[int, str, dict[str, str]]:
        """(status, XML body, headers)."""
        match = INVALIDATIONS_PATH.match(path)
        assert match is not None
        distribution, invalidation_id = match.groups()
        with self._lock:
            if distribution not in self._distributions:
                raise ControlError(404, "NoSuchDistribution", "The specified distribution does not exist.")
            known = self._distributions[distribution]
            if method == "POST" and not invalidation_id:
                return self._create(distribution, known, body)
            if method == "GET" and invalidation_id:
                found = next((i for i in known if i.id == invalidation_id), None)
                if found is None:
                    raise ControlError(404, "NoSuchInvalidation", "The specified invalidation does not exist.")
                return 200, f'<Invalidation xmlns="{_CLOUDFRONT_NS}">{found.xml()}</Invalidation>', {}
            if method == "GET":
                summaries = "".join(
                    f"<InvalidationSummary><Id>{i.id}</Id><CreateTime>{_when(i.created)}</CreateTime>"
                    f"<Status>{i.status}</Status></InvalidationSummary>"
                    for i in reversed(known))
                return 200, (f'<InvalidationList xmlns="{_CLOUDFRONT_NS}"><Marker></Marker><MaxItems>100</MaxItems>'
                             f"<IsTruncated>false</IsTruncated><Quantity>{len(known)}</Quantity>"
                             f"<Items>{summaries}</Items></InvalidationList>"), {}
        raise ControlError(400, "InvalidArgument", f"{method} {path} is not served by the local cloud")

    def _create(self, distribution: str, known: list[Invalidation], body: bytes) -> tuple[int, str, dict[str, str]]:
        text = body.decode()
        paths = [_unescape(p) for p in re.findall(r"<Path>(.*?)</Path>", text, re.S)]
        found = re.search(r"<CallerReference>(.*?)</CallerReference>", text, re.S)
        reference = _unescape(found.group(1)) if found else ""
        earlier = next((i for i in known if i.reference == reference), None)
        if earlier is not None:
            if sorted(earlier.paths) != sorted(paths):
                raise ControlError(409, "InvalidationBatchAlreadyExists",
                                   "The caller reference you attempted to create the invalidation with is already in use.")
            return 201, f'<Invalidation xmlns="{_CLOUDFRONT_NS}">{earlier.xml()}</Invalidation>', {}
        running = [i for i in known if i.in_progress]
        wildcards = sum(1 for i in running for p in i.paths if "*" in p) + sum(1 for p in paths if "*" in p)
        files = sum(1 for i in running for p in i.paths if "*" not in p) + sum(1 for p in paths if "*" not in p)
        if files > self.files or wildcards > self.wildcards:
            raise ControlError(400, "TooManyInvalidationsInProgress",
                               "Processing your request will cause you to exceed the maximum number of in-progress "
                               "invalidations.")
        now = time.monotonic()
        created = Invalidation(uuid.uuid4().hex[:14].upper(), reference, paths, time.time(), now + self.completes_after)
        known.append(created)
        location = f"https://cloudfront.amazonaws.com/2020-05-31/distribution/{distribution}/invalidation/{created.id}"
        return 201, f'<Invalidation xmlns="{_CLOUDFRONT_NS}">{created.xml()}</Invalidation>', {"Location": location}

