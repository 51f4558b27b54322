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
