"""Sink configuration: registry vs union, validators, and the shipped examples."""

from __future__ import annotations

import typing
from pathlib import Path

import pytest
from pydantic import ValidationError

from agent.config import load_settings
from agent.errors import ConfigError
from agent.sinks import SINKS
from agent.sinks.config import SinkConfig
from tests.sinks.conftest import config

ROOT = Path(__file__).resolve().parents[2]


def test_registry_matches_config_union() -> None:
    """Every ``type`` tag of the SinkConfig union has a sink class and vice versa."""
    union = typing.get_args(typing.get_args(SinkConfig)[0])
    tags = {typing.get_args(m.model_fields["type"].annotation)[0] for m in union}
    assert tags == set(SINKS)


@pytest.mark.parametrize("name", ["splunk-hec", "sentinel", "elastic", "syslog-cef"])
def test_examples_validate(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The example configs load with their documented environment variables."""
    for var in ("GRAPH_CLIENT_SECRET", "SPLUNK_HEC_TOKEN", "ELASTIC_API_KEY", "SENTINEL_CLIENT_SECRET"):
        monkeypatch.setenv(var, f"value-of-{var}")
    settings = load_settings(ROOT / "config" / f"{name}.toml")
    assert len(settings.sinks) == 1


def test_missing_secret_env_names_variable_not_value(monkeypatch: pytest.MonkeyPatch) -> None:
    """An unset secret variable is reported by name."""
    monkeypatch.setenv("GRAPH_CLIENT_SECRET", "g")
    monkeypatch.delenv("SPLUNK_HEC_TOKEN", raising=False)
    with pytest.raises(ConfigError, match="SPLUNK_HEC_TOKEN"):
        load_settings(ROOT / "config" / "splunk-hec.toml")


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"type": "tcp", "host": "h", "port": 1, "tls": {"cert_file": "c"}}, "go together"),
        ({"type": "udp", "host": "h", "port": 1, "max_datagram_bytes": 100}, "greater than or equal"),
        ({"type": "elasticsearch", "url": "http://h", "index": "i", "codec": {"type": "cef"}}, "codec.type"),
        (
            {
                "type": "elasticsearch",
                "url": "http://h",
                "index": "i",
                "api_key": "k",
                "username": "u",
                "password": "p",
            },
            "either api_key",
        ),
        (
            {"type": "elasticsearch", "url": "http://h", "index": "logs-x-default", "data_stream": True}
            | {"codec": {"type": "ecs"}},
            "logs-microsoft_graph.alert-default",
        ),
        ({"type": "http", "url": "ftp://h"}, "should match"),
        (
            {
                "type": "logs_ingestion",
                "endpoint": "https://x",
                "dcr_immutable_id": "nope",
                "stream": "Custom-A",
                "tenant_id": "t",
                "client_id": "c",
                "client_secret": "s",
            },
            "dcr_immutable_id",
        ),
        ({"type": "splunk_hec", "url": "https://h", "token": "t", "tls": {"verify": "maybe"}}, "bool"),
    ],
)
def test_invalid_tables(table: dict[str, object], message: str) -> None:
    """Validators refuse inconsistent or malformed sink tables."""
    with pytest.raises(ValidationError, match=message):
        config(table)


def test_secret_never_echoed() -> None:
    """A rejected table's error does not quote the secret given in it."""
    with pytest.raises(ValidationError) as info:
        config({"type": "splunk_hec", "url": "nope", "token": "super-secret-token-value"})
    leaked = "super-secret-token-value" in str(info.value.errors(include_input=False))
    assert not leaked, "the token leaked into the validation errors"
    sink = config({"type": "splunk_hec", "url": "https://h", "token": "super-secret-token-value"})
    leaked = "super-secret-token-value" in repr(sink)
    assert not leaked, "the token leaked into the sink's repr"
