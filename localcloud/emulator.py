"""The AWS emulator: moto's server in processes of its own, on free loopback ports, made strict.

It runs apart from the local cloud's pollers and harness so that moto's request handling has Python
interpreters of its own: one for every service but DynamoDB, which needs nothing from the others and has a
second (clients find it through AWS_ENDPOINT_URL_DYNAMODB; either refuses what belongs to the other). In them:
  - moto's S3 events are made to say what S3 says: `sequencer` and `versionId` on every event,
    ObjectRemoved:DeleteMarkerCreated for a plain delete in a versioned bucket, and ObjectRemoved:Delete for
    every version deleted for good, a delete marker included (moto sends nothing for a delete marker and
    sends ObjectRemoved:Delete only when the last version goes);
  - moto's SQS queues are made safe to use concurrently (its delete rebuilt the message list unlocked, so a
    message sent meanwhile was lost): each queue's own lock covers receive, delete and visibility changes,
    and long polls wait on it, so nothing else need be serialized but DynamoDB, whose conditional writes
    must be atomic per item as DynamoDB makes them;
  - every request goes through localcloud/authorizer.py first: each function's own credentials carry
    exactly its role's statements, bucket policies' Denies apply, missing keys answer 403 without
    s3:ListBucket, SigV2 is refused and presigned PUTs and POSTs are verified as S3 verifies them;
  - Lambda's Invoke, once judged, is run by the local cloud's process that runs the functions (controls.Invocations).
  - it is a loopback service for this user only (localcloud/loopback.py): a foreign Host is answered 421, the
    control routes (/_localcloud/*, moto's /moto-api/*) need the run's token in a header and refuse any request
    with an Origin, moto's request recorder is off, no answer carries moto's allow-all CORS (S3's answers carry
    what the bucket's CORS rules say), every answer carries the security headers, and the admin credentials are
    made for each run. Each process exits by itself when the process that started it is gone.

    python -m localcloud.emulator [--port N] [--serves main|dynamodb]   prints {"endpoint": ...} once it listens
    (the local cloud hands it the run's secrets in its environment; started by hand, it makes its own and prints
    them with the endpoint)
"""
from __future__ import annotations

import argparse
import hmac
import io
import json
import logging
import os
import secrets
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter, defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

from localcloud import controls, loopback, rekognition
from localcloud.authorizer import (
    Authorizer,
    Identity,
    Need,
    Refusal,
    Request,
    access_key_of,
    needs,
    refuse_sigv2,
    service_of,
    verify_post_policy,
    verify_presigned,
    verify_signed_headers,
)
from localcloud.seams import moto_server as seams

REGION = "us-east-1"
ACCOUNT = "123456789012"
REGION_ENVIRONMENT = {"AWS_DEFAULT_REGION": REGION, "AWS_REGION": REGION}
ADMIN_NAME = "the local cloud"
# What the parent hands each emulator process in its environment, never on its command line (which every user of the
# machine can read): the run's admin credentials, the control routes' token, and the pid whose end it exits with.
ADMIN_KEY_VARIABLE = "LOCALCLOUD_ADMIN_KEY"
ADMIN_SECRET_VARIABLE = "LOCALCLOUD_ADMIN_SECRET"
TOKEN_VARIABLE = "LOCALCLOUD_TOKEN"
PARENT_VARIABLE = "LOCALCLOUD_PARENT_PID"
# A header outside CORS's safelist: a page can send it only after a preflight, which nothing here admits for these routes.
TOKEN_HEADER = "X-Localcloud-Token"
CONTROL_PREFIXES = ("/_localcloud/", "/moto-api")
RECORDER_PREFIX = "/moto-api/recorder"
PARENT_WATCH_S = 0.5
STARTUP_TIMEOUT_S = 60.0
# Every request copies its body a few times (a photo is megabytes). glibc gives blocks over 128 KB their own
# mapping and returns it on free, so each copy faulted in and zeroed fresh pages: 3.1 ms to copy 3 MB here, 0.85 ms
# with memory kept for reuse. The emulator keeps what it freed (up to 256 MB at the top of its heap) instead.
MALLOC_TUNING = {"MALLOC_MMAP_THRESHOLD_": str(32 * 1024 * 1024), "MALLOC_TRIM_THRESHOLD_": str(256 * 1024 * 1024)}


# --- the parent's side ------------------------------------------------------------------------------------

# DynamoDB needs nothing from the other services (no streams here), so it is served by a second process with an
# interpreter of its own: its conditional updates (moto parses and validates each in Python, about 8 ms) no longer
# wait behind S3's megabyte bodies for one interpreter lock.
APART = ("dynamodb",)


