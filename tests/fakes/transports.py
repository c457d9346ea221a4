"""One way for the fakes to drop a connection at once, on every Python 3.11 release."""

from __future__ import annotations

import asyncio


def abort(transport: asyncio.BaseTransport) -> None:
    """``transport.abort()``, tolerating an SSL transport that close() already finished with.

    Python 3.11.2 (Debian 12's ``python3``) raises ``AttributeError`` from ``abort()`` on an SSL
    transport once ``close()`` ran twice (its protocol is gone); later 3.11 releases do nothing then.
    """
    try:
        transport.abort()
    except AttributeError:
        if not transport.is_closing():
            raise
