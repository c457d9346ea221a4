"""Secret values in configuration: inline, from an environment variable, or from a file.

In TOML a secret is either a string (inline) or a table with one key::

    client_secret = { env = "GRAPH_CLIENT_SECRET" }
    client_secret = { file = "/run/secrets/graph" }
    client_secret = { credential = "graph-secret" }   # $CREDENTIALS_DIRECTORY/graph-secret

``credential`` reads a file that systemd's ``LoadCredential=`` placed in ``$CREDENTIALS_DIRECTORY``.

The value is resolved when the configuration is validated and kept as ``SecretStr``: it prints as
``**********`` and no error message quotes it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

from pydantic import BeforeValidator, SecretStr


def _read_file(path: Path) -> str:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ValueError(f"cannot read secret file {str(path)!r}: {exc.strerror}") from None
    value = text.rstrip("\r\n")
    if not value:
        raise ValueError(f"secret file {str(path)!r} is empty")
    return value


def resolve_secret(value: Any) -> Any:
    """Turn a secret reference into its value (pydantic then wraps it in ``SecretStr``)."""
    if isinstance(value, SecretStr):
        return value
    if isinstance(value, str):
        if not value:
            raise ValueError("secret is empty")
        return value
    if not isinstance(value, dict) or len(value) != 1:
        raise ValueError("a secret is a string or a table with exactly one of: env, file, credential")
    ((kind, ref),) = value.items()
    if not isinstance(ref, str) or not ref:
        raise ValueError(f"secret reference {kind!r} must be a non-empty string")
    if kind == "env":
        env_value = os.environ.get(ref)
        if not env_value:
            raise ValueError(f"environment variable {ref} is not set or empty")
        return env_value
    if kind == "file":
        return _read_file(Path(ref))
    if kind == "credential":
        cred_dir = os.environ.get("CREDENTIALS_DIRECTORY")
        if not cred_dir:
            raise ValueError("CREDENTIALS_DIRECTORY is not set (use systemd LoadCredential=)")
        return _read_file(Path(cred_dir) / ref)
    raise ValueError(f"unknown secret reference {kind!r}; use env, file or credential")


Secret = Annotated[SecretStr, BeforeValidator(resolve_secret)]