def new_admin_credentials() -> dict[str, str]:
    """The local cloud's own credentials for one run (the harness, the mocks that deploy, the pollers' bookkeeping,
    and whoever `make up` prints them to): unrestricted, so never a fixed value a web page could know. The emulator
    matches an ordinary request's key rather than verifying its signature, so the key is as random as the secret.
    26 characters of [A-Z0-9] (IAM API Reference, AccessKey: AccessKeyId, 16 to 128 word characters)."""
    return {"AWS_ACCESS_KEY_ID": "LOCALADMIN" + secrets.token_hex(8).upper(), "AWS_SECRET_ACCESS_KEY": secrets.token_urlsafe(30)}


class _Server:
    """One `python -m localcloud.emulator` child on 127.0.0.1."""

    def __init__(self, port: int, log_path: Path | None, serves: str, handed: dict[str, str]) -> None:
        self._port, self._log_path, self._serves = port, log_path, serves
        self._handed = handed  # the run's secrets, for the child's environment
        self._process: subprocess.Popen[str] | None = None
        self.endpoint = ""

    def launch(self) -> None:
        log = open(self._log_path, "a") if self._log_path else subprocess.DEVNULL  # noqa: SIM115 - lives with the child
        environment = {**os.environ, "MOTO_IAM_LOAD_MANAGED_POLICIES": "true", "PYTHONUNBUFFERED": "1", **MALLOC_TUNING,
                       **self._handed, PARENT_VARIABLE: str(os.getpid())}
        for name in [n for n in environment if n.startswith("AWS_ENDPOINT_URL")]:
            environment.pop(name)
        self._process = subprocess.Popen(
            [sys.executable, "-m", "localcloud.emulator", "--port", str(self._port), "--serves", self._serves],
            stdout=subprocess.PIPE, stderr=log, text=True, env=environment, cwd=Path(__file__).resolve().parent.parent)

    def ready(self) -> bool:
        assert self._process is not None
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        assert self._process.stdout is not None  # a pipe
        while time.monotonic() < deadline and self._process.poll() is None:
            line = self._process.stdout.readline()
            if line.startswith("{"):
                self.endpoint = json.loads(line)["endpoint"]
                return True
        return False

    def post(self, path: str, document: Any = None) -> Any:
        data = json.dumps(document).encode() if document is not None else b""
        request = urllib.request.Request(f"{self.endpoint}{path}", data=data, method="POST", headers=self._token())
        with urllib.request.urlopen(request, timeout=30) as response:
            body = response.read()
        return json.loads(body) if body.startswith(b"{") else None

    def get(self, path: str) -> Any:
        request = urllib.request.Request(f"{self.endpoint}{path}", headers=self._token())
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())

    def _token(self) -> dict[str, str]:
        return {TOKEN_HEADER: self._handed[TOKEN_VARIABLE]}

    def terminate(self) -> None:
        """Ask the child to end (SIGTERM). Its state lives only in its memory, so nothing is reset first: resetting a
        deployed stack's state took about 2 s per process (load 8), a cost every local cloud paid for nothing."""
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()

    def stop(self) -> None:
        if self._process is None:
            return
        self.terminate()
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        if self._process.stdout is not None:
            self._process.stdout.close()
        self._process = None


