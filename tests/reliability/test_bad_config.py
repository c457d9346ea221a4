"""Claim: a broken configuration never starts the agent and never crashes it (README "Configuration").

Each row of the table is one mistake an operator makes. Both ``siem-agent validate`` and ``siem-agent
run`` must answer it the same way: exit 78 (EX_CONFIG), no traceback, and exactly the expected
``dotted.path: message`` line(s) on stderr — the path naming where the mistake is, the message saying
what is wrong, and never a secret value. ``run`` must not create the state directory or poll.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from tests.support.agent_process import clean_env, run_cli, write_config

SECRET = "s3cr3t-never-printed"
EXIT_CONFIG = 78


def base(tmp: Path) -> dict[str, Any]:
    """A valid configuration (the table edits one thing in it)."""
    return {
        "name": "bad",
        "state_dir": str(tmp / "state"),
        "log": {"format": "json"},
        "http": {"port": 0},
        "sources": [
            {
                "type": "graph_security",
                "name": "tenant",
                "tenant_id": "contoso",
                "client_id": "app",
                "client_secret": SECRET,
                "authority_url": "https://127.0.0.1:9",
                "graph_url": "https://127.0.0.1:9",
            }
        ],
        "sinks": [{"type": "file", "name": "out", "path": str(tmp / "out.cef"), "codec": {"type": "cef"}}],
    }


Edit = Callable[[dict[str, Any], Path], None]

# (id, edit, expected stderr lines): each line is matched exactly; one ending in "..." by its start.
CASES: list[tuple[str, Edit, list[str]]] = [
    (
        "unknown-key-top",
        lambda d, t: d.update(stat_dir="/tmp/x"),
        ["stat_dir: unknown key (check the spelling)"],
    ),
    (
        "unknown-key-source",
        lambda d, t: d["sources"][0].update(poll_intervall_secs=5),
        ["sources[0].poll_intervall_secs: unknown key (check the spelling)"],
    ),
    (
        "unknown-key-codec",
        lambda d, t: d["sinks"][0]["codec"].update(vendr="x"),
        ["sinks[0].codec.vendr: unknown key (check the spelling)"],
    ),
    (
        "unknown-key-nested-msg-codec",
        lambda d, t: d["sinks"][0].update(codec={"type": "syslog5424", "msg": {"type": "cef", "bogus": 1}}),
        ["sinks[0].codec.msg.bogus: unknown key (check the spelling)"],
    ),
    (
        "wrong-type",
        lambda d, t: d["sources"][0].update(page_size="big"),
        ["sources[0].page_size: Input should be a valid integer, unable to parse string as an integer"],
    ),
    (
        "missing-required-key",
        lambda d, t: d["sources"][0].pop("tenant_id"),
        ["sources[0].tenant_id: required key is missing"],
    ),
    (
        "missing-sources",
        lambda d, t: d.pop("sources"),
        ["sources: required key is missing"],
    ),
    (
        "bad-enum",
        lambda d, t: d.update(log={"level": "verbose"}),
        ["log.level: Input should be 'debug', 'info', 'warning' or 'error'"],
    ),
    (
        "bad-enum-nested",
        lambda d, t: d["sinks"][0].update(queue={"when_full": "drop_oldest"}),
        ["sinks[0].queue.when_full: Input should be 'block' or 'drop_newest'"],
    ),
    (
        "missing-env-secret",
        lambda d, t: d["sources"][0].update(client_secret={"env": "SIEM_RELIABILITY_UNSET_SECRET"}),
        ["sources[0].client_secret: environment variable SIEM_RELIABILITY_UNSET_SECRET is not set or empty"],
    ),
    (
        "unreadable-secret-file",
        lambda d, t: d["sources"][0].update(client_secret={"file": str(t / "no-such-secret")}),
        [
            "sources[0].client_secret: cannot read secret file '{tmp}/no-such-secret': No such file or directory"
        ],
    ),
    (
        "secret-file-is-a-directory",
        lambda d, t: d["sources"][0].update(client_secret={"file": str(t)}),
        ["sources[0].client_secret: cannot read secret file '{tmp}': Is a directory"],
    ),
    (
        "unknown-secret-reference",
        lambda d, t: d["sources"][0].update(client_secret={"vault": "graph"}),
        ["sources[0].client_secret: unknown secret reference 'vault'; use env, file or credential"],
    ),
    (
        "duplicate-sink-names",
        lambda d, t: d["sinks"].append(copy.deepcopy(d["sinks"][0])),
        ["(root): sinks: duplicate name(s): out"],
    ),
    (
        "bad-url-scheme-sink",
        lambda d, t: d["sinks"].__setitem__(
            0, {"type": "elasticsearch", "name": "es", "url": "ftp://127.0.0.1:9200", "index": "alerts"}
        ),
        ["sinks[0].url: String should match pattern '^https?://'"],
    ),
    (
        "plain-http-graph-url",
        lambda d, t: d["sources"][0].update(graph_url="http://127.0.0.1:9"),
        ["sources[0].graph_url: String should match pattern '^https://'"],
    ),
    (
        "negative-duration-top",
        lambda d, t: d.update(shutdown_timeout_secs=-1),
        ["shutdown_timeout_secs: Input should be greater than or equal to 0"],
    ),
    (
        "negative-duration-nested",
        lambda d, t: d["sinks"][0].update(batch={"timeout_secs": -0.5}),
        ["sinks[0].batch.timeout_secs: Input should be greater than or equal to 0"],
    ),
    (
        "port-out-of-range",
        lambda d, t: d["sinks"].__setitem__(
            0, {"type": "tcp", "name": "siem", "host": "127.0.0.1", "port": 70000}
        ),
        ["sinks[0].port: Input should be less than or equal to 65535"],
    ),
    (
        "unknown-sink-type",
        lambda d, t: d["sinks"][0].update(type="kafka"),
        # The list of sink types grows (RELP, ...): only its start is fixed here.
        [
            "sinks[0]: Input tag 'kafka' found using 'type' does not match any of the expected tags: 'stdout', ..."
        ],
    ),
    (
        "unknown-codec-type",
        lambda d, t: d["sinks"][0].update(codec={"type": "xml"}),
        [
            "sinks[0].codec: Input tag 'xml' found using 'type' does not match any of the expected tags: 'json', ..."
        ],
    ),
    (
        "two-mistakes-two-lines",
        lambda d, t: (d.update(checkpoint_interval_secs="soon"), d["sinks"][0].update(fsync="maybe")),
        [
            "checkpoint_interval_secs: Input should be a valid number, unable to parse string as a number",
            "sinks[0].fsync: Input should be a valid boolean, unable to interpret input",
        ],
    ),
]


def both_commands(config: Path) -> list[tuple[int, str, str]]:
    """``validate`` and ``run`` on the same file, concurrently (two processes)."""
    env = clean_env()
    env.pop("SIEM_RELIABILITY_UNSET_SECRET", None)
    with ThreadPoolExecutor(2) as pool:
        futures = [pool.submit(run_cli, cmd, "--config", str(config), env=env) for cmd in ("validate", "run")]
        return [f.result() for f in futures]


@pytest.mark.parametrize(("edit", "expected"), [(e, x) for _, e, x in CASES], ids=[c[0] for c in CASES])
def test_broken_config_is_one_clear_line_per_problem(tmp_path: Path, edit: Edit, expected: list[str]) -> None:
    """validate and run: exit 78, exactly the expected ``dotted.path: message`` lines, no traceback."""
    data = base(tmp_path)
    edit(data, tmp_path)
    config = write_config(tmp_path / "agent.toml", data)
    want = sorted(line.format(tmp=tmp_path) for line in expected)
    for (code, out, err), cmd in zip(both_commands(config), ("validate", "run"), strict=True):
        assert code == EXIT_CONFIG, f"{cmd}: exit {code}\n{err}"
        assert "Traceback" not in err, f"{cmd}:\n{err}"
        leaked = SECRET in err or SECRET in out
        assert not leaked, "the secret leaked into the command's output"
        got = sorted(err.splitlines())
        assert len(got) == len(want), f"{cmd}: {got}"
        for line, expected_line in zip(got, want, strict=True):
            if expected_line.endswith("..."):
                assert line.startswith(expected_line[:-3]), f"{cmd}: {line!r}"
            else:
                assert line == expected_line, f"{cmd}"
        assert out == ""
    assert not (tmp_path / "state").exists(), "run created state although the config is bad"


def test_invalid_toml_names_the_file_and_position(tmp_path: Path) -> None:
    """A TOML syntax error: one line with the file name, line and column; exit 78 from both commands."""
    config = tmp_path / "agent.toml"
    config.write_text('name = "x"\nstate_dir = \n')
    for code, _, err in both_commands(config):
        assert code == EXIT_CONFIG
        assert err.splitlines() == [f"{config}: invalid TOML: Invalid value (at line 2, column 13)"]


def test_valid_base_config_validates(tmp_path: Path) -> None:
    """The table's base is valid (so each row fails for its own edit only)."""
    config = write_config(tmp_path / "agent.toml", base(tmp_path))
    code, out, err = run_cli("validate", "--config", str(config))
    assert (code, err) == (0, "")
    assert out.strip() == f"{config}: ok (1 source(s), 1 sink(s))"
