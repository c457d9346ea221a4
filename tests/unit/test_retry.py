"""``agent.retry``: the one backoff formula and the one ``Retry-After`` parser."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from agent.retry import MAX_RETRY_AFTER_SECS, backoff, parse_retry_after
from tests.support.clock import FixedClock

#: The wall time of the Retry-After tests.
RETRY_AT = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


class TestBackoff:
    def test_full_jitter_stays_below_the_doubling_bound(self) -> None:
        """Attempt n waits at most initial * 2**n, never less than 0, never more than the maximum."""
        rng = random.Random(7)
        for attempt in range(12):
            bound = min(60.0, 0.5 * 2**attempt)
            delays = [backoff(attempt, 0.5, 60.0, rng) for _ in range(200)]
            assert all(0.0 <= d <= bound for d in delays)
            assert max(delays) > bound * 0.9 and min(delays) < bound * 0.1  # spread over the range

    def test_min_fraction_raises_the_floor(self) -> None:
        """``min_fraction=0.5`` (equal jitter) never waits less than half the bound."""
        rng = random.Random(3)
        delays = [backoff(2, 1.0, 300.0, rng, min_fraction=0.5) for _ in range(200)]
        assert all(2.0 <= d <= 4.0 for d in delays)

    def test_huge_attempt_numbers_are_capped(self) -> None:
        """No overflow however often it failed; the maximum holds."""
        assert backoff(10_000, 1.0, 30.0, random.Random(1), min_fraction=1.0) == 30.0


class TestParseRetryAfter:
    @pytest.mark.parametrize(("value", "expected"), [("10", 10.0), ("2.128", 2.128), ("0", 0.0), ("-3", 0.0)])
    def test_seconds(self, value: str, expected: float) -> None:
        """Whole or fractional delta-seconds, never negative."""
        assert parse_retry_after(value, FixedClock(RETRY_AT)) == expected

    def test_http_date_against_the_injected_clock(self) -> None:
        """An HTTP-date is the time left until then, by the clock passed in (not the system's)."""
        clock = FixedClock(RETRY_AT)
        when = (clock.at + timedelta(seconds=90)).strftime("%a, %d %b %Y %H:%M:%S GMT")
        assert parse_retry_after(when, clock) == 90.0
        assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", clock) == 0.0

    def test_an_absurd_wait_is_capped_at_an_hour(self) -> None:
        """Seconds or a date years ahead: one hour at most, for Graph's budget and every sink alike."""
        clock = FixedClock(RETRY_AT)
        far = (clock.at + timedelta(days=900)).strftime("%a, %d %b %Y %H:%M:%S GMT")
        assert parse_retry_after("999999999", clock) == MAX_RETRY_AFTER_SECS == 3600.0
        assert parse_retry_after(far, clock) == MAX_RETRY_AFTER_SECS
        assert parse_retry_after("3599", clock) == 3599.0

    @pytest.mark.parametrize("value", [None, "", "soon", "nan", "inf", "Wed, 21 Oct 2015 07:28:00 -0000"])
    def test_unusable_is_none(self, value: str | None) -> None:
        """Absent, garbage, non-finite or zone-less: ``None`` (the caller's default applies)."""
        assert parse_retry_after(value, FixedClock(RETRY_AT)) is None
