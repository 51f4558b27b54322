"""remotes.engine: config validation, provider presets, the S3 client factory
and request counters, against the real moto server and loopback stubs."""
import datetime
import hashlib
import http.server
import ssl
import threading
import time
from pathlib import Path

import pytest
from botocore.exceptions import ClientError, SSLError

from remotes.engine.client import RequestCounters, format_bytes, make_s3_client, request_kind, summary_line
from remotes.engine.config import (RemoteConfig, ValidationError, validate_bucket, validate_config,
                                   validate_endpoint, validate_region, validate_remote_id)
from remotes.engine.providers import PRESETS, detect_provider, preset_endpoint, region_from_endpoint

SECRET = "s3cr3t-KEY-do-not-leak-0123456789"


def remote(endpoint, bucket="bkt", **kw):
    kw.setdefault("access_key", "testing")
    kw.setdefault("secret_key", "testing")
    return RemoteConfig(id="remote1", endpoint=endpoint, bucket=bucket, region=kw.pop("region", "us-east-1"), **kw)


# --- loopback stubs for answers moto cannot give ------------------------------------------

LIST_OK = (b'<?xml version="1.0" encoding="UTF-8"?>'
           b'<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
           b'<Name>bkt</Name><Prefix></Prefix><KeyCount>0</KeyCount><MaxKeys>1</MaxKeys>'
           b'<IsTruncated>false</IsTruncated></ListBucketResult>')


def s3_error_xml(code, message, **extra):
    fields = "".join(f"<{k}>{v}</{k}>" for k, v in extra.items())
    return (f'<?xml version="1.0" encoding="UTF-8"?><Error><Code>{code}</Code>'
            f"<Message>{message}</Message>{fields}<RequestId>4442587FB7D0A2F9</RequestId></Error>").encode()


class StubS3:
    """A tiny HTTP(S) server on loopback; `respond(handler)` returns
    (status, headers, body). Requests are recorded as (method, path, headers)."""

    def __init__(self, respond, tls_context=None):
        self.respond = respond
        self.requests = []
        stub = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def handle_one_request(self):
                try:
                    super().handle_one_request()
                except (ConnectionError, ssl.SSLError):
                    self.close_connection = True

            def _any(self):
                length = int(self.headers.get("Content-Length") or 0)
                self.body = self.rfile.read(length) if length else b""
                stub.requests.append((self.command, self.path, dict(self.headers)))
                status, headers, body = stub.respond(self)
                self.send_response_only(status)
                if "Date" not in headers:
                    self.send_header("Date", self.date_time_string())
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _any

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        if tls_context is not None:
            self.httpd.socket = tls_context.wrap_socket(self.httpd.socket, server_side=True)
        scheme = "https" if tls_context else "http"
        self.url = f"{scheme}://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def stub_factory():
    stubs = []

    def make(respond, tls_context=None):
        stub = StubS3(respond, tls_context)
        stubs.append(stub)
        return stub

    yield make
    for stub in stubs:
        stub.close()


