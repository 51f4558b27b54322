"""Shared fixtures: real servers on loopback, started once per session.

- s3_server: moto's standalone S3 server (a subprocess) on a free port.
- s3_client / s3_bucket: a boto3 client for it and a fresh bucket per test.
"""
import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import boto3
import pytest
from botocore.config import Config

REPO = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, timeout: float = 15.0, proc=None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited early with code {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


class S3Server:
    """A running moto_server; `url` is its endpoint."""

    def __init__(self, tmpdir: Path):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        moto = shutil.which("moto_server", path=str(VENV_BIN)) or "moto_server"
        env = dict(os.environ)
        self.log_path = tmpdir / "moto.log"
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [moto, "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=self._log, stderr=subprocess.STDOUT, env=env,
        )
        wait_for_port(self.port, proc=self.proc)

    def reset(self) -> None:
        import urllib.request
        urllib.request.urlopen(urllib.request.Request(f"{self.url}/moto-api/reset", method="POST"), timeout=5)

    def set_auth(self, enforce: bool) -> None:
        """Turn moto's IAM enforcement on (every request must be signed by a real IAM key) or off."""
        import urllib.request
        body = b"0" if enforce else b"inf"
        urllib.request.urlopen(urllib.request.Request(f"{self.url}/moto-api/reset-auth", data=body, method="POST"), timeout=5)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self._log.close()


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory):
    server = S3Server(tmp_path_factory.mktemp("moto"))
    yield server
    server.stop()


def make_test_client(endpoint: str, access_key="testing", secret_key="testing", region="us-east-1"):
    return boto3.client(
        "s3", endpoint_url=endpoint, region_name=region,
        aws_access_key_id=access_key, aws_secret_access_key=secret_key,
        config=Config(s3={"addressing_style": "path"}, retries={"total_max_attempts": 1},
                      request_checksum_calculation="when_required",
                      response_checksum_validation="when_required"),
    )


@pytest.fixture
def s3_client(s3_server):
    return make_test_client(s3_server.url)


@pytest.fixture
def s3_bucket(s3_client):
    """A fresh, empty bucket name on the moto server."""
    name = f"test-{uuid.uuid4().hex[:12]}"
    s3_client.create_bucket(Bucket=name)
    return name
