"""How polling and write-back share one tenant's request budget (``RateBudget``).

Both kinds of request spend the same ``requests_per_minute`` (N): Graph counts every call of the app
in the tenant, whatever it does. The split:

* writes are guaranteed ``W = ceil(N * budget_share)`` requests in any 60-second window while they
  have work waiting, polls the other ``N - W`` (with N = 1 nothing can be reserved: first come);
* a kind may use whatever the other leaves idle: a poll takes the writes' share when no write waits,
  and a burst of writes takes idle polling capacity;
* when both wait, a kind that already used its guarantee in the window yields to the other kind as
  long as that one is still below its own guarantee.

So neither starves: a waiting write gets a grant within one token interval once polls have used
their ``N - W`` (or as soon as a slot leaves the 60 s window when polls had borrowed everything), and
polls keep ``N - W`` however many writes are queued. The total stays under N (the budget's own
rules); a 429's Retry-After holds both kinds alike.
"""

from __future__ import annotations

import math
from collections import deque
from typing import Literal

WINDOW_SECS = 60.0

Kind = Literal["poll", "write"]


def _other(kind: Kind) -> Kind:
    return "write" if kind == "poll" else "poll"


class BudgetShare:
    """Per-kind grant logs and waiter counts; answers whether a kind must yield to the other."""

    def __init__(self, requests_per_minute: int, write_share: float) -> None:
        if not 0.0 < write_share < 1.0:
            raise ValueError("write_share must be between 0 and 1")
        writes = 0 if requests_per_minute < 2 else max(1, math.ceil(requests_per_minute * write_share))
        writes = min(writes, max(0, requests_per_minute - 1))
        #: Requests each kind is guaranteed in any 60 s window while it has work waiting.
        self.reserved: dict[Kind, int] = {"write": writes, "poll": requests_per_minute - writes}
        self._waiting: dict[Kind, int] = {"poll": 0, "write": 0}
        self._grants: dict[Kind, deque[float]] = {"poll": deque(), "write": deque()}

    def enter(self, kind: Kind) -> None:
        """A request of ``kind`` starts waiting for the budget."""
        self._waiting[kind] += 1

    def leave(self, kind: Kind) -> None:
        """It stopped waiting (granted or cancelled)."""
        self._waiting[kind] = max(0, self._waiting[kind] - 1)

    def used(self, kind: Kind, now: float) -> int:
        """Grants of ``kind`` within the last 60 seconds."""
        log = self._grants[kind]
        while log and log[0] <= now - WINDOW_SECS:
            log.popleft()
        return len(log)

    def must_yield(self, kind: Kind, now: float) -> bool:
        """Whether a grant that the budget could give ``kind`` now belongs to the other kind."""
        other = _other(kind)
        if self._waiting[other] == 0:
            return False
        return self.used(other, now) < self.reserved[other] and self.used(kind, now) >= self.reserved[kind]

    def granted(self, kind: Kind, now: float) -> None:
        """Record a grant of ``kind`` at ``now``."""
        self._grants[kind].append(now)
