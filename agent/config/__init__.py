"""Configuration: the settings root and its loader.

The root imports every family's config models (sources, sinks, codecs); those import only what lies
below them (``agent.secrets`` for secret references), never this package.
"""

from __future__ import annotations

from agent.config.settings import AgentSettings, LogConfig, StateSettings, load_settings, load_state_settings

__all__ = ["AgentSettings", "LogConfig", "StateSettings", "load_settings", "load_state_settings"]
