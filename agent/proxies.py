"""Which proxy an outgoing HTTPS request uses: the configured one, else the environment's.

Neither aiohttp nor MSAL's ``requests`` session is left to read the environment by itself: aiohttp's
``trust_env=True`` would also read ``~/.netrc`` (and could attach its credentials to a receiver
configured without authentication), and ``requests``' would let ``REQUESTS_CA_BUNDLE`` override the
configured CA bundle. So the proxy is looked up here and passed explicitly.
"""

from __future__ import annotations

import functools
import os

import requests

#: The variables that decide an HTTP(S) request's proxy (what ``env_proxy``'s answer is cached by).
_PROXY_VARS = tuple(
    v for name in ("https_proxy", "http_proxy", "all_proxy", "no_proxy") for v in (name, name.upper())
)


def env_proxy(url: str) -> str | None:
    """The proxy ``HTTPS_PROXY``/``HTTP_PROXY`` name for ``url`` unless ``NO_PROXY`` exempts it.

    Cached per (scheme, host, port) and the values of the proxy variables: looking it up reads the
    whole environment, which a thousand tenants' polls would otherwise do 17 times a second.
    """
    origin = "/".join(url.split("/", 3)[:3])
    return _env_proxy(origin, tuple(os.environ.get(v) for v in _PROXY_VARS))


@functools.lru_cache(maxsize=64)
def _env_proxy(origin: str, _environment: tuple[str | None, ...]) -> str | None:
    proxies: dict[str, str] = requests.utils.get_environ_proxies(origin + "/")
    scheme = origin.split(":", 1)[0].lower()
    return proxies.get(scheme) or proxies.get("all") or None


def msal_proxies(proxy_url: str | None, authority: str) -> dict[str, str]:
    """Proxies for MSAL's session: the configured URL, else the environment's (honouring NO_PROXY)."""
    if proxy_url:
        return {"https": proxy_url, "http": proxy_url}
    proxies: dict[str, str] = requests.utils.get_environ_proxies(authority)
    return {k: v for k, v in proxies.items() if k in ("http", "https")}
