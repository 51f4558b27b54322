"""A remote's request rate is shared by every process that uses the remote: two worker
processes (a sync job and a drill, say) uploading at once stay, together, within the rate
at the provider (measured at the proxy in front of the S3 server)."""
import subprocess
import sys
import textwrap

from tests.conftest import REPO
from tests.s3proxy import s3proxy  # noqa: F401

UPLOADER = textwrap.dedent("""
    import sys
    from concurrent.futures import ThreadPoolExecutor
    from remotes.engine.client import make_s3_client
    from remotes.engine.config import RemoteConfig
    url, bucket, rate_file, name = sys.argv[1:5]
    cfg = RemoteConfig(id="shared", endpoint=url, bucket=bucket, region="us-east-1", access_key="testing",
                       secret_key="testing", request_rate=10, rate_file=rate_file)
    client = make_s3_client(cfg)
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda i: client.put_object(Bucket=bucket, Key=f"{name}/{i}", Body=b"x"), range(20)))
""")


def test_two_processes_share_the_remotes_request_rate(s3proxy, s3_bucket, tmp_path):  # noqa: F811
    rate_file = tmp_path / "remote-rate" / "shared"
    rate_file.parent.mkdir()
    procs = [subprocess.Popen([sys.executable, "-c", UPLOADER, s3proxy.url, s3_bucket, str(rate_file), name],
                              cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
             for name in ("job", "drill")]
    outputs = [p.communicate(timeout=120)[0].decode() for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    assert s3proxy.counts["PUT"] == 40
    # each process alone would send 10/s: together they must not send 20/s
    assert s3proxy.max_per_second() <= 10
