"""The HTTP side of ``oomtop serve``: ``/metrics``, ``/healthz`` and an index, on threads of their own.

A WSGI app on the standard library's server (one thread per request, so a slow scraper never holds up another);
no web framework.  Every request only reads the :class:`~oomtop.serve.exporter.Exporter`: nothing here touches
/proc, cgroupfs or the kernel log.
"""

from __future__ import annotations

import socket
import socketserver
import threading
from collections.abc import Iterable
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server
from wsgiref.types import StartResponse

from oomtop.serve.exporter import Exporter

INDEX = b"""<!doctype html><title>oomtop serve</title>
<h1>oomtop serve</h1><p><a href="/metrics">/metrics</a> (OpenMetrics or the Prometheus text format, by Accept)
&middot; <a href="/healthz">/healthz</a> (200 while samples are fresh, 503 with the reason otherwise)</p>
"""


class _ThreadingServer(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True
    allow_reuse_address = True  # a restarted exporter binds its port again at once (TIME_WAIT)


class _ThreadingServer6(_ThreadingServer):
    address_family = socket.AF_INET6


class _QuietHandler(WSGIRequestHandler):
    """No access log on stderr: a scrape every second would flood the journal."""

    def log_message(self, format: str, *args: Any) -> None:
        pass


def metrics_app(exporter: Exporter) -> Any:
    """The WSGI application."""

    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "/")
        method = environ.get("REQUEST_METHOD", "GET")
        if method not in ("GET", "HEAD"):
            start_response("405 Method Not Allowed", [("Content-Type", "text/plain"), ("Allow", "GET, HEAD")])
            return [b"only GET and HEAD\n"]
        if path == "/metrics":
            gzipped = "gzip" in environ.get("HTTP_ACCEPT_ENCODING", "")
            body, content_type = exporter.scrape(environ.get("HTTP_ACCEPT", ""), gzipped=gzipped)
            headers = [("Content-Type", content_type), ("Content-Length", str(len(body)))]
            if gzipped:
                headers.append(("Content-Encoding", "gzip"))
            start_response("200 OK", headers)
            return [b"" if method == "HEAD" else body]
        if path == "/healthz":
            fresh, why = exporter.health()
            text = (why + "\n").encode()
            status = "200 OK" if fresh else "503 Service Unavailable"
            start_response(status, [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(text)))])
            return [b"" if method == "HEAD" else text]
        if path == "/":
            start_response("200 OK", [("Content-Type", "text/html; charset=utf-8")])
            return [INDEX]
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"not found: try /metrics or /healthz\n"]

    return app


class MetricsServer:
    """The server, bound at construction (a port in use fails here, before collection starts)."""

    def __init__(self, host: str, port: int, exporter: Exporter) -> None:
        server_class = _ThreadingServer6 if ":" in host else _ThreadingServer
        self._server = make_server(
            host, port, metrics_app(exporter), server_class=server_class, handler_class=_QuietHandler
        )
        self._thread: threading.Thread | None = None

    @property
    def address(self) -> tuple[str, int]:
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._server.serve_forever, name="oomtop-serve-http", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
