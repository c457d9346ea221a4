"""Sharding: which replica polls which source, by rendezvous (highest-random-weight) hashing.

``[shard] count`` replicas share one configuration; replica ``index`` (``0 .. count-1``, or
``"auto"``: the trailing ordinal of the host name, as a StatefulSet names its pods
``<name>-<ordinal>``) owns the sources whose hash weight is highest for its index. Each source has
exactly one owner for a given ``count``, and going from ``count`` to ``count + 1`` moves only the
sources the new replica wins (about ``1/(count + 1)`` of them); nothing moves between the replicas
that stay.

The weight of (source, replica) is the first 8 bytes of ``blake2b(key, replica index)``: stable
across processes, Python versions and machines (unlike ``hash()``). The key is the source's name,
except that sources of one (cloud, tenant, app) are placed by the first one's name, so they land on
one replica and share one request budget there (Graph's limit is per app per tenant).
"""

from __future__ import annotations

import hashlib
import re
import socket
from collections.abc import Sequence
from typing import Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, model_validator

_ORDINAL = re.compile(r"-(\d+)$")


class ShardConfig(BaseModel):
    """Spread sources over several replicas (e.g. the pods of a Kubernetes StatefulSet)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: Number of replicas sharing this configuration; each source is polled by exactly one of them.
    count: int = Field(default=1, ge=1, le=1024)
    #: This replica's index, ``0 .. count-1``; ``"auto"``: the trailing ``-<ordinal>`` of the host name
    #: (a StatefulSet pod ``siem-agent-2`` is index 2).
    index: int | Literal["auto"] = 0
    #: While another replica holds the lock of a source this one owns (a rolling re-shard), try to take
    #: it again this often, in seconds; the source is not polled meanwhile and ``/readyz`` says so.
    lock_retry_secs: float = Field(default=5.0, gt=0)

    @model_validator(mode="after")
    def _index_in_range(self) -> ShardConfig:
        if isinstance(self.index, int) and not 0 <= self.index < self.count:
            raise ValueError(f"index must be between 0 and count - 1 ({self.count - 1})")
        return self

    def resolved_index(self, hostname: str | None = None) -> int:
        """The index, with ``"auto"`` read from ``hostname`` (default: this host's). Raises ``ValueError``."""
        if isinstance(self.index, int):
            return self.index
        host = hostname if hostname is not None else socket.gethostname()
        found = _ORDINAL.search(host.split(".", 1)[0])
        if found is None:
            raise ValueError(
                f'"auto" needs a host name ending in -<ordinal> (a StatefulSet pod); got {host!r}'
            )
        index = int(found.group(1))
        if index >= self.count:
            raise ValueError(f"host {host!r} is ordinal {index}, but shard.count is {self.count}")
        return index


def weight(key: str, replica: int) -> int:
    """The rendezvous weight of ``key`` on ``replica`` (stable everywhere)."""
    digest = hashlib.blake2b(f"{replica}\x00{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def owner(key: str, count: int) -> int:
    """The replica (``0 .. count-1``) that owns ``key``: the one of highest weight."""
    return max(range(count), key=lambda r: (weight(key, r), -r))


def tenant_app_key(
    authority_url: str | None, cloud: str, tenant_id: str, client_id: str
) -> tuple[str, str, str]:
    """The (cloud, tenant, app) a source's Graph requests count against, and by which sources are
    placed together: the authority URL when one is set, else the cloud; ids compared case-insensitively.
    Source configs and ``checkpoint show``'s secret-free view both derive their ``app_key`` here."""
    return (authority_url or cloud, tenant_id.lower(), client_id.lower())


class Placeable(Protocol):
    """A source as placement sees it (a source config, or ``checkpoint show``'s secret-free view)."""

    @property
    def name(self) -> str: ...

    def app_key(self) -> tuple[str, str, str]: ...


def placement_keys(sources: Sequence[Placeable]) -> dict[str, str]:
    """Source name -> the key it is placed by (the name of the first source of its tenant and app)."""
    first: dict[tuple[str, str, str], str] = {}
    keys = {}
    for s in sources:
        keys[s.name] = first.setdefault(s.app_key(), s.name)
    return keys


def owners(sources: Sequence[Placeable], count: int) -> dict[str, int]:
    """Source name -> owning replica index."""
    return {name: owner(key, count) for name, key in placement_keys(sources).items()}


def spread(names: Sequence[str]) -> dict[str, float]:
    """A fraction in ``[0, 1)`` per name, evenly spaced in hash order: where in its poll interval each
    source polls first, so that N sources started together poll at N evenly spread instants."""
    ordered = sorted(names, key=lambda n: weight(n, -1))
    return {name: i / len(ordered) for i, name in enumerate(ordered)}


def shard_lines(sources: Sequence[Placeable], count: int) -> list[str]:
    """``validate``'s placement report: one line per shard with its sources (names, sorted)."""
    placed = owners(sources, count)
    lines = []
    for index in range(count):
        mine = sorted(n for n, i in placed.items() if i == index)
        lines.append(f"shard {index}: {len(mine)} source(s): {', '.join(mine) or '-'}")
    return lines
