"""HTTP endpoints for the functions, served on 127.0.0.1: those the program exposes (the upload API), and Lambda's
Invoke for every function, behind the emulator.

FunctionEndpoint: each request becomes a payload-format-2.0 event for the function, run in its own execution
environment like every other function here. The deployed endpoint authenticates every caller (IAM, or a JWT
authorizer); this one cannot check IAM signatures or JWTs, so it stands in for them: the caller is the local user,
or whoever a local-only `X-Localcloud-Caller` header names (tests use it to be several people). It refuses what a
front door should: a foreign Host (DNS rebinding, localcloud/loopback.py), a missing, malformed or oversized
Content-Length; every answer carries the security headers.

InvokeEndpoint: the emulator judges an Invoke (lambda:InvokeFunction for the caller) and hands it here with a
token only it holds; anything without the token is refused, so nothing on the machine runs a function past IAM.
"""
from __future__ import annotations

import hmac
import json
import secrets
import threading
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from localcloud.authorizer import INVOKE_PATH, function_arn
from localcloud.controls import INVOKE_TOKEN_HEADER, BucketCors, requested_headers
from localcloud.loopback import Handler, LoopbackServer
from localcloud.outputs import ACCOUNT_ID, REGION
from localcloud.pollers import ExecutionEnvironment, FunctionSpec, FunctionTimeout

LOCAL_CALLER = "arn:aws:iam::123456789012:user/localcloud"
CALLER_HEADER = "X-Localcloud-Caller"
# Lambda's synchronous request payload limit (Lambda quotas): 6 MB.
MAX_REQUEST_BYTES = 6 * 1024 * 1024


class FunctionEndpoint:
    def __init__(self, function: FunctionSpec, log: Any, jwt: bool = False, cors: dict[str, Any] | None = None):
        self.function = function
        self._log = log
        self._jwt = jwt
        # The function URL's Cors (or the HTTP API's CorsConfiguration) as deployed, judged as one CORS rule by the
        # evaluation the emulator applies to buckets' rules (origins exact or "*", methods, every requested header).
        self._cors = BucketCors()
        self._cors.configure({"": [{"allowedOrigins": cors.get("allowOrigins") or [],
                                    "allowedMethods": cors.get("allowMethods") or [],
                                    "allowedHeaders": cors.get("allowHeaders") or [],
                                    "maxAgeSeconds": cors.get("maxAge")}]} if cors else {})
        self._environment: ExecutionEnvironment | None = None
        self._lock = threading.Lock()  # one request at a time per environment, as Lambda does
        self._server = LoopbackServer(self._serve, f"endpoint-{function.name}")
        self.url = self._server.url

    def start(self) -> FunctionEndpoint:
        self._server.start()
        return self

    def stop(self) -> None:
        self._server.stop()
        with self._lock:
            if self._environment is not None:
                self._environment.kill()

    def _answer(self, request: Handler, status: int, payload: str, headers: dict[str, str] | None = None) -> None:
        data = payload.encode()
        request.send_response(status)
        allowed = self._cors.actual("", request.headers.get("Origin"), request.command)
        # The function's own headers, then CORS; the security headers come last (loopback.Handler).
        for name, value in {**(headers or {"content-type": "application/json"}), **allowed}.items():
            request.send_header(name, value)
        request.send_header("Content-Length", str(len(data)))
        request.end_headers()
        request.wfile.write(data)

    def _serve(self, request: Handler) -> None:
        if self._server.foreign(request):
            return self._answer(request, 421, json.dumps({"message": self._server.misdirected}))
        length_text = request.headers.get("Content-Length") or "0"
        if not length_text.isdigit():
            return self._answer(request, 400, json.dumps({"message": f"Content-Length {length_text[:20]!r} is not a byte count"}))
        length = int(length_text)
        if length > MAX_REQUEST_BYTES:
            request.close_connection = True
            return self._answer(request, 413, json.dumps({"message": f"the request is over {MAX_REQUEST_BYTES:,} bytes"}))
        body = request.rfile.read(length).decode("utf-8", "replace")
        if request.command == "OPTIONS" and self._cors.configured and request.headers.get("Origin"):
            return self._preflight(request)
        path = urlsplit(request.path)
        principal = request.headers.get(CALLER_HEADER) or LOCAL_CALLER
        authorizer = ({"jwt": {"claims": {"iss": "https://localcloud/", "sub": principal}, "scopes": []}} if self._jwt
                      else {"iam": {"userArn": principal, "accountId": "123456789012", "callerId": principal}})
        event = {
            "version": "2.0", "routeKey": "$default", "rawPath": path.path, "rawQueryString": path.query,
            "headers": {k.lower(): v for k, v in request.headers.items() if k.lower() != CALLER_HEADER.lower()},
            "requestContext": {"http": {"method": request.command, "path": path.path, "protocol": "HTTP/1.1",
                                        "sourceIp": request.client_address[0], "userAgent": request.headers.get("User-Agent", "")},
                               "requestId": str(uuid.uuid4()), "accountId": "123456789012", "stage": "$default",
                               "domainName": urlsplit(self.url).netloc, "authorizer": authorizer},
            "body": body or None, "isBase64Encoded": False,
        }
        with self._lock:
            if self._environment is None:
                self._environment = ExecutionEnvironment(self.function, self._log)
            reply = self._environment.invoke(event)
        if reply.get("ok"):
            result = reply["result"]
            return self._answer(request, result.get("statusCode", 200), result.get("body", ""), result.get("headers", {}))
        return self._answer(request, 502, json.dumps({"message": reply.get("error")}))

    def _preflight(self, request: Handler) -> None:
        """A browser's preflight, answered from the CORS configuration without invoking the function, as function URLs
        and HTTP APIs do (Lambda API reference, "Cors"; API Gateway, "Configuring CORS for an HTTP API"): an origin,
        method or header it does not list gets no CORS headers, so the browser refuses the request."""
        allow = self._cors.preflight("", request.headers.get("Origin"), request.headers.get("Access-Control-Request-Method", ""),
                                     requested_headers(request.headers.get("Access-Control-Request-Headers")))
        if allow is None:
            request.send_response(403)
            request.send_header("Content-Length", "0")
            request.end_headers()
            return None
        return self._answer(request, 204, "", allow)