class Emulator:
    """moto's server on 127.0.0.1 in child processes: `endpoint` (what AWS_ENDPOINT_URL should say) serves every
    service but those in APART, each of which has its own process and AWS_ENDPOINT_URL_<SERVICE> (boto3 and the
    AWS CLI read those themselves). A request that reaches the wrong one is refused with the right address."""

    def __init__(self, port: int = 0, log_path: Path | None = None) -> None:
        # Made anew for each run, handed to the children in their environment and kept from web pages.
        self.credentials = new_admin_credentials()
        self.token = secrets.token_urlsafe(32)
        handed = {ADMIN_KEY_VARIABLE: self.credentials["AWS_ACCESS_KEY_ID"],
                  ADMIN_SECRET_VARIABLE: self.credentials["AWS_SECRET_ACCESS_KEY"], TOKEN_VARIABLE: self.token}
        self._servers = {"main": _Server(port, log_path, "main", handed),
                         **{service: _Server(0, log_path, service, handed) for service in APART}}
        self.endpoint = ""

    def start(self) -> Emulator:
        for server in self._servers.values():
            server.launch()  # they start side by side
        if not all(server.ready() for server in self._servers.values()):
            self.stop()
            raise RuntimeError("the emulator did not start (see its log)")
        self.endpoint = self._servers["main"].endpoint
        self.reset()  # every local cloud starts empty
        return self

    def reset(self) -> None:
        for server in self._servers.values():
            server.post("/moto-api/reset")
            server.post("/_localcloud/configure", {"identities": {}, "reset": True})

    def configure(self, identities: dict[str, dict[str, Any]], bucket_policies: dict[str, list[dict[str, Any]]],
                  topics: dict[str, str], mappings: list[dict[str, Any]] | None = None,
                  quotas: dict[str, float] | None = None, cors: dict[str, list[dict[str, Any]]] | None = None,
                  cdn: dict[str, Any] | None = None, invoke: dict[str, str] | None = None) -> None:
        """Who may do what: access key -> {name, secret, statements}, the declared bucket policies, each encrypted
        topic's key; the event source mappings the emulator answers for (Lambda's API for them); and the calls a
        second each throttled operation allows ("rekognition.DetectLabels": the stack's rekognitionTps); and each
        bucket's CORS rules; the distributions whose invalidations it serves, and CloudFront's in-progress limits
        (controls.Invalidations); and where Lambda's Invoke goes once judged ({"url", "token"}: localcloud/api.py)."""
        for server in self._servers.values():
            server.post("/_localcloud/configure", {"identities": identities, "bucket_policies": bucket_policies,
                                                   "topics": topics, **({"mappings": mappings} if mappings is not None else {}),
                                                   **({"quotas": quotas} if quotas is not None else {}),
                                                   **({"cors": cors} if cors is not None else {}),
                                                   **({"cdn": cdn} if cdn is not None else {}),
                                                   **({"invoke": invoke} if invoke is not None else {})})

    def mapping_states(self) -> dict[str, bool]:
        """Whether each event source mapping is enabled, by UUID."""
        return self._servers["main"].get("/_localcloud/mappings")

    def oldest_ages(self) -> dict[str, float]:
        """Seconds since the oldest message of each queue was sent, by queue name."""
        return self._servers["main"].get("/_localcloud/ages")

    def queue_depths(self) -> dict[str, tuple[int, int]]:
        """(waiting, in flight) of every queue, by name, read from moto's SQS backend in one request."""
        return {name: (visible, flying) for name, (visible, flying) in self._servers["main"].get("/_localcloud/queues").items()}

    def stats(self) -> dict[str, Any]:
        """Requests served per service, the CPU seconds the emulator's processes have used, and, per function,
        every (action, resource) its requests were allowed."""
        merged: dict[str, Any] = {"requests": Counter(), "cpu_seconds": 0.0, "cpu_by_service": Counter(), "used": {},
                                  "refused_over_quota": Counter()}
        for server in self._servers.values():
            stats = server.get("/_localcloud/stats")
            merged["requests"].update(stats["requests"])
            merged["refused_over_quota"].update(stats["refused_over_quota"])
            merged["cpu_by_service"].update(stats["cpu_by_service"])
            merged["cpu_seconds"] = round(merged["cpu_seconds"] + stats["cpu_seconds"], 2)
            for name, pairs in stats["used"].items():
                merged["used"][name] = sorted({tuple(p) for p in merged["used"].get(name, [])} | {tuple(p) for p in pairs})
        merged["used"] = {name: [list(p) for p in pairs] for name, pairs in merged["used"].items()}
        return {**merged, "requests": dict(merged["requests"]), "cpu_by_service": dict(merged["cpu_by_service"]),
                "refused_over_quota": dict(merged["refused_over_quota"])}

    def stop(self) -> None:
        for server in self._servers.values():
            server.terminate()  # all at once, then each waited for
        for server in self._servers.values():
            server.stop()

    def environment(self) -> dict[str, str]:
        """What a client (the harness, the AWS CLI, boto3) needs to reach the emulator with full access."""
        return {**self.credentials, **REGION_ENVIRONMENT, "AWS_ENDPOINT_URL": self.endpoint,
                **{f"AWS_ENDPOINT_URL_{service.upper()}": self._servers[service].endpoint for service in APART}}


# --- the child's side: moto made to behave like AWS --------------------------------------------------------

_S3_ERROR = '<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code><Message>{message}</Message><RequestId>localcloud</RequestId></Error>'
_QUERY_ERROR = ('<?xml version="1.0"?>\n<ErrorResponse><Error><Type>Sender</Type><Code>{code}</Code><Message>{message}</Message>'
                '</Error><RequestId>localcloud</RequestId></ErrorResponse>')


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


