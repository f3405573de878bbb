"""moto's standalone S3 server on a free loopback port, counting every request that reaches it
(a WSGI layer around the server's app: what the server saw, not what the client says it sent).
Used by tests/integration/test_remote_fs.py and benchmarks/remote.py."""

from __future__ import annotations

import logging
import socket
import urllib.request
from dataclasses import dataclass
from typing import Any

from moto.server import ThreadedMotoServer


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class Hit:
    method: str
    path: str
    query: str
    range: str | None
    nbytes: int  # response body bytes

    @property
    def is_listing(self) -> bool:
        return self.method == "GET" and "list-type" in self.query

    @property
    def is_object_read(self) -> bool:
        return self.method in ("GET", "HEAD") and not self.is_listing and self.path.count("/") > 1


class CountingS3:
    """Start, stop and start again on the same port (moto keeps its buckets in-process)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.hits: list[Hit] = []
        self._server: ThreadedMotoServer | None = None
        logging.getLogger("werkzeug").setLevel(logging.ERROR)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
        self._server.start()
        inner = self._server._server
        assert inner is not None
        inner.app = self._counting(inner.app)  # type: ignore[attr-defined]

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None

    def _counting(self, app: Any) -> Any:
        def counted(environ: dict[str, Any], start_response: Any) -> list[bytes]:
            body = app(environ, start_response)
            try:
                chunks = [bytes(c) for c in body]
            finally:
                getattr(body, "close", lambda: None)()
            self.hits.append(
                Hit(
                    environ["REQUEST_METHOD"],
                    environ.get("PATH_INFO", ""),
                    environ.get("QUERY_STRING", ""),
                    environ.get("HTTP_RANGE"),
                    sum(len(c) for c in chunks),
                )
            )
            return chunks

        return counted

    def reads_since(self, mark: int) -> list[Hit]:
        """The GET/HEAD requests (what a reader sends) since `len(self.hits)` was `mark`."""
        return [h for h in self.hits[mark:] if h.method in ("GET", "HEAD")]

    def require_credentials(self, on: bool) -> None:
        """moto checks access keys only when asked to (its reset-auth endpoint)."""
        body = b"0" if on else b"inf"
        req = urllib.request.Request(
            f"{self.endpoint}/moto-api/reset-auth",
            body,
            {"Content-Type": "text/plain"},  # a form body would be parsed away
            method="POST",
        )
        urllib.request.urlopen(req, timeout=10).read()
