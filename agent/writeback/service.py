"""Wiring of the write-back path inside a running agent.

``WritebackService`` (when ``[writeback] enabled``): loads the durable queue from
``<state_dir>/<name>.writeback.jsonl``, gives every Graph source a worker that writes through the
source's own ``GraphClient`` (one credential, one token cache, one rate budget, on which it attaches
the poll/write ``BudgetShare``: one per budget, from the budget's own rate), and serves the API on
``address:port``. ``stop`` closes the listener and cancels the workers: nothing needs draining, the
queue is durable and a step cut off in flight is checked against Graph on the next start. Requests
found queued at startup for a source no longer configured fail with ``unknownSource`` (audited,
counted), instead of waiting forever for a worker.

Loop control does not need the API: ``own_versions`` opens the shared versions file the API's workers
and ``siem-agent alerts update`` write, for every run.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import Callable, Coroutine, Mapping
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry

from agent.clock import Clock
from agent.errors import ConfigError
from agent.sources.graph.budget import RateBudget
from agent.sources.graph.share import BudgetShare
from agent.sources.graph.source import GraphSecuritySource
from agent.sources.graph.writes import GraphWrites
from agent.writeback import audit
from agent.writeback.config import WritebackConfig
from agent.writeback.executor import Executor, RetryPolicy
from agent.writeback.journal import Journal
from agent.writeback.listener import Listener, server_tls_context
from agent.writeback.loop import LoopControl
from agent.writeback.metrics import WritebackMetrics
from agent.writeback.queue import RequestQueue, WriteRequest
from agent.writeback.server import ApiSettings, WritebackApi, token_digest
from agent.writeback.versions import OwnVersions, versions_path
from agent.writeback.worker import SourceWorker

log = logging.getLogger(__name__)

Spawn = Callable[[Coroutine[Any, Any, None], str], "asyncio.Task[None]"]
#: The error code of requests failed at startup because their source is no longer configured.
UNKNOWN_SOURCE = "unknownSource"
#: Tokens shorter than this draw a warning at startup.
SHORT_TOKEN_CHARS = 16


def journal_path(state_dir: Path, name: str) -> Path:
    return state_dir / f"{name}.writeback.jsonl"


def own_versions(config: WritebackConfig, state_dir: Path, name: str, clock: Clock) -> OwnVersions:
    """The versions file of this agent (not read yet)."""
    return OwnVersions(versions_path(state_dir, name), clock, config.retention_secs)


class WritebackService:
    """The API listener and one worker per Graph source."""

    def __init__(
        self,
        config: WritebackConfig,
        state_dir: Path,
        name: str,
        sources: Mapping[str, GraphSecuritySource],
        versions: OwnVersions,
        clock: Clock,
        registry: CollectorRegistry,
        elsewhere: Mapping[str, int] | None = None,
        adopt: Callable[[str], GraphSecuritySource | None] | None = None,
    ) -> None:
        #: Configured sources other replicas own (source -> shard index): the API answers 421 for them.
        self.elsewhere = dict(elsewhere or {})
        #: Builds a source another replica polls now, for requests this replica accepted before a
        #: re-shard moved it: they are executed here (through the source's app), never stranded.
        self._adopt = adopt
        self.config = config
        self.sources = dict(sources)
        self.versions = versions
        self._clock = clock
        self.metrics = WritebackMetrics(registry)
        self.queue = RequestQueue(
            Journal(journal_path(state_dir, name)), clock, config.queue_max_requests, config.retention_secs
        )
        self.workers: dict[str, SourceWorker] = {}
        self.listener: Listener | None = None
        self._tasks: list[asyncio.Task[None]] = []

    def loop_metrics(self, loop: LoopControl) -> None:
        """Count the own versions ``loop`` marks or skips."""
        loop.on_own = lambda action: self.metrics.own_versions.labels(action).inc()

    async def start(self, spawn: Spawn, stop: asyncio.Event) -> int:
        """Load the queue, start the workers, listen; the bound port. Raises ``StateError``
        (journal) or ``ConfigError`` (cannot listen, unusable TLS files)."""
        cfg = self.config
        self.queue.load()
        writers = dict(self.sources)
        for name in sorted({r.source for r in self.queue.unfinished()} - set(writers)):
            adopted = self._adopt(name) if self._adopt is not None else None
            if adopted is not None:
                writers[name] = adopted
                log.info(
                    "Executing write-back requests queued before the source moved to another shard.",
                    extra={"source": name, "queued": len(self.queue.unfinished(name))},
                )
            else:
                self._fail_unknown(name)
        for token in cfg.tokens:
            if len(token.token.get_secret_value()) < SHORT_TOKEN_CHARS:
                log.warning(
                    "Write-back token is short; use at least 16 random characters.",
                    extra={"token_name": token.name},
                )
        shared: list[RateBudget] = []
        for name, source in writers.items():
            client = source.client()
            if not any(client.budget is b for b in shared):
                # Sources of one tenant and app share one budget: one share, from the budget's own
                # rate (the first source's; a later source's requests_per_minute does not change it).
                client.budget.share = BudgetShare(client.budget.limit, cfg.budget_share)
                shared.append(client.budget)
            executor = Executor(
                GraphWrites(client, source.graph_root),
                self.queue,
                self._clock,
                self.versions,
                auth_retry_in=client.auth_retry_in,
            )
            policy = RetryPolicy(source.config.backoff_base_secs, source.config.backoff_max_secs)
            worker = SourceWorker(
                name, executor, self.queue, policy, cfg.give_up_after_secs, self._clock, self._finished
            )
            self.workers[name] = worker
            self._gauge(name)
            self._tasks.append(spawn(worker.run(stop), f"writeback:{name}"))
        api = WritebackApi(
            ApiSettings(
                tokens=[(t.name, token_digest(t.token.get_secret_value())) for t in cfg.tokens],
                sources=frozenset(self.sources),
                max_body_bytes=cfg.max_body_bytes,
                request_timeout=cfg.request_timeout_secs,
                elsewhere=self.elsewhere,
            ),
            self.queue,
            self._wake,
            on_request=lambda request: self.listener.started(request) if self.listener else None,
            on_result=lambda source, status: self.metrics.api_requests.labels(source, str(status)).inc(),
        )
        self.listener = Listener(
            api.app(),
            cfg.address,
            cfg.port,
            tls=self._tls(),
            max_connections=cfg.max_connections,
            header_timeout=cfg.header_timeout_secs,
            request_timeout=cfg.request_timeout_secs,
            on_refused=lambda reason: self.metrics.connections_refused.labels(reason).inc(),
        )
        try:
            return await self.listener.start()
        except OSError as exc:
            raise ConfigError(
                [f"writeback: cannot listen on {cfg.address}:{cfg.port}: {exc.strerror}"]
            ) from None

    def _fail_unknown(self, source: str) -> None:
        """Finish the requests queued for a source no longer configured: no worker would ever run
        them, and they would count against ``queue_max_requests`` forever."""
        stranded = self.queue.unfinished(source)
        log.warning(
            "Write-back requests queued for a source that is no longer configured are failed.",
            extra={"source": source, "requests": len(stranded)},
        )
        for req in stranded:
            self.queue.finish(
                req,
                {
                    "code": UNKNOWN_SOURCE,
                    "message": f"source {source!r} is no longer configured; the request was not sent",
                },
            )
            audit.finished(req)
            self._finished(req)

    def _tls(self) -> ssl.SSLContext | None:
        tls = self.config.tls
        if tls is None:
            return None
        try:
            return server_tls_context(
                str(tls.cert_file), str(tls.key_file), str(tls.client_ca_file) if tls.client_ca_file else None
            )
        except (OSError, ssl.SSLError, ValueError) as exc:
            raise ConfigError([f"writeback.tls: cannot use the certificate or key: {exc}"[:300]]) from None

    def _wake(self, source: str) -> None:
        self._gauge(source)
        worker = self.workers.get(source)
        if worker is not None:
            worker.wake()

    def _finished(self, req: WriteRequest) -> None:
        self.metrics.results.labels(req.source, req.state).inc()
        self._gauge(req.source)
        self.versions.maybe_compact()

    def _gauge(self, source: str) -> None:
        self.metrics.queued.labels(source).set(len(self.queue.unfinished(source)))

    async def stop(self) -> None:
        """Close the listener, cancel the workers, close the journal (idempotent)."""
        if self.listener is not None:
            listener, self.listener = self.listener, None
            await listener.stop()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        with contextlib.suppress(OSError):
            self.queue.journal.close()
