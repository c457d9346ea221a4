"""Fixtures of the reliability suite: the shared ones (graph_sim, rsyslog, syslog_ng) plus osmem-server."""

from __future__ import annotations

import pytest

from tests.fakes.osmem import osmem
from tests.support.userns import can_mount, run_in_user_namespace

__all__ = ["osmem"]


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    """A ``mounts`` test run by someone who may not mount runs again in a user namespace instead."""
    if pyfuncitem.get_closest_marker("mounts") is None or can_mount():
        return None
    run_in_user_namespace(pyfuncitem)
    return True
