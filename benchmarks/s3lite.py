"""A small S3 server for benchmarks at millions of objects (benchmarks/scale.py).

moto (the server the tests use) keeps ~3.7 KB of Python objects per key and
re-sorts every key of the bucket for each ListObjectsV2 page: at 2.5 million
objects it would need ~9 GB and about a day to list the bucket once, so the
listing would measure moto, not pbsweb. This server holds one sorted list of
keys (plus 24 bytes of size and MD5 each) and answers a page with a bisect.

It speaks path-style S3 over HTTP/1.1 on loopback, enough for a push, a
reconcile and `rclone lsf`: ListObjects (v1 and v2, prefix, delimiter,
max-keys, continuation token / marker / start-after, encoding-type=url),
GetObject, HeadObject, PutObject (If-None-Match: *), DeleteObject,
DeleteObjects, CreateBucket. No auth, no versioning, one bucket.

Objects can be seeded from a datastore directory without uploading them
(`--root` and `--seed`, a file of `rel<TAB>size<TAB>md5` lines): the bucket
then holds the same keys and bytes as after a completed push (GetObject reads
the bytes from the datastore's file).

    python benchmarks/s3lite.py --port P --bucket B [--prefix store --root DIR --seed FILE]

prints "ready" on stdout once it listens. It counts the requests it answers by
kind (GET, PUT, HEAD, LIST, DELETE; DeleteObjects is one DELETE): GET /_counts
returns them as JSON, POST /_counts also sets them to zero (`_counts` is no
valid bucket name), so no counting proxy has to sit in front of it.
"""
from __future__ import annotations

import argparse
import base64
import bisect
import hashlib
import html
import json
import re
import struct
import sys
import threading
import time
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, quote, unquote

_META = struct.Struct("<Q16s")  # size, md5
_NS = "http://s3.amazonaws.com/doc/2006-03-01/"


