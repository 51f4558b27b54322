"""Fixtures and helpers of the pbsweb-client tests: a real gunicorn HTTPS server with two
worker processes, a datastore, users and tokens with PBS roles, and the real client run
in a subprocess."""
import hashlib
import os
import random
import signal
import socket
import ssl
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.conftest import REPO, VENV_BIN, free_port, service_env, stop_process_group, wait_for_port

MiB = 1024 * 1024
SESSION_TIMEOUT = 3       # seconds of client silence before the server aborts a session
STORE = "netstore"


class NetServer:
    """gunicorn as `make run` starts it, but with two worker processes so that one client
    session's requests land in different processes."""

    def __init__(self, log_path: Path):
        from django.core.management import call_command
        call_command("firstrun", stdout=open(os.devnull, "w"))
        self.port = free_port()
        self._log = open(log_path, "wb")
        self.log_path = log_path
        self.proc = subprocess.Popen(
            [str(VENV_BIN / "gunicorn"), "-c", "pbsweb/gunicorn_conf.py", "pbsweb.wsgi"],
            cwd=REPO, env=service_env(PBSWEB_PORT=str(self.port), PBSWEB_BIND="127.0.0.1",
                                      PBSWEB_WEB_WORKERS="2",
                                      PBSWEB_CLIENT_SESSION_TIMEOUT=str(SESSION_TIMEOUT)),
            stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True)
        wait_for_port(self.port, proc=self.proc, timeout=30)

    @property
    def fingerprint(self) -> str:
        from django.conf import settings
        der = ssl.PEM_cert_to_DER_cert(Path(settings.TLS_CERT_FILE).read_text())
        return ":".join(f"{b:02x}" for b in hashlib.sha256(der).digest())

    def stop(self):
        stop_process_group(self.proc)  # the master and its workers, which share its command line
        self._log.close()


class Net:
    """Everything a test needs: server, store, and credentials by role."""

    def __init__(self, server: NetServer, store_path: Path):
        self.server, self.store_path = server, store_path
        self.tokens: dict[str, tuple[str, str]] = {}     # name -> (auth id, secret)

    def user(self, name: str, role: str | None, password: str = "pw-1234567", path=f"/datastore/{STORE}"):
        from django.contrib.auth import get_user_model

        from pbsweb.models import AclEntry
        user = get_user_model().objects.create_user(username=name, password=password)
        if role:
            AclEntry.objects.create(user=user, path=path, role=role)
        return user

    def token(self, user, name: str) -> tuple[str, str]:
        from pbsweb.apitokens import create_token
        from pbsweb.models import AclEntry
        token, secret = create_token(user, name)
        for entry in AclEntry.objects.filter(user=user):  # the token may do what its user may
            AclEntry.objects.create(token=token, path=entry.path, role=entry.role, propagate=entry.propagate)
        return f"{user.username}!{name}", secret

    def env(self, auth_id: str, secret: str, port: int | None = None, fingerprint: str | None = None, **extra):
        env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO", "PBSWEB"))}
        env.update(PBS_REPOSITORY=f"{auth_id}@127.0.0.1:{port or self.server.port}:{STORE}",
                   PBS_PASSWORD=secret, PBS_FINGERPRINT=fingerprint or self.server.fingerprint,
                   PYTHONPATH=str(REPO))
        env.update(extra)
        return env

    def engine(self):
        from datastores.engine.datastore import Datastore
        return Datastore(self.store_path)


@pytest.fixture
def net(transactional_db, tmp_path):
    from datastores.services import create_datastore
    server = NetServer(tmp_path / "gunicorn.log")
    create_datastore(STORE, str(tmp_path / "store"))
    yield Net(server, tmp_path / "store")
    server.stop()


def client(*args, env, check=None, timeout=300, cwd=None):
    proc = subprocess.run([sys.executable, "-m", "datastores.client", *map(str, args)], env=env,
                          capture_output=True, text=True, timeout=timeout, cwd=cwd or REPO)
    if check is not None:
        assert proc.returncode == check, (args, proc.returncode, proc.stdout[-3000:], proc.stderr[-3000:])
    return proc


