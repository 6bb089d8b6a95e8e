"""HTTP endpoints for the functions the program exposes (the upload API), served on 127.0.0.1.

Each request becomes a payload-format-2.0 event for the function, run in its own execution
environment like every other function here. The emulator cannot check IAM signatures or JWTs,
so this endpoint does not authenticate: the deployed one always does (AWS_IAM or a JWT authorizer).
"""
from __future__ import annotations

import json
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from localcloud.pollers import ExecutionEnvironment, FunctionSpec


class FunctionEndpoint:
    def __init__(self, function: FunctionSpec, log: Any):
        self.function = function
        self._log = log
        self._environment: ExecutionEnvironment | None = None
        self._lock = threading.Lock()  # one request at a time per environment, as Lambda does
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                endpoint._serve(self)

            do_GET = do_PUT = do_DELETE = do_POST  # noqa: N815 - let the function route (and 404) them

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True, name=f"endpoint-{function.name}")
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> FunctionEndpoint:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        with self._lock:
            if self._environment is not None:
                self._environment.kill()

    def _serve(self, request: BaseHTTPRequestHandler) -> None:
        body = request.rfile.read(int(request.headers.get("Content-Length") or 0)).decode("utf-8", "replace")
        path = urlsplit(request.path)
        event = {
            "version": "2.0", "routeKey": "$default", "rawPath": path.path, "rawQueryString": path.query,
            "headers": {k.lower(): v for k, v in request.headers.items()},
            "requestContext": {"http": {"method": request.command, "path": path.path, "protocol": "HTTP/1.1",
                                        "sourceIp": request.client_address[0], "userAgent": request.headers.get("User-Agent", "")},
                               "requestId": str(uuid.uuid4()), "accountId": "123456789012", "stage": "$default",
                               "domainName": urlsplit(self.url).netloc},
            "body": body or None, "isBase64Encoded": False,
        }
        with self._lock:
            if self._environment is None:
                self._environment = ExecutionEnvironment(self.function, self._log)
            reply = self._environment.invoke(event)
        if reply.get("ok"):
            result = reply["result"]
            status, headers, payload = result.get("statusCode", 200), result.get("headers", {}), result.get("body", "")
        else:
            status, headers, payload = 502, {"content-type": "application/json"}, json.dumps({"message": reply.get("error")})
        data = payload.encode()
        request.send_response(status)
        for name, value in headers.items():
            request.send_header(name, value)
        request.send_header("Content-Length", str(len(data)))
        request.end_headers()
        request.wfile.write(data)
