"""One page of a Graph collection as the source reads it, and which ``@odata.nextLink`` it may follow.

A page (Graph docs ``concepts/paging.md``, ``api/security-list-alerts_v2.md``) is a JSON object with a
``value`` list of objects, ``@odata.count`` on a request that asked ``$count=true``, and
``@odata.nextLink`` while more items follow. Anything else in that shape is a malformed page (a
``TransientSourceError``: Graph is asked again).

A nextLink is a URL the *server* chose, and following it sends the tenant's bearer token there. The
source follows one only when it has the scheme, host and port of the configured Graph root (always
``https``), and never the same one twice in one chain (a server that repeats a nextLink would page
forever); otherwise the poll fails with ``UpstreamProtocolError`` naming the origin, never the token.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from agent.errors import TransientSourceError, UpstreamProtocolError


@dataclass(frozen=True, slots=True)
class Page:
    """The parts of one list response the source uses."""

    items: list[dict[str, Any]]
    #: ``@odata.count`` (items matching the whole query, not only this page), when Graph sent one.
    count: int | None
    next_link: str | None


def parse_page(doc: dict[str, Any]) -> Page:
    """The page in ``doc``; raises ``TransientSourceError`` when ``value`` is not a list of objects."""
    items = doc.get("value")
    if not isinstance(items, list) or not all(isinstance(a, dict) for a in items):
        raise TransientSourceError("Graph page has no 'value' list of objects")
    count = doc.get("@odata.count")
    link = doc.get("@odata.nextLink")
    return Page(
        items,
        count if isinstance(count, int) and not isinstance(count, bool) and count >= 0 else None,
        link if isinstance(link, str) and link else None,
    )


@dataclass(frozen=True, slots=True)
class Origin:
    """Scheme, host and port of a URL (default ports made explicit)."""

    scheme: str
    host: str
    port: int

    @classmethod
    def of(cls, url: str) -> Origin:
        """The origin of ``url``; raises ``ValueError`` for a URL without a host or with a bad port."""
        parts = urlsplit(url)
        if not parts.hostname:
            raise ValueError("no host")
        scheme = parts.scheme.lower()
        port = parts.port or {"https": 443, "http": 80}.get(scheme, 0)
        return cls(scheme, parts.hostname.lower(), port)

    def __str__(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}"


def same_origin(url: str, root: Origin) -> bool:
    """Whether ``url`` is an ``https`` URL of ``root``'s host and port, without user information."""
    try:
        origin = Origin.of(url)
    except ValueError:
        return False
    return origin == root and root.scheme == "https" and "@" not in urlsplit(url).netloc


def describe(url: str) -> str:
    """What an error may say about a URL: its origin and path, no query (it can carry tokens)."""
    parts = urlsplit(url)
    try:
        origin = str(Origin.of(url))
    except ValueError:
        origin = repr(url[:40])
    return f"{origin}{parts.path[:100]}"


class LinkChain:
    """The nextLinks followed in one chain: each checked against the Graph root and against repeats."""

    def __init__(self, root: Origin) -> None:
        self._root = root
        self._followed: set[str] = set()

    def follow(self, link: str) -> str:
        """``link`` if it may be followed; raises ``UpstreamProtocolError`` otherwise."""
        if not same_origin(link, self._root):
            raise UpstreamProtocolError(
                f"Graph sent an @odata.nextLink to {describe(link)}, outside the configured Graph root "
                f"{self._root}: not followed (the token is only ever sent to the Graph root)"
            )
        if link in self._followed:
            raise UpstreamProtocolError(
                f"Graph sent an @odata.nextLink it had sent before in the same chain ({describe(link)}, "
                f"after {len(self._followed)} pages): paging stopped"
            )
        self._followed.add(link)
        return link
