"""Test Connection (remotes.engine.connection_test) against the real moto
server and loopback stubs, asserting the exact messages the user sees."""
import email.utils
import json
import socket
import ssl
import threading
import time
import urllib.request
import uuid

import boto3
import pytest

from remotes.engine.client import RequestCounters
from remotes.engine.config import RemoteConfig
from remotes.engine.connection_test import Message, test_connection
from tests.test_remote_client import (LIST_OK, SECRET, make_self_signed, s3_error_xml,  # noqa: F401
                                      stub_factory)


def remote(endpoint, bucket="bkt", **kw):
    kw.setdefault("access_key", "testing")
    kw.setdefault("secret_key", "testing")
    return RemoteConfig(id="remote1", endpoint=endpoint, bucket=bucket, region=kw.pop("region", "us-east-1"), **kw)


def counts(result):
    snap = result.details["requests"]
    return {k: snap[k] for k in ("LIST", "PUT", "GET", "HEAD", "DELETE") if snap[k]}


def bucket_keys(s3_client, bucket):
    return [o["Key"] for o in s3_client.list_objects_v2(Bucket=bucket).get("Contents", [])]


# --- success and probes on moto ---------------------------------------------------------------

def test_success_with_latency(s3_server, s3_bucket):
    counters = RequestCounters()
    result = test_connection(remote(s3_server.url, s3_bucket), counters=counters)
    assert result.ok is True
    assert 0 < result.latency_ms < 5000
    assert result.messages == [Message(
        "ok", f"Connected to {s3_server.url}: listed bucket '{s3_bucket}' in {result.latency_ms:.0f} ms.")]
    assert result.proposed == {}
    assert counts(result) == {"LIST": 1}
    assert counters.snapshot()["LIST"] == 1
    assert abs(result.details["clock_skew_s"]) < 5
    assert result.details["bucket_empty"] is True


def test_write_probe(s3_server, s3_client, s3_bucket):
    s3_client.put_object(Bucket=s3_bucket, Key="existing", Body=b"keep me")
    result = test_connection(remote(s3_server.url, s3_bucket), write_probe=True)
    assert result.ok
    assert result.texts() == [
        f"Connected to {s3_server.url}: listed bucket '{s3_bucket}' in {result.latency_ms:.0f} ms.",
        "Write probe: uploaded, read back and deleted a test object.",
    ]
    assert counts(result) == {"LIST": 1, "PUT": 1, "GET": 1, "DELETE": 1}
    assert result.details["bucket_empty"] is False
    assert bucket_keys(s3_client, s3_bucket) == ["existing"]


def test_feature_probes_on_moto(s3_server, s3_client, s3_bucket):
    result = test_connection(remote(s3_server.url, s3_bucket), write_probe=True, probe_features=True)
    assert result.ok
    assert result.texts()[1:] == [
        "Write probe: uploaded, read back and deleted a test object.",
        "Addressing: path style works; virtual-host style is not possible with an IP address or localhost as Endpoint.",
        "Default checksum headers: accepted.",
        "Conditional PUT (If-None-Match: *): supported.",
        "DeleteObjects (batch delete): supported.",
        "Bucket versioning: off.",
        "Object Lock: not enabled.",
        "Lifecycle rules: none.",
    ]
    assert result.proposed == {}
    assert result.details["features"] == {
        "other_addressing": None, "checksum_headers": True, "if_none_match": True, "delete_objects": True,
        "versioning": "Off", "object_lock": False, "archive_rules": []}
    # list; write probe PUT+GET+DELETE; 2 conditional PUTs, checksum PUT, delete-probe PUT;
    # one DeleteObjects for the three probe objects; versioning, object-lock and lifecycle GETs
    assert counts(result) == {"LIST": 1, "PUT": 5, "GET": 4, "DELETE": 2}
    assert result.details["requests"]["delete_keys"] == 3
    assert result.details["requests"]["retries"] == 0
    assert bucket_keys(s3_client, s3_bucket) == []


