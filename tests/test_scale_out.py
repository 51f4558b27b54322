"""Several worker nodes (docs/DESIGN.md §7): PostgreSQL shared by all, Redis as the broker, and each
datastore's tasks on a queue named after it (PBSWEB_STORE_QUEUE="store-{store}"), consumed only
by the worker on the machine that holds the store's disk.

Two worker "nodes" run as subprocesses with their own data directory and datastore; each store's
garbage collection runs on its node and ends OK, the task history names the executing node; a
client backs up to the store on the second node through that node's web server, which the
console's Show Connection Information names, and restores it byte-identical; a node killed
(SIGKILL) in the middle of a long backup leaves a task that reap_dead_tasks() marks failed
instead of "running" forever.

Needs PostgreSQL on 127.0.0.1:5432 (a fresh database is created and dropped) and Redis."""
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from tests.client_helpers import make_tree, tree_state
from tests.conftest import REPO, VENV_BIN, free_port, port_open, stop_process_group, wait_for_port

PG_URL = os.environ.get("PBSWEB_TEST_PG", "postgres://postgres@127.0.0.1:5432")


def _pg(dbname="postgres"):
    import psycopg
    return psycopg.connect(f"{PG_URL}/{dbname}", autocommit=True, connect_timeout=5)


@pytest.fixture
def pg_database():
    if not port_open(5432):
        pytest.skip("no PostgreSQL on 127.0.0.1:5432: the scale-out test needs one (DATABASE_URL)")
    try:
        import psycopg  # noqa: F401
        conn = _pg()
    except Exception as e:  # noqa: BLE001
        pytest.skip(f"PostgreSQL on 127.0.0.1:5432 does not accept us: {e}")
    name = f"pbsweb_scale_{uuid.uuid4().hex[:10]}"
    conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"{PG_URL}/{name}"
    finally:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.close()


class Node:
    """One machine: its own data dir (and datastore disk), a celery worker for its queues."""

    def __init__(self, name, base: Path, database_url, broker_url, tag, secret_key: bytes):
        self.name = name
        # its data directory and, beside it (a datastore may not lie inside it), its disk
        self.data, self.disk = base / name / "data", base / name / "disk"
        self.data.mkdir(parents=True)
        self.disk.mkdir()
        # every node decrypts the same secrets: they share the secret-encryption key file
        (self.data / "secret.key").write_bytes(secret_key)
        os.chmod(self.data / "secret.key", 0o600)
        self.default_queue = f"pbsweb-{tag}-{name}"
        self.env = dict(os.environ)
        for k in ("PBSWEB_SQLITE_PATH",):
            self.env.pop(k, None)
        self.env.update({"DATABASE_URL": database_url, "CELERY_BROKER_URL": broker_url,
                         "PBSWEB_NODE": name, "PBSWEB_STORE_QUEUE": "store-{store}",
                         "PBSWEB_QUEUE": self.default_queue, "PBSWEB_DATA_DIR": str(self.data),
                         "DJANGO_SETTINGS_MODULE": "pbsweb.settings"})
        # how backup clients reach this node's web server (Show Connection Information names it)
        self.port = free_port()
        self.env.update({"PBSWEB_PORT": str(self.port), "PBSWEB_BIND": "127.0.0.1",
                         "PBSWEB_NODE_ADDRESS": f"127.0.0.1:{self.port}", "PBSWEB_WEB_WORKERS": "1"})
        self.proc = self.web = None
        self.log = self.data / "worker.log"

    def manage(self, *args, check=True, timeout=120):
        result = subprocess.run([sys.executable, "manage.py", *args], cwd=REPO, env=self.env,
                                capture_output=True, text=True, timeout=timeout)
        if check and result.returncode != 0:
            raise AssertionError(f"{self.name}: manage.py {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
        return result

    def shell(self, code: str):
        out = self.manage("shell", "-c", code).stdout.strip().splitlines()
        return json.loads(out[-1])

    def start_worker(self, stores):
        queues = ",".join([f"store-{s}" for s in stores] + [self.default_queue])
        self._logf = open(self.log, "wb")
        self.proc = subprocess.Popen(
            [str(VENV_BIN / "celery"), "-A", "pbsweb", "worker", "--loglevel=info", f"--queues={queues}",
             "--concurrency=1", "--pool=prefork", "--without-gossip", "--without-mingle", "--without-heartbeat",
             f"--hostname={self.name}-{uuid.uuid4().hex[:6]}@%h"],
            cwd=REPO, env=self.env, stdout=self._logf, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 45
        while b" ready." not in self.log.read_bytes():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"worker {self.name} did not start:\n{self.log.read_text()[-3000:]}")
            time.sleep(0.2)

    def start_web(self):
        """gunicorn on this node: it serves the client protocol for the node's own datastores."""
        self._weblog = open(self.data / "gunicorn.log", "wb")
        self.web = subprocess.Popen([str(VENV_BIN / "gunicorn"), "-c", "pbsweb/gunicorn_conf.py", "pbsweb.wsgi"],
                                    cwd=REPO, env=self.env, stdout=self._weblog, stderr=subprocess.STDOUT,
                                    start_new_session=True)
        wait_for_port(self.port, proc=self.web, timeout=60)

    def kill(self):
        """SIGKILL the whole worker (main process and pool children): the machine dies."""
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=15)

    def stop(self):
        if self.proc:
            stop_process_group(self.proc, timeout=20)  # the pool children too
            self._logf.close()
        if self.web:
            stop_process_group(self.web, timeout=20)
            self._weblog.close()


