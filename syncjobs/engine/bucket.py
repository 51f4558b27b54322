"""The S3 operations a sync needs, on one bucket prefix.

Keys are `<prefix>/<datastore-relative path>` (the bare relative path when the
prefix is empty), so the prefix is laid out exactly like a datastore.
Every failure is raised as SyncError naming the object key and the S3 error.
"""
from __future__ import annotations

import base64
import email.utils
import hashlib
import html
import queue
import re
import threading
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from datetime import datetime
from typing import Iterable, Iterator
from urllib.parse import unquote

from botocore.exceptions import (BotoCoreError, ClientError, ConnectionClosedError, IncompleteReadError,
                                 ReadTimeoutError, ResponseStreamingError)

PAGE = 1000  # keys per ListObjectsV2 page and per DeleteObjects batch
# botocore retries a request until its headers arrive; a body cut short after
# that is ours to retry.
BODY_ATTEMPTS = 4
BODY_ERRORS = (ResponseStreamingError, IncompleteReadError, ReadTimeoutError, ConnectionClosedError)


class SyncError(Exception):
    """A sync failure; `key` is the object key involved (if any), `code` the S3 error code."""

    def __init__(self, message: str, *, key: str | None = None, code: str | None = None):
        super().__init__(message)
        self.key = key
        self.code = code


@dataclass(frozen=True)
class ObjectInfo:
    rel: str
    size: int
    last_modified: datetime
    etag: str = ""


# -- fast LIST pages ---------------------------------------------------------------
# botocore turns every object of a ListObjectsV2 page into a dict and parses its
# LastModified with dateutil: ~300 µs per object, 12 minutes for the 2.5 million
# objects of a 10 TB datastore. Bucket._list reads the page's XML itself instead
# (ElementTree, one pass, ~5 µs per object): a before-parse handler, active only
# while Bucket._list calls the client in this thread, parses the 200 answer into
# PAGE_KEY and hands botocore an empty document. Registered under the wildcard
# "before-parse.*.ListObjectsV2", it runs before botocore's check for an error
# inside a 200 answer ("before-parse.s3.*"), which then parses the empty document
# instead of the whole page a second time. A page that is not a ListBucketResult
# (an <Error>) or does not parse (cut short) is left as it is, so that check
# still turns it into a 500 to retry; any other answer is botocore's as before.
PAGE_KEY = "PbswebListPage"
_EMPTY_LIST = b'<?xml version="1.0" encoding="UTF-8"?><ListBucketResult></ListBucketResult>'
_fast_list = threading.local()


@dataclass
class ListPage:
    objects: list[tuple[str, int, datetime, str]]  # (full key, size, last modified, etag)
    prefixes: list[str]       # CommonPrefixes, full keys
    truncated: bool
    token: str | None         # NextContinuationToken


def _timestamp(text: str) -> datetime:
    """S3's ISO 8601 time (2026-12-01T21:00:00.000Z), or the HTTP-date form some servers use.
    (Not botocore.utils.parse_timestamp: importing it loads botocore's HTTP stack, which the
    command line must not pay for, docs/DESIGN.md §1.)"""
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return email.utils.parsedate_to_datetime(text)


_RE_KEY = re.compile(rb"<Key>([^<]*)</Key>")
_RE_SIZE = re.compile(rb"<Size>([^<]*)</Size>")
_RE_MODIFIED = re.compile(rb"<LastModified>([^<]*)</LastModified>")
_RE_ETAG = re.compile(rb"<ETag>([^<]*)</ETag>")
_RE_TRUNCATED = re.compile(rb"<IsTruncated>\s*(true|false)\s*</IsTruncated>")
_RE_TOKEN = re.compile(rb"<NextContinuationToken>([^<]*)</NextContinuationToken>")


def _texts(values: list[bytes]) -> list[str]:
    """XML text contents, decoded and unescaped in one go (XML text cannot hold NUL)."""
    text = b"\0".join(values).decode()
    if "&" in text:
        text = html.unescape(text)
    return text.split("\0") if values else []