def test_feature_probes_propose_turning_quirks_off(s3_server, s3_client, s3_bucket):
    s3_client.put_bucket_versioning(Bucket=s3_bucket, VersioningConfiguration={"Status": "Enabled"})
    cfg = remote(s3_server.url, s3_bucket, skip_if_none_match=True, delete_via_delete_object=True)
    result = test_connection(cfg, probe_features=True)
    assert result.proposed == {"skip_if_none_match": False, "delete_via_delete_object": False}
    assert ("info", "Conditional PUT (If-None-Match: *): supported; turn off 'Skip If-None-Match header' "
                    "so chunks are never overwritten.") in [(m.level, m.text) for m in result.messages]
    assert ("warning", "Bucket versioning: enabled. Deleted chunks stay stored (and billed) as old versions "
                       "until a lifecycle rule expires them.") in [(m.level, m.text) for m in result.messages]
    assert bucket_keys(s3_client, s3_bucket) == []


# --- failures on moto -------------------------------------------------------------------------

def test_missing_bucket(s3_server):
    result = test_connection(remote(s3_server.url, "no-such-bucket-4711"))
    assert result.ok is False
    assert result.messages == [Message(
        "error", f"Bucket 'no-such-bucket-4711' does not exist at {s3_server.url}: create it or fix Bucket.")]
    assert counts(result) == {"LIST": 1}


