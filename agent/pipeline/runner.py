"""SinkRunner: drains one sink's queue, encodes, sends with retries, dead-letters, acknowledges.

The runner owns every retry: a transient failure (``TransientSinkError``) is retried with
exponential backoff and full jitter, bounded by ``retry.max_backoff_secs``, for as long as it takes
(the checkpoint cannot pass an undelivered batch, so giving up would mean losing it). A permanent
rejection — of one event (``SendResult.rejected``) or of a batch (``PermanentSinkError``) — goes to
the dead-letter file and counts as done. A pipeline batch is acknowledged once all its events are
delivered or dead-lettered.

Encoding is the boundary no alert crosses with an exception: whatever a codec raises for one alert,
that alert is encoded again with its over-deep values cut (``agent.nesting``: the only failure a
well-formed alert can still cause is nesting beyond what orjson or Python recursion allow), and
dead-lettered with the reason if that fails too. The normal path pays nothing for this.

What one send carries is bounded by ``batch.max_events``: a collection takes another queued batch only
if it still fits (a single batch larger than the limit is sent on its own). After acknowledging, the
runner awaits ``durable`` (the commit path's barrier) before sending more, so after a crash a sink
re-sends at most the collection it was sending.

Readiness: a failed start or send marks the sink down with its error (``/readyz`` names it, e.g. a
404 from a wrong URL); a sink idle for ``idle_check_secs`` (the agent uses ``IDLE_CHECK_SECS``) asks
its receiver once (``healthcheck``) so a receiver gone meanwhile shows before the next alert does.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
import traceback
from collections.abc import Awaitable, Callable, Sequence

from agent.codecs import Serializer
from agent.errors import EncodeError, PermanentSinkError, SinkError, StateError, TransientSinkError
from agent.metrics import AgentMetrics
from agent.model import Alert, Batch, Event
from agent.nesting import MAX_DEPTH, cut_depth
from agent.pipeline.acks import AckTracker
from agent.pipeline.config import BatchConfig, RetryConfig
from agent.pipeline.dead_letter import DeadLetterFile
from agent.pipeline.queue import BoundedQueue
from agent.pipeline.sink import HEALTHCHECK_TIMEOUT_SECS, Sink
from agent.retry import backoff

log = logging.getLogger(__name__)

#: The ``field`` label of ``siem_agent_truncated_fields_total`` for values cut by nesting depth.
NESTING_FIELD = "(nesting)"

Sleep = Callable[[float], Awaitable[None]]

#: A sink with nothing to send for this long gets one ``healthcheck`` (then again after as long).
IDLE_CHECK_SECS = 60.0


class SinkRunner:
    """Moves batches from one queue into one sink until the queue is closed and empty."""

    def __init__(
        self,
        sink: Sink,
        serializer: Serializer,
        queue: BoundedQueue,
        acks: AckTracker,
        dead_letter: DeadLetterFile,
        batch: BatchConfig,
        retry: RetryConfig,
        metrics: AgentMetrics,
        sleep: Sleep = asyncio.sleep,
        rng: random.Random | None = None,
        on_health: Callable[[bool, str | None], None] | None = None,
        durable: Callable[[], Awaitable[None]] | None = None,
        idle_check_secs: float | None = None,
    ) -> None:
        self.sink = sink
        self._serializer = serializer
        self._queue = queue
        self._acks = acks
        self._dead = dead_letter
        self._batch = batch
        self._retry = retry
        self._m = metrics
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._on_health = on_health
        self._durable = durable
        self._idle_secs = idle_check_secs
        #: An unexpected exception from ``healthcheck`` was logged (once, until a check passes again).
        self._idle_check_broken = False

    async def run(self) -> None:
        """Start the sink (retrying), then deliver until the queue closes. Cancel to abandon."""
        await self._start()
        while True:
            batches = await self._collect()
            if not batches:
                return
            events: list[Event] = []
            for b in batches:
                events.extend(await self._encode(b))
            if events:
                await self._deliver(events)
            for b in batches:
                self._acks.ack(b)
            if self._durable is not None:
                try:
                    await self._durable()
                except StateError:
                    # The checkpoint writer failed (it reports that, once) and the agent is stopping:
                    # sending more would only add what a restart re-sends.
                    log.info(
                        "Sink lane stopped: the checkpoint cannot be written.", extra={"sink": self.sink.name}
                    )
                    return

    async def _start(self) -> None:
        attempt = 0
        while True:
            try:
                await self.sink.start()
            except TransientSinkError as exc:
                self._set_health(False, str(exc))
                delay = exc.retry_after if exc.retry_after is not None else self._backoff(attempt)
                log.warning("Sink start failed; retrying.", extra={"sink": self.sink.name, "error": str(exc)})
                attempt += 1
                await self._sleep(delay)
                continue
            self._set_health(True)
            return

    async def _collect(self) -> list[Batch]:
        """Wait for one batch, then take more for up to ``batch.timeout_secs`` while under the limits."""
        first = await self._queue.get(timeout=self._idle_secs)
        while first is None:
            if self._queue.closed:
                return []
            await self._idle_check()
            first = await self._queue.get(timeout=self._idle_secs)
        batches = [first]
        count = len(first.alerts)
        deadline = time.monotonic() + self._batch.timeout_secs
        while count < self._batch.max_events:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            nxt = await self._queue.get(timeout=remaining, max_events=self._batch.max_events - count)
            if nxt is None:
                break
            batches.append(nxt)
            count += len(nxt.alerts)
        return batches

    async def _encode(self, batch: Batch) -> list[Event]:
        events = []
        failed = []
        for alert in batch.alerts:
            try:
                events.append(Event(alert, self._serializer.encode(alert)))
            except Exception as exc:  # one alert, whatever it holds, must never stop the sink
                payload, reason = self._encode_cut(alert, exc)
                if payload is None:
                    failed.append((alert, reason))
                else:
                    events.append(Event(alert, payload))
        for _, reason in failed:
            log.warning(
                "Alert could not be encoded; dead-lettered.", extra={"sink": self.sink.name, "error": reason}
            )
        if failed:
            await self._dead.write_each(self.sink.name, [(alert, f"encode: {r}") for alert, r in failed])
            self._m.dead_lettered.labels(self.sink.name, "encode_error").inc(len(failed))
        return events

    def _encode_cut(self, alert: Alert, exc: Exception) -> tuple[bytes | None, str]:
        """The failure path of one alert: encoded again with values nested deeper than
        ``agent.nesting.MAX_DEPTH`` cut (counted like a truncation), or ``(None, reason)``."""
        reason = str(exc) if isinstance(exc, EncodeError) else f"{type(exc).__name__}: {exc}"
        cut, cuts = cut_depth(alert)
        if not cuts:
            return None, reason[:500]
        try:
            payload = self._serializer.encode(cut)
        except Exception as again:  # the cut did not help: dead-letter with both reasons
            return (
                None,
                f"{reason[:250]}; after cutting at {MAX_DEPTH} levels: {type(again).__name__}: {again}"[:500],
            )
        self._m.truncated.labels(self.sink.name, NESTING_FIELD).inc(cuts)
        return payload, ""

    def _chunks(self, events: Sequence[Event]) -> list[list[Event]]:
        chunks: list[list[Event]] = []
        current: list[Event] = []
        size = 0
        for e in events:
            n = len(e.payload)
            if current and (len(current) >= self._batch.max_events or size + n > self._batch.max_bytes):
                chunks.append(current)
                current, size = [], 0
            current.append(e)
            size += n
        if current:
            chunks.append(current)
        return chunks

    async def _deliver(self, events: Sequence[Event]) -> None:
        for chunk in self._chunks(events):
            await self._deliver_chunk(chunk)

    async def _deliver_chunk(self, chunk: list[Event]) -> None:
        attempt = 0
        pending = chunk
        while pending:
            started = time.monotonic()
            try:
                result = await self.sink.send(pending)
            except TransientSinkError as exc:
                self._m.send_duration.labels(self.sink.name).observe(time.monotonic() - started)
                self._m.send_retries.labels(self.sink.name).inc()
                self._set_health(False, str(exc))
                delay = exc.retry_after if exc.retry_after is not None else self._backoff(attempt)
                log.warning(
                    "Send failed; retrying.",
                    extra={"sink": self.sink.name, "error": str(exc), "retry_in_secs": round(delay, 3)},
                )
                attempt += 1
                await self._sleep(delay)
                continue
            except PermanentSinkError as exc:
                self._set_health(True)
                log.error("Batch rejected; dead-lettered.", extra={"sink": self.sink.name, "error": str(exc)})
                await self._dead.write(self.sink.name, str(exc), [e.alert for e in pending])
                self._m.dead_lettered.labels(self.sink.name, "rejected").inc(len(pending))
                return
            self._m.send_duration.labels(self.sink.name).observe(time.monotonic() - started)
            self._set_health(True)
            retry = set(result.retry)
            not_sent = retry | result.rejected.keys() | result.dropped.keys()
            done = [e for i, e in enumerate(pending) if i not in not_sent]
            for reason in result.dropped.values():
                self._m.dropped.labels(f"sink:{self.sink.name}", reason).inc()
            self._m.events_sent.labels(self.sink.name).inc(len(done))
            self._m.bytes_sent.labels(self.sink.name).inc(sum(len(e.payload) for e in done))
            self._m.batches_sent.labels(self.sink.name).inc()
            if result.rejected:
                refused = [(pending[i].alert, why) for i, why in sorted(result.rejected.items())]
                await self._dead.write_each(self.sink.name, refused)
                self._m.dead_lettered.labels(self.sink.name, "rejected").inc(len(refused))
            pending = [
                pending[i] for i in sorted(retry) if i not in result.rejected and i not in result.dropped
            ]
            if pending:
                self._m.send_retries.labels(self.sink.name).inc()
                await self._sleep(self._backoff(attempt))
                attempt += 1

    def _backoff(self, attempt: int) -> float:
        return backoff(attempt, self._retry.initial_backoff_secs, self._retry.max_backoff_secs, self._rng)

    def _set_health(self, up: bool, reason: str | None = None) -> None:
        self._m.sink_up.labels(self.sink.name).set(1 if up else 0)
        if self._on_health is not None:
            self._on_health(up, reason)

    async def _idle_check(self) -> None:
        """Nothing to send for ``IDLE_CHECK_SECS``: ask the receiver (``healthcheck``), so readiness
        reflects a receiver that went away meanwhile; at most one check per idle period."""
        try:
            async with asyncio.timeout(HEALTHCHECK_TIMEOUT_SECS):
                await self.sink.healthcheck()
        except SinkError as exc:
            self._set_health(False, f"health check: {exc}")
            log.warning("Sink health check failed.", extra={"sink": self.sink.name, "error": str(exc)})
            return
        except TimeoutError:
            self._set_health(False, f"health check: no answer within {HEALTHCHECK_TIMEOUT_SECS:.0f}s")
            return
        except Exception as exc:  # a sink bug must not end the lane: report it as not healthy
            # Only the type: an arbitrary exception's text is not known to be free of secrets.
            self._set_health(False, f"health check: unexpected {type(exc).__name__}")
            if not self._idle_check_broken:
                self._idle_check_broken = True
                frame = traceback.extract_tb(exc.__traceback__)[-1]
                log.error(
                    "Sink health check raised an unexpected error; the sink is reported down.",
                    extra={
                        "sink": self.sink.name,
                        "error_type": type(exc).__name__,
                        "raised_at": f"{frame.filename}:{frame.lineno}",
                    },
                )
            return
        self._idle_check_broken = False
        self._set_health(True)
