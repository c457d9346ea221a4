"""``siem-agent validate --check-connectivity``: prove the configuration works against the real endpoints.

Per source its ``healthcheck()``: acquire a token, then read one item (``$top=1``) from every
collection it polls. Per sink its ``healthcheck()``, then ``aclose()``: TCP/TLS/RELP connect (and
handshake), UDP resolves, HTTP sinks ask their receiver (HEC ``/services/collector/health``,
Elasticsearch ``GET /``, Logs Ingestion a token and the endpoint, ``http`` a ``HEAD``), a file sink
checks its directory is writable. Each check is bounded in time and reported as ``ok`` or
``FAILED (<reason>)``; reasons never contain secret values.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from prometheus_client import CollectorRegistry

from agent.clock import Clock
from agent.config import AgentSettings
from agent.errors import AgentError
from agent.metrics import AgentMetrics
from agent.sinks import SinkContext, build_sink
from agent.sinks.config import SinkConfig
from agent.sources import SourceConfig, build_source

#: Seconds one sink's health check may take.
SINK_TIMEOUT_SECS = 15.0


@dataclass(frozen=True, slots=True)
class Check:
    """The outcome of one check."""

    what: str
    ok: bool
    detail: str

    def line(self) -> str:
        return f"{self.what}: {'ok' if self.ok else 'FAILED'} ({self.detail})"


async def check_source(cfg: SourceConfig, clock: Clock, metrics: AgentMetrics) -> Check:
    """The source's ``healthcheck()``: a token, then one item from each collection it reads."""
    what = f"source {cfg.name}"
    source = build_source(cfg, clock, metrics)
    try:
        return Check(what, True, await source.healthcheck())
    except AgentError as exc:
        return Check(what, False, str(exc))
    finally:
        await source.aclose()


async def check_sink(cfg: SinkConfig, clock: Clock, metrics: AgentMetrics) -> Check:
    """The sink's ``healthcheck()``, then ``aclose()``."""
    what = f"sink {cfg.name}"
    try:
        sink = build_sink(cfg, SinkContext(cfg.name, metrics, clock))
    except (AgentError, OSError, ValueError) as exc:
        return Check(what, False, str(exc))
    try:
        async with asyncio.timeout(SINK_TIMEOUT_SECS):
            checked = await sink.healthcheck()
    except AgentError as exc:
        return Check(what, False, str(exc))
    except TimeoutError:
        return Check(what, False, f"did not answer within {SINK_TIMEOUT_SECS:.0f}s")
    finally:
        try:
            async with asyncio.timeout(SINK_TIMEOUT_SECS):
                await sink.aclose()
        except (AgentError, OSError, TimeoutError):
            pass
    return Check(what, True, checked)


async def check_all(settings: AgentSettings, clock: Clock) -> list[Check]:
    """Every source and sink, concurrently; results in configuration order."""
    metrics = AgentMetrics(CollectorRegistry())
    jobs = [check_source(s, clock, metrics) for s in settings.sources]
    jobs += [check_sink(s, clock, metrics) for s in settings.sinks]
    return list(await asyncio.gather(*jobs))
