"""Run ``agent.cli`` with the time spent in the cyclic garbage collector measured (diagnostics).

    .venv/bin/python -m bench.gcwrap run --config FILE

Writes one line to stderr at exit: collections and seconds per generation. ``BENCH_GC_THRESHOLD``
(e.g. ``50000,20,10``) sets ``gc.set_threshold`` first, to try a setting.
"""

from __future__ import annotations

import atexit
import gc
import os
import sys
import time

from agent.cli import main as agent_main


def main() -> None:
    """Install the GC timer, run the agent's command line, report at exit."""
    started: list[float] = [0.0]
    spent = [0.0, 0.0, 0.0]
    runs = [0, 0, 0]

    def timer(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            started[0] = time.perf_counter()
        else:
            spent[info["generation"]] += time.perf_counter() - started[0]
            runs[info["generation"]] += 1

    tune = os.environ.get("BENCH_GC_THRESHOLD")  # e.g. "50000,20,10": try a GC setting (diagnostics)
    if tune:
        gc.set_threshold(*(int(x) for x in tune.split(",")))
    gc.callbacks.append(timer)
    atexit.register(
        lambda: print(
            f"gc: collections {runs} seconds {[round(s, 3) for s in spent]} total {sum(spent):.3f}",
            file=sys.stderr,
        )
    )
    argv = sys.argv[1:]
    if argv[:2] == ["-m", "agent.cli"]:  # as bench.procs.start_agent passes it
        argv = argv[2:]
    sys.exit(agent_main(argv))


if __name__ == "__main__":
    main()
