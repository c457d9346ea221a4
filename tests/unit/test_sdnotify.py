"""systemd notify protocol over a real AF_UNIX datagram socket."""

from __future__ import annotations

import socket
from pathlib import Path

from agent.sdnotify import Notifier


class TestNotifier:
    def test_messages_reach_the_socket(self, tmp_path: Path) -> None:
        """READY/STOPPING/WATCHDOG arrive as sd_notify datagrams; the watchdog interval is half the timeout."""
        path = str(tmp_path / "notify.sock")
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
            server.bind(path)
            server.settimeout(2)
            n = Notifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "10000000"})
            assert n.watchdog_interval == 5.0
            assert n.ready("1 source(s)")
            assert server.recv(1024) == b"READY=1\nSTATUS=1 source(s)"
            assert n.stopping() and server.recv(1024) == b"STOPPING=1"
            assert n.watchdog() and server.recv(1024) == b"WATCHDOG=1"

    def test_noop_outside_systemd(self) -> None:
        """Without NOTIFY_SOCKET nothing is sent and nothing fails."""
        n = Notifier({})
        assert not n.enabled and not n.ready() and n.watchdog_interval is None

    def test_watchdog_for_another_pid_is_ignored(self) -> None:
        """WATCHDOG_PID naming another process disables pings (sd_watchdog_enabled semantics)."""
        assert (
            Notifier({"NOTIFY_SOCKET": "/x", "WATCHDOG_USEC": "1000", "WATCHDOG_PID": "1"}).watchdog_interval
            is None
        )
