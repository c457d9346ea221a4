"""What an app-only access token says about the app: its ``roles`` claim.

Entra ID issues Graph tokens as JWTs whose ``roles`` claim lists the application permissions the app
holds in the tenant *with admin consent* (for Graph: ``SecurityAlert.Read.All``,
``SecurityAlert.ReadWrite.All``, …). Reading the claim is how ``validate --check-connectivity`` tells
whether the app may write back: it costs no request beyond the token the check acquires anyway, needs
no extra permission (asking Graph for the app's role assignments would need
``Application.Read.All``), and changes nothing (a trial PATCH would). The token is meant for Graph,
which verifies it; here its payload is only read, never trusted for anything but this report.
"""

from __future__ import annotations

import base64
import binascii

import orjson


def token_roles(token: str) -> list[str] | None:
    """The ``roles`` claim of a JWT access token; ``[]`` when it has none; ``None`` when the token is
    not a readable JWT (an opaque token says nothing)."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    payload = parts[1] + "=" * (-len(parts[1]) % 4)
    try:
        claims = orjson.loads(base64.urlsafe_b64decode(payload))
    except (binascii.Error, ValueError):
        return None
    if not isinstance(claims, dict):
        return None
    roles = claims.get("roles", [])
    return [r for r in roles if isinstance(r, str)] if isinstance(roles, list) else []
