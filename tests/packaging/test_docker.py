"""The Dockerfile without a Docker engine: its build steps replayed in a scratch venv, its HEALTHCHECK
run against a live agent, and the runtime settings a container depends on."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tomllib
from pathlib import Path

from agent.app import Agent
from agent.config import load_settings
from tests.support.simulator import SimEnv, agent_config
from tests.support.wait import until

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
#: With --no-deps and the dev venv on the path, the install needs no network and leaves .venv alone.
OFFLINE = ["--ignore-installed", "--no-cache-dir", "."]


def instructions() -> list[tuple[str, str, int]]:
    """(INSTRUCTION, arguments, stage index) with line continuations joined and comments dropped."""
    out: list[tuple[str, str, int]] = []
    stage = -1
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        op, _, args = line.partition(" ")
        if op.upper() == "FROM":
            stage += 1
        out.append((op.upper(), args.strip(), stage))
    return out


def runtime(op: str) -> list[str]:
    last = max(s for _, _, s in instructions())
    return [a for o, a, s in instructions() if o == op and s == last]


class TestDockerfile:
    def test_build_steps_install_a_working_agent(self, tmp_path: Path) -> None:
        """COPY the build context the Dockerfile names, run its RUN steps (offline: deps from .venv),
        then the entrypoint: --version and validate with an example config."""
        ctx = tmp_path / "src"
        ctx.mkdir()
        build = [(o, a) for o, a, s in instructions() if s == 0]
        for op, args in build:
            if op == "COPY":
                *srcs, dest = args.split()
                for src in srcs:
                    target = ctx / dest.rstrip("/") / Path(src).name if dest.endswith("/") else ctx / dest
                    if (ROOT / src).is_dir():
                        shutil.copytree(ROOT / src, target, ignore=shutil.ignore_patterns("__pycache__"))
                    else:
                        target.parent.mkdir(parents=True, exist_ok=True)
                        shutil.copy(ROOT / src, target)
        runs = [a for o, a in build if o == "RUN"]
        assert len(runs) == 1
        steps = [s.strip() for s in runs[0].split("&&")]
        assert steps[0] == "python -m venv /opt/siem-agent"
        assert steps[-1] == "/opt/siem-agent/bin/siem-agent --version"
        venv = tmp_path / "venv"
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=60)
        # Offline stand-in for "pip install .": this venv sees the dev venv's packages (pip included).
        site = Path(sysconfig.get_path("purelib", vars={"base": str(venv)}))
        (site / "_dev_venv.pth").write_text(sysconfig.get_path("purelib") + "\n")
        py = str(venv / "bin" / "python")
        for step in steps[1:-1]:
            assert step.startswith("/opt/siem-agent/bin/pip install"), step
            if "-r requirements.lock" in step:
                # Needs the network; the dev venv's packages stand in. The lock itself is checked in
                # test_lock_pins_every_dependency_with_hashes.
                assert "--require-hashes" in step and "--no-deps" in step, step
                continue
            assert step.endswith(" .") and "--no-deps" in step and "--no-build-isolation" in step, step
            subprocess.run(
                [
                    py,
                    "-m",
                    "pip",
                    "install",
                    "-q",
                    "--no-deps",
                    "--no-build-isolation",
                    "--no-index",
                    *OFFLINE,
                ],
                cwd=ctx,
                check=True,
                timeout=120,
                capture_output=True,
            )
        exe = venv / "bin" / "siem-agent"
        version = subprocess.run(
            [exe, "--version"], capture_output=True, text=True, timeout=60, check=True, cwd=tmp_path
        )
        assert version.stdout.startswith("siem-agent ")
        where = subprocess.run(
            [py, "-c", "import agent; print(agent.__file__)"],
            capture_output=True,
            text=True,
            check=True,
            cwd=tmp_path,
        )
        assert where.stdout.startswith(str(venv)), "the installed copy, not the source tree, must run"
        env = {k: v for k, v in os.environ.items() if not k.startswith("SIEM_AGENT_")}
        env["GRAPH_CLIENT_SECRET"] = "x"
        val = subprocess.run(
            [exe, "validate", "--config", str(ROOT / "config" / "minimal.toml")],
            capture_output=True,
            text=True,
            timeout=60,
            env=env,
            check=False,
            cwd=tmp_path,
        )
        assert val.returncode == 0, val.stderr

    async def test_healthcheck_command_tracks_a_live_agent(self, tmp_path: Path, graph_sim: SimEnv) -> None:
        """The HEALTHCHECK's exact command exits 0 against a running agent and non-zero once it stopped."""
        (line,) = runtime("HEALTHCHECK")
        cmd = json.loads(line.split(" CMD ", 1)[1])
        assert cmd[0] == "python"
        cmd[0] = sys.executable
        data = agent_config(
            tmp_path / "state", [graph_sim.source()], [{"type": "stdout", "name": "o"}], http={"port": 0}
        )
        agent = Agent(load_settings(data=data))
        task = asyncio.create_task(agent.run())

        async def probe() -> int:
            assert agent.ops is not None
            env = {**os.environ, "SIEM_AGENT_HTTP__PORT": str(agent.ops.port)}
            proc = await asyncio.create_subprocess_exec(*cmd, env=env, stderr=asyncio.subprocess.DEVNULL)
            return await asyncio.wait_for(proc.wait(), 30)

        try:
            await until(lambda: agent.ops is not None and agent.ops.port != 0, 10, "ops endpoint")
            assert await probe() == 0
            port = agent.ops.port  # type: ignore[union-attr]
        finally:
            agent.request_stop()
            assert await asyncio.wait_for(task, 15) == 0
        agent.ops = type("Stopped", (), {"port": port})()  # type: ignore[assignment]
        assert await probe() != 0

    def test_lock_pins_every_dependency_with_hashes(self) -> None:
        """requirements.lock pins every runtime dependency and the build backend, each with hashes, at
        versions inside pyproject.toml's floors; the Dockerfile copies it and the base is a digest."""
        from packaging.requirements import Requirement
        from packaging.utils import canonicalize_name

        project = tomllib.loads((ROOT / "pyproject.toml").read_text())
        wanted = [Requirement(r) for r in project["project"]["dependencies"]]
        wanted += [Requirement(r) for r in project["build-system"]["requires"]]
        text = re.sub(r"\\\n\s*", " ", (ROOT / "requirements.lock").read_text())
        pinned: dict[str, str] = {}
        for raw in text.splitlines():
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            # Each requirement line on its own: pinned to one version, and with at least one hash.
            requirement, *options = line.split()
            match = re.fullmatch(r"([A-Za-z0-9_.-]+)==([A-Za-z0-9_.+!-]+)", requirement)
            assert match, f"requirements.lock: {requirement!r} is not pinned as name==version"
            hashes = [o for o in options if re.fullmatch(r"--hash=sha256:[0-9a-f]{64}", o)]
            assert hashes, f"requirements.lock: {requirement} has no --hash=sha256:"
            pinned[canonicalize_name(match.group(1))] = match.group(2)
        assert pinned, "requirements.lock pins nothing"
        for req in wanted:
            name = canonicalize_name(req.name)
            assert name in pinned, f"{req.name} is not in requirements.lock"
            version = pinned[name]
            assert req.specifier.contains(version), f"{req.name}=={version} vs {req.specifier}"
        copied = " ".join(a for o, a, s in instructions() if o == "COPY" and s == 0)
        assert "requirements.lock" in copied
        froms = [a for o, a, _ in instructions() if o == "FROM"]
        base = next(a for o, a, _ in instructions() if o == "ARG" and a.startswith("BASE="))
        assert re.fullmatch(r"BASE=python:3\.11-slim@sha256:[0-9a-f]{64}", base), base
        assert all(f.startswith("${BASE}") for f in froms), froms

    def test_runtime_image_contract(self) -> None:
        """Exec-form entrypoint (the agent is PID 1 and gets SIGTERM), non-root, state in the volume,
        TMPDIR inside it (read-only root works), OCI labels."""
        (entry,) = runtime("ENTRYPOINT")
        assert json.loads(entry) == ["siem-agent"]
        assert runtime("STOPSIGNAL") == ["SIGTERM"]
        (user,) = runtime("USER")
        assert not user.startswith(("0", "root"))
        (volume,) = runtime("VOLUME")
        env = " ".join(runtime("ENV"))
        for var in ("SIEM_AGENT_STATE_DIR", "TMPDIR"):
            value = re.search(rf"{var}=(\S+)", env)
            assert value and value.group(1).startswith(json.loads(volume)[0]), var
        assert "PYTHONDONTWRITEBYTECODE=1" in env
        labels = " ".join(runtime("LABEL"))
        for key in ("title", "description", "version", "revision", "licenses", "source"):
            assert f"org.opencontainers.image.{key}=" in labels
