"""`make run`'s supervisor: runs the Procfile's commands (web, worker, beat), prints
their output prefixed with their name, and lets none of them outlive it.

    python -m pbsweb.supervisor [Procfile]

Each command runs in a process group of its own, with PR_SET_PDEATHSIG set to
SIGTERM: when the supervisor dies, even by SIGKILL, the kernel sends each command
SIGTERM and it stops its own children (gunicorn workers, the Celery pool). On
Ctrl-C, SIGTERM or SIGHUP, or when one command exits, the supervisor stops all of
them: SIGTERM to every process group, SIGKILL to what is left after a grace
period. The supervisor itself asks for SIGTERM when its parent (make) dies.
(honcho, used before, starts each command from an intermediate process and puts
it in its own group: killing honcho left web, worker and beat running.)
"""
from __future__ import annotations

import ctypes
import os
import shlex
import signal
import subprocess
import sys
import threading
import time

PR_SET_PDEATHSIG = 1
GRACE_SECONDS = 20
_libc = ctypes.CDLL(None, use_errno=True)


def die_with_parent(parent_pid: int) -> None:
    """SIGTERM to this process when `parent_pid` (its parent) dies."""
    _libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os.kill(os.getpid(), signal.SIGTERM)


def read_procfile(path: str) -> list[tuple[str, list[str]]]:
    out = []
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line and not line.startswith("#"):
                name, _, command = line.partition(":")
                out.append((name.strip(), shlex.split(command)))
    return out


class Supervisor:
    def __init__(self, commands: list[tuple[str, list[str]]]):
        self.commands = commands
        self.procs: dict[str, subprocess.Popen] = {}
        self.stop = threading.Event()
        self._print_lock = threading.Lock()
        self.width = max(len(name) for name, _ in commands)

    def _relay(self, name: str, stream) -> None:
        prefix = f"{name:<{self.width}} | ".encode()
        for line in iter(stream.readline, b""):
            with self._print_lock:
                sys.stdout.buffer.write(prefix + line)
                sys.stdout.buffer.flush()

    def start(self) -> None:
        me = os.getpid()
        for name, argv in self.commands:
            proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                    start_new_session=True, preexec_fn=lambda: die_with_parent(me))
            self.procs[name] = proc
            threading.Thread(target=self._relay, args=(name, proc.stdout), daemon=True).start()
            self.say(f"{name} started with pid {proc.pid}")

    def say(self, text: str) -> None:
        with self._print_lock:
            sys.stdout.write(f"{'system':<{self.width}} | {text}\n")
            sys.stdout.flush()

    def run(self) -> int:
        self.start()
        exited = None
        while not self.stop.wait(0.5):
            exited = next((n for n, p in self.procs.items() if p.poll() is not None), None)
            if exited:
                self.say(f"{exited} exited with code {self.procs[exited].returncode}: stopping the others")
                break
        self.stop_all()
        if exited is None:
            return 0  # asked to stop
        return self.procs[exited].returncode or 1

    def _alive_groups(self) -> list[int]:
        alive = []
        for proc in self.procs.values():
            proc.poll()
            try:
                os.killpg(proc.pid, 0)
                alive.append(proc.pid)
            except ProcessLookupError:
                pass
        return alive

    def stop_all(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGKILL):
            groups = self._alive_groups()
            if not groups:
                return
            for pgid in groups:
                try:
                    os.killpg(pgid, sig)
                except ProcessLookupError:
                    pass
            deadline = time.monotonic() + GRACE_SECONDS
            while self._alive_groups() and time.monotonic() < deadline:
                time.sleep(0.2)


def main(argv: list[str]) -> int:
    die_with_parent(os.getppid())
    supervisor = Supervisor(read_procfile(argv[0] if argv else "Procfile"))
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda *_: supervisor.stop.set())
    return supervisor.run()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
