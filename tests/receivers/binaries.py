"""Where the real programs the tests run against are: rsyslogd, syslog-ng and systemd-analyze.

``tests/receivers/install.sh`` (run by ``make test``) unpacks them from Debian's packages into
``<checkout>/.cache/receivers/<group>/`` (``$SIEM_AGENT_RECEIVERS_DIR`` overrides the folder). An
unpacked program needs its private libraries on ``LD_LIBRARY_PATH`` and, for rsyslog, its module
directory (``-M``); :class:`Program` carries both. rsyslogd and systemd-analyze installed on the
system are used when the cache has none; syslog-ng only ever runs unpacked (it Conflicts with
rsyslog in apt).

Standard library only: ``install.sh`` runs ``python3 binaries.py --versions`` before any venv exists.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

CHECKOUT = Path(__file__).resolve().parents[2]
SYSLOG_NG_VERSION = "3.38"
RSYSLOG_MODULES = ("mmnormalize", "imrelp", "lmnsd_gtls")
INSTALL_HINT = "`make test` installs them into .cache/receivers (needs the Debian archive)"


def cache_dir() -> Path:
    """The folder ``install.sh`` unpacks into."""
    return Path(os.environ.get("SIEM_AGENT_RECEIVERS_DIR", str(CHECKOUT / ".cache" / "receivers")))


@dataclass(frozen=True)
class Program:
    """A runnable program: ``argv`` starts every command line, ``env`` is the environment to use."""

    argv: list[str]
    env: dict[str, str] = field(default_factory=lambda: dict(os.environ))
    #: syslog-ng's module directory (``--module-path``); rsyslog's is already in ``argv`` (``-M``).
    module_dir: Path | None = None


def unavailable_reason() -> str:
    """One line saying why the programs are missing (what ``install.sh`` recorded, if anything)."""
    recorded = cache_dir() / "unavailable"
    try:
        why = recorded.read_text().strip()
    except OSError:
        why = ""
    return f"test receivers unavailable: {why or 'not installed'}; {INSTALL_HINT}"


def _lib_dirs(root: Path) -> list[str]:
    found = [p for p in (*root.glob("usr/lib/*-linux-gnu*"), *root.glob("lib/*-linux-gnu*")) if p.is_dir()]
    found += [p / "systemd" for p in found if (p / "systemd").is_dir()]
    found += [p for p in (root / "usr/lib/syslog-ng",) if p.is_dir()]
    return [str(p) for p in found]


def _env_with_libs(root: Path) -> dict[str, str]:
    env = dict(os.environ)
    dirs = _lib_dirs(root)
    if env.get("LD_LIBRARY_PATH"):
        dirs.append(env["LD_LIBRARY_PATH"])
    env["LD_LIBRARY_PATH"] = os.pathsep.join(dirs)
    return env


def rsyslog() -> Program | None:
    """rsyslogd with mmnormalize, imrelp and the gnutls driver, or None."""
    root = cache_dir() / "rsyslog"
    binary = root / "usr/sbin/rsyslogd"
    if binary.is_file():
        for moddir in root.glob("usr/lib/*/rsyslog"):
            if all((moddir / f"{m}.so").is_file() for m in RSYSLOG_MODULES):
                return Program([str(binary), "-M", str(moddir)], _env_with_libs(root))
        return None
    system = shutil.which("rsyslogd", path="/usr/sbin:/sbin:" + os.environ.get("PATH", ""))
    if system and all(list(Path("/usr/lib").glob(f"*/rsyslog/{m}.so")) for m in RSYSLOG_MODULES):
        return Program([system])
    return None


def syslog_ng() -> Program | None:
    """syslog-ng 3.38 with its JSON plugin, unpacked, or None."""
    root = cache_dir() / "syslog-ng"
    binary = root / "usr/sbin/syslog-ng"
    modules = root / "usr/lib/syslog-ng" / SYSLOG_NG_VERSION
    if not binary.is_file() or not (modules / "libjson-plugin.so").is_file():
        return None
    return Program([str(binary)], _env_with_libs(root), module_dir=modules)


def systemd_analyze() -> Program | None:
    """systemd-analyze from PATH, else unpacked, or None."""
    system = shutil.which("systemd-analyze")
    if system:
        return Program([system])
    root = cache_dir() / "systemd"
    binary = root / "usr/bin/systemd-analyze"
    if binary.is_file():
        return Program([str(binary)], _env_with_libs(root))
    return None


def _version(program: Program | None, *args: str) -> str:
    if program is None:
        return "missing"
    try:
        proc = subprocess.run(
            [*program.argv, *args], env=program.env, capture_output=True, text=True, timeout=30, check=False
        )
    except OSError as exc:
        return f"does not run: {exc}"
    lines = (proc.stdout or proc.stderr).strip().splitlines()
    return lines[0].strip() if lines else f"exit {proc.returncode}"


def main(argv: list[str]) -> int:
    if argv != ["--versions"]:
        print("usage: binaries.py --versions", file=sys.stderr)
        return 2
    ng = syslog_ng()
    ng_args = [f"--module-path={ng.module_dir}", "-V"] if ng else []
    report = {
        "rsyslogd": _version(rsyslog(), "-v"),
        "syslog-ng": _version(ng, *ng_args),
        "systemd-analyze": _version(systemd_analyze(), "--version"),
    }
    for name, version in report.items():
        print(f"  {name}: {version}")
    return 1 if "missing" in report.values() else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
