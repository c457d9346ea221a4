"""siem-agent: forwards Microsoft Graph security alerts into SIEMs without loss."""

from __future__ import annotations

__version__ = "0.1.0"
