"""One series instead of one per tenant: ``[metrics] per_tenant = false`` (``agent.metrics``).

A ``Collapsed`` metric stands in for a labelled counter, histogram or gauge whose first label is the
tenant or the stream: every ``labels(key, *rest)`` lands on the child ``labels("_all", *rest)``.
Counters and histograms simply add up there. A gauge cannot be added up, so its children remember
each key's last value and the aggregate (the largest lag, the oldest successful poll, the lowest
budget, the sum of what is left to read) is computed when ``/metrics`` is scraped (``refresh``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

ALL = "_all"


class _Child:
    """What ``Collapsed.labels`` returns for an aggregated gauge: remembers its key's value."""

    __slots__ = ("_key", "_parent")

    def __init__(self, parent: Collapsed, key: tuple[str, ...]) -> None:
        self._parent = parent
        self._key = key

    def set(self, value: float) -> None:
        self._parent.values[self._key] = value

    def inc(self, amount: float = 1.0) -> None:
        values = self._parent.values
        values[self._key] = values.get(self._key, 0.0) + amount


class Collapsed:
    """A metric with its first label collapsed into ``"_all"`` (gauges: aggregated with ``combine``)."""

    def __init__(self, metric: Any, combine: Callable[[Iterable[float]], float] | None = None) -> None:
        self._metric = metric
        self._combine = combine
        #: (first label, *other labels) -> last value, for an aggregated gauge.
        self.values: dict[tuple[str, ...], float] = {}

    def labels(self, key: str, *rest: str) -> Any:
        if self._combine is None:
            return self._metric.labels(ALL, *rest)
        return _Child(self, (key, *rest))

    def refresh(self) -> None:
        """Set every ``_all`` series of an aggregated gauge from the values its keys reported."""
        if self._combine is None:
            return
        groups: dict[tuple[str, ...], list[float]] = {}
        for key, value in self.values.items():
            groups.setdefault(key[1:], []).append(value)
        for rest, values in groups.items():
            self._metric.labels(ALL, *rest).set(self._combine(values))
