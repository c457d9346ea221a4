"""Retry timing shared by every component: exponential backoff with jitter, and ``Retry-After``.

``backoff`` is the one formula: the bound doubles per attempt from ``initial`` up to ``maximum``, and
the delay is drawn uniformly below it (full jitter, so many clients that failed together do not
retry together). A caller that must never retry almost at once (a rejected credential, a failed
poll) raises the floor with ``min_fraction`` (½: "equal jitter").

``parse_retry_after`` reads a ``Retry-After`` header as sent by Graph and by HTTP receivers:
delta-seconds (fractions accepted) or an HTTP-date, measured against the injected clock, and never
more than ``MAX_RETRY_AFTER_SECS``: the header comes from the peer (or anything in between), and one
absurd value must not park a tenant's Graph budget or a sink for days.
"""

from __future__ import annotations

import math
import random
from email.utils import parsedate_to_datetime

from agent.clock import Clock

#: The longest wait a ``Retry-After`` can ask for (one hour).
MAX_RETRY_AFTER_SECS = 3600.0

#: Exponent cap: ``2 ** 30`` times any sane initial delay is far above any maximum.
_MAX_DOUBLINGS = 30


def backoff(
    attempt: int, initial: float, maximum: float, rng: random.Random, *, min_fraction: float = 0.0
) -> float:
    """Seconds to wait before retry number ``attempt + 1`` (``attempt`` counts from 0).

    Uniform in ``[min_fraction * bound, bound]`` with ``bound = min(maximum, initial * 2 ** attempt)``.
    """
    bound = min(maximum, initial * 2 ** min(max(attempt, 0), _MAX_DOUBLINGS))
    return rng.uniform(bound * min_fraction, bound)


def parse_retry_after(value: str | None, clock: Clock) -> float | None:
    """Seconds a ``Retry-After`` value asks for, in ``[0, MAX_RETRY_AFTER_SECS]``; ``None`` when
    absent or unusable.

    Accepts delta-seconds (``"120"``, ``"1.5"``) and an HTTP-date with a zone, which is compared with
    ``clock.now()``. Non-finite numbers and dates without a zone are unusable.
    """
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        return min(max(0.0, seconds), MAX_RETRY_AFTER_SECS) if math.isfinite(seconds) else None
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        return None
    return min(max(0.0, (when - clock.now()).total_seconds()), MAX_RETRY_AFTER_SECS)
