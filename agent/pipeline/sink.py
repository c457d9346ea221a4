"""The sink seam: what the pipeline asks of every sink (``agent.sinks`` implements it).

A sink delivers a batch of already-serialized events and says, per event, what happened. It never
retries by itself across calls and never acknowledges what the receiver does not have: the runner
(``agent.pipeline.runner``) retries, dead-letters and acknowledges based on what ``send`` returns.
The seam lives with the pipeline, which drives it, so that sinks depend on the pipeline (its seam and
the lane settings every sink table carries) and never the other way round.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from agent.model import Event

#: Longest a sink's ``healthcheck`` may take, for the runner's idle check and ``validate
#: --check-connectivity`` alike; past it the receiver counts as not answering.
HEALTHCHECK_TIMEOUT_SECS = 15.0


@dataclass(slots=True)
class SendResult:
    """The outcome of one ``send``. Events not named here were delivered.

    ``rejected`` maps an index in the batch to the receiver's reason for a permanent rejection (the
    event goes to the dead-letter file); ``retry`` lists indexes that failed transiently and are to
    be sent again; ``dropped`` maps indexes the sink's own policy discarded (e.g. UDP ``oversize =
    "drop"``) to the reason, which the runner counts once in ``siem_agent_dropped_total``.
    """

    rejected: dict[int, str] = field(default_factory=dict)
    retry: list[int] = field(default_factory=list)
    dropped: dict[int, str] = field(default_factory=dict)


class Sink(Protocol):
    """Delivers batches of events to one receiver."""

    name: str

    async def start(self) -> None:
        """Open connections or files. Raises ``SinkError``; a retriable one is retried by the runner."""
        ...

    async def healthcheck(self) -> str:
        """Prove the receiver is there and answers, without sending an event; say what was checked.

        Contacts the peer the way a send would begin (connect and handshake, a health or root request,
        a token), bounded by the sink's own timeouts, and returns a short description of what answered
        (``reachable: …``). Raises a ``SinkError`` naming what is wrong, never a secret. Whatever it
        opens is kept for the next send or released by ``aclose``.
        """
        ...

    async def send(self, events: Sequence[Event]) -> SendResult:
        """Deliver ``events``; return once the receiver has them (as far as the protocol can tell).

        Raises ``TransientSinkError`` when nothing can be known to be delivered (the whole batch is
        retried) and ``PermanentSinkError`` when the receiver rejected the batch itself. Cancellation
        leaves the batch unacknowledged.
        """
        ...

    async def aclose(self) -> None:
        """Release every connection and file. Safe to call twice."""
        ...


@runtime_checkable
class Reopenable(Protocol):
    """An optional capability: a sink writing to a file that logrotate may move (the file sink)."""

    def reopen(self) -> None:
        """Reopen the file by its path before the next write (SIGHUP, after logrotate). Never blocks."""
        ...
