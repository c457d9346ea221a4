"""The RELP sink: syslog messages to rsyslog's ``imrelp`` (or any librelp server), plain or TLS.

Delivery. Each message is one ``syslog`` transaction; up to ``window`` are in flight. ``send``
returns only when every message of the batch has its ``rsp``: ``200`` is delivered (the server has
processed it — with rsyslog, as far as its queue and action configuration make "processed" mean
"written", see docs/sinks.md), ``4xx`` is a permanent rejection of that message (dead-letter),
any other code is retried. If the session breaks (reset, EOF, ``serverclose``, a malformed frame,
or no answer within ``timeout_secs``), the messages already answered stay delivered and the
unanswered ones go back to the runner (``SendResult.retry``), which sends them on a new session;
with nothing answered at all, ``TransientSinkError``. A receiver can therefore see at most
``window`` duplicates per broken session (messages it processed whose ``rsp`` never arrived).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from agent import __version__
from agent.errors import TransientSinkError
from agent.model import Event
from agent.sinks.base import SendResult, SinkContext
from agent.sinks.config import RelpSinkConfig
from agent.sinks.relp.session import Answer, RelpSession, SessionBroken
from agent.sinks.tcp import open_stream
from agent.sinks.tls import client_context

log = logging.getLogger(__name__)

OFFERS = b"relp_version=0\nrelp_software=siem-agent,%s,-\ncommands=syslog" % __version__.encode()


class RelpSink:
    """Sends each payload as a RELP ``syslog`` command; see the module docstring."""

    def __init__(self, config: RelpSinkConfig, ctx: SinkContext) -> None:
        self.name = config.name
        self._cfg = config
        self._m = ctx.metrics
        self._ssl = client_context(config.tls, config.name) if config.tls is not None else None
        self._server_name = (config.tls.server_name or config.host) if config.tls is not None else None
        self._peer = f"{config.host}:{config.port}"
        self._session: RelpSession | None = None
        self._opened_before = False
        self._g_events = self._m.sink_unacked_events.labels(self.name)
        self._g_bytes = self._m.sink_unacked_bytes.labels(self.name)

    async def start(self) -> None:
        if self._session is None:  # starting a connected sink must not leak its session
            await self._open()

    async def healthcheck(self) -> str:
        """Open a RELP session (connect, TLS, ``open`` offering ``syslog``) unless a sound one is open."""
        if self._session is not None and self._session.broken is not None:
            self._drop("disconnect")
        await self.start()
        return f"reachable: RELP session open with {self._cfg.host}:{self._cfg.port}"

    async def _open(self) -> RelpSession:
        try:
            reader, writer = await open_stream(
                self._cfg.host, self._cfg.port, self._ssl, self._server_name, self._cfg.connect_timeout_secs
            )
        except TransientSinkError:
            self._m.sink_connections.labels(self.name, "error").inc()
            raise
        session = RelpSession(reader, writer, self._cfg.window)
        try:
            async with asyncio.timeout(self._cfg.connect_timeout_secs):
                offers = await session.open(OFFERS)
        except TimeoutError:
            session.abort()
            self._m.sink_connections.labels(self.name, "error").inc()
            raise TransientSinkError(f"RELP open to {self._peer} timed out") from None
        except (TransientSinkError, SessionBroken) as exc:
            session.abort()
            self._m.sink_connections.labels(self.name, "error").inc()
            raise TransientSinkError(f"RELP open to {self._peer}: {exc}") from None
        if "syslog" not in offers.get("commands", "").split(","):
            await session.close(self._cfg.connect_timeout_secs)
            self._m.sink_connections.labels(self.name, "error").inc()
            raise TransientSinkError(f"RELP server {self._peer} does not offer the syslog command")
        self._m.sink_connections.labels(self.name, "connect").inc()
        if self._opened_before:
            self._m.sink_reconnects.labels(self.name).inc()
        self._opened_before = True
        log.info(
            "RELP session open.",
            extra={"sink": self.name, "peer": self._peer, "tls": self._ssl is not None,
                   "server": offers.get("relp_software", "")},
        )  # fmt: skip
        self._session = session
        return session

    async def send(self, events: Sequence[Event]) -> SendResult:
        if not events:
            return SendResult()
        session = self._session
        if session is not None and session.broken is not None:
            self._drop("disconnect")
            session = None
        if session is None:
            session = await self._open()
        answers: list[Answer] = []
        reason = ""
        try:
            async with asyncio.timeout(self._cfg.timeout_secs):
                for e in events:
                    answers.append(await session.submit("syslog", e.payload))
                    self._gauge(session)
                if answers:
                    # wait(), not gather(): a timeout must not cancel the answers we inspect below.
                    await asyncio.wait(answers)
        except TimeoutError:
            reason = f"no rsp from {self._peer} within {self._cfg.timeout_secs}s"
        except SessionBroken as exc:
            reason = str(exc)
        except asyncio.CancelledError:
            self._drop("disconnect")
            raise
        return self._outcome(events, answers, reason or session.broken or "")

    def _outcome(self, events: Sequence[Event], answers: list[Answer], reason: str) -> SendResult:
        result = SendResult()
        unanswered = 0
        delivered = 0
        last_error = ""
        for i in range(len(events)):
            rsp = answers[i].result() if i < len(answers) and answers[i].done() else None
            if rsp is None:
                unanswered += i < len(answers)  # written, so possibly processed: a duplicate risk
                result.retry.append(i)
            elif rsp.ok:
                delivered += 1
            elif 400 <= rsp.code < 500:
                result.rejected[i] = f"RELP server rejected the message: {rsp.code} {rsp.text}"
            else:
                last_error = f"{rsp.code} {rsp.text}"
                result.retry.append(i)
        if unanswered or len(answers) < len(events):
            # The session cannot be trusted with more: answers to what was sent may never come.
            self._drop("error")
            self._m.sink_resent.labels(self.name).inc(unanswered)
        self._gauge(self._session)
        if delivered == 0 and not result.rejected:
            why = f"RELP session to {self._peer} broke: {reason}" if result.retry and reason else ""
            raise TransientSinkError(why or f"RELP server {self._peer} answered {last_error}")
        if result.retry:
            log.warning(
                "RELP: part of the batch is to be re-sent.",
                extra={"sink": self.name, "retry": len(result.retry), "error": reason or last_error},
            )
        return result

    def _gauge(self, session: RelpSession | None) -> None:
        self._g_events.set(session.unacked if session is not None else 0)
        self._g_bytes.set(session.unacked_bytes if session is not None else 0)

    def _drop(self, event: str) -> None:
        session, self._session = self._session, None
        if session is not None:
            session.abort()
            self._m.sink_connections.labels(self.name, event).inc()

    async def aclose(self) -> None:
        session, self._session = self._session, None
        self._gauge(None)
        if session is None:
            return
        self._m.sink_connections.labels(self.name, "disconnect").inc()
        await session.close(self._cfg.connect_timeout_secs)