def _task(node, upid):
    return node.shell(
        "import json; from pbsweb.models import Task; t = Task.objects.get(upid=%r); "
        "print(json.dumps({'state': t.state, 'status': t.status, 'node': t.node, 'queue': t.queue}))" % upid)


def _start(node, function, worker_type, worker_id, store, arguments):
    """worker.run() of a store's task, in `node`'s environment (a web node)."""
    return node.shell(
        "import json; from pbsweb.worker import run; "
        f"t = run({function!r}, {worker_type!r}, {worker_id!r}, 'root@pam', {arguments!r}, "
        f"store={store!r}); print(json.dumps(t.upid))")


def _wait(node, upid, states, timeout=90):
    deadline = time.monotonic() + timeout
    while True:
        t = _task(node, upid)
        if t["state"] in states:
            return t
        if time.monotonic() > deadline:
            raise AssertionError(f"task {upid} still {t} after {timeout}s")
        time.sleep(0.5)


def test_two_worker_nodes_each_run_their_stores_tasks(pg_database, redis_url, tmp_path):
    from cryptography.fernet import Fernet
    tag = uuid.uuid4().hex[:6]
    broker = redis_url
    key = Fernet.generate_key()
    web = Node("web", tmp_path, pg_database, broker, tag, key)
    a = Node("node-a", tmp_path, pg_database, broker, tag, key)
    b = Node("node-b", tmp_path, pg_database, broker, tag, key)
    store_a, store_b = f"sa-{tag}", f"sb-{tag}"
    web.manage("migrate", "--noinput", timeout=300)
    web.env["PBSWEB_ADMIN_PASSWORD"] = admin_password = uuid.uuid4().hex
    web.manage("firstrun")
    b.manage("firstrun")       # node-b's own TLS certificate (the admin exists already)
    # each store lives on its node's disk; the configuration is in the shared database
    a.manage("datastore", "create", store_a, str(a.disk / store_a))
    b.manage("datastore", "create", store_b, str(b.disk / store_b))
    try:
        a.start_worker([store_a])
        b.start_worker([store_b])
        # queue_for(store) -> "store-<store>"
        assert web.shell(f"import json; from pbsweb.worker import queue_for; "
                         f"print(json.dumps(queue_for({store_a!r})))") == f"store-{store_a}"

        upid_a = _start(web, "datastores.tasks.garbage_collection", "garbage_collection", store_a, store_a,
                        {"store": store_a})
        upid_b = _start(web, "datastores.tasks.garbage_collection", "garbage_collection", store_b, store_b,
                        {"store": store_b})
        ta, tb = _wait(web, upid_a, ("ok", "warning", "error")), _wait(web, upid_b, ("ok", "warning", "error"))
        assert ta["state"] == "ok" and tb["state"] == "ok", (ta, tb)
        # each ran on the node that holds its disk, and the task history says so
        assert ta["node"] == "node-a" and tb["node"] == "node-b", (ta, tb)
        assert ta["queue"] == f"store-{store_a}" and tb["queue"] == f"store-{store_b}"
        assert "run_task" in a.log.read_text() and "run_task" in b.log.read_text()
        # the task logs are written on the executing node
        assert list((a.data / "tasks").rglob(upid_a)) and not list((b.data / "tasks").rglob(upid_a))
        assert not list((a.data / "tasks").rglob(upid_b))
        assert "TASK OK" in list((b.data / "tasks").rglob(upid_b))[0].read_text()

        _client_backs_up_to_the_node_with_the_store(web, b, store_b, admin_password, tmp_path)

        # node-b dies (SIGKILL) in the middle of a long backup: a 1 TiB sparse disk image
        image = b.disk / "disk.img"
        with open(image, "wb") as f:
            f.truncate(1 << 40)
        upid_long = _start(web, "datastores.tasks.backup", "backup", f"{store_b}:host/big", store_b,
                           {"store": store_b, "backup_type": "host", "backup_id": "big",
                            "archives": [["disk.img", str(image)]]})
        t = _wait(web, upid_long, ("running", "ok", "error"), timeout=60)
        assert t["state"] == "running" and t["node"] == "node-b", t
        time.sleep(1.5)
        b.kill()
        time.sleep(0.5)
        assert _task(web, upid_long)["state"] == "running"  # nobody is left to say otherwise
        # no heartbeat from node-b any more: once it is older than HEARTBEAT_TIMEOUT, the reaper
        # (the scheduler tick on any node) marks the task failed
        reaped = web.shell(
            "import json; from datetime import timedelta; from django.utils import timezone; "
            "from pbsweb import worker; from pbsweb.models import Task; "
            f"Task.objects.filter(upid={upid_long!r}).update(heartbeat=timezone.now() - "
            "timedelta(seconds=worker.HEARTBEAT_TIMEOUT + 1)); "
            "print(json.dumps([t.upid for t in worker.reap_dead_tasks()]))")
        assert upid_long in reaped
        t = _task(web, upid_long)
        assert t["state"] == "error" and "node-b" in t["status"] and "died" in t["status"], t
        # node-a's task is untouched, and node-a still works
        assert _task(web, upid_a)["state"] == "ok"
        upid_a2 = _start(web, "datastores.tasks.garbage_collection", "garbage_collection", store_a, store_a,
                         {"store": store_a})
        assert _wait(web, upid_a2, ("ok", "warning", "error"))["state"] == "ok"
    finally:
        a.stop()
        b.stop()


