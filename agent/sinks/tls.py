"""Client TLS contexts for the TCP (RFC 5425) and HTTP sinks, built from ``TlsConfig``.

Verification is on unless the config turns it off; TLS 1.2 is the floor (RFC 9662 and Azure's
2026 policy). Failures to read key material are configuration problems and raise ``ConfigError``.
"""

from __future__ import annotations

import ssl

from agent.errors import ConfigError
from agent.sinks.config import TlsConfig

_VERSIONS = {"1.2": ssl.TLSVersion.TLSv1_2, "1.3": ssl.TLSVersion.TLSv1_3}


def client_context(config: TlsConfig, sink: str) -> ssl.SSLContext:
    """A client ``SSLContext`` for ``config``. Raises ``ConfigError`` if a file cannot be loaded."""
    try:
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=config.ca_file)
        if config.cert_file is not None and config.key_file is not None:
            ctx.load_cert_chain(config.cert_file, config.key_file)
    except (OSError, ssl.SSLError) as exc:
        # The message names the files and the reason, never their contents.
        raise ConfigError([f"sinks.{sink}.tls: cannot load certificates: {exc}"]) from None
    ctx.minimum_version = _VERSIONS[config.min_version]
    if not config.verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx
