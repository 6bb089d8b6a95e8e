"""HTTP endpoints for the functions the program exposes (the upload API), served on 127.0.0.1.

Each request becomes a payload-format-2.0 event for the function, run in its own execution environment like
every other function here. The deployed endpoint authenticates every caller (IAM, or a JWT authorizer); this
one cannot check IAM signatures or JWTs, so it stands in for them: the caller is the local user, or whoever a
local-only `X-Localcloud-Caller` header names (tests use it to be several people). It refuses what a front
door should: a foreign Host (DNS rebinding, localcloud/loopback.py), a missing, malformed or oversized
Content-Length; every answer carries the security headers.
"""
from __future__ import annotations

import json
import threading
import uuid
from http.server import ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from localcloud import loopback
from localcloud.controls import BucketCors, requested_headers
from localcloud.pollers import ExecutionEnvironment, FunctionSpec

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
        endpoint = self

        class Handler(loopback.Handler):
            def do_POST(self) -> None:  # noqa: N802 - http.server calls it by this name
                endpoint._serve(self)

            do_GET = do_PUT = do_DELETE = do_OPTIONS = do_POST  # noqa: N815 - let the function route (and 404) them

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True, name=f"endpoint-{function.name}")
        port = self._server.server_address[1]
        self.url = f"http://127.0.0.1:{port}"
        self._port = port

    def start(self) -> FunctionEndpoint:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        with self._lock:
            if self._environment is not None:
                self._environment.kill()

    def _answer(self, request: loopback.Handler, status: int, payload: str, headers: dict[str, str] | None = None) -> None:
        data = payload.encode()
        request.send_response(status)
        allowed = self._cors.actual("", request.headers.get("Origin"), request.command)
        # The function's own headers, then CORS; the security headers come last (loopback.Handler).
        for name, value in {**(headers or {"content-type": "application/json"}), **allowed}.items():
            request.send_header(name, value)
        request.send_header("Content-Length", str(len(data)))
        request.end_headers()
        request.wfile.write(data)

    def _serve(self, request: loopback.Handler) -> None:
        if request.headers.get("Host") not in loopback.hosts(self._port):
            return self._answer(request, 421, json.dumps({"message": loopback.misdirected_message(self._port)}))
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

    def _preflight(self, request: loopback.Handler) -> None:
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
