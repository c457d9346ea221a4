"""A client certificate (``clientAuth``) signed by a throwaway CA, for mutual-TLS tests."""

from __future__ import annotations

from agent.simulator.tls import TlsFiles as ClientCert
from agent.simulator.tls import make_client_cert

__all__ = ["ClientCert", "make_client_cert"]
