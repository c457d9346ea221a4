"""Claim: Graph failures never lose an alert, never break Retry-After or the rate budget, never crash-loop.

One real agent process polls the Graph simulator (HTTPS on 127.0.0.1, in this test process) through a
sequence of fault phases — a 429 storm (queued 429s, then a throttle window answering every request
with 429 and the time left as ``Retry-After``), 5xx bursts (500/503/504), timeouts (responses held
longer than ``request_timeout_secs``), malformed pages (invalid JSON, ``value`` not a list), token
expiry (every token revoked at once: 401), and credentials revoked (token endpoint: AADSTS7000215)
for a while and then restored. Each phase adds new alerts (and new versions) and waits for them at
the file sink. Asserted, from the simulator's request log (its own monotonic arrival times):

* nothing lost and nothing twice: the file holds every alert version exactly once;
* Retry-After: after a 429 that said *r* seconds, the next Graph request arrives >= *r* later;
* rate budget (``requests_per_minute`` = ``RPM``): no 60-second window holds more than ``RPM``
  requests, and no interval of *d* seconds more than ``burst + d * RPM / 60 + 1`` (token bucket;
  +1 for arrival jitter);
* no crash loop: the same process stays up throughout and exits 0 on SIGTERM; every log line is one
  JSON object (no traceback); the rejected credential gives exactly one error line however many token
  requests failed, a 429 storm one warning line, and other transient failures at most one line per
  failed request (they carry Graph's request-id, so the repeat filter cannot fold them; the
  request-level backoff bounds them).

Runtime: about 20 s.
"""

from __future__ import annotations

import re
import time
from collections import Counter
from datetime import timedelta
from pathlib import Path

import orjson

from agent.simulator.server import Fault, backdate, throttled, unavailable
from tests.graph.harness import busiest_minute
from tests.support.agent_process import AgentProcess, agent_settings, fast_source, read_jsonl, write_config
from tests.support.simulator import SimEnv
from tests.support.wait import until

RPM = 600
BURST = RPM // 10
REQUEST_TIMEOUT_SECS = 1.0
RETRY_AFTER_SECS = 0.6


def versions(env: SimEnv) -> set[tuple[str, str]]:
    return {(a["id"], a["lastUpdateDateTime"]) for a in env.sim.alerts.values()}


def delivered(out: Path) -> list[tuple[str, str]]:
    return [(str(r["id"]), str(r["lastUpdateDateTime"])) for r in read_jsonl(out)]


