"""Each pytest-xdist worker gets its own data directory (PBSWEB_DATA_DIR/gwN).

`make test` runs the suite in two processes (pytest -n 2). Django's settings are
read before any conftest is imported, so this module is loaded as a plugin
(`-p tests.xdist_data_dir` in pytest.ini) to change the environment first. With
one data directory per worker, the workers never share a SQLite database, a
file cache (login throttling) or task logs.
"""
import os
from pathlib import Path

_worker = os.environ.get("PYTEST_XDIST_WORKER")
if _worker and os.environ.get("PBSWEB_DATA_DIR"):
    os.environ["PBSWEB_DATA_DIR"] = str(Path(os.environ["PBSWEB_DATA_DIR"]) / _worker)
