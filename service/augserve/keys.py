"""API keys: who may do what on a shared server.

Without a keys file (``AUGSERVE_KEYS_FILE``) everyone who reaches the port may do everything, as on a laptop.
With one, every work route needs ``Authorization: Bearer <key>``; health, readiness and the API docs stay open.
The file holds no keys, only their SHA-256 hashes, each with a name and a role::

    {"keys": [{"name": "alice", "role": "write", "sha256": "9f86d0..."},
              {"name": "ci", "role": "read", "sha256": "..."}]}

- ``read``: augment images and stream epochs, list and describe datasets;
- ``write``: also upload blobs, register datasets, and delete the datasets it registered (their owner);
- ``admin``: everything, any dataset.

A key is made with ``python -m augserve.keys NAME ROLE`` (it prints the key once, and the file's entry). The
file is read again when it changes, so keys are added and revoked without a restart. A presented key's hash
is compared with every entry in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import sys
import threading
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from augserve_client.protocol.errors import ErrorCode

from .errors import ServiceError
from .streaming import ending

ROLES = ("read", "write", "admin")


@dataclass(frozen=True)
class Caller:
    """Who sent a request: a key's name and role (``anonymous``/``admin`` without a keys file)."""

    name: str
    role: str

    def may(self, role: str) -> bool:
        return ROLES.index(self.role) >= ROLES.index(role)


ANONYMOUS = Caller("anonymous", "admin")


class KeyRing:
    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._entries: list[tuple[bytes, Caller]] = []
        self._stamp: tuple[int, int] | None = None
        self._lock = threading.Lock()
        if path is not None:
            self._load()  # a broken file stops the start, not the first request

    @property
    def enabled(self) -> bool:
        return self.path is not None

    def caller(self, authorization: str | None) -> Caller:
        """The caller an ``Authorization`` header names, or 401."""
        if self.path is None:
            return ANONYMOUS
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise _unauthorized("this server needs an API key: send 'Authorization: Bearer <key>'")
        self._reload_if_changed()
        digest = hashlib.sha256(token.strip().encode()).digest()
        found = None
        for stored, caller in self._entries:  # every entry, compared in constant time
            if hmac.compare_digest(stored, digest):
                found = caller
        if found is None:
            raise _unauthorized("unknown API key")
        return found

    def _reload_if_changed(self) -> None:
        assert self.path is not None
        stat = self.path.stat()
        if (stat.st_mtime_ns, stat.st_size) != self._stamp:
            self._load()

    def _load(self) -> None:
        assert self.path is not None
        with self._lock:
            stat = self.path.stat()
            raw = json.loads(self.path.read_text())
            entries = []
            for entry in raw["keys"]:
                if entry["role"] not in ROLES:
                    raise ValueError(f"{self.path}: role {entry['role']!r} of {entry['name']!r} is not one of {ROLES}")
                entries.append((bytes.fromhex(entry["sha256"]), Caller(str(entry["name"]), entry["role"])))
            self._entries, self._stamp = entries, (stat.st_mtime_ns, stat.st_size)


class StreamQuota:
    """Streams open per key, within ``max_streams_per_key`` (0: no limit): over it, 429 with Retry-After."""

    def __init__(self, per_key: int) -> None:
        self.per_key = per_key
        self.open = Counter[str]()

    def hold(self, caller: Caller, body: AsyncIterator[bytes | memoryview]) -> AsyncIterator[bytes | memoryview]:
        """``body``, counted against ``caller``'s streams from now until it ends, or is dropped unread."""
        if self.per_key and self.open[caller.name] >= self.per_key:
            raise ServiceError(
                ErrorCode.TOO_MANY_REQUESTS,
                f"key {caller.name!r} has {self.per_key} streams open already",
                limit="max_streams_per_key",
                limit_value=self.per_key,
                retry_after=1,
            )
        self.open[caller.name] += 1
        return ending(body, lambda: self._release(caller.name))

    def _release(self, name: str) -> None:
        self.open[name] -= 1


def forbidden(message: str) -> ServiceError:
    return ServiceError(ErrorCode.FORBIDDEN, message)


def _unauthorized(message: str) -> ServiceError:
    return ServiceError(ErrorCode.UNAUTHORIZED, message)


def new_key(name: str, role: str) -> tuple[str, dict[str, str]]:
    """A fresh key and its entry for the keys file."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {ROLES}")
    key = "augserve-" + secrets.token_urlsafe(32)
    return key, {"name": name, "role": role, "sha256": hashlib.sha256(key.encode()).hexdigest()}


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: python -m augserve.keys NAME ROLE   (ROLE: read, write or admin)")
    key, entry = new_key(sys.argv[1], sys.argv[2])
    print(f"key (shown once): {key}\nentry for the keys file: {json.dumps(entry)}")