async def test_graph_faults_lose_nothing_and_respect_retry_after_and_budget(
    tmp_path: Path, graph_sim: SimEnv
) -> None:
    sim = graph_sim.sim
    start = backdate(300)
    for i in range(40):
        sim.add_alerts(1, when=start + timedelta(seconds=i))
    out = tmp_path / "out.jsonl"
    source = fast_source(
        graph_sim.source(),
        page_size=10,
        requests_per_minute=RPM,
        request_timeout_secs=REQUEST_TIMEOUT_SECS,
        max_attempts=4,
        backoff_base_secs=0.05,
        backoff_max_secs=0.2,
        error_backoff_max_secs=1.0,
    )
    sink = {"type": "file", "name": "file", "path": str(out), "codec": {"type": "json"}}
    sink["batch"] = {"timeout_secs": 0.05}
    settings = agent_settings(tmp_path / "state", [source], [sink])
    agent = AgentProcess(write_config(tmp_path / "agent.toml", settings), tmp_path / "agent.log")
    throttle_windows: list[tuple[float, float]] = []
    expected: set[tuple[str, str]] = set()
    agent.start()
    pid = agent.pid

    async def phase(name: str, timeout: float = 30.0) -> None:
        """New alerts and a new version, then wait until everything is at the sink."""
        sim.add_alerts(5)
        sim.update(next(iter(sim.alerts)))
        want = versions(graph_sim)
        expected.update(want)
        try:
            await until(lambda: want <= set(delivered(out)) or not agent.alive(), timeout, name)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{agent.log_text()[-4000:]}") from None
        assert agent.alive() and agent.pid == pid, f"{name}: agent exited\n{agent.log_text()[-4000:]}"

    try:
        await phase("initial backlog")

        # 429 storm: queued 429s with Retry-After, then a window where every request is refused.
        sim.faults.extend(throttled(f"{RETRY_AFTER_SECS}") for _ in range(3))
        await phase("after queued 429s")
        throttle_windows.append((time.monotonic(), time.monotonic() + 2.0))
        sim.throttle(2.0)
        await phase("after a 2 s throttle window")

        # 5xx bursts (each shorter than max_attempts, so the request itself recovers) and a longer one.
        sim.faults.extend([unavailable(503), unavailable(504), Fault(500, b"{}")])
        await phase("after a 5xx burst")
        sim.faults.extend(unavailable(503) for _ in range(6))  # > max_attempts: the poll fails and backs off
        await phase("after a 5xx storm")

        # Timeouts: held past request_timeout_secs.
        sim.faults.extend(Fault(200, b"{}", delay_secs=REQUEST_TIMEOUT_SECS + 1.5) for _ in range(2))
        await phase("after timeouts")

        # Malformed pages.
        sim.faults.extend([Fault(200, b'{"value": [ oops'), Fault(200, b'{"value": 5}'), Fault(200, b"[]")])
        await phase("after malformed pages")

        # Token expiry: every issued token stops working.
        sim.expire_tokens()
        await phase("after token expiry")

        # Credentials revoked (and every token with them) for a while, then restored.
        sim.revoked = True
        sim.expire_tokens()
        refused_before = sum(1 for r in sim.token_requests() if r.status == 401)
        sim.add_alerts(5)
        await until(
            lambda: sum(1 for r in sim.token_requests() if r.status == 401) >= refused_before + 3,
            30,
            "three refused token requests",
        )
        assert agent.alive() and agent.pid == pid
        sim.revoked = False
        await phase("after credentials were restored", timeout=30)

        assert await agent.stop() == 0
    finally:
        agent.kill()

    got = delivered(out)
    counts = Counter(got)
    assert set(counts) == expected
    assert max(counts.values()) == 1, [v for v, n in counts.items() if n > 1][:5]

    reqs = sim.graph_requests()
    times = [r.at for r in reqs]
    # Retry-After: the queued 429s said RETRY_AFTER_SECS; the throttle window said "until its end".
    for i, r in enumerate(reqs[:-1]):
        if r.status != 429:
            continue
        in_window = [end for begin, end in throttle_windows if begin <= r.at < end]
        wait = (in_window[0] - r.at) if in_window else RETRY_AFTER_SECS
        gap = reqs[i + 1].at - r.at
        assert gap >= wait - 0.005, f"request {i + 1} came {gap:.3f}s after a 429 that asked for {wait:.3f}s"
    assert sum(1 for r in reqs if r.status == 429) >= 4
    # The budget: exact 60-second window, and the token bucket over every interval.
    assert busiest_minute(times) <= RPM
    for i, t in enumerate(times):
        for j in range(i + 1, len(times)):
            allowed = BURST + (times[j] - t) * RPM / 60 + 1
            assert j - i + 1 <= allowed, f"{j - i + 1} requests in {times[j] - t:.3f}s"

    logs = agent.log_records()
    assert not [r for r in logs if "raw" in r or "Traceback" in orjson.dumps(r).decode()], "non-JSON output"
    rejected = [r for r in logs if r.get("message") == "Token request rejected; backing off."]
    assert len(rejected) == 1, rejected
    assert "invalid_client (AADSTS7000215)" in rejected[0]["error"]
    throttled_lines = [r for r in logs if r.get("message") == "Graph throttled the tenant (429)."]
    assert len(throttled_lines) == 1, throttled_lines
    leaked = sim.client_secret in agent.log_text()
    assert not leaked, "the client secret leaked into the agent's log"
    # Transient failures: at most one line per failed request (no amplification, no tracebacks).
    failed = [r for r in reqs if r.status >= 500]
    lines = [
        r
        for r in logs
        if r.get("message") in ("Graph request failed; retrying.", "Poll failed; backing off.")
    ]
    injected = 3 + 6 + 2 + 3  # 5xx burst, 5xx storm, timeouts, malformed pages
    assert len(failed) == 3 + 6
    assert len(lines) <= injected, [r.get("error") for r in lines]
    # The same failure again within a minute is rate-limited, even though its request ids differ.
    uuid = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
    kinds = [(r["message"], uuid.sub("<id>", str(r.get("error")))) for r in lines]
    assert len(kinds) == len(set(kinds)), kinds
