"""argocd_bcrypt: bcrypt hash of the Argo CD admin password, stable across runs.

The salt is derived from the password itself, so the same password always gives the same hash and
re-running the play leaves the Helm values (and the release) unchanged. Uses passlib or the bcrypt
module when installed, else the C library's crypt(3) (glibc/libxcrypt support $2b$).
"""

from __future__ import annotations

import hashlib

from ansible.errors import AnsibleFilterError

_ROUNDS = 10


def _salt(password: str) -> str:
    # 22 characters of bcrypt's alphabet; hex digits belong to it, and a final "e" keeps the unused
    # low bits of the last character zero as bcrypt requires.
    return hashlib.sha256(password.encode()).hexdigest()[:21] + "e"


def argocd_bcrypt(password: str) -> str:
    if not isinstance(password, str) or not password:
        raise AnsibleFilterError("argocd_bcrypt needs a non-empty password string")
    salt = _salt(password)
    setting = f"$2b${_ROUNDS:02d}${salt}"
    try:
        from passlib.hash import bcrypt as passlib_bcrypt

        return passlib_bcrypt.using(salt=salt, rounds=_ROUNDS, ident="2b").hash(password)
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


class FilterModule:
    def filters(self) -> dict:
        return {"argocd_bcrypt": argocd_bcrypt}
