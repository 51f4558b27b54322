"""Kill real engine processes at seeded points and check what they leave behind.

An operation (backup, prune, garbage collection, push sync, pull sync) runs in
a child process (`python -m tests.soak.crashpoints child SPEC.json`) that
uses the engines directly (no Django) and, for syncs, the real client factory
(remotes.engine.client.make_s3_client) through a proxy in front of a real
moto server. The parent SIGKILLs the child at a *kill point*:

    event N          the child SIGKILLs itself right before its N-th filesystem
                     mutation (os.replace / rename / unlink / rmdir / utime:
                     chunk inserts, atomic file writes, removals, GC marks;
                     for push, whose only local writes are its inventory: each
                     write statement to the inventory's SQLite file)
    request-pre N    the proxy SIGKILLs the child when its N-th request arrives,
                     before forwarding it (the server never sees it)
    request-post N   the proxy forwards the N-th request, the server executes
                     it, then the child is SIGKILLed before it sees the answer
                     (optionally counting only requests of one kind: DELETE, PUT)
    delay S          the parent SIGKILLs the child S seconds after it is ready.
                     The run is slowed down evenly so that the kill surely
                     lands inside it: the child sleeps before each mutation, or
                     the proxy before each request, one at a time, so the sleeps
                     alone last longer than S; a run that ends before the kill
                     is a failure of the harness like any other missed point.

Kill points are seeded: SEED comes from the CRASH_SEED environment variable,
else from the clock (each run tries other points); every report names it.

Then the harness checks the state left behind:

- the datastore: every finished snapshot's manifest names files that exist,
  every index matches its manifest entry, every chunk it names is present and
  valid, and a restore of every finished snapshot gives exactly the data that
  was backed up; no snapshot the operation did not finish appears finished;
  snapshots that had to survive are still there (else: data lost);
- the bucket: check_bucket_consistency is clean (every remote manifest's
  files and chunks are present) and every remote manifest is a known snapshot;

re-runs the same operation (a stale lock or writer marker of the killed
process must not block it) and checks that the end state is then exactly
right. A scenario may add a probe after that (push: a new backup that brings
back data whose chunks the killed run deleted must still sync consistently).

Use: env = SoakEnv(moto_url, workdir); scenario = SCENARIOS["gc"]();
cal = calibrate(scenario, env); for kp in choose_kill_points(scenario, cal, n, seed):
run_case(scenario, kp, env) -> CaseResult.
"""
from __future__ import annotations

