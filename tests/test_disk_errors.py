"""Disk full, read-only and permission errors while backing up or pulling
(issue "Trustworthy under faults").

Disk full: the datastore lives on a real 8 MiB tmpfs mounted for the test
(skipped when mounting is not permitted); a filler file leaves a chosen amount
of space, so ENOSPC strikes at different steps (chunks, index, manifest).
Permissions: directories are chmod 0555 and the operation runs in a child
process without CAP_DAC_OVERRIDE (setpriv), since root ignores mode bits.
In every case the operation fails with an error naming the cause, no partial
snapshot shows up as finished, and the same operation works once there is
space (the tmpfs is remounted bigger) or permission again.
"""
import errno
import os
import shutil
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from datastores.engine.backup import run_backup
from datastores.engine.datastore import Datastore
from datastores.engine.errors import DatastoreError
from remotes.engine.client import make_s3_client
from remotes.engine.config import RemoteConfig
from syncjobs.engine.bucket import Bucket
from syncjobs.engine.inventory import Inventory
from syncjobs.engine.pull import PullOptions, pull_sync
from syncjobs.engine.push import PushOptions, push_sync
from tests.soak.crashpoints import (BASE, PREFIX, T0, SoakEnv, check_store, image_bytes, make_snapshot,
                                    run_child, sha)

KiB = 1024
MiB = 1024 * KiB


class TinyFs:
    """A tmpfs of a few MiB on `path`, with helpers to fill it and resize it."""

    def __init__(self, path: Path, size: str = "8m"):
        self.path = path
        path.mkdir(parents=True, exist_ok=True)
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(path)],
                           capture_output=True, text=True)
        if r.returncode:
            pytest.skip(f"cannot mount a tmpfs on {path} (needs root/CAP_SYS_ADMIN): {r.stderr.strip()}")
        self.filler = path / "filler"

    def _mount(self, opts: str) -> None:
        subprocess.run(["mount", "-o", f"remount,{opts}", str(self.path)], check=True, capture_output=True)

    def resize(self, size: str) -> None:
        self._mount(f"size={size}")

    def read_only(self, ro: bool) -> None:
        self._mount("ro" if ro else "rw")

    def free(self) -> int:
        st = os.statvfs(self.path)
        return st.f_bavail * st.f_frsize

    def fill(self, leave: int) -> None:
        """Allocate a filler file so that about `leave` bytes stay free."""
        assert os.path.ismount(self.path), f"{self.path} is not the tmpfs: refusing to fill the real disk"
        self.unfill()
        n = self.free() - leave
        if n > 0:
            fd = os.open(self.filler, os.O_WRONLY | os.O_CREAT, 0o644)
            try:
                os.posix_fallocate(fd, 0, n)
            finally:
                os.close(fd)

    def unfill(self) -> None:
        if self.filler.exists():
            self.filler.unlink()

    def unmount(self) -> None:
        if subprocess.run(["umount", str(self.path)], capture_output=True).returncode:
            subprocess.run(["umount", "-l", str(self.path)], capture_output=True)


@pytest.fixture
def tiny_fs(tmp_path):
    fs = TinyFs(tmp_path / "mnt")
    yield fs
    fs.unmount()


def img(tmp_path: Path, seeds) -> Path:
    p = tmp_path / f"src-{uuid.uuid4().hex[:8]}.img"
    p.write_bytes(image_bytes(seeds))
    return p


def rel(t: int) -> str:
    return "vm/100/" + time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def snapshot_names(store) -> dict[str, bool]:
    return {r.rel_dir: r.finished for r in store.list_snapshots()}


def is_disk_full(e: BaseException) -> bool:
    while e is not None:
        if isinstance(e, OSError) and e.errno == errno.ENOSPC:
            return True
        if isinstance(e, DatastoreError) and "space" in str(e).lower():
            return True
        e = e.__cause__ or e.__context__
    return False


# -- disk full --------------------------------------------------------------------------------

