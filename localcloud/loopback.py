"""What every listener of the local cloud does before it answers (the emulator's two processes, the upload endpoint,
the live gallery): it serves this machine's user, and every other web page is a stranger.

  - It answers only for its own Host, 127.0.0.1:PORT or localhost:PORT, and 421 to anything else: a page whose DNS
    name was rebound to 127.0.0.1 still sends its own name (DNS rebinding).
  - Every answer carries SECURITY_HEADERS: no page may frame it, no browser may sniff another type into it, and an
    API's answer may load nothing (API_POLICY); the live gallery's page sends a policy of its own.
"""
from __future__ import annotations

import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

LOOPBACK_NAMES = ("127.0.0.1", "localhost")
MISDIRECTED = "421 Misdirected Request"
# For JSON and XML answers: nothing in them may load or run, and no page may frame them.
API_POLICY = "default-src 'none'; frame-ancestors 'none'"


def hosts(port: int) -> frozenset[str]:
    """The Host values a listener on 127.0.0.1:`port` answers for."""
    return frozenset(f"{name}:{port}" for name in LOOPBACK_NAMES)


def misdirected_message(port: int) -> str:
    return f"the local cloud answers only for {' and '.join(sorted(hosts(port)))}"


def security_headers(policy: str = API_POLICY) -> dict[str, str]:
    """The headers every answer carries; `policy` is its Content-Security-Policy."""
    return {"Content-Security-Policy": policy, "X-Frame-Options": "DENY", "X-Content-Type-Options": "nosniff"}


class Secured(BaseHTTPRequestHandler):
    """A request handler (http.server's, or werkzeug's under moto) that puts the security headers on every answer
    it sends, its server's own error pages included (a method nothing serves, a malformed request, a crash); an
    answer with a policy of its own sets `policy` first."""

    policy = API_POLICY

    def end_headers(self) -> None:
        for name, value in security_headers(self.policy).items():
            self.send_header(name, value)
        self.policy = API_POLICY  # the next answer on this connection starts from the APIs' own
        super().end_headers()


class Handler(Secured):
    """http.server's request handler for the local cloud's own servers: secured, and quiet."""

    def log_message(self, *args: Any) -> None:
        pass


class LoopbackServer:
    """An HTTP server on 127.0.0.1 (a free port unless one is given) whose answers are secured and that tells a
    request addressed to another name (`foreign`) from its own; `serve` gets every request, whatever its method."""

    def __init__(self, serve: Callable[[Handler], None], name: str, port: int = 0):
        class Serving(Handler):
            def do_POST(self) -> None:
                serve(self)

            do_GET = do_PUT = do_DELETE = do_OPTIONS = do_POST  # noqa: N815 - the server routes (and 404s) them

        self._server = ThreadingHTTPServer(("127.0.0.1", port), Serving)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True, name=name)
        self.port = self._server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.misdirected = misdirected_message(self.port)

    def start(self) -> LoopbackServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread.is_alive():  # shutdown() waits for serve_forever, which never ran if start() did not
            self._server.shutdown()
        self._server.server_close()

    def foreign(self, request: BaseHTTPRequestHandler) -> bool:
        return request.headers.get("Host") not in hosts(self.port)