import hashlib
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
MiB = 1024 * 1024
DAY = 86400
T0 = 1_790_000_000          # 2026-09-21T...Z, backup times
PREFIX = "store"
EVENT_FUNCS = ("replace", "rename", "unlink", "rmdir", "utime")
SQL_WRITES = ("INSERT", "DELETE", "UPDATE", "REPLACE")
# CRASH_SEED=N repeats a run's kill points; without it each run tries new ones.
SEED = int(os.environ.get("CRASH_SEED") or time.time_ns() // 1000 % 1_000_000_000)
DELAY_MIN_SECONDS = 1.0   # a delay point's run is slowed to last at least this long


# -- data: compressible 1 MiB blocks, so stores are tens of MiB but moves are small -------

def block(seed: int) -> bytes:
    """1 MiB: 64 KiB of seeded random bytes repeated (zstd packs it ~16:1)."""
    return random.Random(seed).randbytes(64 * 1024) * 16


def image_bytes(seeds) -> bytes:
    return b"".join(block(s) for s in seeds)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def tree_files(seed: int) -> dict[str, bytes]:
    return {"etc/hosts": f"127.0.0.1 localhost {seed}\n".encode(),
            "data/a.bin": block(seed) + block(seed + 1)[:300_000],
            "data/empty": b""}


@dataclass(frozen=True)
class SnapSpec:
    backup_type: str
    backup_id: str
    time: int
    kind: str                  # "img" | "tar"
    seeds: tuple = ()          # img: 1 MiB block seeds (4 blocks = one 4 MiB chunk)
    tree_seed: int = 0         # tar: tree_files(tree_seed)

    @property
    def rel_dir(self) -> str:
        return f"{self.backup_type}/{self.backup_id}/{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(self.time))}"

    def expected(self):
        if self.kind == "img":
            return ("disk.img", sha(image_bytes(self.seeds)))
        return ("root.tar", {k: sha(v) for k, v in tree_files(self.tree_seed).items()})


def _img(i: int, t: int) -> SnapSpec:
    """vm/100 snapshot i: 24 MiB, two 4 MiB chunks shared by all, four of its own."""
    return SnapSpec("vm", "100", t, "img", tuple(range(8)) + tuple(range(100 * i + 100, 100 * i + 116)))


# Ten snapshots (~210 MiB of archive data, compressible: ~2.5 MiB on disk), 39 distinct chunks.
BASE = tuple(sorted((
    *(_img(i, T0 + i * DAY) for i in range(8)),
    SnapSpec("host", "files", T0 + DAY + 100, "tar", tree_seed=500),
    SnapSpec("ct", "200", T0 + 2 * DAY + 100, "img", tuple(range(9000, 9016))),
), key=lambda s: s.time))
VM = [s for s in BASE if s.backup_type == "vm"]


def make_snapshot(store, spec: SnapSpec, scratch: Path):
    from datastores.engine.backup import run_backup
    scratch.mkdir(parents=True, exist_ok=True)
    if spec.kind == "img":
        src = scratch / f"src-{uuid.uuid4().hex[:8]}.img"
        src.write_bytes(image_bytes(spec.seeds))
        archives = [("disk.img", src)]
    else:
        src = scratch / f"tree-{uuid.uuid4().hex[:8]}"
        for name, data in tree_files(spec.tree_seed).items():
            p = src / name
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(data)
        archives = [("root.tar", src)]
    try:
        return run_backup(store, spec.backup_type, spec.backup_id, archives, backup_time=spec.time).ref
    finally:
        if src.is_dir():
            shutil.rmtree(src)
        else:
            src.unlink()


def write_source(spec: SnapSpec, path: Path) -> Path:
    path.write_bytes(image_bytes(spec.seeds))
    return path


# -- checks --------------------------------------------------------------------------------

@dataclass
class Check:
    problems: list[str] = field(default_factory=list)
    lost: list[str] = field(default_factory=list)

    def extend(self, other: "Check") -> "Check":
        self.problems += other.problems
        self.lost += other.lost
        return self

    @property
    def ok(self) -> bool:
        return not self.problems and not self.lost


def _restore_digest(store, ref, archive: str, scratch: Path):
    from datastores.engine.restore import restore_archive
    target = scratch / f"restore-{uuid.uuid4().hex[:8]}"
    try:
        restore_archive(store, ref, archive, target)
        if archive.endswith(".img"):
            return sha(target.read_bytes())
        out = {}
        for dirpath, _, files in os.walk(target):
            for f in files:
                p = Path(dirpath) / f
                out[str(p.relative_to(target))] = sha(p.read_bytes())
        return out
    finally:
        if target.is_dir():
            shutil.rmtree(target, ignore_errors=True)
        elif target.exists():
            target.unlink()


def check_store(store_path, model: dict[str, tuple], must_have=(), scratch: Path | None = None) -> Check:
    """Consistency of a datastore against `model` (rel_dir -> (archive, expected digest)).

    Every finished snapshot must be in the model, complete (manifest files
    present, indexes matching the manifest, every chunk present and valid)
    and restore to the expected data. Every rel_dir in must_have must be
    finished (else it is counted as data lost).
    """
    from datastores.engine.datastore import Datastore
    from datastores.engine.errors import DatastoreError
    from datastores.engine.source import check_chunk
    c = Check()
    scratch = Path(scratch or Path(store_path).parent / "scratch")
    scratch.mkdir(parents=True, exist_ok=True)
    try:
        store = Datastore(store_path)
        refs = store.list_snapshots("", recursive=True)
    except (DatastoreError, OSError) as e:
        c.problems.append(f"datastore {store_path} unreadable: {e}")
        c.lost += list(must_have)
        return c
    finished = {r.rel_dir: r for r in refs if r.finished}
    for rd, ref in sorted(finished.items()):
        if rd not in model:
            c.problems.append(f"{rd}: finished, but no operation finished such a snapshot")
            continue
        try:
            manifest = store.load_manifest(ref)
            for f in manifest.files:
                name = f["filename"]
                p = store.path / rd / name
                if not p.is_file():
                    raise DatastoreError(f"{rd}/{name}: named by the manifest but missing")
                if name.endswith((".fidx", ".didx")):
                    idx = store.load_index(ref, name)
                    if idx.csum != f["csum"] or idx.size != int(f["size"]):
                        raise DatastoreError(f"{rd}/{name}: index does not match the manifest")
                    for i, d in enumerate(idx.digests):
                        s, e = idx.chunk_range(i)
                        check_chunk(d.hex(), store.source.read_chunk(d.hex()), None, e - s)
            archive, want = model[rd]
            got = _restore_digest(store, ref, archive, scratch)
            if got != want:
                c.problems.append(f"{rd}: restored {archive} differs from what was backed up")
        except (DatastoreError, OSError) as e:
            c.problems.append(f"{rd}: finished but broken: {e}")
    for rd in must_have:
        if rd not in finished:
            c.lost.append(f"{rd}: should be a finished snapshot, is {'unfinished' if (store.path / rd).is_dir() else 'gone'}")
    return c


def referenced_chunks(store) -> set[str]:
    out = set()
    for ref in store.list_snapshots("", recursive=True):
        out |= store.chunk_digests(ref)
    return out


def check_bucket(bucket, model: dict) -> Check:
    """check_bucket_consistency + every remote manifest is a known snapshot."""
    from syncjobs.engine.consistency import check_bucket_consistency
    c = Check()
    rep = check_bucket_consistency(bucket)
    broken: dict[str, list[str]] = {}
    for p in rep.problems:
        # a remote manifest whose file or chunk is gone: that remote snapshot cannot be
        # restored (counted once per snapshot as data lost)
        m = re.search(r"needed by (\S+) but missing|^(\S+): named by the manifest but missing", p)
        if m:
            rd = bucket.rel(m.group(1) or m.group(2)).rsplit("/", 1)[0]
            broken.setdefault(rd, []).append(p)
        else:
            c.problems.append(f"bucket: {p}")
    for rd, ps in sorted(broken.items()):
        c.lost.append(f"bucket: remote snapshot {rd} cannot be restored: " + "; ".join(ps))
    for key in _remote_manifests(bucket):
        rd = key.rsplit("/", 1)[0]
        if rd not in model:
            c.problems.append(f"bucket: {rd}: a manifest for a snapshot nobody finished")
    return c


def _remote_manifests(bucket) -> list[str]:
    return [i.rel for i in bucket.list_info("") if i.rel.endswith("/index.json.blob")]


def expected_bucket(store) -> dict[str, bytes]:
    """rel -> bytes a pushed prefix must hold for `store` (marker, synced files,
    referenced chunks), as docs/DESIGN.md §3 lays it out."""
    out = {".pbsweb-datastore.json": (store.path / ".pbsweb-datastore.json").read_bytes()}
    for ref in store.list_snapshots("", recursive=True):
        if not ref.finished:
            continue
        sdir = store.path / ref.rel_dir
        for f in os.listdir(sdir):
            if f.endswith((".blob", ".didx", ".fidx")) and f != "catalog.blob":
                out[f"{ref.rel_dir}/{f}"] = (sdir / f).read_bytes()
        for d in store.chunk_digests(ref):
            out[f".chunks/{d[:4]}/{d}"] = store.chunks.path(d).read_bytes()
    return out


def bucket_contents(s3, bucket: str, prefix: str = PREFIX) -> dict[str, bytes]:
    out = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix + "/"):
        for o in page.get("Contents", []):
            out[o["Key"][len(prefix) + 1:]] = s3.get_object(Bucket=bucket, Key=o["Key"])["Body"].read()
    return out


