"""CLI end to end with the real commands in subprocesses: back up a generated tree, list it,
restore it identically, back up a 1% change (few new chunks), prune + GC, bad arguments."""
import json
import os
import random
import re
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import REPO, service_env

pytestmark = pytest.mark.django_db(transaction=True)

MiB = 1024 * 1024
T1, T2 = 1764126000, 1764129600  # 2025-11-26T03:00:00Z, 04:00:00Z


def cli(*args, env=None, check=None):
    proc = subprocess.run([sys.executable, "manage.py", *map(str, args)], cwd=REPO, env=env or service_env(),
                          capture_output=True, text=True, timeout=120)
    if check is not None:
        assert proc.returncode == check, (args, proc.returncode, proc.stdout[-3000:], proc.stderr[-3000:])
    return proc


def call_error(*args):
    """Run a command in-process expecting a usage error: (exit code, field it names)."""
    from io import StringIO

    from django.core.management import CommandError, call_command
    out = StringIO()
    with pytest.raises(CommandError) as exc:
        call_command(*map(str, args), stdout=out, stderr=StringIO())
    assert out.getvalue() == "", out.getvalue()
    message = str(exc.value)
    assert "\n" not in message
    field = message.split(":", 1)[0]
    for known in ("id", "ns", "type", "archive name", "archive", "backup-time", "keyfile", "keep-last", "store",
                  "snapshot"):
        if message.startswith(known):
            field = known
            break
    if "not a directory" in message:
        field = "not a directory"
    return exc.value.returncode, field


def make_tree(root: Path) -> None:
    rnd = random.Random(42)
    (root / "etc" / "deep" / "er").mkdir(parents=True)
    (root / "empty-dir").mkdir()
    big = rnd.randbytes(16 * MiB)
    (root / "data.bin").write_bytes(big)
    (root / "copy-of-data.bin").write_bytes(big)                 # duplicate content
    for i, size in enumerate([0, 1, 100, 4095, 4096, 65537, MiB + 3]):
        (root / "etc" / f"file{i}").write_bytes(rnd.randbytes(size))
    (root / "etc" / "deep" / "er" / "empty").write_bytes(b"")
    (root / "etc" / "deep" / "text.conf").write_text("key = value\n" * 500)
    script = root / "run.sh"
    script.write_text("#!/bin/sh\necho hi\n")
    script.chmod(0o750)
    (root / "etc" / "file2").chmod(0o600)
    os.symlink("etc/deep/text.conf", root / "link-to-conf")
    with open(root / "sparse.img", "wb") as f:                 # sparse: a hole, then data
        f.seek(24 * MiB)
        f.write(b"end of sparse file")
    os.link(root / "etc" / "file5", root / "hard-link-to-file5")     # hard links: one inode, 3 names
    os.link(root / "etc" / "file5", root / "etc" / "deep" / "file5-again")


def snapshot_of_tree(root: Path) -> dict:
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            rel = str(p.relative_to(root))
            st = os.lstat(p)
            if stat.S_ISLNK(st.st_mode):
                out[rel] = ("link", os.readlink(p))
            elif stat.S_ISDIR(st.st_mode):
                out[rel] = ("dir", stat.S_IMODE(st.st_mode))
            else:
                out[rel] = ("file", stat.S_IMODE(st.st_mode), p.read_bytes(), st.st_nlink)
    return out


def inode_groups(root: Path) -> list[list[str]]:
    """Names that share an inode (hard links), each group sorted."""
    groups: dict[int, list[str]] = {}
    for p in sorted(root.rglob("*")):
        if p.is_file() and not p.is_symlink():
            groups.setdefault(p.stat().st_ino, []).append(str(p.relative_to(root)))
    return sorted(g for g in groups.values() if len(g) > 1)


def assert_sparse_like(src: Path, out: Path) -> None:
    """The restored file keeps its holes: allocated blocks within 128 KiB of the source's."""
    s, r = os.stat(src), os.stat(out)
    assert r.st_size == s.st_size
    assert r.st_blocks * 512 <= s.st_blocks * 512 + 128 * 1024, (s.st_blocks, r.st_blocks)


