"""Accounts for the Streamlit app: user names with scrypt-hashed passwords from the
configuration (``app.users``), checked in constant time. No Streamlit here, so it is testable.

Make an entry for a user (prints the ``name = "scrypt$..."`` line for ``[app.users]``)::

    python -m app.accounts ann          # asks for the password twice
"""

from __future__ import annotations

import base64
import getpass
import hashlib
import hmac
import os
import sys
from collections.abc import Mapping

# scrypt cost: ~50 ms and 16 MiB on a 2-core machine per login, hard to brute-force offline.
_N, _R, _P = 2**14, 8, 1


def hash_password(password: str, salt: bytes | None = None) -> str:
    salt = salt or os.urandom(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=_N, r=_R, p=_P, dklen=32)
    enc = base64.b64encode
    return f"scrypt${_N}${_R}${_P}${enc(salt).decode()}${enc(digest).decode()}"


def password_ok(password: str, stored: str) -> bool:
    """Whether ``password`` matches ``stored`` (a :func:`hash_password` string); anything
    malformed never matches."""
    try:
        kind, n, r, p, salt, digest = stored.split("$")
        if kind != "scrypt":
            return False
        got = hashlib.scrypt(
            password.encode(), salt=base64.b64decode(salt), n=int(n), r=int(r), p=int(p), dklen=32
        )
        return hmac.compare_digest(got, base64.b64decode(digest))
    except (ValueError, TypeError):
        return False


def authenticate(users: Mapping[str, str], name: str, password: str) -> str | None:
    """The user's name when the password is theirs, else None (an unknown name costs the same
    time as a wrong password, so names cannot be probed by timing)."""
    stored = users.get(name.strip())
    if stored is None:
        password_ok(password, hash_password("x", b"0" * 16))
        return None
    return name.strip() if password_ok(password, stored) else None


def main(argv: list[str]) -> int:
    if len(argv) != 1 or not argv[0].strip():
        print("usage: python -m app.accounts USER_NAME", file=sys.stderr)
        return 2
    first = getpass.getpass(f"password for {argv[0]}: ")
    if len(first) < 8:
        print("the password needs at least 8 characters", file=sys.stderr)
        return 1
    if getpass.getpass("again: ") != first:
        print("the two passwords differ", file=sys.stderr)
        return 1
    print(f'{argv[0].strip()} = "{hash_password(first)}"   # under [app.users] in longqa.toml')
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main(sys.argv[1:]))
