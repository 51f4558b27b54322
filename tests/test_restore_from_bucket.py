"""Restore only what is needed: restoring one small archive of a bucket
snapshot that also holds a large one downloads the manifest, that archive's
index and its chunks, nothing of the large archive (counted by the proxy
between boto3 and moto, and by the remote's recorded usage)."""
import random

import pytest

from datastores.engine.backup import run_backup
from datastores.engine.datastore import Datastore as EngineStore
from datastores.models import Datastore
from remotes.models import RemoteUsage
from syncjobs.engine.pull import restore_from_bucket
from syncjobs.remote_content import make_bucket
from tests.s3proxy import s3proxy  # noqa: F401  (fixture)
from tests.test_restore_fresh_install import T0, cli_error, make_remote, make_tree, push, run_cli, tree_state

MiB = 1024 * 1024
SNAP = "host/mixed/2026-09-21T14:13:20Z"


@pytest.fixture
def mixed(tmp_path, s3proxy, s3_bucket, db):
    """One snapshot: root.tar (a small tree, ~0.6 MiB) and disk.img (32 MiB of random data)."""
    engine = EngineStore.create(tmp_path / "ds")
    src = make_tree(tmp_path / "src")
    img = tmp_path / "disk.img"
    img.write_bytes(b"".join(random.Random(s).randbytes(MiB) for s in range(32)))
    ref = run_backup(engine, "host", "mixed", [("root.tar", src), ("disk.img", img)], backup_time=T0).ref
    Datastore.objects.create(name="store1", path=str(tmp_path / "ds"))
    remote = make_remote(s3proxy.url, s3_bucket)
    push()
    tar_chunks = {d.hex() for d in engine.load_index(ref, "root.tar.didx").digests}
    img_chunks = {d.hex() for d in engine.load_index(ref, "disk.img.fidx").digests}
    assert tar_chunks and len(img_chunks) == 8 and not tar_chunks & img_chunks
    s3proxy.reset_counts()
    return engine, ref, src, remote, tar_chunks, img_chunks


def _key(d):
    return f"backups/.chunks/{d[:4]}/{d}"


def test_engine_restore_fetches_only_that_archives_chunks(mixed, s3proxy, tmp_path):
    engine, ref, src, remote, tar_chunks, img_chunks = mixed
    bucket = make_bucket(remote, remote.client(), "backups")
    restore_from_bucket(bucket, SNAP, "root.tar", tmp_path / "out", work_dir=tmp_path)
    assert tree_state(tmp_path / "out") == tree_state(src)
    gets = s3proxy.keys("GET")
    assert sorted(gets) == sorted([f"backups/{SNAP}/index.json.blob", f"backups/{SNAP}/root.tar.didx"]
                                  + [_key(d) for d in tar_chunks])
    assert not any(_key(d) in gets for d in img_chunks)
    assert s3proxy.counts["PUT"] == s3proxy.counts["LIST"] == s3proxy.counts["DELETE"] == 0
    assert s3proxy.bytes_down < 2 * MiB  # the snapshot holds > 32 MiB
    print(f"\nrestore-only-what-is-needed (engine): {s3proxy.counts['GET']} GETs, "
          f"{s3proxy.bytes_down} bytes down, of a snapshot of {8 + len(tar_chunks)} chunks (> 32 MiB)")


def test_cli_remote_restore_counts_and_bad_input(mixed, s3proxy, tmp_path):
    engine, ref, src, remote, tar_chunks, img_chunks = mixed
    target = tmp_path / "restored"
    out = run_cli("remote", "restore", "s3-test", "backups", SNAP, "root.tar", str(target))
    assert "TASK OK" in out and f"fetching {len(tar_chunks)} chunks" in out
    assert tree_state(target) == tree_state(src)
    gets, down = s3proxy.counts["GET"], s3proxy.bytes_down
    # the CLI reads the manifest once to check the arguments, the task reads it, the index and the chunks
    assert gets == 3 + len(tar_chunks)
    assert s3proxy.keys("GET").count(f"backups/{SNAP}/index.json.blob") == 2
    assert not any(_key(d) in s3proxy.keys("GET") for d in img_chunks)
    usage = RemoteUsage.objects.exclude(task_upid=None).order_by("-id").first()
    assert usage.get == 2 + len(tar_chunks) and 0 < usage.bytes_down <= down
    print(f"\nrestore-only-what-is-needed (CLI): {gets} GETs, {down} bytes down; "
          f"the image archive's 8 chunks (32 MiB) untouched")

    # the image restores to a file, too (the standalone command name works as well)
    s3proxy.reset_counts()
    run_cli("remote-restore", "s3-test", "backups", SNAP, "disk.img", str(tmp_path / "disk.img.out"))
    assert (tmp_path / "disk.img.out").read_bytes() == (tmp_path / "disk.img").read_bytes()
    assert {k for k in s3proxy.keys("GET") if "/.chunks/" in k} == {_key(d) for d in img_chunks}

    # bad input: one line naming the field, exit 2, nothing written
    cases = [
        (("remote", "restore", "nope", "backups", SNAP, "root.tar", str(tmp_path / "x")), "id:"),
        (("remote", "restore", "s3-test", "backups", "host/mixed/yesterday", "root.tar", str(tmp_path / "x")),
         "snapshot:"),
        (("remote", "restore", "s3-test", "backups", "host/mixed/2020-01-01T00:00:00Z", "root.tar",
          str(tmp_path / "x")), "snapshot:"),
        (("remote", "restore", "s3-test", "backups", SNAP, "etc.tar", str(tmp_path / "x")), "archive:"),
        (("remote", "restore", "s3-test", "backups", SNAP, "root.zip", str(tmp_path / "x")), "archive:"),
        (("remote", "restore", "s3-test", "backups", SNAP, "root.tar", str(target)), "target:"),
        (("remote", "restore", "s3-test", "backups", SNAP, "disk.img", str(tmp_path)), "target:"),
        (("remote", "restore", "s3-test", "nosuchprefix", SNAP, "root.tar", str(tmp_path / "x")), "snapshot:"),
    ]
    for args, field in cases:
        err = cli_error(*args)
        assert err.returncode == 2 and str(err).startswith(field), (args, str(err))
        assert "\n" not in str(err)
    assert "has: disk.img, root.tar" in str(cli_error(*cases[3][0])) or "root.tar" in str(cli_error(*cases[3][0]))
    assert not (tmp_path / "x").exists()