class Store:
    def __init__(self, bucket: str, prefix: str, root: Path | None):
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.root = root
        self.keys: list[str] = []
        self.meta: list[bytes] = []
        self.bodies: dict[str, bytes] = {}   # objects PUT since start (the seeded ones are read from root)
        self.lock = threading.Lock()
        self.started = time.time()
        self.iso = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(self.started))
        self.http_date = formatdate(self.started, usegmt=True)
        self.counts = dict.fromkeys(("GET", "PUT", "HEAD", "LIST", "DELETE"), 0)

    def count(self, kind: str) -> None:
        with self.lock:
            self.counts[kind] += 1

    def seed(self, path: Path) -> int:
        pairs = []
        pre = self.prefix + "/" if self.prefix else ""
        with open(path) as f:
            for line in f:
                rel, size, md5 = line.rstrip("\n").split("\t")
                pairs.append((pre + rel, _META.pack(int(size), bytes.fromhex(md5))))
        pairs.sort()
        self.keys = [k for k, _ in pairs]
        self.meta = [m for _, m in pairs]
        return len(pairs)

    def find(self, key: str) -> int:
        i = bisect.bisect_left(self.keys, key)
        return i if i < len(self.keys) and self.keys[i] == key else -1

    def body(self, key: str) -> bytes:
        data = self.bodies.get(key)
        if data is not None:
            return data
        pre = self.prefix + "/" if self.prefix else ""
        return (self.root / key[len(pre):]).read_bytes()

    def put(self, key: str, data: bytes, if_absent: bool) -> str | None:
        md5 = hashlib.md5(data).digest()
        with self.lock:
            i = bisect.bisect_left(self.keys, key)
            if i < len(self.keys) and self.keys[i] == key:
                if if_absent:
                    return None
                self.meta[i] = _META.pack(len(data), md5)
            else:
                self.keys.insert(i, key)
                self.meta.insert(i, _META.pack(len(data), md5))
            self.bodies[key] = data
        return md5.hex()

    def delete(self, key: str) -> None:
        with self.lock:
            i = self.find(key)
            if i >= 0:
                del self.keys[i]
                del self.meta[i]
            self.bodies.pop(key, None)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    store: Store

    def log_message(self, *args):
        pass

    def _send(self, status: int, body: bytes = b"", headers: dict | None = None, head: bool = False):
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if body and not head:
            self.wfile.write(body)

    def _error(self, status: int, code: str, msg: str, head: bool = False):
        body = (f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code>'
                f"<Message>{html.escape(msg)}</Message></Error>").encode()
        self._send(status, b"" if head else body, {"Content-Type": "application/xml"}, head)

    def _body(self) -> bytes:
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def _split(self):
        path, _, query = self.path.partition("?")
        parts = unquote(path).lstrip("/").split("/", 1)
        return parts[0], (parts[1] if len(parts) > 1 else ""), parse_qs(query, keep_blank_values=True)

    def do_GET(self, head: bool = False):
        bucket, key, qs = self._split()
        st = self.store
        if bucket == "_counts":
            return self._counts(reset=False)
        st.count("HEAD" if head else "LIST" if not key else "GET")
        if bucket != st.bucket:
            return self._error(404, "NoSuchBucket", bucket, head)
        if not key:
            return self._list(qs)
        i = st.find(key)
        if i < 0:
            return self._error(404, "NoSuchKey", key, head)
        size, md5 = _META.unpack(st.meta[i])
        data = b"" if head else st.body(key)
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("ETag", f'"{md5.hex()}"')
        self.send_header("Last-Modified", st.http_date)
        self.send_header("Content-Length", str(size))
        self.end_headers()
        if not head:
            self.wfile.write(data)

    def do_HEAD(self):
        self.do_GET(head=True)

    def _counts(self, reset: bool):
        with self.store.lock:
            body = json.dumps(self.store.counts).encode()
            if reset:
                self.store.counts = dict.fromkeys(self.store.counts, 0)
        self._send(200, body, {"Content-Type": "application/json"})

    def do_PUT(self):
        bucket, key, _ = self._split()
        self.store.count("PUT")
        data = self._body()
        if not key:
            return self._send(200)  # CreateBucket: the one bucket exists
        etag = self.store.put(key, data, self.headers.get("If-None-Match") == "*")
        if etag is None:
            return self._error(412, "PreconditionFailed", "At least one of the pre-conditions failed")
        self._send(200, headers={"ETag": f'"{etag}"'})

    def do_DELETE(self):
        _, key, _ = self._split()
        self.store.count("DELETE")
        self.store.delete(key)
        self._send(204)

    def do_POST(self):
        bucket, _, qs = self._split()
        body = self._body().decode()
        if bucket == "_counts":
            return self._counts(reset=True)
        self.store.count("DELETE")
        if "delete" not in qs:
            return self._error(400, "InvalidRequest", "only DeleteObjects is supported")
        for k in re.findall(r"<Key>(.*?)</Key>", body):
            self.store.delete(html.unescape(k))
        self._send(200, f'<?xml version="1.0" encoding="UTF-8"?>\n<DeleteResult xmlns="{_NS}"></DeleteResult>'
                   .encode(), {"Content-Type": "application/xml"})

    def _list(self, qs):
        st = self.store

        def arg(name, default=""):
            return qs.get(name, [default])[0]
        v2 = arg("list-type") == "2"
        prefix, delimiter = arg("prefix"), arg("delimiter")
        url = arg("encoding-type") == "url"
        max_keys = max(0, min(int(arg("max-keys", "1000") or 1000), 1000))
        if v2:
            token = arg("continuation-token")
            after = base64.urlsafe_b64decode(token).decode() if token else arg("start-after")
        else:
            after = arg("marker")
        keys = st.keys
        i = bisect.bisect_right(keys, after) if after else 0
        i = max(i, bisect.bisect_left(keys, prefix))
        contents, prefixes, last, truncated = [], [], "", False
        enc = (lambda s: quote(s, safe="/~")) if url else html.escape
        while i < len(keys):
            k = keys[i]
            if not k.startswith(prefix):
                break
            if len(contents) + len(prefixes) >= max_keys:
                truncated = True
                break
            rest = k[len(prefix):]
            if delimiter and delimiter in rest:
                cp = prefix + rest.split(delimiter, 1)[0] + delimiter
                prefixes.append(f"<CommonPrefixes><Prefix>{enc(cp)}</Prefix></CommonPrefixes>")
                last = cp
                i = bisect.bisect_left(keys, cp + "\U0010ffff")
                continue
            size, md5 = _META.unpack(st.meta[i])
            contents.append(f"<Contents><Key>{enc(k)}</Key><LastModified>{st.iso}</LastModified>"
                            f"<ETag>&quot;{md5.hex()}&quot;</ETag><Size>{size}</Size>"
                            "<StorageClass>STANDARD</StorageClass></Contents>")
            last = k
            i += 1
        head = [f'<?xml version="1.0" encoding="UTF-8"?>\n<ListBucketResult xmlns="{_NS}">',
                f"<Name>{st.bucket}</Name><Prefix>{enc(prefix)}</Prefix><MaxKeys>{max_keys}</MaxKeys>",
                f"<IsTruncated>{'true' if truncated else 'false'}</IsTruncated>"]
        if delimiter:
            head.append(f"<Delimiter>{enc(delimiter)}</Delimiter>")
        if url:
            head.append("<EncodingType>url</EncodingType>")
        if v2:
            head.append(f"<KeyCount>{len(contents) + len(prefixes)}</KeyCount>")
            if truncated:
                head.append("<NextContinuationToken>"
                            f"{base64.urlsafe_b64encode(last.encode()).decode()}</NextContinuationToken>")
        else:
            head.append(f"<Marker>{enc(after)}</Marker>")
            if truncated:
                head.append(f"<NextMarker>{enc(last)}</NextMarker>")
        body = "".join(head + contents + prefixes + ["</ListBucketResult>"]).encode()
        self._send(200, body, {"Content-Type": "application/xml"})


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--bucket", required=True)
    ap.add_argument("--prefix", default="")
    ap.add_argument("--root", type=Path, help="datastore directory the seeded objects are read from")
    ap.add_argument("--seed", type=Path, help="rel<TAB>size<TAB>md5 lines of the seeded objects")
    args = ap.parse_args()
    store = Store(args.bucket, args.prefix, args.root)
    if args.seed:
        n = store.seed(args.seed)
        print(f"seeded {n} objects", file=sys.stderr)
    Handler.store = store
    server = ThreadingHTTPServer((args.host, args.port), Handler)
    server.daemon_threads = True
    print("ready", flush=True)
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
