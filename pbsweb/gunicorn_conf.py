"""gunicorn settings for `make run`: HTTPS on port 8007 with the generated certificate, as PBS."""
import os
from pathlib import Path

_data = Path(os.environ.get("PBSWEB_DATA_DIR", Path(__file__).resolve().parent.parent / "var")).resolve()

bind = f"{os.environ.get('PBSWEB_BIND', '0.0.0.0')}:{os.environ.get('PBSWEB_PORT', '8007')}"
workers = int(os.environ.get("PBSWEB_WEB_WORKERS", "2"))
# gthread: keep-alive connections. pbsweb-client streams thousands of chunk uploads over a
# few persistent TLS connections (docs/PROTOCOL.md); the sync worker would close each one
# after a request and pay a TLS handshake per chunk. Idle keep-alive connections wait in the
# poller, not in a thread, so 8 threads serve several parallel uploads plus the console.
worker_class = "gthread"
threads = 8
keepalive = 75
timeout = 60
accesslog = "-"
if os.environ.get("PBSWEB_TLS", "1") == "1":
    certfile = str(_data / "proxy.pem")
    keyfile = str(_data / "proxy.key")


def when_ready(server):
    """`manage.py node register`: record this node's address and certificate fingerprint, so Show
    Connection Information of its datastores names it (several nodes); before the workers fork."""
    try:
        import django
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "pbsweb.settings")
        django.setup()
        from django.core.management import call_command
        from django.db import connections
        try:
            call_command("node", "register", stdout=_Log(server.log))
        finally:
            connections.close_all()
    except Exception as e:  # noqa: BLE001 - the console must start even if the database is not ready
        server.log.warning("could not register this node: %s", e)


class _Log:
    def __init__(self, log):
        self.log = log

    def write(self, text):
        if text.strip():
            self.log.info(text.strip())

    def flush(self):
        pass