# The actions whose permission S3 judges with the object's tags (S3 User Guide, "Tagging and access control policies":
# s3:ExistingObjectTag/<key>, for any operation but PUT Object and DELETE Object).
TAG_JUDGED = frozenset({"s3:GetObject", "s3:GetObjectVersion", "s3:GetObjectTagging", "s3:GetObjectVersionTagging",
                        "s3:PutObjectTagging", "s3:PutObjectVersionTagging", "s3:DeleteObjectTagging",
                        "s3:DeleteObjectVersionTagging"})


def _with_object_tags(need: Need, version_id: str | None) -> Need:
    """`need` with the object's tags as s3:ExistingObjectTag/<key> condition keys, when S3 judges its action by them."""
    if need.action not in TAG_JUDGED or not need.resource.startswith("arn:aws:s3:::"):
        return need
    bucket, _, key = need.resource.removeprefix("arn:aws:s3:::").partition("/")
    tags = seams.object_tags(ACCOUNT, bucket, key, version_id)
    return Need(need.action, need.resource, {**need.context, **{f"s3:ExistingObjectTag/{k}": v for k, v in tags.items()}})


def _bucket_of(request: Request) -> str:
    """The bucket a path-style S3 request names (the emulator's clients address buckets by path)."""
    return request.path.lstrip("/").split("/")[0]


