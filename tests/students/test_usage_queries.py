"""What the student page asks Prometheus for a student's GPU-hours (status/usage.py): the
live page test reads real history from a real Prometheus; this one records the requests
themselves, which that test sees only through their sums."""

from __future__ import annotations

import asyncio
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from dlcourse_status.usage import Prometheus


class QueryLog(BaseHTTPRequestHandler):
    asked: list[dict[str, list[str]]] = []

    def do_GET(self) -> None:
        self.asked.append(parse_qs(urlsplit(self.path).query))
        body = json.dumps(
            {"status": "success",
             "data": {"resultType": "vector", "result": [{"metric": {}, "value": [0, "7200"]}]}}
        ).encode()  # fmt: skip
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


def test_week_and_term_are_asked_at_one_instant(tmp_path):
    """increase() extrapolates to the end of its range: a week evaluated a moment after the
    term showed more GPU-hours than the term (CI, once)."""
    password = tmp_path / "my-gpu.password"
    password.write_text("secret\n")
    password.chmod(0o600)
    server = ThreadingHTTPServer(("127.0.0.1", 0), QueryLog)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        usage = asyncio.run(Prometheus(url, "my-gpu", str(password)).usage('ada"x'))
    finally:
        server.shutdown()
    assert usage["week"]["gpu_hours"] == usage["term"]["gpu_hours"] == 2.0
    assert len(QueryLog.asked) == 4
    assert len({tuple(asked.get("time", [])) for asked in QueryLog.asked}) == 1
    assert all(len(asked["time"]) == 1 for asked in QueryLog.asked)
    assert all('{user="ada\\"x"}' in asked["query"][0] for asked in QueryLog.asked)
