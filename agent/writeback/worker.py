"""One source's write-back worker: its queued requests, oldest first, one at a time.

One at a time keeps two updates of the same alert in the order they were accepted, and keeps the
writes of a tenant to one Graph request in flight. Sources have their own workers, so one tenant's
outage never holds up another's. A request is retried (the source's backoff, the budget's
Retry-After) until it is delivered, Graph refuses it, or ``give_up_after_secs`` has passed since it
was accepted; then it is finished in the journal and audited. A request found in the journal at
startup simply continues where it stopped (``agent.writeback.executor``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from agent.clock import Clock
from agent.errors import StateError
from agent.writeback import audit
from agent.writeback.executor import Executor, GaveUp, RetryPolicy
from agent.writeback.queue import RequestQueue, WriteRequest, parse_time

log = logging.getLogger(__name__)


class SourceWorker:
    """Delivers the requests of one source until ``stop``; ``wake`` when a request was queued."""

    def __init__(
        self,
        source: str,
        executor: Executor,
        queue: RequestQueue,
        policy: RetryPolicy,
        give_up_after_secs: float,
        clock: Clock,
        on_finished: Callable[[WriteRequest], None] = lambda req: None,
    ) -> None:
        self.source = source
        self.executor = executor
        self.queue = queue
        self.policy = policy
        self.give_up_after_secs = give_up_after_secs
        self._clock = clock
        self._on_finished = on_finished
        self._wake = asyncio.Event()

    def wake(self) -> None:
        self._wake.set()

    async def run(self, stop: asyncio.Event) -> None:
        """Work until ``stop`` is set; raises only ``StateError`` (the journal cannot be written)."""
        for _ in range(10**12):
            if stop.is_set():
                return
            pending = self.queue.unfinished(self.source)
            if not pending:
                self._wake.clear()
                waiters = [asyncio.ensure_future(self._wake.wait()), asyncio.ensure_future(stop.wait())]
                try:
                    await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    for w in waiters:
                        w.cancel()
                    await asyncio.gather(*waiters, return_exceptions=True)
                continue
            await self.deliver(pending[0])

    async def deliver(self, req: WriteRequest) -> None:
        """Deliver ``req`` and finish it (done, failed with Graph's error, or expired)."""
        age = max(0.0, self._clock.now().timestamp() - parse_time(req.created))
        deadline = self._clock.monotonic() + max(0.0, self.give_up_after_secs - age)
        try:
            refused = await self.executor.deliver(req, self.policy, deadline)
        except GaveUp as exc:
            self._finish(
                req, {"code": "expired", "message": f"not delivered within give_up_after_secs: {exc}"[:500]}
            )
        except StateError:
            raise
        except Exception as exc:  # supervision boundary: a bug must not retry one request forever
            log.exception("Write-back delivery crashed.", extra={"request": req.id, "error": repr(exc)})
            self._finish(req, {"code": "internalError", "message": repr(exc)[:300]})
        else:
            self._finish(req, None if refused is None else refused.to_json())

    def _finish(self, req: WriteRequest, error: dict[str, object] | None) -> None:
        self.queue.finish(req, error)
        audit.finished(req)
        self._on_finished(req)
