"""Bad arguments to every management command (hypothesis-driven): a one-line error naming the
field, exit code 2, and nothing written (database row counts and files unchanged).

Commands run in-process through call_command (fast); argparse-level errors there surface as
CommandError("Error: …") and exit 2 on a real command line, which the subprocess test at the
end checks for a sample."""
import io
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.apps import apps
from django.core.management import call_command
from django.core.management.base import CommandError
from hypothesis import HealthCheck, given, settings, strategies as st

from pbsweb import secretbox
from tests.conftest import REPO, service_env

pytestmark = pytest.mark.django_db

FUZZ = settings(max_examples=15, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

HOSTILE = [
    "", " ", "\x00", "a\x00b", "../../etc/passwd", "/etc/passwd", "..", "%2e%2e%2f", "a/../../b", "x" * 5000,
    "ü" * 40, "名前", "\u202e", "😀", "-1", "99999999999999999999999", "1e309", "NaN", "<b>", "\n", "a\nb",
    "ns/" * 20, "1000000PiB", "-5MiB", "* * * * * *", "25:61", "/", "host/../../x/2026-01-01T00:00:00Z",
    "vm/100/2026-13-45T99:99:99Z", "UPID:x", "UPID:n:zz:zz:zz:zz:backup:x:u@pbs:",
]
# A real command line cannot carry a NUL byte (execve's strings end at the first one), so the
# CLI never sees one; in-process they would reach the command, which is not a real case.
BAD = st.one_of(st.sampled_from(HOSTILE), st.text(max_size=30)).map(lambda v: v.replace("\x00", "\\x00"))


def _rows() -> dict:
    return {m._meta.label: m.objects.count() for m in apps.get_models() if m._meta.app_label in
            ("pbsweb", "datastores", "remotes", "syncjobs", "auth")}


def _files(*roots) -> set:
    out = set()
    for root in roots:
        for dirpath, dirnames, filenames in os.walk(root):
            rel = os.path.relpath(dirpath, root)
            if rel.split(os.sep)[0] in ("cache", "broker", "locks"):
                continue
            for f in filenames:
                if ".sqlite3" in f or f in ("celerybeat-schedule",):
                    continue
                p = Path(dirpath) / f
                try:
                    out.add((str(p), p.stat().st_size))
                except FileNotFoundError:
                    pass
            out.update(str(Path(dirpath) / d) for d in dirnames)
    return out


@pytest.fixture
def world(tmp_path, settings, s3_server, s3_bucket):
    """store1, and remote1 on the moto server (an empty bucket): commands that reach the
    remote succeed with good arguments, so a failure is the bad argument's."""
    from datastores.services import create_datastore
    from remotes.models import Remote
    secretbox.ensure_key()
    settings.PBSWEB_REMOTE_TEST_TIMEOUT = 1
    create_datastore("store1", str(tmp_path / "store1"))
    Remote.objects.create(remote_id="remote1", endpoint=s3_server.url, bucket=s3_bucket, path_style=True,
                          region="us-east-1", access_key="testing", secret_key="testing")
    src = tmp_path / "src"
    src.mkdir()
    (src / "f.txt").write_text("hello")
    return tmp_path


def run_cli(*args):
    out, err = io.StringIO(), io.StringIO()
    call_command(*args, stdout=out, stderr=err)
    return out.getvalue()


def check_bad(world, fields, argv):
    """Run argv; if it fails: exit 2, one line, names one of `fields`, nothing written."""
    rows, files = _rows(), _files(world, Path(os.environ["PBSWEB_DATA_DIR"]))
    try:
        run_cli(*argv)
    except CommandError as e:
        text = str(e)
        argparse_error = text.startswith("Error: ")  # exits 2 on a real command line
        assert e.returncode == 2 or argparse_error, (argv, e.returncode, text)
        assert "Traceback" not in text
        assert "\n" not in text.strip(), (argv, text)
        low = text.lower()
        assert any(f.lower() in low for f in fields), (argv, text, fields)
        assert _rows() == rows, argv
        assert _files(world, Path(os.environ["PBSWEB_DATA_DIR"])) == files, argv
        return False
    return True


def _cases(w):
    """command -> (argv builder from one hostile value, field names that may appear in the message).

    Names that must be new are unique per example, so an accepted example does not turn the
    next one into an "already exists" error."""
    src = str(w / "src")
    n = _Unique()
    return {
        "datastore create name": (lambda v: ["datastore", "create", v, str(w / n("new"))], ["name"]),
        "datastore create path": (lambda v: ["datastore", "create", n("new"), v], ["path"]),
        "datastore create schedule": (lambda v: ["datastore", "create", n("new"), str(w / n("p")),
                                                 "--gc-schedule", v], ["schedule"]),
        "datastore create comment": (lambda v: ["datastore", "create", n("new"), str(w / n("p")), "--comment", v],
                                     ["comment"]),
        "datastore remove": (lambda v: ["datastore", "remove", v], ["name", "store", "datastore"]),
        "remote create id": (lambda v: ["remote", "create", v, "--endpoint", "https://s3.example.com",
                                        "--bucket", "bucket1", "--region", "us-east-1", "--access-key", "AK",
                                        "--secret-key", "SK"], ["id"]),
        "remote create option": (lambda v: ["remote", "create", n("newremote"), "--endpoint", v, "--bucket", v,
                                            "--region", "us-east-1", "--access-key", "AK", "--secret-key", "SK"],
                                 ["endpoint", "bucket"]),
        "remote update": (lambda v: ["remote", "update", "remote1", "--region", v, "--min-storage-days", "1"],
                          ["region"]),
        "remote update days": (lambda v: ["remote", "update", "remote1", "--min-storage-days", v],
                               ["min-storage-days"]),
        "remote update fingerprint": (lambda v: ["remote", "update", "remote1", "--fingerprint", v],
                                      ["fingerprint"]),
        "remote update path-style": (lambda v: ["remote", "update", "remote1", "--path-style", v], ["path-style"]),
        "remote update ca-bundle": (lambda v: ["remote", "update", "remote1", "--ca-bundle", v],
                                    ["ca-bundle", "ca bundle"]),
        "remote show": (lambda v: ["remote", "show", v], ["id", "remote"]),
        "remote remove": (lambda v: ["remote", "remove", v], ["id", "remote"]),
        "sync-job create id": (lambda v: ["sync-job", "create", v, "--store", "store1", "--remote", "remote1",
                                          "--remote-store", "p1"], ["id"]),
        "sync-job create store": (lambda v: ["sync-job", "create", n("job"), "--store", v, "--remote", "remote1"],
                                  ["store"]),
        "sync-job create remote-store": (lambda v: ["sync-job", "create", n("job"), "--store", "store1", "--remote",
                                                    "remote1", "--remote-store", v], ["remote-store"]),
        "sync-job create schedule": (lambda v: ["sync-job", "create", n("job"), "--store", "store1", "--remote",
                                                "remote1", "--schedule", v], ["schedule"]),
        "sync-job create rate": (lambda v: ["sync-job", "create", n("job"), "--store", "store1", "--remote",
                                            "remote1", "--rate-out", v], ["rate-out"]),
        "sync-job create ns": (lambda v: ["sync-job", "create", n("job"), "--store", "store1", "--remote",
                                          "remote1", "--ns", v], ["ns"]),
        "sync-job create numbers": (lambda v: ["sync-job", "create", n("job"), "--store", "store1", "--remote",
                                               "remote1", "--max-depth", v, "--transfer-last", "1"], ["max-depth"]),
        "sync-job create bool": (lambda v: ["sync-job", "create", n("job"), "--store", "store1", "--remote",
                                            "remote1", "--remove-vanished", v], ["remove-vanished"]),
        "sync-job run": (lambda v: ["sync-job", "run", v], ["id"]),
        "traffic-control create name": (lambda v: ["traffic-control", "create", v, "--rate-out", "10MiB"],
                                        ["name"]),
        "traffic-control create rate": (lambda v: ["traffic-control", "create", n("rule"), "--rate-out", v],
                                        ["rate-out"]),
        "traffic-control create timeframe": (lambda v: ["traffic-control", "create", n("rule"), "--rate-out",
                                                        "1MiB", "--timeframe", v], ["timeframe"]),
        "prune keep": (lambda v: ["prune", "store1", "--keep-last", v], ["keep-last"]),
        "prune ns": (lambda v: ["prune", "store1", "--keep-last", "1", "--ns", v], ["ns"]),
        "prune store": (lambda v: ["prune", v, "--keep-last", "1"], ["store"]),
        "prune max-depth": (lambda v: ["prune", "store1", "--keep-last", "1", "--max-depth", v], ["max-depth"]),
        "backup id": (lambda v: ["backup", "store1", "--id", v, f"root.tar:{src}"], ["id"]),
        "backup type": (lambda v: ["backup", "store1", "--type", v, "--id", n("h"), f"root.tar:{src}"], ["type"]),
        "backup ns": (lambda v: ["backup", "store1", "--ns", v, "--id", n("h"), f"root.tar:{src}"], ["ns"]),
        "backup archive": (lambda v: ["backup", "store1", "--id", n("h"), f"{v}:{src}"], ["archive", "name"]),
        "backup source": (lambda v: ["backup", "store1", "--id", n("h"), f"root.tar:{v}"], ["path", "archive",
                                                                                       "source"]),
        "backup time": (lambda v: ["backup", "store1", "--id", n("h"), "--backup-time", v, f"root.tar:{src}"],
                        ["backup-time"]),
        "backup keyfile": (lambda v: ["backup", "store1", "--id", n("h"), "--keyfile", v, f"root.tar:{src}"],
                           ["keyfile"]),
        "snapshots ns": (lambda v: ["snapshots", "store1", "--ns", v], ["ns"]),
        "snapshots store": (lambda v: ["snapshots", v], ["store"]),
        "restore snapshot": (lambda v: ["restore", "store1", v, "root.tar", str(w / "restored")], ["snapshot"]),
        "restore archive": (lambda v: ["restore", "store1", "host/h1/2026-01-01T00:00:00Z", v,
                                       str(w / "restored")], ["snapshot", "archive"]),
        "catalog rebuild": (lambda v: ["catalog", "rebuild", "store1", v], ["snapshot"]),
        "verify snapshot": (lambda v: ["verify", "store1", v], ["snapshot"]),
        "verify outdated": (lambda v: ["verify", "store1", "--outdated-after", v], ["outdated-after"]),
        "verify ns": (lambda v: ["verify", "store1", "--ns", v], ["ns"]),
        "verify ignore": (lambda v: ["verify", "store1", "--ignore-verified", v], ["ignore-verified"]),
        "gc start": (lambda v: ["garbage-collection", "start", v], ["store"]),
        "gc status": (lambda v: ["garbage-collection", "status", v], ["store"]),
        "key create kdf": (lambda v: ["key", "create", str(w / n("k")), "--kdf", v], ["kdf"]),
        "key show": (lambda v: ["key", "show", v], ["file", "key"]),
        "remote test": (lambda v: ["remote", "test", v], ["id", "remote"]),
        "remote-content id": (lambda v: ["remote-content", v], ["id", "remote"]),
        "remote-content store": (lambda v: ["remote-content", "remote1", "--store", v], ["store", "remote"]),
        "remote-restore id": (lambda v: ["remote-restore", v, "pbs", "host/h1/2026-01-01T00:00:00Z", "root.tar",
                                         str(w / n("restored"))], ["id", "remote"]),
        "remote-restore snapshot": (lambda v: ["remote-restore", "remote1", "pbs", v, "root.tar",
                                               str(w / n("restored"))], ["snapshot"]),
        "drill run remote": (lambda v: ["drill", "run", v], ["remote"]),
        "drill run sample": (lambda v: ["drill", "run", "remote1", "--sample", v], ["sample", "remote"]),
        "drill run seed": (lambda v: ["drill", "run", "remote1", "--seed", v], ["seed", "remote"]),
        "drill create id": (lambda v: ["drill", "create", v, "--remote", "remote1"], ["id"]),
        "drill create remote": (lambda v: ["drill", "create", n("drill"), "--remote", v], ["remote"]),
        "drill create store": (lambda v: ["drill", "create", n("drill"), "--remote", "remote1", "--store", v],
                               ["store"]),
        "drill create sample": (lambda v: ["drill", "create", n("drill"), "--remote", "remote1", "--sample", v],
                                ["sample"]),
        "drill create schedule": (lambda v: ["drill", "create", n("drill"), "--remote", "remote1", "--schedule", v],
                                  ["schedule"]),
        "drill create comment": (lambda v: ["drill", "create", n("drill"), "--remote", "remote1", "--comment", v],
                                 ["comment"]),
        "drill remove": (lambda v: ["drill", "remove", v], ["id", "drill"]),
        "task log": (lambda v: ["task", "log", v], ["upid"]),
        "task stop": (lambda v: ["task", "stop", v], ["upid"]),
    }


class _Unique:
    def __init__(self):
        self.count = 0

    def __call__(self, prefix):
        self.count += 1
        return f"{prefix}{self.count}"


CASE_NAMES = sorted(_cases(Path("/x")))


@pytest.mark.parametrize("case", CASE_NAMES)
def test_bad_argument(case, world, monkeypatch):
    monkeypatch.setenv("PBSWEB_KEY_PASSPHRASE", "a passphrase of length")
    build, fields = _cases(world)[case]

    @FUZZ
    @given(value=BAD)
    def run(value):
        if case == "backup source" and os.path.exists(value.replace("\x00", "") or "."):
            value = str(world / "src")  # backing up a real directory such as / is not bad input (and huge)
        if case == "datastore create path" and value.startswith("/") and not os.path.exists(value.replace("\x00", "")):
            value = str(world) + value  # a new absolute path would really be created: keep it in the test dir
        check_bad(world, fields, build(value))

    run()


@pytest.mark.parametrize("argv,field", [
    (["datastore", "create", "ok1", "relative/path"], "path"),
    (["remote", "create", "r!x", "--endpoint", "https://s3.example.com", "--bucket", "bucket1",
      "--region", "us-east-1", "--access-key", "A", "--secret-key", "S"], "id"),
    (["prune", "store1", "--keep-last", "-1"], "keep-last"),
    (["sync-job", "create", "job1", "--store", "nostore", "--remote", "remote1"], "store"),
    (["traffic-control", "create", "rule1", "--rate-out", "fast"], "rate-out"),
])
def test_bad_argument_on_a_real_command_line_exits_2(transactional_db, world, argv, field):
    """A real `manage.py` run: exit code 2, one line on stderr, nothing written."""
    rows, files = _rows(), _files(world)
    env = service_env()
    result = subprocess.run([sys.executable, "manage.py", *argv], cwd=REPO, env=env, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 2, (argv, result.returncode, result.stderr)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and field in lines[0].lower(), result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert _rows() == rows and _files(world) == files


@pytest.mark.parametrize("argv,field", [
    (["remote", "update", "remote1", "--min-storage-days", "99999999999999999999999"], "min-storage-days"),
    (["backup", "store1", "--id", "t1", "--backup-time", "99999999999999999999999", "root.tar:{src}"], "backup-time"),
    (["backup", "store1", "--id", "t1", "root.tar:{src}\x00x"], "archive"),
    (["remote", "update", "remote1", "--ca-bundle", "a\x00b"], "ca-bundle"),
    (["key", "show", "."], "file"),
    (["backup", "store1", "--id", "t1", "--keyfile", "x" * 5000, "root.tar:{src}"], "keyfile"),
])
def test_found_by_fuzzing(world, argv, field):
    """Values hypothesis found that crashed (overflow, NUL bytes, directories as files)."""
    argv = [a.format(src=world / "src") for a in argv]
    assert not check_bad(world, [field], argv)
