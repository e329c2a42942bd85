"""argocd_bcrypt: bcrypt hash of the Argo CD admin password, with a random salt, stable across runs.

`password | argocd_bcrypt(previous)` returns *previous* when it is a bcrypt hash of *password* (the role
keeps the hash next to the password file and passes it back), so re-running the play leaves the Helm
values and the release unchanged; otherwise a new hash with a fresh random salt. Uses passlib or the
bcrypt module when installed, else the C library's crypt(3) (glibc/libxcrypt support $2b$).
"""

from __future__ import annotations

import hmac
import re
import secrets

from ansible.errors import AnsibleFilterError

_ROUNDS = 10
# bcrypt's base64 alphabet; the 22nd salt character carries 2 bits, so only these four keep the unused
# low bits zero as bcrypt requires.
_ALPHABET = "./ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
_LAST = _ALPHABET[::16]  # . O e u
_HASH = re.compile(r"^\$2[aby]\$(\d\d)\$([./A-Za-z0-9]{22})[./A-Za-z0-9]{31}$")


def _random_salt() -> str:
    return "".join(secrets.choice(_ALPHABET) for _ in range(21)) + secrets.choice(_LAST)


def _bcrypt(password: str, salt: str, rounds: int) -> str:
    setting = f"$2b${rounds:02d}${salt}"
    try:
        from passlib.hash import bcrypt as passlib_bcrypt

        return passlib_bcrypt.using(salt=salt, rounds=rounds, ident="2b").hash(password)
    except ImportError:
        pass
    try:
        import bcrypt

        return bcrypt.hashpw(password.encode(), setting.encode()).decode()
    except ImportError:
        pass
    try:
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            import crypt

        hashed = crypt.crypt(password, setting)
    except ImportError as exc:
        raise AnsibleFilterError("argocd_bcrypt needs passlib, bcrypt or Python's crypt module on the controller") from exc
    if not hashed or not hashed.startswith("$2b$"):
        raise AnsibleFilterError("this controller's crypt(3) cannot make bcrypt hashes; install passlib in the venv")
    return hashed


def _matches(password: str, hashed: str) -> bool:
    match = _HASH.match(hashed)
    if not match:
        return False
    return hmac.compare_digest(_bcrypt(password, match.group(2), int(match.group(1))), "$2b$" + hashed[4:])


def argocd_bcrypt(password: str, previous: object = "") -> str:
    if not isinstance(password, str) or not password:
        raise AnsibleFilterError("argocd_bcrypt needs a non-empty password string")
    if isinstance(previous, str) and _matches(password, previous.strip()):
        return previous.strip()
    return _bcrypt(password, _random_salt(), _ROUNDS)


class FilterModule:
    def filters(self) -> dict:
        return {"argocd_bcrypt": argocd_bcrypt}
