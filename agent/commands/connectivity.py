"""``siem-agent validate --check-connectivity``: prove the configuration works against the real endpoints.

Per source its ``healthcheck()``: acquire a token, then read one item (``$top=1``) from every
collection it polls. Per sink its ``healthcheck()``, then ``aclose()``: TCP/TLS/RELP connect (and
handshake), UDP resolves, HTTP sinks ask their receiver (HEC ``/services/collector/health``,
Elasticsearch ``GET /``, Logs Ingestion a token and the endpoint, ``http`` a ``HEAD``), a file sink
checks its directory is writable. Each check is bounded in time and reported as ``ok`` or
``FAILED (<reason>)``; reasons never contain secret values.

Per source also whether the app may write back: the ``roles`` claim of a fresh app token
(``agent.entra.claims``) must hold ``SecurityAlert.ReadWrite.All`` (and, for incidents,
``SecurityIncident.ReadWrite.All``). Missing write permissions fail the check only when
``[writeback] enabled``; otherwise the line just says what write-back would need.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from prometheus_client import CollectorRegistry

from agent.clock import Clock
from agent.config import AgentSettings
from agent.errors import AgentError
from agent.metrics import AgentMetrics
from agent.sinks import HEALTHCHECK_TIMEOUT_SECS, SinkContext, build_sink
from agent.sinks.config import SinkConfig
from agent.sources import WRITE_PERMISSIONS, SourceConfig, build_source


@dataclass(frozen=True, slots=True)
class Check:
    """The outcome of one check."""

    what: str
    ok: bool
    detail: str

    def line(self) -> str:
        return f"{self.what}: {'ok' if self.ok else 'FAILED'} ({self.detail})"


async def check_source(
    cfg: SourceConfig, clock: Clock, metrics: AgentMetrics, writeback_enabled: bool = False
) -> list[Check]:
    """The source's ``healthcheck()`` (a token, then one item from each collection it reads), and
    what that token says about write-back permissions."""
    what = f"source {cfg.name}"
    source = build_source(cfg, clock, metrics)
    try:
        checks = [Check(what, True, await source.healthcheck())]
    except AgentError as exc:
        return [Check(what, False, str(exc))]
    finally:
        await source.aclose()
    if hasattr(source, "granted_roles"):  # Graph sources: what their token said
        checks.append(write_permission(cfg.name, getattr(source, "granted_roles", None), writeback_enabled))
    return checks


def write_permission(name: str, roles: list[str] | None, writeback_enabled: bool) -> Check:
    """Whether the ``roles`` claim of the app's token grants what write-back needs."""
    what = f"source {name} write-back"
    if roles is None:
        return Check(what, True, "cannot tell: the token carries no readable roles claim")
    alerts, incidents = WRITE_PERMISSIONS["alert"], WRITE_PERMISSIONS["incident"]
    missing = [p for p in (alerts, incidents) if p not in roles]
    parts = [f"{p} {'not granted' if p in missing else 'granted'}" for p in (alerts, incidents)]
    detail = "; ".join(parts) + " (roles claim of the app token)"
    if alerts in missing and writeback_enabled:
        return Check(
            what, False, detail + ": write-back requests will fail with 403; grant it and admin consent"
        )
    if missing and not writeback_enabled:
        detail += "; needed only for write-back"
    return Check(what, True, detail)


async def check_sink(cfg: SinkConfig, clock: Clock, metrics: AgentMetrics) -> Check:
    """The sink's ``healthcheck()``, then ``aclose()``."""
    what = f"sink {cfg.name}"
    try:
        sink = build_sink(cfg, SinkContext(cfg.name, metrics, clock))
    except (AgentError, OSError, ValueError) as exc:
        return Check(what, False, str(exc))
    try:
        async with asyncio.timeout(HEALTHCHECK_TIMEOUT_SECS):
            checked = await sink.healthcheck()
    except AgentError as exc:
        return Check(what, False, str(exc))
    except TimeoutError:
        return Check(what, False, f"did not answer within {HEALTHCHECK_TIMEOUT_SECS:.0f}s")
    except Exception as exc:  # a sink bug: one FAILED line naming its type, not a traceback
        return Check(what, False, f"unexpected {type(exc).__name__}")
    finally:
        try:
            async with asyncio.timeout(HEALTHCHECK_TIMEOUT_SECS):
                await sink.aclose()
        except (AgentError, OSError, TimeoutError):
            pass
    return Check(what, True, checked)


async def check_all(settings: AgentSettings, clock: Clock) -> list[Check]:
    """Every source and sink, concurrently; results in configuration order."""
    metrics = AgentMetrics(CollectorRegistry())
    sources = [check_source(s, clock, metrics, settings.writeback.enabled) for s in settings.sources]
    sinks = [check_sink(s, clock, metrics) for s in settings.sinks]
    results = await asyncio.gather(asyncio.gather(*sources), asyncio.gather(*sinks))
    return [c for checks in results[0] for c in checks] + list(results[1])