class Gateway:
    """WSGI middleware in front of moto: identify, judge, then serve (see the module docstring)."""

    def __init__(self, app: Any, authorizer: Authorizer, serves: str = "main", token: str = "",
                 admin: dict[str, str] | None = None) -> None:
        self.app = app
        self.authorizer = authorizer
        self.serves = serves  # "main": every service but those APART; otherwise that one service
        self.token = token  # what the control routes require in TOKEN_HEADER
        self.admin = admin or new_admin_credentials()
        self.port = 0  # its own, once it listens: the Host it answers for
        self.authorizer.configure({"identities": self._admin_identity()})
        self._dynamodb = threading.Lock()
        self._counts: Counter = Counter()
        self._cpu: defaultdict[str, float] = defaultdict(float)  # CPU seconds spent answering, by service
        self._counts_lock = threading.Lock()
        self._used: dict[str, set[tuple[str, str]]] = {}  # function -> (action, resource) it was allowed
        self.mappings = controls.EventSourceMappings()
        self.moves = controls.MessageMoves(ACCOUNT, REGION)
        self.quotas = controls.Quotas()
        self.cors = controls.BucketCors()
        self.invalidations = controls.Invalidations()
        self.invocations = controls.Invocations()

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        started = time.thread_time()
        service = "?"
        try:
            service, answer = self._serve(environ, start_response)
            return answer
        finally:
            with self._counts_lock:
                self._cpu[service] += time.thread_time() - started

    def _serve(self, environ: dict[str, Any], start_response: Any) -> tuple[str, Any]:
        cors: dict[str, str] = {}  # S3's CORS answer to this request, from the bucket's rules, once judged
        start_response = self._answering(start_response, cors)
        path = environ.get("PATH_INFO", "")
        if environ.get("HTTP_HOST") not in loopback.hosts(self.port):
            return "misdirected", self._json_refusal(Refusal(421, "MisdirectedRequest", loopback.misdirected_message(self.port)),
                                                     start_response)
        if path.startswith(CONTROL_PREFIXES):
            refusal = self._control_refusal(path, environ)
            if refusal is not None:
                return "admin", self._json_refusal(refusal, start_response)
        if path.startswith("/_localcloud/"):
            return "admin", self._admin(path, environ, start_response)
        body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0)) if environ.get("CONTENT_LENGTH") else b""
        environ["wsgi.input"] = io.BytesIO(body)
        # The body is read whole and holds exactly Content-Length bytes: werkzeug may read it directly instead of
        # through its length-limiting wrapper, which copied a 6 MB upload in 64 KB pieces (a third of a PUT's CPU).
        environ["wsgi.input_terminated"] = True
        raw = environ.get("RAW_URI") or environ.get("REQUEST_URI") or path
        parts = urlsplit(raw)
        request = Request(environ["REQUEST_METHOD"], parts.path, parse_qsl(parts.query, keep_blank_values=True),
                          {k[5:].replace("_", "-").lower(): v for k, v in environ.items() if k.startswith("HTTP_")}
                          | {"content-type": environ.get("CONTENT_TYPE", ""), "content-length": environ.get("CONTENT_LENGTH", "")},
                          body)
        if not request.headers["content-type"]:
            del request.headers["content-type"]
        if not request.headers["content-length"]:
            del request.headers["content-length"]
        service = "moto-api" if path.startswith("/moto-api") else service_of(request)
        with self._counts_lock:
            self._counts[service] += 1
        if service != "moto-api" and (service in APART if self.serves == "main" else service != self.serves):
            where = f"AWS_ENDPOINT_URL_{service.upper()}" if service in APART else "AWS_ENDPOINT_URL"
            return service, self._refuse(service, Refusal(400, "WrongEndpoint", f"{service} is not served here: "
                                                          f"the local cloud serves it at {where}"), start_response)
        if service == "s3" and request.method == "OPTIONS":
            return service, self._s3_preflight(request, cors, start_response)
        if service == "s3" and request.headers.get("origin"):
            cors.update(self.cors.actual(_bucket_of(request), request.headers.get("origin"), request.method))
        identity = None
        if service != "moto-api" and request.method != "OPTIONS":
            try:
                identity, wanted = self._identify(request, environ)
                wanted = wanted or needs(request, ACCOUNT, REGION, self.authorizer.topics, self.mappings.functions())
                if service == "s3":
                    wanted = [_with_object_tags(need, request.arg("versionId")) for need in wanted]
                self.authorizer.judge(identity, wanted)
                if identity.restricted:
                    with self._counts_lock:
                        self._used.setdefault(identity.name, set()).update((n.action, n.resource) for n in wanted)
            except Refusal as refusal:
                return service, self._refuse(service, refusal, start_response)
        if service == "dynamodb":
            with self._dynamodb:
                return service, list(self.app(environ, start_response))
        operation = request.headers.get("x-amz-target", "").rsplit(".", 1)[-1]
        if operation and not self.quotas.admits(f"{service}.{operation}"):
            return service, self._refuse(service, Refusal(400, "ProvisionedThroughputExceededException",
                                                          "The number of requests exceeded your throughput limit."),
                                         start_response)
        if service == "sts" and request.form.get("Action") == "GetCallerIdentity" and identity is not None:
            return service, self._caller(identity, start_response)
        if service == "rekognition" and operation == "DetectModerationLabels":  # moto has none: localcloud/rekognition.py
            return service, self._moderation_labels(request, start_response)
        if service == "cloudfront" and controls.INVALIDATIONS_PATH.match(request.path):
            return service, self._invalidation(request, start_response)
        if service == "lambda" and self.invocations.serves(request.path):
            return service, self._invoke(request, start_response)
        control = self._control(service, request)
        if control is not None:
            return service, self._answer(service, control, start_response)
        if identity is not None and identity.restricted and service == "s3" and request.method in ("GET", "HEAD"):
            return service, self._missing_as_403(request, identity, environ, start_response)
        return service, list(self.app(environ, start_response))

    def _control(self, service: str, request: Request) -> tuple[int, dict[str, Any], str] | None:
        """(status, body, error code or "") for the control-plane calls served here (localcloud/controls.py)."""
        operation = request.headers.get("x-amz-target", "").rsplit(".", 1)[-1]
        try:
            if service == "lambda" and controls.MAPPINGS_PATH.match(request.path):
                status, body = self.mappings.serve(request.method, request.path, request.json)
                return status, body, ""
            if service == "sqs" and operation in controls.MOVE_OPERATIONS:
                return 200, self.moves.serve(operation, request.json), ""
        except controls.ControlError as error:
            return error.status, {"message": error.message}, error.code
        return None

    def _caller(self, identity: Identity, start_response: Any) -> list[bytes]:
        """STS's GetCallerIdentity for the local cloud's credentials (moto knows none of them and would answer
        "user/moto"): the holder of a function's role or of a managed policy, as a session of a role of that name."""
        arn = f"arn:aws:sts::{ACCOUNT}:assumed-role/{_escape(identity.name)}/localcloud"
        body = ('<GetCallerIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><GetCallerIdentityResult>'
                f"<Arn>{arn}</Arn><UserId>{_escape(identity.name)}:localcloud</UserId><Account>{ACCOUNT}</Account>"
                "</GetCallerIdentityResult><ResponseMetadata><RequestId>localcloud</RequestId></ResponseMetadata>"
                "</GetCallerIdentityResponse>").encode()
        start_response("200 OK", [("Content-Type", "text/xml"), ("Content-Length", str(len(body)))])
        return [body]

    def _moderation_labels(self, request: Request, start_response: Any) -> list[bytes]:
        try:
            answer = rekognition.detect_moderation_labels(
                request.json, lambda bucket, key, version: seams.object_bytes(ACCOUNT, bucket, key, version))
        except rekognition.RekognitionError as error:
            return self._refuse("rekognition", Refusal(400, error.code, error.message), start_response)
        return self._answer("rekognition", (200, answer, ""), start_response)

    def _invalidation(self, request: Request, start_response: Any) -> list[bytes]:
        """CloudFront's invalidation API (controls.Invalidations), in CloudFront's REST XML."""
        try:
            status, document, headers = self.invalidations.serve(request.method, request.path, request.body)
        except controls.ControlError as error:
            return self._refuse("cloudfront", Refusal(error.status, error.code, error.message), start_response)
        body = ('<?xml version="1.0" encoding="UTF-8"?>\n' + document).encode()
        start_response(f"{status} {'Created' if status == 201 else 'OK'}", [
            ("Content-Type", "text/xml"), *headers.items(), ("Content-Length", str(len(body)))])
        return [body]

    def _invoke(self, request: Request, start_response: Any) -> list[bytes]:
        """A judged Invoke, run by the local cloud's functions process and answered as Lambda answers it."""
        try:
            status, headers, body = self.invocations.forward(request.path, urlencode(request.query), request.headers,
                                                             request.body)
        except controls.ControlError as error:
            return self._answer("lambda", (error.status, {"message": error.message}, error.code), start_response)
        start_response(f"{status} {'OK' if status < 400 else 'Error'}", [*headers, ("Content-Length", str(len(body)))])
        return [body]

    def _answer(self, service: str, answer: tuple[int, dict[str, Any], str], start_response: Any) -> list[bytes]:
        status, document, code = answer
        headers = [("Content-Type", "application/json" if service == "lambda" else "application/x-amz-json-1.0")]
        if code:
            # Lambda names its errors in a header, SQS's JSON protocol in the body (botocore reads both).
            headers.append(("x-amzn-ErrorType", code))
            document = {"__type": code, "Message" if service == "lambda" else "message": document["message"]}
        body = json.dumps(document, default=str).encode()
        start_response(f"{status} {'OK' if status < 400 else 'Error'}", [*headers, ("Content-Length", str(len(body)))])
        return [body]

    def _identify(self, request: Request, environ: dict[str, Any]) -> tuple[Identity, list[Need]]:
        """Who signed the request, and (for a form POST, whose key is in the form) what it needs."""
        identities = self.authorizer.identities
        now = datetime.now(UTC)
        if request.has("X-Amz-Signature") or request.has("Signature"):
            return identities[verify_presigned(request, identities, now)], []
        if (request.method == "POST" and request.headers.get("content-type", "").startswith("multipart/form-data")
                and "authorization" not in request.headers):
            from werkzeug.formparser import parse_form_data

            copy = {**environ, "wsgi.input": io.BytesIO(request.body)}
            _, form, files = parse_form_data(copy)
            upload = files.get("file")
            size = len(upload.read()) if upload else 0
            bucket = request.path.strip("/").split("/")[0]
            signer = identities[verify_post_policy(dict(form.items()), bucket, size, identities, now)]
            return signer, [Need("s3:PutObject", f"arn:aws:s3:::{bucket}/{form.get('key', '')}")]
        refuse_sigv2(request)
        key = access_key_of(request)
        if key is None:
            raise Refusal(403, "AccessDenied", "Anonymous requests are not allowed (Block Public Access is on)")
        return identities[verify_signed_headers(request, identities, now)], []

    @staticmethod
    def _answering(start_response: Any, cors: dict[str, str]) -> Any:
        """start_response for every answer: without moto's own CORS headers (its server allows every origin, on every
        service and on /moto-api), with S3's answer from the bucket's rules (`cors`, empty unless judged so); the
        request handler adds the security headers (loopback.Secured). AWS's other services answer browsers too (AWS
        SDK for JavaScript v3 Developer Guide, "Cross-origin resource sharing (CORS)"); here none does, as no page
        has business with them."""
        def respond(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            kept = [(k, v) for k, v in headers if not k.lower().startswith("access-control-") and k.lower() != "vary"]
            return start_response(status, [*kept, *cors.items()], exc_info)

        return respond

    def _control_refusal(self, path: str, environ: dict[str, Any]) -> Refusal | None:
        """The control routes are the local cloud's own, never a web page's: a request with an Origin (every
        cross-origin fetch and form post sends one) is refused whatever else it carries, moto's recorder is off, and
        the rest need this run's token in TOKEN_HEADER, which a page cannot send without a preflight nothing admits."""
        if "HTTP_ORIGIN" in environ:
            return Refusal(403, "BrowserRefused", "the local cloud's control routes do not answer web pages "
                                                  "(the request carries an Origin)")
        if path.startswith(RECORDER_PREFIX):
            return Refusal(403, "RecorderOff", "moto's request recorder is off in the local cloud")
        given = environ.get("HTTP_" + TOKEN_HEADER.upper().replace("-", "_"), "")
        if not self.token or not hmac.compare_digest(given.encode(), self.token.encode()):
            return Refusal(403, "TokenRequired", f"the local cloud's control routes need this run's {TOKEN_HEADER} header")
        return None

    def _json_refusal(self, refusal: Refusal, start_response: Any) -> list[bytes]:
        body = json.dumps({"code": refusal.code, "message": refusal.message}).encode()
        reason = {403: "Forbidden", 421: "Misdirected Request"}.get(refusal.status, "Error")
        start_response(f"{refusal.status} {reason}", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
        return [body]

    def _admin_identity(self) -> dict[str, dict[str, Any]]:
        # The local cloud's own harness acts as the account's administrator: unrestricted by identity policy, but
        # held to the bucket policies' denies like any principal (root included).
        return {self.admin["AWS_ACCESS_KEY_ID"]: {"name": ADMIN_NAME, "secret": self.admin["AWS_SECRET_ACCESS_KEY"],
                                                   "statements": None,
                                                   "principal_arn": f"arn:aws:iam::{ACCOUNT}:user/{ADMIN_NAME}"}}

    def _s3_preflight(self, request: Request, cors: dict[str, str], start_response: Any) -> list[bytes]:
        """A browser's preflight to S3, answered from the bucket's CORS configuration as S3 answers it (unsigned)."""
        bucket = _bucket_of(request)
        origin = request.headers.get("origin")
        method = request.headers.get("access-control-request-method", "")
        if not origin or not method:
            return self._refuse("s3", Refusal(400, "BadRequest", "Insufficient information. Origin request header "
                                                                 "needed."), start_response)
        answer = self.cors.preflight(bucket, origin, method,
                                     controls.requested_headers(request.headers.get("access-control-request-headers")))
        if answer is None:
            return self._refuse("s3", Refusal(403, "AccessForbidden", "CORSResponse: This CORS request is not allowed. "
                                              "This is usually because the evalution of Origin, request method / "
                                              "Access-Control-Request-Method or Access-Control-Request-Headers are not "
                                              "whitelisted by the resource's CORS spec."), start_response)
        cors.update(answer)
        start_response("200 OK", [("Content-Length", "0")])
        return []

    def _missing_as_403(self, request: Request, identity: Identity, environ: dict[str, Any], start_response: Any) -> list[bytes]:
        bucket = _bucket_of(request)
        held: dict[str, Any] = {}

        def capture(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            held.update(status=status, headers=headers)
            return lambda data: None

        chunks = list(self.app(environ, capture))
        if held["status"].startswith("404") and "/" in request.path.strip("/") and not self.authorizer.may_list(identity, bucket):
            # S3 API reference, GetObject: "If you don't have the s3:ListBucket permission, Amazon S3 returns an
            # HTTP status code 403 Access Denied error" for a key that does not exist.
            return self._refuse("s3", Refusal(403, "AccessDenied", "Access Denied"), start_response,
                                head=request.method == "HEAD")
        start_response(held["status"], held["headers"])
        return chunks

    def _refuse(self, service: str, refusal: Refusal, start_response: Any, head: bool = False) -> list[bytes]:
        reason = {400: "Bad Request", 403: "Forbidden", 500: "Internal Server Error"}.get(refusal.status, "Error")
        if service == "lambda":  # REST JSON: the error's type in x-amzn-ErrorType
            code = "AccessDeniedException" if refusal.code == "AccessDenied" else refusal.code
            return self._answer(service, (refusal.status, {"message": refusal.message}, code), start_response)
        if service in ("dynamodb", "sqs", "rekognition", "kms", "logs"):
            code = "AccessDeniedException" if refusal.code == "AccessDenied" and service != "sqs" else refusal.code
            body = json.dumps({"__type": code, "message": refusal.message}).encode()
            content_type = "application/x-amz-json-1.0"
            status = 400 if refusal.status == 403 and service in ("dynamodb",) else refusal.status
        else:
            template = _S3_ERROR if service == "s3" else _QUERY_ERROR
            code = "AuthorizationError" if service == "sns" and refusal.code == "AccessDenied" else refusal.code
            body = template.format(code=code, message=_escape(refusal.message)).encode()
            content_type, status = "application/xml", refusal.status
        start_response(f"{status} {reason}", [("Content-Type", content_type), ("Content-Length", str(0 if head else len(body)))])
        return [] if head else [body]

    def _admin(self, path: str, environ: dict[str, Any], start_response: Any) -> list[bytes]:
        if path == "/_localcloud/configure":
            document = json.loads(environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0)) or b"{}")
            identities = {**self._admin_identity(), **document.get("identities", {})}
            self.authorizer.configure({**document, "identities": identities})
            if "mappings" in document:
                self.mappings.configure(document["mappings"])
            if "quotas" in document:
                self.quotas.configure(document["quotas"])
            if "cors" in document:
                self.cors.configure(document["cors"])
            if "cdn" in document:
                self.invalidations.configure(document["cdn"])
            if "invoke" in document:
                self.invocations.configure(document["invoke"])
            if document.get("reset"):  # a fresh emulator; a redeploy keeps what was used so far
                with self._counts_lock:
                    self._used.clear()
            body = b"{}"
        elif path == "/_localcloud/mappings":
            body = json.dumps(self.mappings.enabled()).encode()
        elif path == "/_localcloud/ages":
            body = json.dumps(seams.oldest_ages(ACCOUNT, REGION)).encode()
        elif path == "/_localcloud/queues":
            # Every queue's depth in one answer, for the local cloud's wait loop (six GetQueueAttributes a second
            # were a tenth of what the emulator served during a run).
            with self._counts_lock:
                self._counts["admin"] += 1
            body = json.dumps(seams.queue_depths(ACCOUNT, REGION)).encode()
        elif path == "/_localcloud/stats":
            with self._counts_lock:
                counts = dict(self._counts)
                used = {name: sorted(pairs) for name, pairs in self._used.items()}
                cpu = {name: round(seconds, 2) for name, seconds in self._cpu.items()}
            body = json.dumps({"requests": counts, "cpu_seconds": round(time.process_time(), 2), "cpu_by_service": cpu,
                               "used": used, "refused_over_quota": dict(self.quotas.refused)}).encode()
        else:
            start_response("404 Not Found", [("Content-Length", "0")])
            return []
        start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
        return [body]


@contextmanager
def _serving(port: int, serves: str, token: str, admin: dict[str, str]) -> Iterator[Any]:
    from werkzeug.serving import make_server

    seams.make_moto_strict()
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no line per emulated request
    app, handler = seams.moto_app()
    gateway = Gateway(app, Authorizer(ACCOUNT, REGION), serves, token, admin)
    secured = type("SecuredRequestHandler", (loopback.Secured, handler), {})  # every answer, werkzeug's own too
    # Loopback only, never 0.0.0.0.
    server = make_server("127.0.0.1", port, gateway, threaded=True, request_handler=secured)
    gateway.port = server.server_address[1]
    try:
        yield server
    finally:
        server.server_close()


def _exit_with(parent: int) -> None:
    """Exit once the process that started this one is gone, however it ended (SIGKILL gives it no chance to stop
    its children): the emulator holds nothing that outlives a run."""
    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(PARENT_WATCH_S)
        os._exit(0)

    threading.Thread(target=watch, daemon=True, name="parent-watch").start()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m localcloud.emulator")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--serves", default="main", help=f"main (every service but {', '.join(APART)}), or one of those")
    args = parser.parse_args(argv)
    handed = all(os.environ.get(name) for name in (TOKEN_VARIABLE, ADMIN_KEY_VARIABLE, ADMIN_SECRET_VARIABLE))
    token = os.environ.pop(TOKEN_VARIABLE, "") or secrets.token_urlsafe(32)
    admin = ({"AWS_ACCESS_KEY_ID": os.environ.pop(ADMIN_KEY_VARIABLE), "AWS_SECRET_ACCESS_KEY": os.environ.pop(ADMIN_SECRET_VARIABLE)}
             if handed else new_admin_credentials())
    if os.environ.get(PARENT_VARIABLE):
        _exit_with(int(os.environ.pop(PARENT_VARIABLE)))
    with _serving(args.port, args.serves, token, admin) as server:
        host, port = server.server_address[:2]
        # Started by hand, it tells its own secrets to whoever started it; the local cloud made them, so it is not told.
        told = {} if handed else {"token_header": TOKEN_HEADER, "token": token, "credentials": admin}
        print(json.dumps({"endpoint": f"http://{host}:{port}", **told}), flush=True)
        server.serve_forever()


if __name__ == "__main__":
    main()
