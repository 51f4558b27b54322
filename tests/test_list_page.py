"""parse_list_page: a LIST page read from its XML in one pass (docs/DESIGN.md §3, Scale).
The path through a real server is covered by every sync test against moto."""
from datetime import datetime, timezone

from syncjobs.engine.bucket import parse_list_page

NS = "http://s3.amazonaws.com/doc/2006-03-01/"


def test_page_objects_prefixes_and_token():
    body = (f'<?xml version="1.0" encoding="UTF-8"?><ListBucketResult xmlns="{NS}"><Name>b</Name>'
            "<EncodingType>url</EncodingType><IsTruncated>true</IsTruncated>"
            "<Contents><Key>p/a%20b%26c</Key><LastModified>2026-12-01T21:00:00.000Z</LastModified>"
            "<ETag>&quot;0123456789abcdef0123456789abcdef&quot;</ETag><Size>42</Size></Contents>"
            "<Contents><Size>7</Size><ETag>\"x-2\"</ETag><Key>p/z</Key>"
            "<LastModified>Tue, 01 Dec 2026 21:00:01 GMT</LastModified></Contents>"
            "<CommonPrefixes><Prefix>p/dir%2F/</Prefix></CommonPrefixes>"
            "<NextContinuationToken>tok==</NextContinuationToken></ListBucketResult>").encode()
    page = parse_list_page(body)
    assert page.truncated and page.token == "tok=="
    assert page.objects == [
        ("p/a b&c", 42, datetime(2026, 12, 1, 21, 0, tzinfo=timezone.utc), "0123456789abcdef0123456789abcdef"),
        ("p/z", 7, datetime(2026, 12, 1, 21, 0, 1, tzinfo=timezone.utc), "x-2"),
    ]
    assert page.prefixes == ["p/dir//"]


def test_error_document_and_plain_keys():
    assert parse_list_page(b"<Error><Code>InternalError</Code></Error>") is None
    page = parse_list_page(b"<ListBucketResult><IsTruncated>false</IsTruncated>"
                           b"<Contents><Key>a&amp;b%20</Key><Size>1</Size>"
                           b"<LastModified>2026-12-01T21:00:00Z</LastModified></Contents></ListBucketResult>")
    assert not page.truncated and page.token is None
    assert [o[0] for o in page.objects] == ["a&b%20"]  # not URL-encoded: kept as it is


def test_fast_path_reads_what_the_tree_reads():
    from syncjobs.engine.bucket import _parse_page_fast, _parse_page_tree
    contents = "".join(
        f"<Contents><Key>store/.chunks/{i:04x}/k%20{i}&amp;x</Key><LastModified>2026-12-01T21:00:0{i % 3}.000Z"
        f"</LastModified><ETag>&quot;{i:032x}&quot;</ETag><Size>{i}</Size><StorageClass>STANDARD</StorageClass>"
        "</Contents>" for i in range(5))
    body = (f'<?xml version="1.0" encoding="UTF-8"?>\n<ListBucketResult xmlns="{NS}"><Name>b</Name>'
            "<IsTruncated>true</IsTruncated><EncodingType>url</EncodingType>"
            f"<NextContinuationToken>a&amp;b</NextContinuationToken>{contents}</ListBucketResult>\n").encode()
    fast = _parse_page_fast(body)
    assert fast is not None and fast == _parse_page_tree(body)
    assert fast.objects[1][0] == "store/.chunks/0001/k 1&x" and fast.token == "a&b" and fast.truncated
    # anything unusual goes through the tree: a page cut short, a Contents without an ETag
    assert _parse_page_fast(body[:-40]) is None
    assert _parse_page_fast(body.replace(b"<ETag>&quot;00000000000000000000000000000002&quot;</ETag>", b"")) is None
