"""Delivering one write-back request to Graph, each step exactly once.

A request has up to two steps, in this order: ``comment`` (POST …/comments) and ``update`` (PATCH with
the changed properties); the update goes last so the version it produces, which Graph returns, is the
alert's final one (loop control). For each step:

1. the log records ``sending`` (the durable queue fsyncs it) *before* the call;
2. Graph answers 2xx: the log records ``sent`` with the version Graph reported, which is also added
   to ``OwnVersions``;
3. 429: not applied; the tenant's budget holds every request until Retry-After, then it is sent again;
4. 5xx, timeout, connection lost: it may have been applied. Before it is sent again, and after a
   restart for any step found ``sending``, the entity is read back (GET): an update is applied when
   every changed property has the requested value; a comment is there when a comment with the same
   text, created no earlier than ``SKEW_SECS`` before the step started sending, is in the entity's
   comments. Then the step is ``sent`` without a second call. A PATCH of the same values is harmless
   anyway; the check is what keeps a comment (a POST) from being added twice;
5. other 4xx: the request fails with Graph's status, code, message and request-id.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Protocol

from agent.clock import Clock
from agent.errors import AuthError, SourceError
from agent.retry import backoff
from agent.sources.graph.client import BudgetTimeout
from agent.sources.graph.writes import GraphError, GraphWriteError, GraphWrites, WriteThrottled
from agent.timestamps import format_dt, parse, sort_key
from agent.writeback.queue import STEPS, WriteRequest
from agent.writeback.versions import OwnVersions

log = logging.getLogger(__name__)

#: Clock difference tolerated between this host and Graph when looking for an uncertain comment.
SKEW_SECS = 300.0
#: Consecutive 429s after which a bounded delivery (the CLI) gives up.
MAX_THROTTLED = 10


class StepLog(Protocol):
    """Where step states go: the durable queue (API) or memory (CLI)."""

    def step(self, req: WriteRequest, step: str, state: str, version: str | None = None) -> None: ...


class MemoryLog:
    """Step states in memory only (``siem-agent alerts update``: the process is the retry loop)."""

    def step(self, req: WriteRequest, step: str, state: str, version: str | None = None) -> None:
        req.steps[step] = state
        if version is not None:
            req.versions.append(version)


class GaveUp(Exception):
    """Bounded delivery stopped retrying; ``str()`` is the last failure."""


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Backoff between failed attempts (the source's settings) and when to stop."""

    base_secs: float
    max_secs: float
    #: Failed attempts (5xx, timeouts, connection errors) before giving up; ``None``: never.
    max_attempts: int | None = None
    #: Retry a rejected credential (after its cool-down) instead of giving up at once.
    retry_auth: bool = True


