"""Configuration: TOML + environment, strict keys, secrets by reference, dotted error paths."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.config import load_settings
from agent.errors import ConfigError

MINIMAL = """
state_dir = "{state}"
[[sources]]
type = "graph_security"
name = "contoso"
tenant_id = "tenant"
client_id = "client"
client_secret = {{ env = "TEST_GRAPH_SECRET" }}
[[sinks]]
type = "stdout"
name = "out"
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "agent.toml"
    path.write_text(text)
    return path


class TestLoading:
    def test_minimal_config_with_env_secret(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        """A secret referenced by env var resolves and is hidden when printed."""
        monkeypatch.setenv("TEST_GRAPH_SECRET", "s3cr3t-value")
        settings = load_settings(write(tmp_path, MINIMAL.format(state=tmp_path)))
        src = settings.sources[0]
        assert src.client_secret.get_secret_value() == "s3cr3t-value"
        assert "s3cr3t-value" not in repr(settings)
        assert "s3cr3t-value" not in str(settings.model_dump())

    def test_secret_from_file_and_credential(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        """Secrets load from a file path and from $CREDENTIALS_DIRECTORY (systemd LoadCredential=)."""
        (tmp_path / "sec").write_text("from-file\n")
        text = MINIMAL.format(state=tmp_path).replace(
            '{ env = "TEST_GRAPH_SECRET" }', f'{{ file = "{tmp_path}/sec" }}'
        )
        assert load_settings(write(tmp_path, text)).sources[0].client_secret.get_secret_value() == "from-file"
        monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))
        text = MINIMAL.format(state=tmp_path).replace(
            '{ env = "TEST_GRAPH_SECRET" }', '{ credential = "sec" }'
        )
        assert load_settings(write(tmp_path, text)).sources[0].client_secret.get_secret_value() == "from-file"

    def test_environment_overrides_file(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        """SIEM_AGENT_* variables override the file, with __ for nesting."""
        monkeypatch.setenv("TEST_GRAPH_SECRET", "x")
        monkeypatch.setenv("SIEM_AGENT_STATE_DIR", "/tmp/elsewhere")
        monkeypatch.setenv("SIEM_AGENT_LOG__LEVEL", "debug")
        settings = load_settings(write(tmp_path, MINIMAL.format(state=tmp_path)))
        assert settings.state_dir == Path("/tmp/elsewhere")
        assert settings.log.level == "debug"


class TestErrors:
    def test_typo_wrong_type_and_missing_secret_each_reported(self, tmp_path: Path) -> None:
        """Every problem is reported once, with its dotted path, and no input value is echoed."""
        text = MINIMAL.format(state=tmp_path).replace(
            'name = "contoso"', 'name = "contoso"\npoll_intervall_secs = 5'
        )
        text = text.replace('client_id = "client"', 'client_id = "client"\npage_size = "lots"')
        text += 'codec = { type = "cef", severity_map = { high = "very" } }\n'
        with pytest.raises(ConfigError) as err:
            load_settings(write(tmp_path, text))
        problems = err.value.problems
        assert len(problems) == 4, problems
        joined = "\n".join(problems)
        assert "sources[0].poll_intervall_secs: unknown key" in joined
        assert "sources[0].page_size:" in joined
        assert "sources[0].client_secret: environment variable TEST_GRAPH_SECRET is not set" in joined
        assert "sinks[0].codec.severity_map.high:" in joined

    def test_unknown_sink_type(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        """A sink type outside the registry is named in the error."""
        monkeypatch.setenv("TEST_GRAPH_SECRET", "x")
        text = MINIMAL.format(state=tmp_path).replace('type = "stdout"', 'type = "carrier-pigeon"')
        with pytest.raises(ConfigError) as err:
            load_settings(write(tmp_path, text))
        assert err.value.problems[0].startswith("sinks[0]:")
        assert "carrier-pigeon" in err.value.problems[0]

    def test_duplicate_names_and_missing_sections(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Two sinks with one name, or no sources at all, are errors."""
        monkeypatch.setenv("TEST_GRAPH_SECRET", "x")
        text = MINIMAL.format(state=tmp_path) + '[[sinks]]\ntype = "stdout"\nname = "out"\n'
        with pytest.raises(ConfigError) as err:
            load_settings(write(tmp_path, text))
        assert "duplicate name(s): out" in err.value.problems[0]
        with pytest.raises(ConfigError) as err:
            load_settings(write(tmp_path, f'state_dir = "{tmp_path}"\n'))
        assert sorted(err.value.problems) == [
            "sinks: required key is missing",
            "sources: required key is missing",
        ]

    def test_invalid_toml_names_file(self, tmp_path: Path) -> None:
        """A TOML syntax error names the file."""
        path = write(tmp_path, "name = \n")
        with pytest.raises(ConfigError) as err:
            load_settings(path)
        assert str(path) in err.value.problems[0]
        assert "invalid TOML" in err.value.problems[0]

    def test_secret_file_value_never_in_errors(self, tmp_path: Path) -> None:
        """An inline secret on a key that fails validation elsewhere is not echoed."""
        text = MINIMAL.format(state=tmp_path).replace('{ env = "TEST_GRAPH_SECRET" }', '"hunter2-inline"')
        text = text.replace('tenant_id = "tenant"', "tenant_id = 42")
        with pytest.raises(ConfigError) as err:
            load_settings(write(tmp_path, text))
        assert "hunter2" not in "\n".join(err.value.problems)
