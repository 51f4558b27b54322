"""The repository string `[[USER@REALM[!TOKEN]]@]HOST[:PORT]:STORE` (DESIGN §8)."""
from __future__ import annotations

import re
from dataclasses import dataclass

DEFAULT_PORT = 8007
DEFAULT_USER = "root@pam"
_STORE_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]*$")
_AUTH_RE = re.compile(r"^[^\s@!:]+@[A-Za-z0-9_.-]+(![A-Za-z0-9_][A-Za-z0-9._-]*)?$")


class RepositoryError(ValueError):
    pass


@dataclass(frozen=True)
class Repository:
    auth_id: str       # user@realm or user@realm!token
    host: str
    port: int
    store: str

    @property
    def is_token(self) -> bool:
        return "!" in self.auth_id

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.auth_id}@{host}:{self.port}:{self.store}"


def parse_repository(text: str) -> Repository:
    """'admin@pbs!backup@pbs.example:8007:store1' -> Repository; RepositoryError naming the part."""
    if not text:
        raise RepositoryError("repository: not given (use --repository or PBS_REPOSITORY)")
    head, sep, store = text.rpartition(":")
    if not sep or not _STORE_RE.match(store):
        raise RepositoryError(f"repository: {text!r} does not end in :STORE")
    auth, at, hostport = head.rpartition("@")
    if not at:
        auth = DEFAULT_USER
    elif not _AUTH_RE.match(auth):
        raise RepositoryError(f"repository: {auth!r} is not USER@REALM or USER@REALM!TOKEN")
    port = DEFAULT_PORT
    if hostport.startswith("["):                      # [ipv6] or [ipv6]:port
        host, _, rest = hostport[1:].partition("]")
        if rest:
            if not rest.startswith(":"):
                raise RepositoryError(f"repository: bad host {hostport!r}")
            port = _port(rest[1:])
    elif ":" in hostport:
        host, _, p = hostport.rpartition(":")
        port = _port(p)
    else:
        host = hostport
    if not host or any(c in host for c in " /@"):
        raise RepositoryError(f"repository: {hostport!r} is not a host name")
    return Repository(auth, host, port, store)


def _port(text: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise RepositoryError(f"repository: port {text!r} is not a number from 1 to 65535")
    return int(text)
