"""Which proxy an outgoing HTTPS request uses: the configured one, else the environment's.

Neither aiohttp nor MSAL's ``requests`` session is left to read the environment by itself: aiohttp's
``trust_env=True`` would also read ``~/.netrc`` (and could attach its credentials to a receiver
configured without authentication), and ``requests``' would let ``REQUESTS_CA_BUNDLE`` override the
configured CA bundle. So the proxy is looked up here and passed explicitly.
"""

from __future__ import annotations

import requests


def env_proxy(url: str) -> str | None:
    """The proxy ``HTTPS_PROXY``/``HTTP_PROXY`` name for ``url`` unless ``NO_PROXY`` exempts it."""
    proxies: dict[str, str] = requests.utils.get_environ_proxies(url)
    scheme = url.split(":", 1)[0].lower()
    return proxies.get(scheme) or proxies.get("all") or None


def msal_proxies(proxy_url: str | None, authority: str) -> dict[str, str]:
    """Proxies for MSAL's session: the configured URL, else the environment's (honouring NO_PROXY)."""
    if proxy_url:
        return {"https": proxy_url, "http": proxy_url}
    proxies: dict[str, str] = requests.utils.get_environ_proxies(authority)
    return {k: v for k, v in proxies.items() if k in ("http", "https")}
