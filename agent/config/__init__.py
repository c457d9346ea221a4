"""Configuration models and loading.

The root settings import every family's config models, and those import ``agent.config.secrets``;
the names below are therefore resolved lazily so that importing ``agent.config.secrets`` first
never re-enters a half-initialised package.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from agent.config.settings import AgentSettings, LogConfig, load_settings

__all__ = ["AgentSettings", "LogConfig", "load_settings"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from agent.config import settings

        return getattr(settings, name)
    raise AttributeError(f"module 'agent.config' has no attribute {name!r}")