def client_popen(*args, env):
    return subprocess.Popen([sys.executable, "-m", "datastores.client", *map(str, args)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO,
                            start_new_session=True)


def make_tree(root: Path, seed: int = 7, size: int = 48 * MiB) -> None:
    """Files of random and text data, modes, symlinks, an empty dir, sub-second mtimes."""
    rnd = random.Random(seed)
    (root / "etc" / "deep").mkdir(parents=True)
    (root / "empty").mkdir()
    (root / "random.bin").write_bytes(rnd.randbytes(size // 2))
    vocab = ["alpha", "beta", "gamma", "delta", "backup", "chunk", "server", "restore", "index"]
    lines = [" ".join(rnd.choices(vocab, k=12)) for _ in range(5000)]
    (root / "text.log").write_text("\n".join(f"{i}: {lines[i % 5000]}" for i in range(size // 2 // 80)))
    for i, n in enumerate([0, 1, 4096, 65537]):
        (root / "etc" / f"f{i}").write_bytes(rnd.randbytes(n))
    (root / "etc" / "f1").chmod(0o600)
    (root / "run.sh").write_text("#!/bin/sh\necho hi\n")
    (root / "run.sh").chmod(0o751)
    os.symlink("etc/f2", root / "link")
    os.utime(root / "etc" / "f3", ns=(1_700_000_000_123_456_789, 1_700_000_000_123_456_789))


def tree_state(root: Path) -> dict:
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            st = os.lstat(p)
            rel = str(p.relative_to(root))
            if stat.S_ISLNK(st.st_mode):
                out[rel] = ("link", os.readlink(p))
            elif stat.S_ISDIR(st.st_mode):
                out[rel] = ("dir", stat.S_IMODE(st.st_mode), st.st_mtime_ns)
            else:
                out[rel] = ("file", stat.S_IMODE(st.st_mode), st.st_mtime_ns,
                            hashlib.sha256(p.read_bytes()).hexdigest())
    return out


def chunk_files(store_path: Path) -> set[str]:
    return {p.name for p in (store_path / ".chunks").glob("*/*") if len(p.name) == 64}


def task_log(upid: str) -> str:
    from pbsweb.models import Task
    task = Task.objects.get(upid=upid)
    return Path(task.log_path).read_text()


def wait_task_end(upid_filter: dict, timeout: float = 30):
    """The latest task matching the filter, once it has ended."""
    from pbsweb.models import Task
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        task = Task.objects.filter(**upid_filter).order_by("-id").first()
        if task is not None and task.state not in (Task.RUNNING, Task.QUEUED):
            return task
        time.sleep(0.3)
    raise AssertionError(f"no ended task for {upid_filter}")


class DroppingProxy:
    """A TCP proxy that forwards to the server until `limit` bytes went upstream, then cuts
    every connection (mid-request, mid-chunk) and refuses new ones."""

    def __init__(self, target_port: int, limit: int):
        self.target_port, self.limit = target_port, limit
        self.sent = 0
        self.cut = threading.Event()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.conns: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                c, _ = self.listener.accept()
            except OSError:
                return
            if self.cut.is_set():
                c.close()
                continue
            u = socket.create_connection(("127.0.0.1", self.target_port))
            self.conns += [c, u]
            threading.Thread(target=self._pump, args=(c, u, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(u, c, False), daemon=True).start()

    def _pump(self, src, dst, upstream):
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if upstream:
                    self.sent += len(data)
                    if self.sent > self.limit and not self.cut.is_set():
                        dst.sendall(data[: len(data) // 2])       # half a request, then gone
                        self._cut_all()
                        return
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.close()
                except OSError:
                    pass

    def _cut_all(self):
        self.cut.set()
        for s in self.conns:
            try:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
                s.close()
            except OSError:
                pass

    def close(self):
        self.listener.close()
        self._cut_all()


def kill_group(proc) -> None:
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