def _parse_page_fast(body: bytes) -> ListPage | None:
    """The usual page (objects, no CommonPrefixes, plain tags) with four regular expressions:
    about twice as fast as building the tree. None when the page is anything else: a
    Contents without exactly one Key, Size, LastModified and ETag, CDATA, prefixed tags,
    common prefixes, or a document that does not end (cut short)."""
    head = body[:512]
    if b"<ListBucketResult" not in head or not body.rstrip().endswith(b"</ListBucketResult>") \
            or b"<CommonPrefixes" in body or b"CDATA" in body:
        return None
    keys, sizes = _RE_KEY.findall(body), _RE_SIZE.findall(body)
    modified, etags = _RE_MODIFIED.findall(body), _RE_ETAG.findall(body)
    n = len(keys)
    if not len(sizes) == len(modified) == len(etags) == n or body.count(b"Contents>") != 2 * n:
        return None
    truncated = _RE_TRUNCATED.search(body)
    if truncated is None:
        return None
    token = _RE_TOKEN.search(body)
    names = _texts(keys)
    if b"<EncodingType>url</EncodingType>" in body:
        names = [unquote(k) if "%" in k else k for k in names]
    times: dict[bytes, datetime] = {}
    for m in modified:
        if m not in times:
            times[m] = _timestamp(m.decode())
    tags = [e.replace('"', "") for e in _texts(etags)]
    return ListPage(list(zip(names, map(int, sizes), (times[m] for m in modified), tags)), [],
                    truncated.group(1) == b"true", _texts([token.group(1)])[0] if token else None)


def parse_list_page(body: bytes) -> ListPage | None:
    """A ListObjectsV2 answer's objects (keys in full, URL-decoded when encoded) and prefixes;
    None when it is not a ListBucketResult (an <Error> inside a 200 answer).
    Raises ET.ParseError when the document does not parse (cut short)."""
    page = _parse_page_fast(body)
    return page if page is not None else _parse_page_tree(body)


def _parse_page_tree(body: bytes) -> ListPage | None:
    """parse_list_page for any page, through ElementTree."""
    root = ET.fromstring(body)
    ns = root.tag[:root.tag.index("}") + 1] if root.tag.startswith("{") else ""
    if root.tag[len(ns):] != "ListBucketResult":
        return None
    n = len(ns)
    url = root.findtext(ns + "EncodingType") == "url"
    objects, prefixes = [], []
    truncated, token = False, None
    for el in root:
        tag = el.tag[n:]
        if tag == "Contents":
            key, size, modified, etag = "", 0, "", ""
            for f in el:
                t = f.tag[n:]
                if t == "Key":
                    key = f.text or ""
                elif t == "Size":
                    size = int(f.text)
                elif t == "LastModified":
                    modified = f.text
                elif t == "ETag":
                    etag = (f.text or "").strip('"')
            objects.append((unquote(key) if url else key, size, _timestamp(modified), etag))
        elif tag == "CommonPrefixes":
            p = el.findtext(ns + "Prefix") or ""
            prefixes.append(unquote(p) if url else p)
        elif tag == "IsTruncated":
            truncated = (el.text or "").strip().lower() == "true"
        elif tag == "NextContinuationToken":
            token = el.text
    return ListPage(objects, prefixes, truncated, token)


def _before_parse_list(response_dict, customized_response_dict, **kwargs):
    if not getattr(_fast_list, "on", False) or response_dict.get("status_code") != 200:
        return
    try:
        page = parse_list_page(response_dict["body"])
    except (ET.ParseError, ValueError, TypeError):
        return  # botocore parses it (and says what is wrong)
    if page is None:
        return
    customized_response_dict[PAGE_KEY] = page
    response_dict["body"] = _EMPTY_LIST


