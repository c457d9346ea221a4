"""systemd ``Type=notify`` support without a dependency (sd_notify(3) wire protocol).

Messages are datagrams to the AF_UNIX socket named by ``$NOTIFY_SOCKET`` (a leading ``@`` means the
abstract namespace). Without that variable every call is a no-op, so the agent runs the same outside
systemd.
"""

from __future__ import annotations

import os
import socket


class Notifier:
    """Sends READY=1, STOPPING=1, WATCHDOG=1 and STATUS= to systemd when it asked for them."""

    def __init__(self, environ: dict[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        address = env.get("NOTIFY_SOCKET", "")
        self._address = "\0" + address[1:] if address.startswith("@") else address
        usec = env.get("WATCHDOG_USEC", "")
        pid = env.get("WATCHDOG_PID", "")
        ok_pid = not pid or pid == str(os.getpid())
        #: Seconds between WATCHDOG=1 pings (half the systemd timeout), or ``None`` if not requested.
        self.watchdog_interval = (
            int(usec) / 2_000_000 if usec.isdigit() and ok_pid and int(usec) > 0 else None
        )

    @property
    def enabled(self) -> bool:
        return bool(self._address)

    def send(self, *fields: str) -> bool:
        """Send ``fields`` as one message; ``False`` if not under systemd or the socket is gone."""
        if not self._address:
            return False
        data = "\n".join(fields).encode()
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.sendto(data, self._address)
        except OSError:
            return False
        return True

    def ready(self, status: str = "") -> bool:
        return self.send("READY=1", *(["STATUS=" + status] if status else []))

    def stopping(self) -> bool:
        return self.send("STOPPING=1")

    def watchdog(self) -> bool:
        return self.send("WATCHDOG=1")
