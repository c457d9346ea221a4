"""No alert can stop a sink: the encode boundary of the runner, through every codec (issue #14).

The poison alerts are nested 300 and 1000 levels deep (orjson refuses more than 254 levels, Python
recursion ends near 1000) in the places codecs read — a mapped text field, an evidence list, a field
no codec maps — and one alert makes a codec raise something no codec ever raises on purpose. Through
a real ``SinkRunner`` with each registered codec: the normal alerts around them are delivered, every
poison alert is delivered cut at ``agent.nesting.MAX_DEPTH`` levels (counted like a truncation), the
exploding one is dead-lettered once with its reason, and the runner keeps going. The whole agent, with a real
Graph simulator serving the poison alert on every poll, is in ``tests/reliability/test_poison_alert.py``.
"""

from __future__ import annotations

import asyncio
import json
import random
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from prometheus_client import CollectorRegistry
from pydantic import TypeAdapter

from agent.codecs import CODECS, build_serializer
from agent.codecs.config import CodecConfig
from agent.metrics import AgentMetrics
from agent.model import Alert, Batch, Commit
from agent.nesting import CUT_MARKER, MAX_DEPTH, cut_depth
from agent.pipeline.acks import AckTracker
from agent.pipeline.config import BatchConfig, RetryConfig
from agent.pipeline.dead_letter import DeadLetterFile
from agent.pipeline.queue import BoundedQueue
from agent.pipeline.runner import NESTING_FIELD, SinkRunner
from agent.simulator.alerts import make_alert
from tests.support.sinks import RecordingSink

TS = "2026-11-27T10:00:00.0000000Z"


def nested(depth: int, leaf: Any = "x") -> Any:
    value = leaf
    for i in range(depth):
        value = [value] if i % 2 else {"k": value}
    return value


def poison_alerts() -> list[dict[str, Any]]:
    base = make_alert(random.Random(2), "t", datetime(2026, 11, 27, tzinfo=UTC), 1)
    out = []
    for depth in (300, 1000):
        for where in ("title", "evidence", "additionalData", "mitreTechniques"):
            alert = dict(base, id=f"poison-{depth}-{where}")
            if where == "evidence":
                alert["evidence"] = [dict(base["evidence"][0], hostName=nested(depth))]
            else:
                alert[where] = nested(depth)
            out.append(alert)
    return out


def codec_configs() -> list[dict[str, Any]]:
    configs: list[dict[str, Any]] = []
    for tag in CODECS:
        if tag.startswith("syslog"):
            configs += [{"type": tag, "msg": {"type": m}} for m in ("cef", "leef", "json", "ecs")]
        else:
            configs.append({"type": tag})
    return configs


class TestCutDepth:
    def test_keeps_max_depth_levels_below_the_alert(self) -> None:
        value, cuts = cut_depth({"a": nested(MAX_DEPTH + 5)})
        assert cuts == 1
        depth, node = 0, value["a"]
        while isinstance(node, dict | list):
            node = node["k"] if isinstance(node, dict) else node[0]
            depth += 1
        assert node == CUT_MARKER and depth == MAX_DEPTH  # containers kept below the alert
        orjson.dumps(value)  # within orjson's limit

    def test_leaves_shallow_values_alone(self) -> None:
        alert = {"a": [1, {"b": None}], "c": "x"}
        assert cut_depth(alert) == (alert, 0)

    def test_any_depth_is_safe(self) -> None:
        value, cuts = cut_depth(nested(100_000))
        assert cuts == 1 and json.dumps(value)


class Exploding:
    """A codec raising what no codec raises on purpose, for one alert."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def encode(self, alert: Alert) -> bytes:
        if alert.get("id") == "explodes":
            raise ZeroDivisionError("a bug in a codec")
        return bytes(self.inner.encode(alert))

    def encode_within(self, alert: Alert, max_bytes: int) -> bytes:
        return bytes(self.inner.encode_within(alert, max_bytes))


@pytest.mark.parametrize(
    "codec",
    codec_configs(),
    ids=lambda c: "+".join(str(v) for v in (c["type"], c.get("msg", {}).get("type")) if v),
)
async def test_poison_alerts_never_stop_the_runner(tmp_path: Path, codec: dict[str, Any]) -> None:
    m = AgentMetrics(CollectorRegistry())
    sink = RecordingSink()
    committed: list[Commit] = []
    acks = AckTracker(lambda stream, c: committed.append(c))
    queue = BoundedQueue("rec", 1000, "block", m)
    dead = DeadLetterFile(tmp_path / "dead.jsonl", lambda: TS)
    serializer = Exploding(build_serializer(TypeAdapter(CodecConfig).validate_python(codec)))
    runner = SinkRunner(
        sink,
        serializer,
        queue,
        acks,
        dead,
        BatchConfig(timeout_secs=0),
        RetryConfig(initial_backoff_secs=0.001, max_backoff_secs=0.002),
        m,
    )
    normal = make_alert(random.Random(3), "t", datetime(2026, 11, 27, tzinfo=UTC), 2)
    alerts = [
        dict(normal, id="first"),
        *poison_alerts(),
        dict(normal, id="explodes"),
        dict(normal, id="last"),
    ]
    batches = [Batch("s", [a], Commit(seen={str(a["id"]): TS})) for a in alerts]
    for b in batches:
        acks.register(b, 1)
        await queue.put(b)
    await queue.close()
    await asyncio.wait_for(runner.run(), 30)

    delivered = [str(e.alert["id"]) for e in sink.delivered]
    dead_letters = [orjson.loads(line) for line in dead.path.read_bytes().splitlines()]
    dead_ids = [d["alert"]["id"] for d in dead_letters]
    assert delivered[0] == "first" and delivered[-1] == "last"
    assert sorted(delivered + dead_ids) == sorted(str(a["id"]) for a in alerts)  # each exactly once
    assert dead_ids[-1] == "explodes" and "ZeroDivisionError: a bug in a codec" in dead_letters[-1]["reason"]
    assert len(committed) == len(alerts)  # every batch acknowledged: the checkpoint moves on
    # Every poison alert made it, cut: nesting is the only thing wrong with them.
    assert {i for i in delivered if i.startswith("poison")} == {str(a["id"]) for a in poison_alerts()}
    labels = {"sink": "rec", "field": NESTING_FIELD}
    assert (m.registry.get_sample_value("siem_agent_truncated_fields_total", labels) or 0) >= 4
    for event in sink.delivered:  # what was delivered is a message the codec made, within its limits
        assert isinstance(event.payload, bytes) and event.payload