def chunk_files(store_path: Path) -> set[str]:
    return {p.name for p in (store_path / ".chunks").glob("*/*") if re.fullmatch(r"[0-9a-f]{64}", p.name)}


def test_backup_list_restore_incremental_prune_gc(tmp_path):
    env = service_env()
    store_path = tmp_path / "store"
    cli("datastore", "create", "clistore", store_path, "--comment", "CLI test", env=env, check=0)
    src = tmp_path / "src"
    src.mkdir()
    make_tree(src)
    before = snapshot_of_tree(src)

    out = cli("backup", "clistore", "--type", "host", "--id", "web01", f"root.tar:{src}",
              "--backup-time", T1, env=env, check=0).stdout
    assert "TASK OK" in out and "starting backup host/web01/2025-11-26T03:00:00Z" in out

    listing = json.loads(cli("snapshots", "clistore", "--output-format", "json", env=env, check=0).stdout)
    assert [s["snapshot"] for s in listing] == ["host/web01/2025-11-26T03:00:00Z"]
    assert listing[0]["size"] > 40 * MiB and "root.tar.didx" in listing[0]["files"]
    text = cli("snapshots", "clistore", env=env, check=0).stdout
    assert "host/web01/2025-11-26T03:00:00Z" in text and "│" in text

    target = tmp_path / "restored"
    out = cli("restore", "clistore", "host/web01/2025-11-26T03:00:00Z", "root.tar", target, env=env, check=0).stdout
    assert "TASK OK" in out
    assert snapshot_of_tree(target) == before
    assert inode_groups(target) == inode_groups(src) == [
        ["etc/deep/file5-again", "etc/file5", "hard-link-to-file5"]]
    assert_sparse_like(src / "sparse.img", target / "sparse.img")

    # A restore killed outright (SIGKILL) leaves no target; repeating it gives the same tree
    # and removes what the killed one left behind.
    target3 = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "manage.py", "restore", "clistore", "host/web01/2025-11-26T03:00:00Z",
                             "root.tar", str(target3)], cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while not list(tmp_path.glob(".killed.partial-*/copy-of-data.bin")) and time.monotonic() < deadline:
        assert proc.poll() is None, "the restore ended before it could be killed"
        time.sleep(0.002)
    proc.kill()
    proc.wait()
    assert not target3.exists() and list(tmp_path.glob(".killed.partial-*"))
    out = cli("restore", "clistore", "host/web01/2025-11-26T03:00:00Z", "root.tar", target3, env=env, check=0).stdout
    assert "left by an interrupted restore" in out
    assert snapshot_of_tree(target3) == before and inode_groups(target3) == inode_groups(src)
    assert not list(tmp_path.glob(".killed.partial-*"))

    # Change about 1% (a 256 KiB region of one 16 MiB file of ~59 MiB) and back up again.
    with open(src / "data.bin", "r+b") as f:
        f.seek(7 * MiB)
        f.write(random.Random(7).randbytes(256 * 1024))
    changed = snapshot_of_tree(src)
    out = cli("backup", "clistore", "--id", "web01", f"root.tar:{src}", "--backup-time", T2,
              env=env, check=0).stdout
    m = re.search(r"chunks new (\d+), reused (\d+)", out)
    assert m, out
    new, reused = int(m.group(1)), int(m.group(2))
    assert new <= 2 and reused >= 3 and new < reused, out

    # prune --keep-last 1: the first snapshot goes, then GC removes its unique chunks.
    from datastores.engine.datastore import Datastore as Eng
    eng = Eng(store_path)
    refs = eng.list_snapshots()
    first, second = eng.chunk_digests(refs[0]), eng.chunk_digests(refs[1])
    unique_first = first - second
    assert unique_first and chunk_files(store_path) == first | second
    dry = cli("prune", "clistore", "--keep-last", "1", "--dry-run", env=env, check=0).stdout
    assert "would remove host/web01/2025-11-26T03:00:00Z" in dry and "would keep host/web01/2025-11-26T04:00:00Z" in dry
    assert len(eng.list_snapshots()) == 2
    out = cli("prune", "clistore", "--keep-last", "1", env=env, check=0).stdout
    assert "remove host/web01/2025-11-26T03:00:00Z" in out and "keep host/web01/2025-11-26T04:00:00Z" in out
    assert [r.name for r in eng.list_snapshots()] == ["host/web01/2025-11-26T04:00:00Z"]

    old = time.time() - 2 * 86400          # pretend the chunks were written two days ago
    for p in (store_path / ".chunks").glob("*/*"):
        os.utime(p, (old, old))
    out = cli("garbage-collection", "start", "clistore", env=env, check=0).stdout
    assert f"Removed chunks: {len(unique_first)}" in out and "Deduplication factor" in out
    assert chunk_files(store_path) == second
    status = json.loads(cli("garbage-collection", "status", "clistore", "--output-format", "json",
                            env=env, check=0).stdout)
    assert status["removed-chunks"] == len(unique_first) and status["status"] == "OK"

    target2 = tmp_path / "restored2"
    cli("restore", "clistore", "host/web01/2025-11-26T04:00:00Z", "root.tar.didx", target2, env=env, check=0)
    assert snapshot_of_tree(target2) == changed


