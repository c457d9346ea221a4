"""The root configuration: one TOML file, overridden by ``SIEM_AGENT_*`` environment variables.

Environment overrides use ``__`` for nesting and take precedence over the file, e.g.
``SIEM_AGENT_STATE_DIR=/tmp/state`` or ``SIEM_AGENT_LOG__LEVEL=debug``. Unknown keys anywhere are
errors: a typo must never silently disable a setting.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from agent.errors import ConfigError
from agent.shard import ShardConfig, tenant_app_key
from agent.sinks.config import SinkConfig
from agent.sources.config import SourceConfig
from agent.writeback.config import WritebackConfig


class LogConfig(BaseModel):
    """Logging: JSON lines unless stderr is a terminal (or ``format`` says otherwise)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: Lowest level written; repeated identical warnings and errors are written once a minute.
    level: Literal["debug", "info", "warning", "error"] = "info"
    #: ``auto``: readable text on a terminal, JSON lines otherwise (and always JSON in ``path``).
    format: Literal["auto", "json", "text"] = "auto"
    #: Write logs to this file instead of stderr; reopened on SIGHUP (logrotate ``postrotate``).
    path: Path | None = None


class HttpConfig(BaseModel):
    """The operator endpoint: ``/metrics``, ``/healthz``, ``/readyz``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: Serve the endpoint at all (``backfill`` never does).
    enabled: bool = True
    #: Loopback by default; set ``0.0.0.0`` or ``::`` deliberately to expose it.
    address: str = "127.0.0.1"
    #: TCP port; ``0`` picks a free one (logged at startup).
    port: int = Field(default=9464, ge=0, le=65535)
    #: A stream is not ready after this many poll intervals without a complete poll.
    stale_polls: float = Field(default=3.0, gt=0)


class MetricsConfig(BaseModel):
    """What ``/metrics`` exports per tenant and stream."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: ``true``: source metrics carry the ``tenant`` or ``stream`` label (about 30 series per tenant);
    #: ``false``: every tenant's samples go into one series labelled ``_all`` (counters summed,
    #: ``checkpoint_lag_seconds`` the largest lag, ``last_successful_poll_timestamp_seconds`` the oldest,
    #: ``graph_rate_budget_tokens`` the lowest), so the series count does not grow with the tenants.
    per_tenant: bool = True


class _FileThenEnvironment(BaseSettings):
    """The file's values arrive as init kwargs; the environment (``SIEM_AGENT_…``) overrides them.
    No ``.env`` file and no secrets directory are read."""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (env_settings, init_settings)


class AgentSettings(_FileThenEnvironment):
    """Everything the agent needs to run."""

    model_config = SettingsConfigDict(
        env_prefix="SIEM_AGENT_",
        env_nested_delimiter="__",
        extra="forbid",
        frozen=True,
    )

    #: Names this agent's replica lock (``<state_dir>/<name>.lock``) and write-back files; the
    #: checkpoint of the single file of earlier versions (``<name>.checkpoint.json``) is split into
    #: per-source checkpoints on the first start.
    name: str = Field(default="siem-agent", pattern=r"^[A-Za-z0-9_.-]+$")
    #: Per-source checkpoints and locks (``sources/<source>/``), replica lock, dead-letter and
    #: write-back files; must be writable and private to the agent (shared by all replicas of a shard set).
    state_dir: Path = Path("/var/lib/siem-agent")
    #: On SIGTERM, how long sinks may drain what is queued before the agent exits anyway.
    shutdown_timeout_secs: float = Field(default=30.0, ge=0)
    #: ``0``: every acknowledged batch is in the checkpoint journal (appended, fsynced) before its sink
    #: sends the next one, so a crash re-sends at most the batch in flight per sink. ``> 0``: journal
    #: writes are coalesced, at most one per this many seconds, and sinks do not wait for them (fewer
    #: fsyncs on a slow disk; a crash re-sends up to this long a stretch of deliveries).
    checkpoint_interval_secs: float = Field(default=0.0, ge=0)
    #: Where permanently rejected events are written (default ``<state_dir>/dead-letter.jsonl``; with
    #: ``shard.count`` > 1 ``<state_dir>/dead-letter.shard-<index>.jsonl``, one file per replica).
    dead_letter_path: Path | None = None
    #: Logging: JSON lines unless stderr is a terminal (or ``log.format`` says otherwise).
    log: LogConfig = Field(default_factory=LogConfig)
    #: The operator HTTP endpoint: ``/metrics``, ``/healthz``, ``/readyz``.
    http: HttpConfig = Field(default_factory=HttpConfig)
    #: Write-back: the inbound API SIEM automation calls to update alerts and incidents in Defender.
    writeback: WritebackConfig = Field(default_factory=WritebackConfig)
    #: Sharding: spread the sources over ``count`` replicas (each polls only the sources it owns).
    shard: ShardConfig = Field(default_factory=ShardConfig)
    #: Metric labels per tenant and stream (or one aggregate series).
    metrics: MetricsConfig = Field(default_factory=MetricsConfig)
    #: ``[[sources]]`` tables, at least one; names unique (sources of one tenant and app share one budget).
    sources: list[SourceConfig] = Field(min_length=1)
    #: ``[[sinks]]`` tables, at least one, names unique; every alert goes to every sink.
    sinks: list[SinkConfig] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique_names(self) -> AgentSettings:
        for family, items in (("sources", self.sources), ("sinks", self.sinks)):
            names = [i.name for i in items]
            dupes = sorted({n for n in names if names.count(n) > 1})
            if dupes:
                raise ValueError(f"{family}: duplicate name(s): {', '.join(dupes)}")
        return self