class Executor:
    """Runs requests' steps against one tenant's ``GraphWrites``."""

    def __init__(
        self,
        writes: GraphWrites,
        log_: StepLog,
        clock: Clock,
        versions: OwnVersions | None = None,
        auth_retry_in: Callable[[], float] | None = None,
    ) -> None:
        self.writes = writes
        self.log = log_
        self.versions = versions
        self._clock = clock
        self._auth_retry_in = auth_retry_in
        self._rng = random.Random()
        #: When each step of each request started sending in this process (step -> wall time).
        self._since: dict[tuple[str, str], str] = {}

    async def deliver(
        self, req: WriteRequest, policy: RetryPolicy, deadline: float | None = None
    ) -> GraphError | None:
        """Send every open step of ``req``; ``None`` when all are applied, Graph's error when refused.

        ``deadline`` (a ``clock.monotonic()`` value) bounds the retrying. Raises ``GaveUp`` when the
        policy or the deadline ends it; cancellation leaves the step ``sending`` (checked next time).
        However it ends, the request's send times are forgotten (they only matter between retries).
        """
        try:
            return await self._deliver(req, policy, deadline)
        finally:
            for step in STEPS:
                self._since.pop((req.id, step), None)

    async def _deliver(
        self, req: WriteRequest, policy: RetryPolicy, deadline: float | None
    ) -> GraphError | None:
        failures = throttled = 0
        for _ in range(1_000_000):
            steps = req.open_steps()
            if not steps:
                return None
            req.attempts += 1
            try:
                await self.run_step(req, steps[0], self._left(deadline))
            except GraphWriteError as exc:
                return exc.error
            except BudgetTimeout as exc:
                raise GaveUp(f"{exc} (last error: {req.last_error or '-'})") from None
            except WriteThrottled as exc:
                throttled += 1
                req.last_error = str(exc)
                if policy.max_attempts is not None and throttled >= MAX_THROTTLED:
                    raise GaveUp(str(exc)) from None
                if deadline is not None and self._clock.monotonic() + exc.retry_after > deadline:
                    raise GaveUp(str(exc)) from None
                continue  # the budget now holds the tenant's requests until Retry-After
            except SourceError as exc:
                failures += 1
                req.last_error = str(exc)
                auth = isinstance(exc, AuthError)
                if (auth and not policy.retry_auth) or (
                    policy.max_attempts is not None and failures >= policy.max_attempts
                ):
                    raise GaveUp(str(exc)) from None
                delay = backoff(failures - 1, policy.base_secs, policy.max_secs, self._rng)
                if auth and self._auth_retry_in is not None:
                    delay = max(delay, self._auth_retry_in())
                if deadline is not None and self._clock.monotonic() + delay > deadline:
                    raise GaveUp(str(exc)) from None
                log.warning(
                    "Write-back request failed; retrying.",
                    extra={
                        "request": req.id,
                        "source": req.source,
                        "error": str(exc),
                        "retry_in_secs": round(delay, 2),
                    },
                )
                await self._clock.sleep(delay)
            else:
                failures = throttled = 0
        raise GaveUp("delivery did not converge")  # pragma: no cover

    def _left(self, deadline: float | None) -> float | None:
        return None if deadline is None else max(0.0, deadline - self._clock.monotonic())

    async def run_step(self, req: WriteRequest, step: str, wait_limit: float | None = None) -> None:
        """One attempt at ``step``; raises what ``GraphWrites`` raises (see the module docstring).

        ``wait_limit`` bounds how long the budget may hold each call back (``BudgetTimeout``: not sent).
        """
        if req.steps.get(step) == "sending":
            version = await self._applied(req, step, wait_limit)
            if version is not None:
                self._sent(req, step, version or None)
                log.info("Write-back step was already applied.", extra={"request": req.id, "step": step})
                return
        self._since.setdefault((req.id, step), format_dt(self._clock.now()))
        self.log.step(req, step, "sending")
        try:
            if step == "comment":
                assert req.comment is not None
                comments = await self.writes.comment(req.entity, req.target, req.comment, wait_limit)
                version = _comment_version(comments, req.comment, self._earliest(req, step)) or ""
            else:
                entity = await self.writes.update(req.entity, req.target, req.changes, wait_limit)
                version = str(entity.get("lastUpdateDateTime") or "")
        except (WriteThrottled, BudgetTimeout):
            req.steps[step] = "pending"  # not applied (429) or not sent: no need to check before resending
            raise
        self._sent(req, step, version or None)

    def _earliest(self, req: WriteRequest, step: str) -> str:
        started = self._since.get((req.id, step)) or req.created
        try:
            return sort_key(format_dt(parse(started) - timedelta(seconds=SKEW_SECS)))
        except ValueError:
            return ""

    async def _applied(self, req: WriteRequest, step: str, wait_limit: float | None) -> str | None:
        """For an uncertain step: ``None`` if Graph does not show it, else the version it produced
        (``""`` when unknown)."""
        entity = await self.writes.get(req.entity, req.target, wait_limit)
        if step == "comment":
            assert req.comment is not None
            comments = entity.get("comments")
            found = _comment_version(
                [c for c in comments if isinstance(c, dict)] if isinstance(comments, list) else [],
                req.comment,
                self._earliest(req, step),
            )
            return found
        for key, want in req.changes.items():
            have = entity.get(key)
            if key == "customTags":
                if sorted(have or []) != sorted(want):
                    return None
            elif have != want:
                return None
        return str(entity.get("lastUpdateDateTime") or "")

    def _sent(self, req: WriteRequest, step: str, version: str | None) -> None:
        self.log.step(req, step, "sent", version)
        self._since.pop((req.id, step), None)
        if version and self.versions is not None:
            self.versions.add(req.source, req.entity, req.target, version, req.id, req.by)


def _comment_version(comments: list[dict[str, Any]], text: str, earliest: str) -> str | None:
    """``createdDateTime`` of the newest comment with exactly ``text`` created at or after ``earliest``."""
    best: str | None = None
    for c in comments:
        created = c.get("createdDateTime")
        if c.get("comment") != text or not isinstance(created, str):
            continue
        try:
            key = sort_key(created)
        except ValueError:
            continue
        if key >= earliest and (best is None or key > sort_key(best)):
            best = created
    return best
