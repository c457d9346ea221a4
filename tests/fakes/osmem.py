"""osmem-server (PyPI ``osmem-server``): an in-memory OpenSearch-API emulator, run as a real process.

Started on a chosen 127.0.0.1 port so a test can stop it (SIGSTOP), resume it (SIGCONT), kill it and
start it again on the same port. In memory: a killed instance forgets its documents.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import osmem_server
import pytest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Osmem:
    """One osmem-server process on a fixed port."""

    def __init__(self, log_dir: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._log_dir = log_dir
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 20.0) -> None:
        log = (self._log_dir / "osmem.log").open("ab")
        self.proc = subprocess.Popen(
            [
                osmem_server.resolve_binary(),
                "-addr",
                f"127.0.0.1:{self.port}",
                "-no-ja",
                "-no-stdin-watch",
                "-parent-pid",
                str(os.getpid()),
            ],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.get("/")
                return
            except OSError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise RuntimeError("osmem-server did not start") from None
                time.sleep(0.05)

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(timeout=10)
            self.proc = None

    def pause(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)

    def has_unread_request(self) -> bool:
        """A connection to the server holds bytes it has not read (Linux ``/proc/net/tcp``)."""
        for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
            fields = line.split()
            local_port = int(fields[1].split(":")[1], 16)
            rx_queue = int(fields[4].split(":")[1], 16)
            if local_port == self.port and fields[3] == "01" and rx_queue > 0:
                return True
        return False

    def get(self, path: str) -> Any:
        with urllib.request.urlopen(self.url + path, timeout=10) as resp:
            return json.loads(resp.read() or b"{}")

    def request(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(
            self.url + path, data=data, method=method, headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                return json.loads(resp.read() or b"{}")
        except urllib.error.HTTPError as exc:
            return json.loads(exc.read() or b"{}")

    def ids(self, index: str) -> list[str]:
        self.request("POST", f"/{index}/_refresh")
        hits = self.get(f"/{index}/_search?size=10000")["hits"]["hits"]
        return [h["_source"]["id"] for h in hits]

    def count(self, index: str) -> int:
        self.request("POST", f"/{index}/_refresh")
        return int(self.get(f"/{index}/_count")["count"])


@pytest.fixture
def osmem(tmp_path: Path) -> Iterator[Osmem]:
    server = Osmem(tmp_path)
    server.start()
    try:
        yield server
    finally:
        if server.proc is not None:
            server.resume()
        server.kill()