def _error_code(exc: Exception) -> tuple[str, str]:
    if isinstance(exc, ClientError):
        err = exc.response.get("Error", {})
        code = str(err.get("Code") or exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", "?"))
        return code, err.get("Message") or str(exc)
    return type(exc).__name__, str(exc)


class Bucket:
    page_size = PAGE  # keys per LIST page and per DeleteObjects batch (tests lower it)

    def __init__(self, client, bucket: str, prefix: str = "", *,
                 skip_if_none_match: bool = False, delete_via_delete_object: bool = False):
        self.client = client
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.skip_if_none_match = skip_if_none_match
        self.delete_via_delete_object = delete_via_delete_object
        client.meta.events.register("before-parse.*.ListObjectsV2", _before_parse_list,
                                    unique_id="pbsweb-fast-list")

    def __repr__(self):
        return f"Bucket({self.bucket}/{self.prefix})"

    # -- keys ---------------------------------------------------------------
    def key(self, rel: str) -> str:
        rel = rel.lstrip("/")
        return f"{self.prefix}/{rel}" if self.prefix else rel

    def rel(self, key: str) -> str:
        return key[len(self.prefix) + 1:] if self.prefix else key

    def _error(self, op: str, rel: str, exc: Exception) -> SyncError:
        key = self.key(rel)
        code, msg = _error_code(exc)
        return SyncError(f"{op} s3://{self.bucket}/{key} failed: {code}: {msg}", key=key, code=code)

    # -- objects ------------------------------------------------------------
    def put(self, rel: str, data: bytes, if_absent: bool = False) -> tuple[bool, str]:
        """Upload an object; returns (written, etag).

        With if_absent, send `If-None-Match: *` (unless the provider quirk
        turns it off); 412 PreconditionFailed means the object is already
        there, which is fine for content-addressed chunks: (False, "").
        """
        resp = self._put(rel, data, if_absent)
        return (True, resp.get("ETag", "").strip('"')) if resp is not None else (False, "")

    def put_locked(self, rel: str, data: bytes, until: datetime, mode: str,
                   if_absent: bool = False) -> tuple[bool, str | None]:
        """Upload an object under Object Lock until `until` (mode GOVERNANCE or COMPLIANCE);
        returns (written, version id). S3 requires Content-MD5 (or a checksum) on such a PUT."""
        try:
            resp = self._put(rel, data, if_absent, ObjectLockMode=mode.upper(), ObjectLockRetainUntilDate=until,
                             ContentMD5=base64.b64encode(hashlib.md5(data, usedforsecurity=False).digest()).decode())
        except SyncError as exc:
            if exc.code == "InvalidRequest" and "objectlock" in str(exc).lower().replace(" ", ""):
                raise SyncError(f"{exc}. The remote locks objects (Object Lock days) but bucket '{self.bucket}' "
                                "has no Object Lock: use a bucket created with Object Lock, or set the remote's "
                                "Object Lock days to 0", key=exc.key, code=exc.code) from exc
            raise
        return (True, resp.get("VersionId")) if resp is not None else (False, None)

    def _put(self, rel: str, data: bytes, if_absent: bool, **extra) -> dict | None:
        """PutObject; None when if_absent and the object is already there (412)."""
        args = dict(Bucket=self.bucket, Key=self.key(rel), Body=data,
                    ContentType="application/octet-stream", **extra)
        if if_absent and not self.skip_if_none_match:
            args["IfNoneMatch"] = "*"
        try:
            return self.client.put_object(**args)
        except ClientError as exc:
            code, _ = _error_code(exc)
            if if_absent and code in ("PreconditionFailed", "412"):
                return None
            raise self._error("PUT", rel, exc) from exc
        except BotoCoreError as exc:
            raise self._error("PUT", rel, exc) from exc

    def extend_lock(self, rel: str, version: str | None, until: datetime, mode: str) -> None:
        """PutObjectRetention: keep this version (the current one when None) locked until `until`."""
        args = dict(Bucket=self.bucket, Key=self.key(rel), Retention={"Mode": mode.upper(), "RetainUntilDate": until})
        if version:
            args["VersionId"] = version
        try:
            self.client.put_object_retention(**args)
        except (ClientError, BotoCoreError) as exc:
            raise self._error("PutObjectRetention", rel, exc) from exc

    def get(self, rel: str, version: str | None = None) -> bytes:
        """The object's bytes (that version of it with `version`)."""
        extra = {"VersionId": version} if version else {}
        for attempt in range(1, BODY_ATTEMPTS + 1):
            try:
                resp = self.client.get_object(Bucket=self.bucket, Key=self.key(rel), **extra)
            except (ClientError, BotoCoreError) as exc:  # botocore already retried these
                raise self._error("GET", rel, exc) from exc
            try:
                return resp["Body"].read()
            except BODY_ERRORS as exc:
                if attempt == BODY_ATTEMPTS:
                    raise self._error("GET", rel, exc) from exc
                time.sleep(0.2 * 2 ** attempt)
            except BotoCoreError as exc:
                raise self._error("GET", rel, exc) from exc

    def get_if_exists(self, rel: str) -> bytes | None:
        try:
            return self.get(rel)
        except SyncError as exc:
            if exc.code in ("NoSuchKey", "404"):
                return None
            raise

    def head(self, rel: str) -> ObjectInfo | None:
        """Size and time of an object, or None when it does not exist."""
        try:
            resp = self.client.head_object(Bucket=self.bucket, Key=self.key(rel))
        except ClientError as exc:
            if _error_code(exc)[0] in ("404", "NoSuchKey", "NotFound"):
                return None
            raise self._error("HEAD", rel, exc) from exc
        except BotoCoreError as exc:
            raise self._error("HEAD", rel, exc) from exc
        return ObjectInfo(rel, resp["ContentLength"], resp["LastModified"], resp.get("ETag", "").strip('"'))

    def list(self, rel_prefix: str = "") -> Iterator[tuple[str, int, datetime]]:
        """Every object under rel_prefix as (rel, size, last_modified), paged."""
        for info in self.list_info(rel_prefix):
            yield info.rel, info.size, info.last_modified

    def list_info(self, rel_prefix: str = "", delimiter: str | None = None) -> Iterator[ObjectInfo]:
        for item in self._list(rel_prefix, delimiter):
            if isinstance(item, ObjectInfo):
                yield item

    def list_dirs(self, rel_prefix: str = "") -> tuple[list[str], list[ObjectInfo]]:
        """One level under rel_prefix (which should end in "/" or be ""):
        (sub-directory rels ending in "/", objects)."""
        dirs, objs = [], []
        for item in self._list(rel_prefix, "/"):
            (objs if isinstance(item, ObjectInfo) else dirs).append(item)
        return dirs, objs

    def count_objects(self, rel_prefix: str) -> tuple[int, bool]:
        """Objects under rel_prefix from one LIST page: (count, whether there are more)."""
        try:
            resp = self.client.list_objects_v2(Bucket=self.bucket, Prefix=self.key(rel_prefix),
                                               MaxKeys=self.page_size)
        except (ClientError, BotoCoreError) as exc:
            raise self._error("LIST", rel_prefix, exc) from exc
        return int(resp.get("KeyCount", len(resp.get("Contents", [])))), bool(resp.get("IsTruncated"))

    def list_pages(self, rel_prefix: str = "") -> Iterator[list[tuple[str, int, datetime, str]]]:
        """Every object under rel_prefix, one LIST page at a time, as (rel, size, last_modified,
        etag) tuples: a full listing of millions of objects without an object per entry.

        The next page is requested by a thread while the caller works on this one, so
        the server's time and ours overlap (pages follow each other: each names the next)."""
        cut = len(self.prefix) + 1 if self.prefix else 0
        pages: queue.Queue = queue.Queue(maxsize=2)
        stop = threading.Event()

        def put(item) -> bool:
            while not stop.is_set():
                try:
                    pages.put(item, timeout=0.2)
                    return True
                except queue.Full:
                    pass
            return False

        def fetch():
            try:
                for page in self._pages(rel_prefix, None):
                    if not put(("page", [(key[cut:], size, modified, etag)
                                         for key, size, modified, etag in page.objects])):
                        return
                put(("end", None))
            except BaseException as exc:  # handed to the caller's thread
                put(("error", exc))

        fetcher = threading.Thread(target=fetch, name="list-pages", daemon=True)
        fetcher.start()
        try:
            while True:
                kind, value = pages.get()
                if kind == "end":
                    return
                if kind == "error":
                    raise value
                yield value
        finally:
            stop.set()
            fetcher.join()

    def _list(self, rel_prefix: str, delimiter: str | None):
        cut = len(self.prefix) + 1 if self.prefix else 0
        for page in self._pages(rel_prefix, delimiter):
            for cp in page.prefixes:
                yield self.rel(cp)
            for key, size, modified, etag in page.objects:
                yield ObjectInfo(key[cut:], size, modified, etag)

    def _pages(self, rel_prefix: str, delimiter: str | None) -> Iterator[ListPage]:
        prefix = self.key(rel_prefix) if rel_prefix else (self.prefix + "/" if self.prefix else "")
        args = dict(Bucket=self.bucket, Prefix=prefix, MaxKeys=self.page_size)
        if delimiter:
            args["Delimiter"] = delimiter
        while True:
            _fast_list.on = True
            try:
                resp = self.client.list_objects_v2(**args)
            except (ClientError, BotoCoreError) as exc:
                raise self._error("LIST", rel_prefix, exc) from exc
            finally:
                _fast_list.on = False
            page = resp.get(PAGE_KEY)
            if page is None:  # botocore parsed it (a page our parser could not read)
                page = ListPage([(o["Key"], o["Size"], o["LastModified"], o.get("ETag", "").strip('"'))
                                 for o in resp.get("Contents", [])],
                                [cp["Prefix"] for cp in resp.get("CommonPrefixes", [])],
                                bool(resp.get("IsTruncated")), resp.get("NextContinuationToken"))
            yield page
            if not page.truncated or not page.token:
                return
            args["ContinuationToken"] = page.token

    def delete_many(self, rels: Iterable[str], versions: dict[str, str] | None = None) -> list[tuple[str, str, str]]:
        """Delete objects; returns the failures as (rel, code, message).

        DeleteObjects in batches of 1000, reading the per-key Errors (HTTP 200
        does not mean every key was deleted); with the provider quirk, one
        DELETE per object. A missing object counts as deleted. With a version
        id in `versions` that version is deleted for good (in a versioned bucket
        a plain delete only hides the object behind a delete marker).
        """
        rels = list(rels)
        versions = versions or {}
        failures: list[tuple[str, str, str]] = []

        def target(rel):
            return {"Key": self.key(rel), **({"VersionId": versions[rel]} if versions.get(rel) else {})}
        if self.delete_via_delete_object:
            for rel in rels:
                try:
                    self.client.delete_object(Bucket=self.bucket, **target(rel))
                except (ClientError, BotoCoreError) as exc:
                    code, msg = _error_code(exc)
                    if code not in ("NoSuchKey", "404"):
                        failures.append((rel, code, msg))
            return failures
        for i in range(0, len(rels), self.page_size):
            batch = rels[i:i + self.page_size]
            try:
                resp = self.client.delete_objects(
                    Bucket=self.bucket,
                    Delete={"Objects": [target(r) for r in batch], "Quiet": True})
            except (ClientError, BotoCoreError) as exc:
                code, msg = _error_code(exc)
                failures.extend((r, code, msg) for r in batch)
                continue
            for err in resp.get("Errors", []):
                failures.append((self.rel(err.get("Key", "")), err.get("Code", "?"), err.get("Message", "")))
        return failures

    def describe_failures(self, failures) -> str:
        shown = "; ".join(f"s3://{self.bucket}/{self.key(r)}: {c}: {m}" for r, c, m in failures[:5])
        more = f" (and {len(failures) - 5} more)" if len(failures) > 5 else ""
        return shown + more