def _client_backs_up_to_the_node_with_the_store(web, b, store_b, admin_password, tmp_path):
    """Show Connection Information (on the console, node "web") names node-b, which holds store_b;
    pbsweb-client backs up there with exactly that repository and fingerprint, and restores."""
    import re
    b.start_web()
    page = web.shell(
        "import json; from django.contrib.auth import get_user_model; from django.test import Client; "
        "c = Client(); c.force_login(get_user_model().objects.get(username='admin@pbs')); "
        f"r = c.get('/datastore/{store_b}/', HTTP_HOST='127.0.0.1', secure=True); "
        "print(json.dumps(r.content.decode()))")
    node = re.search(r'id="connection-node">([^<]*)<', page).group(1)
    repository = re.search(r'id="connection-repository">([^<]*)<', page).group(1)
    fingerprint = re.search(r'id="connection-fingerprint">([^<]*)<', page).group(1)
    assert node == "node-b" and repository == f"admin@pbs@127.0.0.1:{b.port}:{store_b}", (node, repository)
    assert re.fullmatch(r"([0-9a-f]{2}:){31}[0-9a-f]{2}", fingerprint), fingerprint

    src = tmp_path / "client-src"
    make_tree(src, size=2 << 20)
    cenv = {k: v for k, v in os.environ.items() if not k.startswith(("PBSWEB", "DJANGO", "DATABASE", "CELERY"))}
    cenv.update(PBS_REPOSITORY=repository, PBS_PASSWORD=admin_password, PBS_FINGERPRINT=fingerprint)

    def client(*args):
        r = subprocess.run([sys.executable, "-m", "datastores.client", *map(str, args)], env=cenv, cwd=REPO,
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, (args, r.stdout, r.stderr)
        return r.stdout

    snap = json.loads(client("backup", f"root.tar:{src}", "--backup-id", "client01",
                             "--output-format", "json"))["snapshot"]
    client("restore", snap, "root.tar", tmp_path / "client-restored")
    assert tree_state(tmp_path / "client-restored") == tree_state(src)
    # the snapshot is on node-b's disk, and its session ran as a task on node-b
    assert list((b.disk / store_b / "host" / "client01").iterdir())
    tasks = web.shell("import json; from pbsweb.models import Task; print(json.dumps(list("
                      "Task.objects.filter(worker_type__in=['backup', 'reader'], worker_id__endswith='client01')"
                      ".values_list('worker_type', 'node', 'state'))))")
    assert sorted(map(tuple, tasks)) == [("backup", "node-b", "ok"), ("reader", "node-b", "ok")], tasks