def make_self_signed(tmp: Path):
    """A self-signed certificate for 127.0.0.1; returns (cert_path, key_path, sha256 'aa:bb:…')."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID
    import ipaddress

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "pbsweb test minio")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                                                        x509.DNSName("localhost")]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = tmp / "cert.pem", tmp / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    digest = hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()
    return cert_path, key_path, ":".join(digest[i:i + 2] for i in range(0, 64, 2))


@pytest.fixture
def tls_stub(tmp_path, stub_factory):
    """An HTTPS S3 stub with a self-signed certificate (like a home MinIO)."""
    cert, key, fingerprint = make_self_signed(tmp_path)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    stub = stub_factory(lambda h: (200, {"Content-Type": "application/xml"}, LIST_OK), tls_context=ctx)
    return stub, cert, fingerprint


# --- config ---------------------------------------------------------------------------------

def test_secret_never_in_repr():
    cfg = remote("https://s3.us-west-004.backblazeb2.com", secret_key=SECRET)
    assert SECRET not in repr(cfg) and SECRET not in str(cfg)
    assert "access_key='testing'" in repr(cfg)
    assert SECRET not in repr(make_s3_client(cfg))


@pytest.mark.parametrize("value", ["b2-offsite", "abc", "_x_", "a" * 32, "Wasabi_EU-1"])
def test_valid_remote_ids(value):
    assert validate_remote_id(value) is None


@pytest.mark.parametrize("value", ["ab", "-abc", "a" * 33, "b2 offsite", "b2.offsite", ""])
def test_invalid_remote_ids(value):
    err = validate_remote_id(value)
    assert err == ValidationError("id", "3-32 characters: letters, digits, '_' and '-', not starting with '-'")


@pytest.mark.parametrize("value", [
    "https://s3.us-west-004.backblazeb2.com", "https://s3.{{region}}.wasabisys.com",
    "https://{{bucket}}.s3.{{region}}.amazonaws.com", "http://127.0.0.1:9000", "https://minio.lan:9000/",
    "https://0123456789abcdef0123456789abcdef.r2.cloudflarestorage.com",
])
def test_valid_endpoints(value):
    assert validate_endpoint(value) is None


@pytest.mark.parametrize("value,message", [
    ("s3.us-west-004.backblazeb2.com", "must start with https:// (or http:// for a local test server)"),
    ("ftp://host", "must start with https:// (or http:// for a local test server)"),
    ("https://", "needs a host name, e.g. https://s3.eu-central-1.wasabisys.com"),
    ("https://s3.example.com/bucket", "must be only scheme, host and port: no path or query (the bucket goes in Bucket)"),
    ("https://s3.example.com?x=1", "must be only scheme, host and port: no path or query (the bucket goes in Bucket)"),
    ("https://s3.{{zone}}.example.com", "only the templates {{region}} and {{bucket}} are allowed"),
    ("https://bad_host.example.com", "'bad_host.example.com' is not a valid host name"),
    ("https://s3.example.com:99999", "has an invalid port"),
    ("", "required, e.g. https://s3.us-west-004.backblazeb2.com"),
])
def test_invalid_endpoints(value, message):
    assert validate_endpoint(value) == ValidationError("endpoint", message)


@pytest.mark.parametrize("value", ["pbs-offsite-2026", "abc", "a.b.c", "1bucket", "a" * 63])
def test_valid_buckets(value):
    assert validate_bucket(value) is None


@pytest.mark.parametrize("value,message", [
    ("ab", "must be 3-63 characters long"),
    ("a" * 64, "must be 3-63 characters long"),
    ("My-Bucket", "may contain only lowercase letters, digits, '-' and '.', and must start and end with a letter or digit"),
    ("-bucket", "may contain only lowercase letters, digits, '-' and '.', and must start and end with a letter or digit"),
    ("bucket-", "may contain only lowercase letters, digits, '-' and '.', and must start and end with a letter or digit"),
    ("bu_cket", "may contain only lowercase letters, digits, '-' and '.', and must start and end with a letter or digit"),
    ("a..b", "must not contain '..'"),
    ("192.168.1.10", "must not look like an IP address"),
])
def test_invalid_buckets(value, message):
    assert validate_bucket(value) == ValidationError("bucket", message)


@pytest.mark.parametrize("value", ["us-west-004", "eu-central-1", "auto", "fsn1", "nbg_1"])
def test_valid_regions(value):
    assert validate_region(value) is None


@pytest.mark.parametrize("value", ["", "a", "US-East-1", "-us", "us east"])
def test_invalid_regions(value):
    assert validate_region(value).field == "region"


def test_validate_config_collects_all_errors():
    cfg = RemoteConfig(id="x", endpoint="s3.example.com", bucket="B", region="", access_key="", secret_key="",
                       provider="gcs", tls_fingerprint="ab:cd", read_timeout=0)
    assert [e.field for e in validate_config(cfg)] == [
        "id", "endpoint", "bucket", "region", "tls_fingerprint", "access_key", "secret_key", "provider", "read_timeout"]
    assert validate_config(remote("https://s3.us-west-004.backblazeb2.com")) == []


def test_endpoint_templates():
    cfg = remote("https://s3.{{region}}.backblazeb2.com", region="us-west-004")
    assert cfg.resolved_endpoint() == "https://s3.us-west-004.backblazeb2.com"
    assert not cfg.uses_virtual_host()
    aws = remote("https://{{bucket}}.s3.{{region}}.amazonaws.com", region="eu-central-1")
    assert aws.resolved_endpoint() == "https://s3.eu-central-1.amazonaws.com"
    assert aws.uses_virtual_host()


# --- providers ------------------------------------------------------------------------------

def test_presets():
    assert set(PRESETS) == {"b2", "wasabi", "r2", "minio", "aws", "other"}
    assert preset_endpoint("b2", "us-west-004") == "https://s3.us-west-004.backblazeb2.com"
    assert preset_endpoint("wasabi", "eu-central-1") == "https://s3.eu-central-1.wasabisys.com"
    assert preset_endpoint("aws", "eu-west-1") == "https://s3.eu-west-1.amazonaws.com"
    assert PRESETS["r2"].endpoint_template == "https://<ACCOUNT_ID>.r2.cloudflarestorage.com"
    assert PRESETS["r2"].quirks["region"] == "auto"
    assert PRESETS["b2"].quirks["skip_if_none_match"] is True
    assert PRESETS["wasabi"].quirks["min_storage_days"] == 90
    for cap in ("listBuckets", "listFiles", "readFiles", "writeFiles", "deleteFiles"):
        assert cap in PRESETS["b2"].key_help
    assert "Object Read & Write" in PRESETS["r2"].key_help
    for action in ("s3:ListBucket", "s3:GetObject", "s3:PutObject", "s3:DeleteObject"):
        assert action in PRESETS["aws"].key_help
    # every preset's quirks are RemoteConfig fields, or the remote's request limits (B2's free calls)
    limits = {"daily_cap_class_a", "daily_cap_class_b", "daily_cap_class_c"}
    assert PRESETS["b2"].quirks["daily_cap_class_b"] == PRESETS["b2"].quirks["daily_cap_class_c"] == 2500
    for preset in PRESETS.values():
        remote("https://x.example.com", **{k: v for k, v in preset.quirks.items() if k not in limits})


@pytest.mark.parametrize("endpoint,region", [
    ("https://s3.us-west-004.backblazeb2.com", "us-west-004"),
    ("https://s3.eu-central-003.backblazeb2.com/", "eu-central-003"),
    ("https://s3.eu-central-1.wasabisys.com", "eu-central-1"),
    ("https://0123456789abcdef0123456789abcdef.r2.cloudflarestorage.com", "auto"),
    ("https://s3.eu-west-1.amazonaws.com", "eu-west-1"),
    ("https://s3-eu-west-1.amazonaws.com", "eu-west-1"),
    ("https://mybucket.s3.ap-south-1.amazonaws.com", "ap-south-1"),
    ("https://s3.amazonaws.com", "us-east-1"),
    ("https://minio.example.com:9000", None),
    ("https://s3.{{region}}.backblazeb2.com", None),
])
def test_region_from_endpoint(endpoint, region):
    assert region_from_endpoint(endpoint) == region


def test_detect_provider():
    assert detect_provider("https://s3.us-west-004.backblazeb2.com") == "b2"
    assert detect_provider("https://abc.r2.cloudflarestorage.com") == "r2"
    assert detect_provider("http://127.0.0.1:9000") == "other"


# --- client against moto ------------------------------------------------------------------------

def test_client_roundtrip_and_counters(s3_server, s3_bucket):
    counters = RequestCounters()
    s3 = make_s3_client(remote(s3_server.url, s3_bucket), counters)
    s3.put_object(Bucket=s3_bucket, Key="a", Body=b"x" * 3000)
    s3.put_object(Bucket=s3_bucket, Key="b", Body=b"y" * 1000)
    assert s3.get_object(Bucket=s3_bucket, Key="a")["Body"].read() == b"x" * 3000
    assert s3.head_object(Bucket=s3_bucket, Key="b")["ContentLength"] == 1000
    assert s3.list_objects_v2(Bucket=s3_bucket)["KeyCount"] == 2
    resp = s3.delete_objects(Bucket=s3_bucket, Delete={"Objects": [{"Key": "a"}, {"Key": "b"}, {"Key": "c"}]})
    assert len(resp["Deleted"]) == 3
    s3.delete_object(Bucket=s3_bucket, Key="a")
    snap = counters.snapshot()
    assert {k: snap[k] for k in ("PUT", "LIST", "HEAD", "GET", "DELETE", "delete_keys", "retries", "throttled")} == {
        "PUT": 2, "LIST": 1, "HEAD": 1, "GET": 1, "DELETE": 2, "delete_keys": 3, "retries": 0, "throttled": 0}
    assert snap["requests"] == 7
    assert snap["bytes_up"] > 4000  # two bodies plus the DeleteObjects XML
    assert 3000 < snap["bytes_down"] < 3000 + 4096  # GET body, list and delete XML; not HEAD's length
    assert counters.summary_line().startswith("requests: 2 PUT, 1 LIST, 1 HEAD, 1 GET, 2 DELETE (3 keys); ")


def test_no_checksum_headers_sent(stub_factory):
    stub = stub_factory(lambda h: (200, {"ETag": '"abc"'}, b""))
    make_s3_client(remote(stub.url)).put_object(Bucket="bkt", Key="k", Body=b"data")
    make_s3_client(remote(stub.url, no_checksum_headers=False)).put_object(Bucket="bkt", Key="k", Body=b"data")
    quiet, default = stub.requests[0][2], stub.requests[1][2]
    assert not any(h.lower().startswith("x-amz-checksum") or h.lower() == "x-amz-sdk-checksum-algorithm"
                   for h in quiet)
    assert any(h.lower().startswith("x-amz-checksum") or h.lower() == "x-amz-trailer" for h in default)
    assert stub.requests[0][1] == "/bkt/k"  # path-style
    assert "Credential=testing/" in quiet["Authorization"] and "/us-east-1/s3/aws4_request" in quiet["Authorization"]


def test_counters_merge_and_threads():
    total = RequestCounters()
    parts = [RequestCounters() for _ in range(4)]

    def work(c):
        for _ in range(1000):
            c.add("PUT")
            total.add("GET")

    threads = [threading.Thread(target=work, args=(c,)) for c in parts]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for c in parts:
        total.merge(c)
    total.merge({"LIST": 3, "bytes_up": 1258291, "bytes_down": 4096})
    snap = total.snapshot()
    assert (snap["PUT"], snap["GET"], snap["LIST"]) == (4000, 4000, 3)
    assert total.summary_line() == ("requests: 4000 PUT, 3 LIST, 0 HEAD, 4000 GET, 0 DELETE; "
                                    "1.2 MiB up, 4 KiB down; 0 retries")


def test_summary_line_example():
    snap = {"PUT": 12, "LIST": 3, "HEAD": 1, "GET": 0, "DELETE": 0, "bytes_up": 1258291, "bytes_down": 4096,
            "retries": 0}
    assert summary_line(snap) == "requests: 12 PUT, 3 LIST, 1 HEAD, 0 GET, 0 DELETE; 1.2 MiB up, 4 KiB down; 0 retries"
    assert format_bytes(0) == "0 B" and format_bytes(1536) == "1.5 KiB" and format_bytes(5 * 2**40) == "5 TiB"
    assert request_kind("ListObjectsV2", "GET") == "LIST"
    assert request_kind("DeleteObjects", "POST") == "DELETE"
    assert request_kind("CompleteMultipartUpload", "POST") == "PUT"
    assert request_kind("HeadBucket", "HEAD") == "HEAD"


def test_retries_on_slowdown_are_counted(stub_factory):
    answers = [(503, {}, s3_error_xml("SlowDown", "Please reduce your request rate.")),
               (500, {}, s3_error_xml("InternalError", "We encountered an internal error. Please try again."))]

    def respond(h):
        return answers.pop(0) if answers else (200, {"Content-Type": "application/xml"}, LIST_OK)

    stub = stub_factory(respond)
    counters = RequestCounters()
    t0 = time.monotonic()
    resp = make_s3_client(remote(stub.url), counters).list_objects_v2(Bucket="bkt", MaxKeys=1)
    assert resp["ResponseMetadata"]["RetryAttempts"] == 2
    snap = counters.snapshot()
    assert (snap["LIST"], snap["retries"], snap["throttled"]) == (3, 2, 1)
    assert time.monotonic() - t0 < 10


def test_total_max_attempts_is_exact(stub_factory):
    stub = stub_factory(lambda h: (503, {}, s3_error_xml("SlowDown", "Please reduce your request rate.")))
    counters = RequestCounters()
    with pytest.raises(ClientError) as info:
        make_s3_client(remote(stub.url, max_attempts=2), counters).list_objects_v2(Bucket="bkt")
    assert info.value.response["Error"]["Code"] == "SlowDown"
    assert len(stub.requests) == 2
    assert counters.snapshot()["LIST"] == 2 and counters.snapshot()["throttled"] == 2


def test_wrong_region_is_not_silently_redirected(stub_factory):
    """botocore would re-sign for the region in the error; we want the error."""
    body = s3_error_xml("AuthorizationHeaderMalformed",
                        "The authorization header is malformed; the region 'us-east-1' is wrong; expecting 'eu-central-1'",
                        Region="eu-central-1")

    def respond(h):
        if "/eu-central-1/" in h.headers.get("Authorization", ""):
            return 200, {"Content-Type": "application/xml"}, LIST_OK
        return 400, {"Content-Type": "application/xml"}, body

    stub = stub_factory(respond)
    with pytest.raises(ClientError) as info:
        make_s3_client(remote(stub.url)).list_objects_v2(Bucket="bkt")
    assert info.value.response["Error"]["Code"] == "AuthorizationHeaderMalformed"
    assert len(stub.requests) == 1


# --- TLS: self-signed server, CA bundle, fingerprint pinning -------------------------------

def test_self_signed_rejected_by_default(tls_stub):
    stub, _cert, _fp = tls_stub
    with pytest.raises(SSLError):
        make_s3_client(remote(stub.url, max_attempts=1)).list_objects_v2(Bucket="bkt")


def test_ca_bundle_trusts_self_signed(tls_stub):
    stub, cert, _fp = tls_stub
    resp = make_s3_client(remote(stub.url, ca_bundle=str(cert))).list_objects_v2(Bucket="bkt")
    assert resp["KeyCount"] == 0


def test_fingerprint_pinning(tls_stub):
    stub, _cert, fp = tls_stub
    assert make_s3_client(remote(stub.url, tls_fingerprint=fp)).list_objects_v2(Bucket="bkt")["KeyCount"] == 0
    assert make_s3_client(remote(stub.url, tls_fingerprint=fp.upper())).list_objects_v2(Bucket="bkt")["KeyCount"] == 0
    wrong = ":".join(["00"] * 32)
    with pytest.raises(SSLError) as info:
        make_s3_client(remote(stub.url, tls_fingerprint=wrong, max_attempts=1)).list_objects_v2(Bucket="bkt")
    assert "Fingerprints did not match" in str(info.value)