class SourceRef(BaseModel):
    """What placing a source on a shard needs (name, cloud, tenant, app), without its secrets."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    tenant_id: str = ""
    client_id: str = ""
    cloud: str = "global"
    authority_url: str | None = None

    def app_key(self) -> tuple[str, str, str]:
        return tenant_app_key(self.authority_url, self.cloud, self.tenant_id, self.client_id)


class StateSettings(_FileThenEnvironment):
    """Just where the checkpoints live and which shard owns which source (``checkpoint show``/``reset``):
    no secret is resolved, so an admin shell without the service's credentials (``{ credential = … }``)
    can use them."""

    model_config = SettingsConfigDict(
        env_prefix="SIEM_AGENT_", env_nested_delimiter="__", extra="ignore", frozen=True
    )

    name: str = Field(default="siem-agent", pattern=r"^[A-Za-z0-9_.-]+$")
    state_dir: Path = Path("/var/lib/siem-agent")
    shard: ShardConfig = Field(default_factory=ShardConfig)
    sources: list[SourceRef] = Field(default_factory=list)


def load_state_settings(path: Path) -> StateSettings:
    """``name`` and ``state_dir`` from ``path`` plus the environment; nothing else is validated.

    Raises ``ConfigError``.
    """
    raw = read_toml(path)
    try:
        return StateSettings(**{k: raw[k] for k in ("name", "state_dir", "shard", "sources") if k in raw})
    except ValidationError as exc:
        raise ConfigError(problems_from(exc, raw)) from None


def _dotted(loc: tuple[int | str, ...], data: Any) -> str:
    """Render a pydantic error location as ``sinks[0].codec.type``, dropping union-tag segments."""
    parts: list[str] = []
    node = data
    for item in loc:
        if isinstance(item, int):
            parts.append(f"[{item}]")
            node = node[item] if isinstance(node, list) and item < len(node) else None
            continue
        if (
            isinstance(node, dict)
            and item not in node
            and isinstance(node.get("type"), str)
            and item == node["type"]
        ):
            continue  # the discriminator tag pydantic inserts, not a key the user wrote
        parts.append(("." if parts else "") + item)
        node = node.get(item) if isinstance(node, dict) else None
    return "".join(parts) or "(root)"


def problems_from(exc: ValidationError, data: Any) -> list[str]:
    """One ``dotted.path: message`` line per validation error, never echoing input values."""
    lines = []
    for err in exc.errors(include_url=False, include_input=False):
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown key (check the spelling)"
        elif err["type"] == "missing":
            msg = "required key is missing"
        lines.append(f"{_dotted(tuple(err['loc']), data)}: {msg}")
    return lines


def read_toml(path: Path) -> dict[str, Any]:
    """Read a TOML file; raises ``ConfigError`` with the file name for unreadable or invalid files."""
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError([f"{path}: file not found"]) from None
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read: {exc.strerror}"]) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"{path}: invalid TOML: {exc}"]) from None


def load_settings(path: Path | None = None, data: dict[str, Any] | None = None) -> AgentSettings:
    """Load and validate the configuration from ``path`` (or ``data``) plus the environment.

    Raises ``ConfigError`` listing every problem.
    """
    raw = read_toml(path) if path is not None else dict(data or {})
    try:
        return AgentSettings(**raw)
    except ValidationError as exc:
        raise ConfigError(problems_from(exc, raw)) from None
