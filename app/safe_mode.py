"""Safe mode for the Streamlit app: what a browser user may do when the app is reachable
from other machines (docs/app.md, "Safe mode").

On (``app.safe_mode = "on"``, or ``"auto"`` while Streamlit is bound to anything but a
loopback address): a token login (``app.token``) is required, server paths (ingest from a
folder, report folders) are limited to ``app.roots`` (none: off), and the LLM backend, URL,
key and model come from the server's configuration only. Off: the trusted local user may do
everything. No Streamlit here, so it is testable.
"""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Sequence
from pathlib import Path

from app.settings import AppSettings


def is_loopback(address: str | None) -> bool:
    """Whether a bind address only accepts connections from this machine (unset or empty
    means every interface: not loopback)."""
    if not address:
        return False
    if address.strip("[]").lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(address.strip("[]")).is_loopback
    except ValueError:
        return False


def safe_mode_on(app: AppSettings, bind_address: str | None) -> bool:
    if app.safe_mode == "on":
        return True
    if app.safe_mode == "off":
        return False
    return not is_loopback(bind_address)


def token_ok(given: str, expected: str | None) -> bool:
    """Constant-time comparison; no configured token never matches."""
    if not expected:
        return False
    return hmac.compare_digest(given.encode(), expected.encode())


def allowed_server_path(path: Path, roots: Sequence[Path]) -> bool:
    """Whether ``path`` (after resolving links and '..') lies inside one of ``roots``."""
    try:
        real = path.expanduser().resolve()
    except (OSError, RuntimeError):
        return False
    for root in roots:
        try:
            if real.is_relative_to(root.expanduser().resolve()):
                return True
        except (OSError, RuntimeError):
            continue
    return False