def test_image_backup_and_bad_arguments(tmp_path):
    env = service_env()
    store_path = tmp_path / "store"
    cli("datastore", "create", "imgstore", store_path, env=env, check=0)
    disk = tmp_path / "disk.raw"
    disk.write_bytes(random.Random(1).randbytes(5 * MiB + 123))
    src = tmp_path / "dir"
    src.mkdir()
    (src / "f").write_text("x")
    cli("backup", "imgstore", "--id", "vm1", "--type", "vm", f"disk.img:{disk}", "--backup-time", T1,
        env=env, check=0)
    out_img = tmp_path / "out" / "disk.raw"
    cli("restore", "imgstore", "vm/vm1/2025-11-26T03:00:00Z", "disk.img", out_img, env=env, check=0)
    assert out_img.read_bytes() == disk.read_bytes()

    from pbsweb.models import Task
    tasks_before = Task.objects.count()
    listing_before = sorted(p.relative_to(store_path).as_posix() for p in store_path.rglob("*"))
    bad = [
        (["--id", "..", f"root.tar:{src}"], "id:"),
        (["--id", "../etc", f"root.tar:{src}"], "id:"),
        (["--id", "ok", "--ns", "../x", f"root.tar:{src}"], "ns:"),
        (["--id", "ok", "--ns", "a/../b", f"root.tar:{src}"], "ns:"),
        (["--id", "ok", f"../evil.tar:{src}"], "archive name"),
        (["--id", "ok", f"root.tar:{disk}"], "not a directory"),
        (["--id", "ok", f"root.zip:{src}"], "archive name"),
        (["--id", "ok", "--type", "pc", f"root.tar:{src}"], "type:"),
        (["--id", "ok", "--backup-time", "yesterday", f"root.tar:{src}"], "backup-time"),
        (["--id", "ok", "--keyfile", tmp_path / "nokey.json", f"root.tar:{src}"], "keyfile"),
    ]
    for i, (args, field) in enumerate(bad):
        if i < 2:   # the real CLI: exit code 2, one line on stderr, nothing on stdout
            proc = cli("backup", "imgstore", *args, env=env)
            assert proc.returncode == 2, (args, proc.stdout, proc.stderr)
            lines = proc.stderr.strip().splitlines()
            assert len(lines) == 1 and field in lines[0], (args, proc.stderr)
            assert "Traceback" not in proc.stderr and proc.stdout == ""
        else:       # the same command in-process (faster)
            assert call_error("backup", "imgstore", *args) == (2, field.rstrip(":")), args
    assert call_error("backup", "nostore", "--id", "x", f"root.tar:{src}")[0] == 2
    assert call_error("restore", "imgstore", "vm/vm1/2025-11-26T03:00:00Z", "nope.img", tmp_path / "x") == (2, "archive")
    assert not (tmp_path / "x").exists()
    assert call_error("restore", "imgstore", "vm/vm1/2030-01-01T00:00:00Z", "disk.img", tmp_path / "x")[0] == 2
    assert call_error("prune", "imgstore", "--keep-last", "-1") == (2, "keep-last")
    assert Task.objects.count() == tasks_before
    assert sorted(p.relative_to(store_path).as_posix() for p in store_path.rglob("*")) == listing_before