class InvokeEndpoint:
    """Lambda's Invoke (RequestResponse, or DryRun) for every function the program declared, each in a warm
    execution environment of its own, answered as Lambda answers: the function's result, or its error with
    X-Amz-Function-Error (Lambda API reference, Invoke). Only the emulator, which judged the caller first, holds the
    token it takes."""

    def __init__(self, functions: dict[str, tuple[FunctionSpec, Path]]):
        """`functions`: each function's name -> (how to run it, the log its output goes to)."""
        self._functions = {function_arn(name, REGION, ACCOUNT_ID): found for name, found in functions.items()}
        self._locks = {arn: threading.Lock() for arn in self._functions}  # one invocation per environment at a time
        self._environments: dict[str, ExecutionEnvironment] = {}
        self._logs: list[Any] = []
        self._token = secrets.token_urlsafe(32)
        self._server = LoopbackServer(self._serve, "invoke")

    @property
    def address(self) -> dict[str, str]:
        """What the emulator is configured with to hand it invocations."""
        return {"url": self._server.url, "token": self._token}

    def start(self) -> InvokeEndpoint:
        self._server.start()
        return self

    def stop(self) -> None:
        self._server.stop()
        for arn, lock in self._locks.items():
            with lock:
                if arn in self._environments:
                    self._environments.pop(arn).kill()
        for log in self._logs:
            log.close()

    def _serve(self, request: Handler) -> None:
        if self._server.foreign(request) or not hmac.compare_digest(request.headers.get(INVOKE_TOKEN_HEADER, ""), self._token):
            return _lambda_answer(request, 403, {"message": "functions are invoked through the emulator, which judges "
                                                            "the caller's lambda:InvokeFunction"}, "AccessDeniedException")
        body = request.rfile.read(int(request.headers.get("Content-Length") or 0))
        path = urlsplit(request.path)
        found = INVOKE_PATH.match(path.path)
        if request.command != "POST" or found is None:
            return _lambda_answer(request, 404, {"message": f"no such route: {request.command} {path.path}"},
                                  "ResourceNotFoundException")
        arn = function_arn(unquote(found.group(1)), REGION, ACCOUNT_ID, dict(parse_qsl(path.query)).get("Qualifier"))
        arn = arn.removesuffix(":$LATEST")  # the local cloud runs each function's one version
        if arn not in self._functions:
            return _lambda_answer(request, 404, {"message": f"Function not found: {arn}"}, "ResourceNotFoundException")
        try:
            event = json.loads(body) if body.strip() else {}
        except ValueError as exc:
            return _lambda_answer(request, 400, {"message": f"Could not parse request body into json: {exc}"},
                                  "InvalidRequestContentException")
        kind = request.headers.get("X-Amz-Invocation-Type", "RequestResponse")
        if kind == "DryRun":
            return _lambda_answer(request, 204, None)
        if kind != "RequestResponse":
            return _lambda_answer(request, 400, {"message": f"the local cloud runs Invoke as RequestResponse or DryRun, "
                                                            f"not {kind[:20]}"}, "InvalidParameterValueException")
        reply = self._run(arn, event)
        if reply.get("ok"):
            return _lambda_answer(request, 200, reply["result"])
        error = {"errorMessage": reply.get("errorMessage", reply.get("error")), "errorType": reply.get("errorType", "Error"),
                 "requestId": str(uuid.uuid4()), "stackTrace": []}
        return _lambda_answer(request, 200, error, function_error="Unhandled")

    def _run(self, arn: str, event: Any) -> dict[str, Any]:
        function, log_path = self._functions[arn]
        with self._locks[arn]:
            try:
                if arn not in self._environments:
                    log = open(log_path, "a", buffering=1)  # noqa: SIM115 - closed when the endpoint stops
                    self._logs.append(log)
                    self._environments[arn] = ExecutionEnvironment(function, log)
                return self._environments[arn].invoke(event)
            except (FunctionTimeout, RuntimeError) as exc:
                broken = self._environments.pop(arn, None)
                if broken is not None:
                    broken.kill()  # as Lambda does: the next invocation starts in a fresh environment
                if isinstance(exc, FunctionTimeout):
                    return {"ok": False, "errorType": "Sandbox.Timedout",
                            "errorMessage": f"Task timed out after {function.timeout:.2f} seconds"}
                return {"ok": False, "errorType": "Runtime.ExitError", "errorMessage": str(exc)}


def _lambda_answer(request: Handler, status: int, document: Any, error: str = "",
                   function_error: str = "") -> None:
    """An answer in Lambda's REST JSON: an API error names its type in x-amzn-ErrorType; a function's own error is a
    200 whose payload is the error, marked by X-Amz-Function-Error."""
    data = b"" if document is None else json.dumps(document, default=str).encode()
    request.send_response(status)
    request.send_header("Content-Type", "application/json")
    if error:
        request.send_header("x-amzn-ErrorType", error)
    if function_error:
        request.send_header("X-Amz-Function-Error", function_error)
    if status == 200:
        request.send_header("X-Amz-Executed-Version", "$LATEST")
    request.send_header("Content-Length", str(len(data)))
    request.end_headers()
    request.wfile.write(data)
