"""Controllable in-process sinks for pipeline tests (the real sinks have their own suites)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from agent.errors import PermanentSinkError, TransientSinkError
from agent.model import Event
from agent.sinks.base import SendResult


class RecordingSink:
    """Delivers into a list. ``gate`` (when cleared) holds every send; ``script`` queues outcomes."""

    def __init__(self, name: str = "rec") -> None:
        self.name = name
        self.delivered: list[Event] = []
        self.gate = asyncio.Event()
        self.gate.set()
        self.script: list[Exception | SendResult] = []
        self.attempts = 0
        self.sending = asyncio.Event()
        self.closed = False

    async def start(self) -> None:
        return None

    async def healthcheck(self) -> str:
        return "recording"

    async def send(self, events: Sequence[Event]) -> SendResult:
        self.attempts += 1
        self.sending.set()
        await self.gate.wait()
        if self.script:
            outcome = self.script.pop(0)
            if isinstance(outcome, Exception):
                raise outcome
            failed = set(outcome.retry) | set(outcome.rejected)
            self.delivered.extend(e for i, e in enumerate(events) if i not in failed)
            return outcome
        self.delivered.extend(events)
        return SendResult()

    async def aclose(self) -> None:
        self.closed = True


def transient(msg: str = "connection reset") -> TransientSinkError:
    return TransientSinkError(msg, retry_after=0)


def permanent(msg: str = "400 invalid event") -> PermanentSinkError:
    return PermanentSinkError(msg)
