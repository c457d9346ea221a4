"""Settings that work but weaken security, said out loud: at startup (a log warning) and in ``validate``.

* ``tls.verify = false``: the receiver's certificate is not checked, so anyone on the path can read and
  change what is sent (and, for HTTP sinks, take the credentials).
* ``allow_plain_http_credentials = true`` with an ``http://`` URL to another host: the token, key or
  password crosses the network in cleartext (without that key such a configuration is refused).
"""

from __future__ import annotations

from collections.abc import Sequence

from agent.sinks.config import HttpCommonConfig, SinkConfig, TlsConfig, cleartext_credentials


def insecure_settings(sinks: Sequence[SinkConfig]) -> list[str]:
    """One ``sinks.<name>...: why`` line per weakening setting, in configuration order."""
    out: list[str] = []
    for cfg in sinks:
        tls = getattr(cfg, "tls", None)
        if isinstance(tls, TlsConfig) and not tls.verify:
            out.append(
                f"sinks.{cfg.name}.tls.verify: false: the receiver's certificate is not checked, so anyone "
                "on the path can read and change what is sent"
            )
        if isinstance(cfg, HttpCommonConfig) and cleartext_credentials(
            cfg.target_url(), cfg.has_credentials()
        ):
            out.append(
                f"sinks.{cfg.name}: credentials are sent in cleartext over http:// "
                "(allow_plain_http_credentials = true)"
            )
    return out
