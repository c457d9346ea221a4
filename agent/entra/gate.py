"""Token requests inside a shared request budget: a ``requests`` adapter for MSAL's session.

MSAL is synchronous and runs in a worker thread (``agent.entra.credential``). Graph's per-tenant
budget (``agent.sources.graph.budget``) lives on the event loop. ``GatedAdapter.send`` asks the loop
for a slot of the budget, blocking only its worker thread, sends the request (OIDC discovery,
instance discovery, token) and gives the slot back when the answer is in — so every request the
tenant's token client makes counts against the same window as its Graph requests. A credential
without a gate (the Logs Ingestion sink's) sends as before.

A session shared by the credentials of many tenants (``agent.sources.graph.shared``) is mounted with
an adapter without a gate of its own: each token call sets its tenant's gate for its worker thread
(``gated``), and the adapter takes the slot from that.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractAsyncContextManager
from typing import Any

import requests
from requests.adapters import HTTPAdapter

#: Opens one slot of a budget on the event loop (e.g. ``functools.partial(budget.slot, "poll")``).
RequestGate = Callable[[], AbstractAsyncContextManager[Any]]


_current = threading.local()
LoopGetter = Callable[[], asyncio.AbstractEventLoop | None]


@contextlib.contextmanager
def gated(gate: RequestGate | None, loop: LoopGetter) -> Iterator[None]:
    """Within the block, requests this thread sends through a shared gated session take ``gate``'s slots."""
    _current.gate, _current.loop = gate, loop
    try:
        yield
    finally:
        _current.gate = _current.loop = None


class GatedAdapter(HTTPAdapter):
    """Sends every request inside a slot of ``gate``, taken on the event loop ``loop()`` returns
    (both ``None``: the gate this thread set with ``gated``)."""

    def __init__(self, gate: RequestGate | None = None, loop: LoopGetter | None = None) -> None:
        super().__init__()
        self._gate = gate
        self._loop = loop

    def send(self, request: requests.PreparedRequest, *args: Any, **kwargs: Any) -> requests.Response:
        gate = self._gate or getattr(_current, "gate", None)
        get_loop = self._loop or getattr(_current, "loop", None)
        if gate is None or get_loop is None:
            raise requests.ConnectionError("no request budget for this token request")
        loop = get_loop()
        if loop is None or loop.is_closed():
            raise requests.ConnectionError("no event loop to take a request-budget slot from")
        held = gate()
        try:
            # Waits as long as the budget says (a Retry-After block included). If the loop goes away
            # meanwhile (shutdown cancels its tasks), the wait ends with CancelledError.
            asyncio.run_coroutine_threadsafe(held.__aenter__(), loop).result()
        except (concurrent.futures.CancelledError, RuntimeError) as exc:
            raise requests.ConnectionError(f"request budget wait abandoned: {type(exc).__name__}") from None
        try:
            return super().send(request, *args, **kwargs)
        finally:
            with contextlib.suppress(RuntimeError):  # the loop closed: nothing left to account to
                asyncio.run_coroutine_threadsafe(held.__aexit__(None, None, None), loop)


def mount_gate(session: requests.Session, gate: RequestGate | None, loop: LoopGetter | None) -> None:
    """Route every request of ``session`` through ``gate`` (``None``: the thread's, see ``gated``)."""
    adapter = GatedAdapter(gate, loop)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
