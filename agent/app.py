"""Agent: the lifecycle. Builds the components from settings, runs them, shuts them down in order.

What flows between the components is the pipeline's business (``agent.pipeline``: fan-out to one
lane per sink, ordered acknowledgement, the commit path into the checkpoint); the agent only starts
and stops it. Lifecycle (after uvicorn and Vector): ``run`` loads the checkpoint, builds the sources
and a pipeline lane per sink, and starts one task per source, per sink runner and for the checkpoint
writer, each named after its component (``source:x``, ``sink:y``). The first SIGTERM/SIGINT sets
``stop``: sources finish their current page and return, queues close, runners drain what is queued
until ``shutdown_timeout_secs``; then whatever is left is cancelled. A second signal cancels at once.
Only acknowledged progress is ever written to the checkpoint, so no exit path can lose an alert.

Sharding (``[shard]``, ``agent.shard``): the agent builds only the sources its replica owns. Each has
its own checkpoint and lock in ``<state_dir>/sources/<source>/`` (``agent.checkpoint.sources``); a
source whose lock another replica still holds (a rolling re-shard) is not polled until this replica
gets the lock, retried every ``shard.lock_retry_secs`` and shown in ``/readyz`` as waiting. The old
single checkpoint file is split on the first start (``agent.checkpoint.migrate``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry

from agent.checkpoint import CheckpointStore, StreamState
from agent.checkpoint.migrate import split_legacy
from agent.checkpoint.sources import SourceStores
from agent.clock import Clock, SystemClock, now_str
from agent.config import AgentSettings
from agent.errors import AgentError, ConfigError, StateError
from agent.health import Health
from agent.metrics import AgentMetrics
from agent.ops import OpsServer
from agent.ownership import Ownership
from agent.pipeline import CommitPath, Lane, Pipeline
from agent.pipeline.dead_letter import DeadLetterFile
from agent.sdnotify import Notifier
from agent.shard import owners, spread
from agent.sinks import Sink, SinkContext, build_sink
from agent.sources import GraphShared, Source, SourceContext, build_source
from agent.sources.graph.source import GraphSecuritySource
from agent.statelock import StateLock
from agent.writeback.loop import LoopControl
from agent.writeback.service import WritebackService, own_versions

log = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_FORCED = 130
#: The checkpoint cannot be written (same code as an unreadable one at startup, EX_IOERR).
EXIT_STATE = 74


@dataclass
class Agent:
    """One running agent. Construct, then ``await run()``; it returns the process exit code."""

    settings: AgentSettings
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)
    clock: Clock = field(default_factory=SystemClock)
    #: Sinks to use instead of building them from config, by sink name (embedding and tests).
    sink_overrides: dict[str, Sink] = field(default_factory=dict)
    notifier: Notifier = field(default_factory=Notifier)
    #: Sources to run instead of building them from config (embedding and tests).
    source_overrides: list[Source] | None = None
    #: One checkpoint for every source instead of the per-source ones (``backfill``: in memory).
    checkpoint: CheckpointStore | None = None
    #: Read only ``[start, end)`` of every source once (``Source.read_window``), then exit once every
    #: queued batch was delivered (``backfill``). ``None``: poll until stopped.
    window: tuple[str, str] | None = None
    #: Hold the replica lock (``<state_dir>/<name>.lock``, with shards ``<name>.shard-<i>.lock``) and
    #: each owned source's lock while running.
    lock_state: bool = True
    #: This replica's shard index (default: ``shard.index``, ``"auto"`` read from the host name).
    shard_index: int | None = None
    #: Called on SIGHUP after the sinks reopened their files (e.g. the log file).
    reopen_hooks: list[Callable[[], None]] = field(default_factory=list)
    #: How many log lines the repeat filter held back so far (exported as a counter).
    log_suppressed: Callable[[], int] | None = None
    #: Called once everything listens and runs (``siem-agent demo`` prints its write-back example).
    on_ready: Callable[[Agent], None] | None = None

    def __post_init__(self) -> None:
        s = self.settings
        self.metrics = AgentMetrics(self.registry, per_tenant=s.metrics.per_tenant)
        self.stop = asyncio.Event()
        self.force = asyncio.Event()
        if self.shard_index is None:
            try:
                self.shard_index = s.shard.resolved_index()
            except ValueError as exc:
                raise ConfigError([f"shard.index: {exc}"]) from None
        sharded = s.shard.count > 1
        #: Replica-private file names (dead letters, write-back queue) carry the index when sharded.
        self.replica_name = f"{s.name}.shard-{self.shard_index}" if sharded else s.name
        self.owners = owners(s.sources, s.shard.count)
        self.store: CheckpointStore | SourceStores = self.checkpoint or SourceStores(
            s.state_dir, s.name, lambda: now_str(self.clock)
        )
        self.shared = GraphShared(self.clock)
        #: Sources of other shards built only to execute write-backs this replica queued before.
        self._adopted: list[Source] = []
        if self.log_suppressed is not None:
            self.metrics.count_suppressed_lines(self.log_suppressed)
        self.health = Health(self.clock.monotonic, s.http.stale_polls)
        #: The locks of the sources this replica owns (``agent.ownership``).
        self.ownership = Ownership(s.state_dir, self.health, s.shard.lock_retry_secs, self.lock_state)
        self.commits = CommitPath(self.store, self.metrics, self.clock, s.checkpoint_interval_secs)
        default_dead = f"dead-letter.shard-{self.shard_index}.jsonl" if sharded else "dead-letter.jsonl"
        dead = DeadLetterFile(s.dead_letter_path or s.state_dir / default_dead, lambda: now_str(self.clock))
        self.pipeline = Pipeline(self.commits, dead, self.metrics, self.stop, self.health)
        self.sources: list[Source] = []
        self._fatal: BaseException | None = None
        self.ops: OpsServer | None = None
        #: Own writes' alert versions, marked or held back on their way to the sinks.
        self.loop_control = LoopControl(
            own_versions(s.writeback, s.state_dir, s.name, self.clock), s.writeback.forward_own_updates
        )
        #: The write-back API and workers (``[writeback] enabled``, not in one-shot runs).
        self.writeback: WritebackService | None = None
        #: The write-back API's bound port once it listens.
        self.writeback_port: int | None = None

    @property
    def lanes(self) -> list[Lane]:
        """One per sink (sink, queue, runner), once ``run`` has built them."""
        return self.pipeline.lanes

    def _build(self) -> None:
        for cfg in self.settings.sinks:
            ctx = SinkContext(cfg.name, self.metrics, self.clock)
            self.pipeline.add_lane(cfg, self.sink_overrides.get(cfg.name) or build_sink(cfg, ctx))
        if self.source_overrides is not None:
            self.sources = list(self.source_overrides)
        else:
            self.sources = [
                build_source(cfg, self.clock, self.metrics, self.shared)
                for cfg in self.settings.sources
                if self.owners[cfg.name] == self.shard_index
            ]
        if self.window is None:
            fractions = spread([src.name for src in self.sources])
            for src in self.sources:
                if isinstance(src, GraphSecuritySource):
                    src.first_poll_fraction = fractions[src.name]

    @property
    def elsewhere(self) -> dict[str, int]:
        """Configured sources another replica owns: source -> shard index."""
        return {name: i for name, i in self.owners.items() if i != self.shard_index}

    # -- lifecycle ----------------------------------------------------------------------------

    def request_stop(self) -> None:
        """First call: graceful stop. Second call: force."""
        if self.stop.is_set():
            self.force.set()
        self.stop.set()

    def install_signal_handlers(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.request_stop)
        loop.add_signal_handler(signal.SIGHUP, self.reopen)

    def reopen(self) -> None:
        """SIGHUP: reopen file sinks and the log file (logrotate)."""
        self.pipeline.reopen()
        for hook in self.reopen_hooks:
            hook()
        log.info("Reopened files.")

    def load_state(self) -> dict[str, StreamState]:
        """The single checkpoint (``checkpoint`` given): read, journal folded in (raises ``StateError``)."""
        assert isinstance(self.store, CheckpointStore)
        return self.store.open()

    async def run(self) -> int:
        """Run until stopped or a fatal error; return the exit code.

        Raises ``StateError`` when a checkpoint is unreadable or another agent holds the replica lock.
        """
        lock = StateLock(self.settings.state_dir, self.replica_name) if self.lock_state else None
        if lock is not None:
            lock.acquire()
        try:
            return await self._run()
        finally:
            self.ownership.release_all()
            if lock is not None:
                lock.release()

    def _source_state(self, src: Source, state: dict[str, StreamState] | None) -> SourceContext:
        """The context ``src`` runs with: its acknowledged state (its own checkpoint, opened now)."""
        if state is None:
            assert isinstance(self.store, SourceStores)
            state = self.store.open(src.name)
        return self.loop_control.wrap(self.pipeline.context(state))

    async def _when_owned(self, src: Source, initial: dict[str, StreamState] | None) -> None:
        """Wait for ``src``'s lock (another replica holds it), then run it."""
        streams = getattr(src, "stream_ids", lambda: [src.name])()
        if await self.ownership.wait(src.name, streams, self.stop):
            await self._run_source(src, self._source_state(src, initial))

    async def _run_source(self, src: Source, ctx: SourceContext) -> None:
        await (src.run(ctx) if self.window is None else src.read_window(ctx, *self.window))

    async def _run(self) -> int:
        single: dict[str, StreamState] | None = None
        if isinstance(self.store, CheckpointStore):
            single = self.load_state()
        else:
            split_legacy(self.settings.state_dir, self.settings.name, lambda: now_str(self.clock))
        self._build()
        watchdog: asyncio.Task[None] | None = None
        try:  # from here on, whatever fails (the ops port, the write-back API) closes everything built
            ready: dict[str, SourceContext] = {}
            for (
                src
            ) in self.sources:  # the common case at once: lock free, checkpoint read before anything runs
                if self.ownership.take(src.name):
                    ready[src.name] = self._source_state(src, single)
            if self.settings.http.enabled:
                self.ops = OpsServer(
                    self.registry,
                    self.health,
                    self.settings.http.address,
                    self.settings.http.port,
                    on_scrape=self.metrics.refresh,
                )
                try:
                    port = await self.ops.start()
                except OSError as exc:
                    where = f"{self.settings.http.address}:{self.settings.http.port}"
                    raise ConfigError([f"http: cannot listen on {where}: {exc.strerror}"]) from None
                log.info(
                    "Serving /metrics, /healthz, /readyz.",
                    extra={"address": self.settings.http.address, "port": port},
                )
            if self.window is None:
                self.loop_control.versions.compact()
                if self.settings.writeback.enabled:
                    await self._start_writeback()
            source_tasks = [
                self._start(
                    self._run_source(src, ready[src.name])
                    if src.name in ready
                    else self._when_owned(src, single),
                    f"source:{src.name}",
                )
                for src in self.sources
            ]
            runner_tasks = [self._start(lane.runner.run(), f"sink:{lane.sink.name}") for lane in self.lanes]
            writer = self._start(self.commits.run(), "checkpoint")
            log.info(
                "Agent started.",
                extra={
                    "sources": len(self.sources),
                    "sinks": len(self.lanes),
                    "shard": f"{self.shard_index}/{self.settings.shard.count}",
                    "waiting_for_lock": len(self.sources) - len(ready),
                    "shared": self.shared.counts,
                },
            )
            self.notifier.ready(f"{len(self.sources)} source(s), {len(self.lanes)} sink(s)")
            if self.on_ready is not None:
                self.on_ready(self)
            watchdog = asyncio.create_task(self._watchdog(), name="watchdog")
            if self.window is not None:
                await self._until_drained(source_tasks, runner_tasks)
            await self.stop.wait()
            self.notifier.stopping()
            return await self._shutdown(source_tasks, runner_tasks, writer)
        finally:
            if watchdog is not None:
                watchdog.cancel()
                await asyncio.gather(watchdog, return_exceptions=True)
            if self.writeback is not None:
                await self.writeback.stop()
            for lane in self.lanes:
                with contextlib.suppress(Exception):
                    await lane.sink.aclose()
            for src in (*self.sources, *self._adopted):
                with contextlib.suppress(Exception):
                    await src.aclose()
            with contextlib.suppress(Exception):
                await self.shared.aclose()
            if self.ops is not None:
                await self.ops.stop()

    def _adopt(self, name: str) -> GraphSecuritySource | None:
        """A configured source another shard polls, built for write-back only (never polled here)."""
        cfg = next((c for c in self.settings.sources if c.name == name), None)
        if cfg is None:
            return None
        src = build_source(cfg, self.clock, self.metrics, self.shared)
        if not isinstance(src, GraphSecuritySource):  # no Graph writes through it: unknown to write-back
            return None
        self._adopted.append(src)
        return src

    async def _start_writeback(self) -> None:
        """The write-back API and a worker per Graph source (raises ``ConfigError``/``StateError``)."""
        graph = {s.name: s for s in self.sources if isinstance(s, GraphSecuritySource)}
        self.writeback = WritebackService(
            self.settings.writeback,
            self.settings.state_dir,
            self.replica_name,
            graph,
            self.loop_control.versions,
            self.clock,
            self.registry,
            elsewhere=self.elsewhere,
            adopt=self._adopt,
        )
        self.writeback.loop_metrics(self.loop_control)
        self.writeback_port = await self.writeback.start(self._start, self.stop)  # _run closes it on failure
        cfg = self.settings.writeback
        log.info(
            "Serving the write-back API.",
            extra={
                "address": cfg.address,
                "port": self.writeback_port,
                "tls": cfg.tls is not None,
                "mutual_tls": cfg.tls is not None and cfg.tls.client_ca_file is not None,
                "sources": sorted(graph),
            },
        )

    async def _until_drained(
        self, sources: list[asyncio.Task[None]], runners: list[asyncio.Task[None]]
    ) -> None:
        """One-shot mode: once every source returned, close the queues and wait for the runners.

        No deadline: a one-shot run ends when everything was delivered, or on SIGTERM (``stop``).
        """
        if await self._all_done_or_stop(sources):
            await self.pipeline.close()
            await self._all_done_or_stop(runners)
        self.stop.set()

    async def _all_done_or_stop(self, tasks: list[asyncio.Task[None]]) -> bool:
        """Wait until every task is done (``True``) or ``stop`` is set (``False``)."""
        stopped = asyncio.create_task(self.stop.wait(), name="stop")
        pending: set[asyncio.Task[Any]] = set(tasks)
        try:
            for _ in range(len(tasks) + 1):  # each pass finishes at least one task
                pending = {t for t in pending if not t.done()}
                if not pending or self.stop.is_set():
                    break
                await asyncio.wait({stopped, *pending}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopped.cancel()
            await asyncio.gather(stopped, return_exceptions=True)
        return not self.stop.is_set()

    async def _watchdog(self) -> None:
        """WATCHDOG=1 while the event loop runs (systemd restarts a hung agent)."""
        interval = self.notifier.watchdog_interval
        if interval is None:
            return
        while True:
            self.notifier.watchdog()
            await asyncio.sleep(interval)

    def _start(self, coro: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
        """A task named after its component (``source:x``, ``sink:y``), run under ``_guard``."""
        return asyncio.create_task(self._guard(coro, name), name=name)

    async def _guard(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        """Supervision boundary: a component that dies takes the agent down (non-zero exit)."""
        try:
            await coro
        except asyncio.CancelledError:
            raise
        except AgentError as exc:
            log.error("Component failed.", extra={"component": name, "error": str(exc)})
            self._fail(exc)
        except Exception as exc:  # supervision boundary: anything unexpected is fatal, logged once
            log.exception("Component crashed.", extra={"component": name, "error": repr(exc)})
            self._fail(exc)

    def _fail(self, exc: BaseException) -> None:
        if self._fatal is None:
            self._fatal = exc
        self.stop.set()

    async def _shutdown(
        self, sources: list[asyncio.Task[None]], runners: list[asyncio.Task[None]], writer: asyncio.Task[None]
    ) -> int:
        if self.writeback is not None:
            await self.writeback.stop()  # durable queue: nothing to drain, in-flight steps are re-checked
        deadline = asyncio.get_running_loop().time() + self.settings.shutdown_timeout_secs
        log.info("Stopping: draining sinks.", extra={"timeout_secs": self.settings.shutdown_timeout_secs})

        async def graceful() -> None:
            await asyncio.gather(*sources, return_exceptions=True)
            await self.pipeline.close()
            await asyncio.gather(*runners, return_exceptions=True)

        drain = asyncio.create_task(graceful(), name="drain")
        forced = asyncio.create_task(self.force.wait(), name="force")
        remaining = max(0.0, deadline - asyncio.get_running_loop().time())
        done, _ = await asyncio.wait({drain, forced}, timeout=remaining, return_when=asyncio.FIRST_COMPLETED)
        forced.cancel()
        if drain not in done:
            left = [t.get_name() for t in (*sources, *runners) if not t.done()]
            log.warning("Shutdown deadline passed; abandoning undelivered batches.", extra={"pending": left})
        for task in (*sources, *runners, drain):
            task.cancel()
        await asyncio.gather(*sources, *runners, drain, return_exceptions=True)
        writer.cancel()
        await asyncio.gather(writer, return_exceptions=True)
        if self._fatal is None or not isinstance(self._fatal, StateError):
            try:
                self.commits.flush()
                self.store.close()
            except StateError as exc:
                log.error("Final checkpoint write failed.", extra={"error": str(exc)})
                self._fatal = self._fatal or exc
        if self.force.is_set():
            return EXIT_FORCED
        if isinstance(self._fatal, StateError):
            return EXIT_STATE
        return EXIT_FAILURE if self._fatal is not None else EXIT_OK