def compare_bucket(s3, bucket: str, store, prefix: str = PREFIX) -> Check:
    """The prefix holds exactly what `store` should have pushed, byte for byte."""
    c = Check()
    want = expected_bucket(store)
    have = bucket_contents(s3, bucket, prefix)
    for k in sorted(set(want) - set(have)):
        if k.endswith("/index.json.blob"):   # a local snapshot that is not on the remote
            c.lost.append(f"bucket: snapshot {k.rsplit('/', 1)[0]} is not on the remote")
        else:
            c.problems.append(f"bucket: {prefix}/{k} missing")
    for k in sorted(set(have) - set(want)):
        c.problems.append(f"bucket: {prefix}/{k} should not be there")
    for k in sorted(set(want) & set(have)):
        if want[k] != have[k]:
            c.problems.append(f"bucket: {prefix}/{k} differs from the local file")
    return c


# -- the proxy that kills ------------------------------------------------------------------

def _proxy_class():
    from tests.s3proxy import S3Proxy, classify

    class KillProxy(S3Proxy):
        """S3Proxy that SIGKILLs an armed child process at its N-th forwarded request."""

        def __init__(self, upstream_url: str):
            self._klock = threading.Lock()
            self._victim = None
            self._kill_at = None
            self._when = "post"
            self._kind = None
            self._throttle = 0.0
            self._tlock = threading.Lock()
            self.forwarded = 0
            self.killed_on = None
            super().__init__(upstream_url)
            # a killed client resets its connections: not worth a traceback
            self.server.handle_error = lambda request, client_address: None

        def arm(self, proc, kill_at: int | None, when: str = "post", kind: str | None = None,
                throttle: float = 0.0) -> None:
            """Kill `proc` at the kill_at-th request (of `kind`); with `throttle`,
            hold each request that long first, one request at a time."""
            with self._klock:
                self._victim, self._kill_at, self._when, self._kind = proc, kill_at, when, kind
                self._throttle = throttle
                self.forwarded = 0
                self.killed_on = None

        def disarm(self) -> None:
            with self._klock:
                self._victim = self._kill_at = None
                self._throttle = 0.0

        def _kill(self) -> None:
            try:
                os.kill(self._victim.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

        def forward(self, method, path, headers, body):
            if self._throttle:
                with self._tlock:
                    time.sleep(self._throttle)
            p, _, q = path.partition("?")
            kind, key = classify(method, p, q)
            hit = False
            with self._klock:
                if self._kind is None or kind == self._kind:
                    self.forwarded += 1
                    if self._victim is not None and self._kill_at is not None \
                            and self.forwarded == self._kill_at and self.killed_on is None:
                        hit = True
                        self.killed_on = f"{self._when} {kind} {key}"
                if hit and self._when == "pre":
                    self._kill()
            if hit and self._when == "pre":
                raise OSError("client killed before this request was forwarded")
            result = super().forward(method, path, headers, body)
            if hit:
                with self._klock:
                    self._kill()
            return result

    return KillProxy


# -- child side -----------------------------------------------------------------------------

def install_event_hook(kill_at: int | None, sleep: float = 0.0):
    """Count filesystem mutations; SIGKILL this process right before the
    kill_at-th. With `sleep`, pause that long before each one, one at a time
    (a slowed run for delay kill points). Returns (count, event): `event()`
    counts one more mutation (for writes that do not go through `os`)."""
    lock = threading.Lock()
    count = [0]

    def event():
        with lock:
            count[0] += 1
            n = count[0]
            if kill_at is not None and n >= kill_at:
                os.kill(os.getpid(), signal.SIGKILL)
                time.sleep(60)
            if sleep:
                time.sleep(sleep)

    def wrap(fn):
        def hooked(*a, **kw):
            event()
            return fn(*a, **kw)
        return hooked

    for name in EVENT_FUNCS:
        setattr(os, name, wrap(getattr(os, name)))
    return count, event


def hook_sqlite_writes(db, event) -> None:
    """Count each write statement on `db` (an sqlite3 connection) as a filesystem
    mutation: the trace callback runs as a statement starts, before it writes."""
    db.set_trace_callback(lambda sql: event() if sql.lstrip().upper().startswith(SQL_WRITES) else None)


def _child_bucket(spec):
    from remotes.engine.client import make_s3_client
    from remotes.engine.config import RemoteConfig
    from syncjobs.engine.bucket import Bucket
    cfg = RemoteConfig(id="soak", endpoint=spec["endpoint"], bucket=spec["bucket"], region="us-east-1",
                       access_key="testing", secret_key="testing", max_attempts=spec.get("max_attempts", 4),
                       read_timeout=20, connect_timeout=5)
    return Bucket(make_s3_client(cfg), spec["bucket"], spec.get("prefix", PREFIX))


def child_main(spec_path: str) -> int:
    spec = json.loads(Path(spec_path).read_text())
    from datastores.engine.datastore import Datastore
    op = spec["op"]
    store = Datastore(spec["store"])
    bucket = _child_bucket(spec) if op in ("push", "pull") else None
    # warm up lazy imports so the hook counts only the operation's own work
    import datastores.engine.backup, datastores.engine.gc, datastores.engine.prune  # noqa: E401,F401
    import syncjobs.engine.push, syncjobs.engine.pull  # noqa: E401,F401
    count, event = install_event_hook(spec.get("kill_at_event"), spec.get("event_sleep", 0.0))
    print("READY", flush=True)
    t = time.monotonic()
    info = {}
    if op == "backup":
        from datastores.engine.backup import run_backup
        b = spec["backup"]
        res = run_backup(store, b["type"], b["id"], [tuple(a) for a in b["archives"]], backup_time=b["time"])
        info["ref"] = res.ref.rel_dir
    elif op == "gc":
        from datastores.engine.gc import garbage_collection
        st = garbage_collection(store, now=spec["now"])
        info["removed"] = st.removed_chunks
    elif op == "prune":
        from datastores.engine.prune import REMOVE, KeepOptions, PruneItem, compute_prune
        keep = KeepOptions(**spec["keep"])
        groups: dict = {}
        for ref in store.list_snapshots("", recursive=True):
            groups.setdefault((ref.ns, ref.backup_type, ref.backup_id), []).append(ref)
        removed = []
        for key in sorted(groups):
            items = [PruneItem(r, r.time, r.finished, r.protected) for r in groups[key]]
            for item, mark in compute_prune(items, keep):
                if mark == REMOVE:
                    store.remove_snapshot(item.key)
                    removed.append(item.key.rel_dir)
        info["removed"] = removed
    elif op == "push":
        from syncjobs.engine.inventory import Inventory
        from syncjobs.engine.push import PushOptions, push_sync
        with Inventory(spec["inventory"]) as inv:
            hook_sqlite_writes(inv.db, event)
            res = push_sync(store, bucket, inv, PushOptions(**spec.get("options", {})))
        info.update(ok=res.ok, summary=res.summary, errors=res.errors, failed=res.snapshots_failed)
    elif op == "pull":
        from syncjobs.engine.pull import PullOptions, pull_sync
        res = pull_sync(bucket, store, None, PullOptions(**spec.get("options", {})))
        info.update(ok=res.ok, summary=res.summary, failed=res.snapshots_failed)
    else:
        raise SystemExit(f"unknown op {op}")
    info["events"] = count[0]
    info["seconds"] = time.monotonic() - t
    print("DONE " + json.dumps(info), flush=True)
    return 0


# -- parent side ------------------------------------------------------------------------------

@dataclass(frozen=True)
class KillPoint:
    mode: str                 # "none" | "event" | "request-pre" | "request-post" | "delay"
    value: float = 0
    kind: str | None = None   # request modes: count only this request kind
    throttle: float = 0.0     # delay mode: seconds the child sleeps before each fs mutation
    request_throttle: float = 0.0   # delay mode: seconds the proxy holds each request

    def __str__(self):
        if self.mode == "none":
            return "no kill"
        v = f"{self.value:.2f}s" if self.mode == "delay" else f"#{int(self.value)}"
        return f"{self.mode} {v}" + (f" ({self.kind})" if self.kind else "") \
            + (f" (slowed {self.throttle * 1000:.0f} ms/mutation)" if self.throttle else "") \
            + (f" (slowed {self.request_throttle * 1000:.0f} ms/request)" if self.request_throttle else "")


NO_KILL = KillPoint("none")


@dataclass
class ChildRun:
    rc: int
    killed: bool
    stdout: str
    stderr: str
    seconds: float
    info: dict
    killed_on: str | None = None

    @property
    def done(self) -> bool:
        return self.rc == 0 and "events" in self.info


class SoakEnv:
    """A moto server URL, a killing proxy in front of it, an admin client, a work dir."""

    def __init__(self, moto_url: str, workdir):
        from tests.conftest import make_test_client
        self.moto_url = moto_url
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.proxy = _proxy_class()(moto_url)
        self.s3 = make_test_client(moto_url)

    def close(self):
        self.proxy.stop()

    def template(self, specs: tuple) -> Path:
        """A datastore with the snapshots `specs`, made once and then copied
        (copies keep atime/mtime, so GC sees the same chunk ages)."""
        from datastores.engine.datastore import Datastore
        key = sha(repr(specs).encode())[:16]
        path = self.workdir / "templates" / key
        if not (path / ".pbsweb-datastore.json").exists():
            store = Datastore.create(path)
            for s in specs:
                make_snapshot(store, s, self.workdir / "templates" / "scratch")
        return path

    def new_bucket(self) -> str:
        name = f"soak-{uuid.uuid4().hex[:12]}"
        self.s3.create_bucket(Bucket=name)
        return name

    def bucket(self, name: str, via_proxy: bool = True, max_attempts: int = 4):
        from remotes.engine.client import make_s3_client
        from remotes.engine.config import RemoteConfig
        from syncjobs.engine.bucket import Bucket
        cfg = RemoteConfig(id="soak", endpoint=self.proxy.url if via_proxy else self.moto_url, bucket=name,
                           region="us-east-1", access_key="testing", secret_key="testing",
                           max_attempts=max_attempts)
        return Bucket(make_s3_client(cfg), name, PREFIX)


def run_child(spec: dict, env: SoakEnv, kill: KillPoint = NO_KILL, timeout: float = 180,
              wrap: list[str] | None = None) -> ChildRun:
    """Run one operation in a child process; `wrap` prefixes the command
    (e.g. setpriv to drop capabilities)."""
    spec = dict(spec)
    spec.setdefault("endpoint", env.proxy.url)
    if kill.mode == "event":
        spec["kill_at_event"] = int(kill.value)
    if kill.throttle:
        spec["event_sleep"] = kill.throttle
    path = env.workdir / f"spec-{uuid.uuid4().hex[:8]}.json"
    path.write_text(json.dumps(spec))
    pyenv = dict(os.environ, PYTHONPATH=str(REPO), PYTHONDONTWRITEBYTECODE="1")
    proc = subprocess.Popen([*(wrap or []), sys.executable, "-m", "tests.soak.crashpoints", "child", str(path)],
                            cwd=REPO, env=pyenv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if kill.mode.startswith("request"):
        env.proxy.arm(proc, int(kill.value), kill.mode.split("-", 1)[1], kill.kind)
    else:
        env.proxy.arm(proc, None, throttle=kill.request_throttle)
    out_lines: list[str] = []
    err_parts: list[str] = []
    ready = threading.Event()

    def read_out():
        for line in proc.stdout:
            out_lines.append(line)
            if line.startswith("READY"):
                ready.set()
        ready.set()

    readers = [threading.Thread(target=read_out, daemon=True),
               threading.Thread(target=lambda: err_parts.append(proc.stderr.read()), daemon=True)]
    for r in readers:
        r.start()
    ready.wait(timeout)
    t = time.monotonic()
    if kill.mode == "delay":
        try:
            proc.wait(timeout=kill.value)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        err_parts.append(f"\n(child timed out after {timeout}s)")
    seconds = time.monotonic() - t
    for r in readers:
        r.join(10)
    killed_on = env.proxy.killed_on
    env.proxy.disarm()
    path.unlink()
    out, err = "".join(out_lines), "".join(err_parts)
    info = {}
    for line in out.splitlines():
        if line.startswith("DONE "):
            info = json.loads(line[5:])
    return ChildRun(proc.returncode, proc.returncode == -signal.SIGKILL, out, err, seconds, info, killed_on)


@dataclass
class Calibration:
    events: int
    requests: int
    seconds: float


@dataclass
class CaseResult:
    op: str
    kill: KillPoint
    killed: bool
    crashed: Check
    rerun_ok: bool
    final: Check
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.crashed.ok and self.final.ok and self.rerun_ok

    @property
    def consistency_failures(self) -> int:
        """1 if anything was wrong (inconsistent or lost after the kill or after the re-run)."""
        return int(not self.ok)

    @property
    def data_lost(self) -> int:
        return len(self.crashed.lost) + len(self.final.lost)

    def describe(self) -> str:
        lines = [f"{self.op} killed at {self.kill} (killed={self.killed}) {self.detail}"]
        for title, ch in (("after the kill", self.crashed), ("after the re-run", self.final)):
            for p in ch.problems:
                lines.append(f"  {title}: {p}")
            for p in ch.lost:
                lines.append(f"  {title}: LOST {p}")
        if not self.rerun_ok:
            lines.append("  the re-run did not complete")
        return "\n".join(lines)


class Case:
    """Per-case state: a fresh directory, store(s), bucket, inventory."""

    def __init__(self, env: SoakEnv, name: str):
        self.env = env
        self.dir = env.workdir / f"{name}-{uuid.uuid4().hex[:8]}"
        self.dir.mkdir(parents=True)
        self.scratch = self.dir / "scratch"
        self.model: dict[str, tuple] = {}
        self.extra: dict = {}

    def cleanup(self):
        shutil.rmtree(self.dir, ignore_errors=True)


class Scenario:
    name = ""
    kill_modes: tuple = ("event", "delay")

    def setup(self, case: Case) -> None:
        raise NotImplementedError

    def spec(self, case: Case, rerun: bool) -> dict:
        raise NotImplementedError

    def check_crashed(self, case: Case) -> Check:
        raise NotImplementedError

    def check_final(self, case: Case) -> Check:
        raise NotImplementedError

    # helpers
    def _base_store(self, case: Case, specs=BASE, name="store"):
        """A copy of a datastore holding `specs` (built once per SoakEnv)."""
        from datastores.engine.datastore import Datastore
        shutil.copytree(case.env.template(tuple(specs)), case.dir / name, symlinks=True)
        for s in specs:
            case.model[s.rel_dir] = s.expected()
        return Datastore(case.dir / name)


def _gc_in_process(store_path, now) -> Check:
    """GC after the re-run: must run (no stale lock/writer blocks it) and leave
    exactly the referenced chunks."""
    from datastores.engine.datastore import Datastore
    from datastores.engine.gc import garbage_collection
    c = Check()
    store = Datastore(store_path)
    try:
        garbage_collection(store, now=now)
    except Exception as e:  # noqa: BLE001  (reported, not raised)
        c.problems.append(f"GC after the re-run failed: {type(e).__name__}: {e}")
        return c
    if store.running_writers():
        c.problems.append(f"stale writer markers still count as running: {store.running_writers()}")
    left = set(store.chunks.iter_digests()) - referenced_chunks(store)
    if left:
        c.problems.append(f"GC left {len(left)} unreferenced chunks")
    return c


class BackupScenario(Scenario):
    name = "backup"
    kill_modes = ("event", "delay")
    # 80 MiB: the two shared chunks and 18 new ones
    NEW = SnapSpec("vm", "100", T0 + 10 * DAY, "img", tuple(range(8)) + tuple(range(5000, 5072)))
    RERUN = SnapSpec("vm", "100", T0 + 10 * DAY + 60, "img", NEW.seeds)

    def setup(self, case):
        self._base_store(case)
        case.model[self.NEW.rel_dir] = self.NEW.expected()
        case.model[self.RERUN.rel_dir] = self.RERUN.expected()
        write_source(self.NEW, case.dir / "new.img")

    def spec(self, case, rerun):
        s = self.RERUN if rerun else self.NEW
        return {"op": "backup", "store": str(case.dir / "store"),
                "backup": {"type": s.backup_type, "id": s.backup_id, "time": s.time,
                           "archives": [["disk.img", str(case.dir / "new.img")]]}}

    def check_crashed(self, case):
        return check_store(case.dir / "store", case.model, [s.rel_dir for s in BASE], case.scratch)

    def check_final(self, case):
        c = check_store(case.dir / "store", case.model, [s.rel_dir for s in BASE] + [self.RERUN.rel_dir],
                        case.scratch)
        c.extend(_gc_in_process(case.dir / "store", time.time() + 3 * DAY))
        return c.extend(check_store(case.dir / "store", case.model,
                                    [s.rel_dir for s in BASE] + [self.RERUN.rel_dir], case.scratch))


class PruneScenario(Scenario):
    name = "prune"
    kill_modes = ("event", "delay")
    KEEP = {"keep_last": 1}
    REMOVED = [s.rel_dir for s in VM[:-1]]   # keep-last 1: vm/100 keeps only its newest

    def setup(self, case):
        self._base_store(case)

    def kept(self):
        return [s.rel_dir for s in BASE if s.rel_dir not in self.REMOVED]

    def spec(self, case, rerun):
        return {"op": "prune", "store": str(case.dir / "store"), "keep": self.KEEP}

    def check_crashed(self, case):
        return check_store(case.dir / "store", case.model, self.kept(), case.scratch)

    def check_final(self, case):
        c = check_store(case.dir / "store", case.model, self.kept(), case.scratch)
        for rd in self.REMOVED:
            if (case.dir / "store" / rd).exists():
                c.problems.append(f"{rd}: still there after the re-run of prune")
        return c.extend(_gc_in_process(case.dir / "store", time.time() + 3 * DAY))


class GcScenario(Scenario):
    name = "gc"
    kill_modes = ("event", "delay")
    GONE = [s.rel_dir for s in VM[:3]]

    def setup(self, case):
        store = self._base_store(case)
        for ref in store.list_snapshots():
            if ref.rel_dir in self.GONE:
                store.remove_snapshot(ref)
        case.extra["now"] = time.time() + 3 * DAY

    def kept(self):
        return [s.rel_dir for s in BASE if s.rel_dir not in self.GONE]

    def spec(self, case, rerun):
        return {"op": "gc", "store": str(case.dir / "store"), "now": case.extra["now"]}

    def check_crashed(self, case):
        return check_store(case.dir / "store", case.model, self.kept(), case.scratch)

    def check_final(self, case):
        from datastores.engine.datastore import Datastore
        c = check_store(case.dir / "store", case.model, self.kept(), case.scratch)
        store = Datastore(case.dir / "store")
        left = set(store.chunks.iter_digests()) - referenced_chunks(store)
        if left:
            c.problems.append(f"the re-run of GC left {len(left)} unreferenced chunks")
        return c


class PushScenario(Scenario):
    """Push with remove-vanished: 4 snapshots are on the remote already, 6 new
    ones go up, one pruned locally is removed remotely (manifest, index, and
    its own 4 chunks). Its filesystem events are the inventory's writes."""
    name = "push"
    kill_modes = ("event", "request-pre", "request-post", "delay")
    VANISHED = VM[0]
    PROBE = _img(0, T0 + 20 * DAY)   # same data as VANISHED: the chunks it deleted come back

    def setup(self, case):
        from datastores.engine.datastore import Datastore
        from syncjobs.engine.inventory import Inventory
        from syncjobs.engine.push import PushOptions, push_sync
        store = self._base_store(case, BASE[:4])
        case.extra["bucket"] = name = case.env.new_bucket()
        with Inventory(case.dir / "inv.sqlite") as inv:
            res = push_sync(store, case.env.bucket(name, via_proxy=False), inv, PushOptions(workers=4))
            assert res.ok, res.summary
        for s in BASE[4:]:
            make_snapshot(store, s, case.scratch)
            case.model[s.rel_dir] = s.expected()
        store = Datastore(case.dir / "store")
        store.remove_snapshot(store.find_snapshot(self.VANISHED.rel_dir))
        case.model[self.PROBE.rel_dir] = self.PROBE.expected()

    def spec(self, case, rerun):
        return {"op": "push", "store": str(case.dir / "store"), "bucket": case.extra["bucket"],
                "inventory": str(case.dir / "inv.sqlite"),
                "options": {"remove_vanished": True, "workers": 4}}

    def check_crashed(self, case):
        return check_bucket(case.env.bucket(case.extra["bucket"], via_proxy=False), case.model)

    def check_final(self, case):
        from datastores.engine.datastore import Datastore
        from syncjobs.engine.inventory import Inventory
        from syncjobs.engine.push import PushOptions, push_sync
        name = case.extra["bucket"]
        bucket = case.env.bucket(name, via_proxy=False)
        store = Datastore(case.dir / "store")
        c = check_bucket(bucket, case.model).extend(compare_bucket(case.env.s3, name, store))
        # probe: a later backup brings back the data whose chunk the killed run deleted
        make_snapshot(store, self.PROBE, case.scratch)
        with Inventory(case.dir / "inv.sqlite") as inv:
            res = push_sync(store, bucket, inv, PushOptions(remove_vanished=True, workers=4))
        if not res.ok:
            c.problems.append(f"probe push failed: {res.summary} {res.errors} {res.snapshots_failed}")
        after = check_bucket(bucket, case.model).extend(compare_bucket(case.env.s3, name, store))
        c.problems += [f"after a later backup + push: {p}" for p in after.problems]
        c.lost += [f"after a later backup + push: {p}" for p in after.lost]
        return c


class PullScenario(Scenario):
    name = "pull"
    kill_modes = ("event", "request-pre", "request-post", "delay")

    def setup(self, case):
        from datastores.engine.datastore import Datastore
        from syncjobs.engine.inventory import Inventory
        from syncjobs.engine.push import PushOptions, push_sync
        src = self._base_store(case, BASE, name="source")
        case.extra["bucket"] = name = case.env.new_bucket()
        with Inventory(case.dir / "inv.sqlite") as inv:
            assert push_sync(src, case.env.bucket(name, via_proxy=False), inv, PushOptions(workers=4)).ok
        shutil.rmtree(case.dir / "source")
        Datastore.create(case.dir / "store")

    def spec(self, case, rerun):
        return {"op": "pull", "store": str(case.dir / "store"), "bucket": case.extra["bucket"],
                "options": {"workers": 4}}

    def check_crashed(self, case):
        return check_store(case.dir / "store", case.model, (), case.scratch)

    def check_final(self, case):
        c = check_store(case.dir / "store", case.model, list(case.model), case.scratch)
        c.extend(_gc_in_process(case.dir / "store", time.time() + 3 * DAY))
        return c.extend(check_store(case.dir / "store", case.model, list(case.model), case.scratch))


SCENARIOS = {s.name: s for s in (BackupScenario, PruneScenario, GcScenario, PushScenario, PullScenario)}


def calibrate(scenario: Scenario, env: SoakEnv) -> Calibration:
    """One uninterrupted run: how many events and requests, how long."""
    case = Case(env, f"cal-{scenario.name}")
    try:
        scenario.setup(case)
        run = run_child(scenario.spec(case, False), env)
        if not run.done:
            raise RuntimeError(f"calibration run of {scenario.name} failed:\n{run.stdout}\n{run.stderr}")
        return Calibration(run.info["events"], env.proxy.forwarded, run.info["seconds"])
    finally:
        case.cleanup()


def choose_kill_points(scenario: Scenario, cal: Calibration, n: int, seed: int) -> list[KillPoint]:
    """n seeded kill points, spread over the run: the i-th falls in the i-th slice
    of it; the scenario's modes are all used (when n allows) in a seeded order."""
    rng = random.Random(seed)
    modes = [m for m in scenario.kill_modes
             if not (m == "event" and cal.events < 2) and not (m.startswith("request") and cal.requests < 2)]
    order = [modes[i % len(modes)] for i in range(n)]
    rng.shuffle(order)
    out: list[KillPoint] = []
    for i, mode in enumerate(order):
        frac = (i + rng.random()) / n
        if mode == "event":
            out.append(KillPoint("event", max(1, min(cal.events, 1 + int(frac * cal.events)))))
        elif mode.startswith("request"):
            out.append(KillPoint(mode, max(1, min(cal.requests, 1 + int(frac * cal.requests)))))
        else:
            out.append(delay_point(cal, frac))
    return out


def delay_point(cal: Calibration, frac: float) -> KillPoint:
    """A delay that surely lands inside the run: the more numerous of its steps
    (mutations or requests) is slowed so that their sleeps, taken one at a time,
    last `budget`; the kill comes at frac * 90 % of that."""
    budget = max(DELAY_MIN_SECONDS, 2 * cal.seconds)
    if cal.requests >= cal.events:
        throttle = round(budget / cal.requests, 4)
        return KillPoint("delay", round(frac * 0.9 * budget, 3), request_throttle=throttle)
    throttle = round(budget / cal.events, 4)
    return KillPoint("delay", round(frac * 0.9 * budget, 3), throttle=throttle)


def run_case(scenario: Scenario, kill: KillPoint, env: SoakEnv, keep: bool = False) -> CaseResult:
    case = Case(env, scenario.name)
    try:
        scenario.setup(case)
        first = run_child(scenario.spec(case, False), env, kill)
        if not first.killed and not first.done:
            crashed = Check([f"the operation failed instead of being killed: rc={first.rc}\n{first.stderr[-2000:]}"])
        else:
            crashed = scenario.check_crashed(case)
        rerun = run_child(scenario.spec(case, True), env)
        rerun_ok = rerun.done and rerun.info.get("ok", True)
        final = scenario.check_final(case) if rerun.done else Check(
            [f"re-run failed: rc={rerun.rc}: {rerun.stderr[-2000:]}"])
        detail = f"[{first.killed_on}]" if first.killed_on else ""
        if not rerun_ok and rerun.done:
            detail += f" re-run: {rerun.info}"
        return CaseResult(scenario.name, kill, first.killed, crashed, rerun_ok, final, detail)
    finally:
        if not keep:
            case.cleanup()


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "child":
        sys.exit(child_main(sys.argv[2]))
    raise SystemExit("usage: python -m tests.soak.crashpoints child SPEC.json")