def test_backup_on_a_full_disk_fails_at_every_step_without_a_finished_partial_snapshot(tiny_fs, tmp_path):
    tiny_fs.resize("16m")  # room for the ~10 attempts that succeed
    store = Datastore.create(tiny_fs.path / "store")
    first = run_backup(store, "vm", "100", [("disk.img", img(tmp_path, range(8)))], backup_time=T0)
    model = {first.ref.rel_dir: ("disk.img", sha(image_bytes(range(8))))}
    outcomes = []

    def attempt(i, leave):
        seeds = range(1000 + 12 * i, 1012 + 12 * i)
        src = img(tmp_path, seeds)
        tiny_fs.fill(leave)
        t = T0 + 60 * (i + 1)
        try:
            res = run_backup(store, "vm", "100", [("disk.img", src)], backup_time=t)
        except (OSError, DatastoreError) as e:
            assert is_disk_full(e), f"leave={leave}: not reported as disk full: {e!r}"
            # where the write failed: the innermost frame of the original error
            # (the engine re-raises it with the file name added)
            tb = (e.__cause__ or e).__traceback__
            while tb.tb_next:
                tb = tb.tb_next
            outcomes.append(("failed", leave, tb.tb_frame.f_code.co_name, str(e)))
            # no partial snapshot: not finished, and run_backup removed it
            assert rel(t) not in snapshot_names(store), f"leave={leave}: {rel(t)} left behind"
        else:
            outcomes.append(("ok", leave, "", ""))
            model[res.ref.rel_dir] = ("disk.img", sha(image_bytes(seeds)))
        finally:
            tiny_fs.unfill()
            src.unlink()

    # 12 MiB of compressible data per attempt: three ~260 KiB chunk blobs, a 4 KiB
    # index, a manifest. A coarse sweep of the free space finds where backups
    # start to fit, a fine one (page by page) just below makes the failure move
    # from the chunks to the index and the manifest.
    for leave in range(0, 1200 * KiB, 80 * KiB):
        attempt(len(outcomes), leave)
    fits = min(o[1] for o in outcomes if o[0] == "ok")
    for leave in range(fits - 80 * KiB, fits + 4 * KiB, 4 * KiB):
        attempt(len(outcomes), leave)
    sites = {o[2] for o in outcomes if o[0] == "failed"}
    assert {"writer", "insert", "write_atomic"} <= sites, outcomes  # .writers file, chunks, index/manifest
    # every finished snapshot (the earlier ones too) is complete and restores exactly
    chk = check_store(store.path, model, list(model), tmp_path / "scratch")
    assert chk.ok, chk
    # no temp files are left in the chunk store
    assert not [p for p in (store.path / ".chunks").rglob("*.tmp")]

    # with space, the backup that failed first works
    tiny_fs.resize("64m")
    leave = next(o[1] for o in outcomes if o[0] == "failed")
    i = [o[1] for o in outcomes].index(leave)
    seeds = range(1000 + 12 * i, 1012 + 12 * i)
    res = run_backup(store, "vm", "100", [("disk.img", img(tmp_path, seeds))], backup_time=T0 + 9999)
    model[res.ref.rel_dir] = ("disk.img", sha(image_bytes(seeds)))
    chk = check_store(store.path, model, list(model), tmp_path / "scratch")
    assert chk.ok, chk


def test_backup_disk_full_error_names_the_datastore(tiny_fs, tmp_path):
    store = Datastore.create(tiny_fs.path / "store")
    tiny_fs.fill(0)
    with pytest.raises((OSError, DatastoreError)) as ei:
        run_backup(store, "vm", "100", [("disk.img", img(tmp_path, range(500, 512)))], backup_time=T0)
    assert is_disk_full(ei.value)
    assert str(tiny_fs.path / "store") in str(ei.value), str(ei.value)


def test_backup_on_a_read_only_filesystem_fails_cleanly_and_works_once_writable(tiny_fs, tmp_path):
    store = Datastore.create(tiny_fs.path / "store")
    run_backup(store, "vm", "100", [("disk.img", img(tmp_path, range(8)))], backup_time=T0)
    src = img(tmp_path, range(600, 612))
    tiny_fs.read_only(True)
    try:
        with pytest.raises(OSError) as ei:
            run_backup(store, "vm", "100", [("disk.img", src)], backup_time=T0 + 60)
        assert ei.value.errno == errno.EROFS
    finally:
        tiny_fs.read_only(False)
    assert snapshot_names(store) == {rel(T0): True}
    res = run_backup(store, "vm", "100", [("disk.img", src)], backup_time=T0 + 60)
    assert snapshot_names(store)[res.ref.rel_dir] is True


@pytest.fixture
def pushed_bucket(s3_server, s3_client, tmp_path):
    """The BASE snapshots pushed to a fresh bucket; returns (Bucket, model)."""
    src = Datastore.create(tmp_path / "source")
    for s in BASE:
        make_snapshot(src, s, tmp_path / "scratch")
    name = f"disk-{uuid.uuid4().hex[:12]}"
    s3_client.create_bucket(Bucket=name)
    cfg = RemoteConfig(id="disk", endpoint=s3_server.url, bucket=name, region="us-east-1",
                       access_key="testing", secret_key="testing")
    bucket = Bucket(make_s3_client(cfg), name, PREFIX)
    with Inventory(tmp_path / "inv.sqlite") as inv:
        assert push_sync(src, bucket, inv, PushOptions(workers=4)).ok
    return bucket, {s.rel_dir: s.expected() for s in BASE}