@pytest.fixture
def iam_users(s3_server, s3_bucket):
    """IAM users on moto, made while auth is off: 'putonly' may only PutObject,
    'listonly' may only ListBucket. Yields {name: (access key, secret)}."""
    iam = boto3.client("iam", endpoint_url=s3_server.url, region_name="us-east-1",
                       aws_access_key_id="testing", aws_secret_access_key="testing")
    policies = {
        "putonly": {"Effect": "Allow", "Action": "s3:PutObject", "Resource": f"arn:aws:s3:::{s3_bucket}/*"},
        "listonly": {"Effect": "Allow", "Action": "s3:ListBucket", "Resource": f"arn:aws:s3:::{s3_bucket}"},
    }
    users = {}
    for name, statement in policies.items():
        user = f"{name}-{uuid.uuid4().hex[:8]}"
        iam.create_user(UserName=user)
        iam.put_user_policy(UserName=user, PolicyName="p",
                            PolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": [statement]}))
        key = iam.create_access_key(UserName=user)["AccessKey"]
        users[name] = (key["AccessKeyId"], key["SecretAccessKey"])
    yield users


def set_moto_auth(server, enforce: bool) -> None:
    """Like conftest's S3Server.set_auth, but with a text/plain body: urllib's
    default form Content-Type leaves moto's request.data empty (HTTP 500)."""
    req = urllib.request.Request(f"{server.url}/moto-api/reset-auth", data=b"0" if enforce else b"inf",
                                 method="POST", headers={"Content-Type": "text/plain"})
    urllib.request.urlopen(req, timeout=5).read()


@pytest.fixture
def auth_enforced(s3_server):
    set_moto_auth(s3_server, True)
    try:
        yield
    finally:
        set_moto_auth(s3_server, False)


def test_wrong_secret(s3_server, s3_bucket, iam_users, auth_enforced):
    access_key, _secret = iam_users["listonly"]
    result = test_connection(remote(s3_server.url, s3_bucket, access_key=access_key, secret_key=SECRET))
    assert result.ok is False
    assert result.texts() == [
        f"Signature mismatch: the Secret Key is wrong for Access Key '{access_key}'. "
        "Re-enter Secret Key exactly as the provider showed it."]
    assert SECRET not in repr(result.to_dict())


def test_unknown_access_key(s3_server, s3_bucket, auth_enforced):
    result = test_connection(remote(s3_server.url, s3_bucket, access_key="AKIAUNKNOWN000000000"))
    assert result.texts() == [
        "The provider does not know Access Key 'AKIAUNKNOWN000000000': check Access Key "
        "(and that Endpoint belongs to the provider that issued it)."]


@pytest.mark.parametrize("provider,help_text", [
    ("b2", "Give the B2 application key the capabilities listBuckets, listFiles, readFiles, writeFiles and "
           "deleteFiles for this bucket, then update Access Key and Secret Key."),
    ("r2", "Use an R2 API token with Object Read & Write permission scoped to bucket '{b}', "
           "then update Access Key and Secret Key."),
    ("aws", "Allow s3:ListBucket on arn:aws:s3:::{b} and s3:GetObject, s3:PutObject, s3:DeleteObject "
            "on arn:aws:s3:::{b}/* in the key's policy."),
])
def test_key_without_list_permission(s3_server, s3_bucket, iam_users, auth_enforced, provider, help_text):
    access_key, secret = iam_users["putonly"]
    result = test_connection(remote(s3_server.url, s3_bucket, access_key=access_key, secret_key=secret,
                                    provider=provider))
    assert result.ok is False
    assert result.texts() == [
        f"Access denied: the key lacks list permission on bucket '{s3_bucket}'. " + help_text.format(b=s3_bucket)]
    assert secret not in result.texts()[0]


def test_write_probe_without_write_permission(s3_server, s3_bucket, iam_users, auth_enforced):
    access_key, secret = iam_users["listonly"]
    result = test_connection(remote(s3_server.url, s3_bucket, access_key=access_key, secret_key=secret),
                             write_probe=True)
    assert result.ok is True  # listing works; the probe's failure is reported
    assert result.messages[1] == Message(
        "error", f"Write probe failed: Access denied: the key lacks write permission on bucket '{s3_bucket}'. "
                 f"Grant the key list, read, write and delete permission on bucket '{s3_bucket}', "
                 "or use another Access Key.")
    assert counts(result) == {"LIST": 1, "PUT": 1}


# --- network failures -------------------------------------------------------------------------

def test_nothing_listening():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    t0 = time.monotonic()
    result = test_connection(remote(f"http://127.0.0.1:{port}"))
    assert result.ok is False
    assert result.texts() == [f"Connection refused: nothing listens at 127.0.0.1:{port}. Check Endpoint (host and port)."]
    assert time.monotonic() - t0 < 5


def test_host_does_not_resolve():
    result = test_connection(remote("http://no-such-host.invalid:9000"))
    assert result.texts() == ["Host name 'no-such-host.invalid' does not resolve: check Endpoint."]


@pytest.fixture
def silent_server():
    """Accepts connections and never answers."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    held, stop = [], threading.Event()

    def accept():
        srv.settimeout(0.1)
        while not stop.is_set():
            try:
                held.append(srv.accept()[0])
            except OSError:
                pass

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield srv.getsockname()[1]
    stop.set()
    thread.join()
    for conn in held:
        conn.close()
    srv.close()


def test_server_never_answers(silent_server):
    t0 = time.monotonic()
    result = test_connection(remote(f"http://127.0.0.1:{silent_server}"), timeout=1)
    elapsed = time.monotonic() - t0
    assert result.ok is False
    assert result.texts() == [
        f"No answer from 127.0.0.1:{silent_server} within 1 s: the server accepted the connection but did not "
        "respond. Check Endpoint (is it an S3 service?) and any proxy."]
    assert elapsed < 5
    assert counts(result) == {"LIST": 1}


# --- answers only a stub can give -------------------------------------------------------------

REGION_XML = s3_error_xml(
    "AuthorizationHeaderMalformed",
    "The authorization header is malformed; the region 'us-east-1' is wrong; expecting 'eu-central-1'",
    Region="eu-central-1")


def test_authorization_header_malformed(stub_factory):
    stub = stub_factory(lambda h: (400, {"Content-Type": "application/xml"}, REGION_XML))
    result = test_connection(remote(stub.url))
    assert result.ok is False
    assert result.texts() == [
        "Wrong region: the provider expects region 'eu-central-1', not 'us-east-1'. Set Region to 'eu-central-1'."]
    assert len(stub.requests) == 1


def test_b2_wrong_region_hint(stub_factory):
    body = s3_error_xml("AuthorizationHeaderMalformed",
                        "The authorization header is malformed; the region 'us-west-1' is wrong; expecting 'us-west-004'")
    stub = stub_factory(lambda h: (400, {"Content-Type": "application/xml"}, body))
    result = test_connection(remote(stub.url, region="us-west-1", provider="b2"))
    assert result.texts() == [
        "Wrong region: the provider expects region 'us-west-004', not 'us-west-1'. Set Region to 'us-west-004'. "
        "Backblaze B2 regions look like us-west-004 (from the bucket's endpoint s3.<region>.backblazeb2.com), "
        "not us-west-1."]


@pytest.mark.parametrize("status,body,headers,expected", [
    (301, s3_error_xml("PermanentRedirect", "The bucket you are attempting to access must be addressed using the "
                       "specified endpoint.", Endpoint="bkt.s3.eu-west-1.amazonaws.com", Bucket="bkt"),
     {"x-amz-bucket-region": "eu-west-1"},
     "Wrong endpoint region: bucket 'bkt' is not served by {url} (PermanentRedirect). The bucket is in region "
     "'eu-west-1': set Region to 'eu-west-1' and Endpoint to that region's endpoint."),
    (403, s3_error_xml("RequestTimeTooSkewed", "The difference between the request time and the current time is "
                       "too large."), {},
     "Clock skew: this server's clock differs too much from the provider's (RequestTimeTooSkewed). "
     "Fix the system time (enable NTP) and try again."),
    (503, s3_error_xml("ServiceUnavailable", "Please try again."), {},
     "The provider answered HTTP 503 (ServiceUnavailable: Please try again.): a provider-side error; try again later."),
    (503, s3_error_xml("SlowDown", "Please reduce your request rate."), {},
     "The provider is throttling requests (SlowDown, HTTP 503): try again later or lower the request rate."),
    (400, s3_error_xml("WeirdError", f"key {SECRET} rejected"), {},
     "S3 error WeirdError (HTTP 400) during ListObjectsV2: key ******** rejected"),
])
def test_provider_error_messages(stub_factory, status, body, headers, expected):
    stub = stub_factory(lambda h: (status, {"Content-Type": "application/xml", **headers}, body))
    result = test_connection(remote(stub.url, secret_key=SECRET))
    assert result.ok is False
    assert result.texts() == [expected.format(url=stub.url)]
    assert len(stub.requests) == 1  # one attempt: the user is waiting


def test_clock_skew_warning(stub_factory):
    def respond(h):  # the provider's clock is two hours ahead
        return 200, {"Content-Type": "application/xml", "Date": email.utils.formatdate(time.time() + 7200.5,
                                                                                       usegmt=True)}, LIST_OK

    result = test_connection(remote(stub_factory(respond).url))
    assert result.ok
    assert abs(result.details["clock_skew_s"] - 7200) < 1.5
    seconds = f"{result.details['clock_skew_s']:.0f}"  # the Date header has whole seconds
    assert result.messages[1] == Message(
        "warning", f"Clock skew: this server's clock is {seconds} s behind the provider's. "
                   "Requests fail once it exceeds 15 minutes; enable NTP.")


def b2_like(h):
    """A provider with B2's old limits: no If-None-Match, no DeleteObjects,
    no default checksum headers."""
    path, headers = h.path, {k.lower(): v for k, v in h.headers.items()}
    xml = {"Content-Type": "application/xml"}
    if h.command == "GET" and "versioning" in path:
        return 200, xml, b'<VersioningConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/"/>'
    if h.command == "GET" and "object-lock" in path:
        return 404, xml, s3_error_xml("ObjectLockConfigurationNotFoundError", "Object Lock configuration does not exist")
    if h.command == "GET" and "lifecycle" in path:
        return 404, xml, s3_error_xml("NoSuchLifecycleConfiguration", "The lifecycle configuration does not exist")
    if h.command == "GET":
        return 200, xml, LIST_OK
    if h.command == "PUT" and "if-none-match" in headers:
        return 501, xml, s3_error_xml("NotImplemented", "A header you provided implies functionality that is not implemented")
    if h.command == "PUT" and any(k.startswith("x-amz-checksum") or k == "x-amz-trailer" for k in headers):
        return 400, xml, s3_error_xml("InvalidArgument", "Unsupported header 'x-amz-checksum-crc32' received")
    if h.command == "PUT":
        return 200, {"ETag": '"d41d8cd98f00b204e9800998ecf8427e"'}, b""
    if h.command == "POST":
        return 501, xml, s3_error_xml("NotImplemented", "DeleteObjects is not implemented")
    if h.command == "DELETE":
        return 204, {}, b""
    return 400, xml, s3_error_xml("InvalidRequest", "unexpected")


def test_feature_probes_propose_quirks(stub_factory):
    stub = stub_factory(b2_like)
    cfg = remote(stub.url, no_checksum_headers=False)
    result = test_connection(cfg, probe_features=True)
    assert result.ok
    assert result.proposed == {"skip_if_none_match": True, "no_checksum_headers": True,
                               "delete_via_delete_object": True}
    assert result.texts()[1:] == [
        "Addressing: path style works; virtual-host style is not possible with an IP address or localhost as Endpoint.",
        "Default checksum headers: rejected (InvalidArgument, HTTP 400): turn on 'No checksum headers'.",
        "Conditional PUT (If-None-Match: *): not supported (NotImplemented, HTTP 501): "
        "turn on 'Skip If-None-Match header'.",
        "DeleteObjects (batch delete): not supported (NotImplemented, HTTP 501): turn on 'Delete via DeleteObject'.",
        "Bucket versioning: off.",
        "Object Lock: not enabled.",
        "Lifecycle rules: none.",
    ]
    # the probe object that was created is deleted one by one after DeleteObjects failed
    deletes = [path for method, path, _ in stub.requests if method == "DELETE"]
    assert len(deletes) == 1 and deletes[0].startswith("/bkt/.pbsweb-connection-test-")


def test_provider_ignoring_if_none_match(stub_factory):
    """A server that answers every PUT with 200 silently overwrites chunks."""
    stub = stub_factory(lambda h: (200, {"Content-Type": "application/xml"}, LIST_OK))
    result = test_connection(remote(stub.url), probe_features=True)
    assert result.proposed == {"skip_if_none_match": True}
    assert Message("warning", "Conditional PUT (If-None-Match: *): not supported (a second PUT overwrote the "
                              "object): turn on 'Skip If-None-Match header'.") in result.messages


def test_virtual_host_needs_dns_name(stub_factory):
    stub = stub_factory(lambda h: (200, {"Content-Type": "application/xml"}, LIST_OK))
    port = stub.url.rsplit(":", 1)[1]
    result = test_connection(remote(f"http://localhost:{port}", path_style=False))
    assert result.texts() == [
        "Host name 'bkt.localhost' does not resolve: check Endpoint. With virtual-host addressing the bucket "
        "is part of the host name; try path-style addressing."]
    assert stub.requests == []


# --- TLS --------------------------------------------------------------------------------------

@pytest.fixture
def tls_stub(tmp_path, stub_factory):
    cert, key, fingerprint = make_self_signed(tmp_path)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    stub = stub_factory(lambda h: (200, {"Content-Type": "application/xml"}, LIST_OK), tls_context=ctx)
    return stub, cert, fingerprint


def test_tls_self_signed_untrusted(tls_stub):
    stub, _cert, _fp = tls_stub
    port = stub.url.rsplit(":", 1)[1]
    result = test_connection(remote(stub.url, provider="minio"))
    assert result.texts() == [
        f"TLS certificate of 127.0.0.1:{port} is not trusted (self-signed certificate). "
        "For a self-signed certificate set CA Certificate or Fingerprint; otherwise check Endpoint."]


def test_tls_fingerprint_and_ca(tls_stub):
    stub, cert, fp = tls_stub
    port = stub.url.rsplit(":", 1)[1]
    assert test_connection(remote(stub.url, tls_fingerprint=fp)).ok
    assert test_connection(remote(stub.url, ca_bundle=str(cert))).ok
    result = test_connection(remote(stub.url, tls_fingerprint=":".join(["ab"] * 32)))
    assert result.texts() == [
        f"TLS fingerprint mismatch: 127.0.0.1:{port} presents a certificate with SHA-256 fingerprint {fp}, "
        "not the configured one. If the certificate was replaced on purpose, update Fingerprint."]


def test_https_to_plain_http_port(stub_factory):
    stub = stub_factory(lambda h: (200, {}, LIST_OK))
    port = stub.url.rsplit(":", 1)[1]
    result = test_connection(remote(f"https://127.0.0.1:{port}"), timeout=2)
    assert result.ok is False
    assert result.texts()[0].startswith(f"TLS handshake with 127.0.0.1:{port} failed (")
    assert result.texts()[0].endswith("): check Endpoint (https:// or http://, and the port).")


# --- input problems never reach the network ---------------------------------------------------

def test_invalid_fields_are_reported_without_requests():
    cfg = RemoteConfig(id="remote1", endpoint="s3.example.com/bkt", bucket="BK", region="us-east-1",
                       access_key="", secret_key="")
    result = test_connection(cfg)
    assert result.ok is False
    assert result.texts() == [
        "Endpoint: must start with https:// (or http:// for a local test server).",
        "Bucket: must be 3-63 characters long.",
        "Access Key: required.",
        "Secret Key: required.",
    ]
    assert result.details["requests"]["requests"] == 0


def test_region_botocore_rejects(s3_server, s3_bucket):
    result = test_connection(remote(s3_server.url, s3_bucket, region="nbg_1"))
    assert result.texts() == [
        "Region 'nbg_1' is not a valid region name for S3 requests: fix Region (e.g. us-west-004, eu-central-1 or auto)."]