def test_pull_into_a_full_disk_fails_without_a_finished_partial_snapshot(tiny_fs, tmp_path, pushed_bucket):
    bucket, model = pushed_bucket
    store = Datastore.create(tiny_fs.path / "store")
    tiny_fs.fill(1 * MiB)  # the bucket holds ~2.5 MiB of chunks
    with pytest.raises((OSError, DatastoreError)) as ei:
        pull_sync(bucket, store, None, PullOptions(workers=4))
    assert is_disk_full(ei.value), repr(ei.value)
    names = snapshot_names(store)
    assert any(not f for f in names.values()) or len(names) < len(model)  # it stopped part-way
    chk = check_store(store.path, model, [], tmp_path / "scratch")  # what is finished is complete
    assert chk.ok, chk
    assert store.running_writers() == []  # the pull's writer marker went away with it

    tiny_fs.unfill()
    tiny_fs.resize("64m")
    res = pull_sync(bucket, store, None, PullOptions(workers=4))
    assert res.ok, res.summary
    chk = check_store(store.path, model, list(model), tmp_path / "scratch")
    assert chk.ok, chk


# -- permission denied (chmod 0555, no CAP_DAC_OVERRIDE) ----------------------------------------

NO_DAC = ["setpriv", "--bounding-set=-dac_override,-dac_read_search"]


@pytest.fixture
def soak_env(s3_server, tmp_path):
    if not shutil.which("setpriv"):
        pytest.skip("setpriv (util-linux) is needed to drop CAP_DAC_OVERRIDE; root ignores chmod 0555")
    env = SoakEnv(s3_server.url, tmp_path / "work")
    yield env
    env.close()


def chmod_tree(root: Path, mode: int) -> None:
    os.chmod(root, mode)
    for p in root.rglob("*"):
        if p.is_dir():
            os.chmod(p, mode)


@pytest.mark.parametrize("where", [".chunks", "vm/100"])
def test_backup_into_a_read_only_directory_fails_naming_the_path(soak_env, tmp_path, where):
    store = Datastore.create(tmp_path / "store")
    run_backup(store, "vm", "100", [("disk.img", img(tmp_path, range(8)))], backup_time=T0)
    src = img(tmp_path, range(700, 712))
    spec = {"op": "backup", "store": str(store.path),
            "backup": {"type": "vm", "id": "100", "time": T0 + 60, "archives": [["disk.img", str(src)]]}}
    chmod_tree(store.path / where, 0o555)
    try:
        run = run_child(spec, soak_env, wrap=NO_DAC)
    finally:
        chmod_tree(store.path / where, 0o755)
    assert run.rc == 1, (run.rc, run.stderr)
    last = run.stderr.strip().splitlines()[-1]
    assert "PermissionError" in last and "Permission denied" in last, last
    assert str(store.path / where) in last, last
    assert snapshot_names(store) == {rel(T0): True}  # nothing finished, nothing unfinished left
    again = run_child(spec, soak_env, wrap=NO_DAC)
    assert again.done, again.stderr
    model = {rel(T0): ("disk.img", sha(image_bytes(range(8)))),
             rel(T0 + 60): ("disk.img", sha(image_bytes(range(700, 712))))}
    chk = check_store(store.path, model, list(model), tmp_path / "scratch")
    assert chk.ok, chk


def test_pull_into_a_read_only_chunk_store_fails_naming_the_path(soak_env, tmp_path, pushed_bucket):
    bucket, model = pushed_bucket
    store = Datastore.create(tmp_path / "target")
    spec = {"op": "pull", "store": str(store.path), "bucket": bucket.bucket, "endpoint": soak_env.moto_url,
            "options": {"workers": 4}}
    chmod_tree(store.path / ".chunks", 0o555)
    try:
        run = run_child(spec, soak_env, wrap=NO_DAC)
    finally:
        chmod_tree(store.path / ".chunks", 0o755)
    assert run.rc == 1, (run.rc, run.stderr)
    last = run.stderr.strip().splitlines()[-1]
    assert "PermissionError" in last and str(store.path / ".chunks") in last, last
    assert not [n for n, f in snapshot_names(store).items() if f]
    again = run_child(spec, soak_env, wrap=NO_DAC)
    assert again.done and again.info["ok"], again.stderr
    chk = check_store(store.path, model, list(model), tmp_path / "scratch")
    assert chk.ok, chk
