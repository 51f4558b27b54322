"""URLs of the client protocol (docs/PROTOCOL.md), included under /api2/json/ by pbsweb/urls.py."""
from django.urls import path, re_path

from datastores import protocol as p

SID = r"(?P<sid>[0-9a-f]{32})"
DIGEST = r"(?P<digest>[0-9a-f]{64})"
FILE = r"(?P<filename>[A-Za-z0-9_][A-Za-z0-9._-]*)"

urlpatterns = [
    path("backup/<str:store>/start", p.backup_start),
    re_path(rf"^backup/(?P<store>[^/]+)/{SID}/chunk/{DIGEST}$", p.backup_chunk),
    re_path(rf"^backup/(?P<store>[^/]+)/{SID}/previous/{FILE}$", p.backup_previous),
    re_path(rf"^backup/(?P<store>[^/]+)/{SID}/file/{FILE}$", p.backup_file),
    re_path(rf"^backup/(?P<store>[^/]+)/{SID}/ping$", p.backup_ping),
    re_path(rf"^backup/(?P<store>[^/]+)/{SID}/finish$", p.backup_finish),
    re_path(rf"^(?:backup|reader)/(?P<store>[^/]+)/{SID}/abort$", p.session_abort),
    path("backup/<str:store>/forget", p.forget),
    path("backup/<str:store>/prune", p.prune),
    path("backup/<str:store>/catalog", p.catalog_upload),
    path("reader/<str:store>/start", p.reader_start),
    re_path(rf"^reader/(?P<store>[^/]+)/{SID}/chunk/{DIGEST}$", p.reader_chunk),
    re_path(rf"^reader/(?P<store>[^/]+)/{SID}/file/{FILE}$", p.reader_file),
    re_path(rf"^reader/(?P<store>[^/]+)/{SID}/finish$", p.reader_finish),
    path("reader/<str:store>/groups", p.groups),
    path("reader/<str:store>/snapshots", p.snapshots),
    path("reader/<str:store>/status", p.status),
]
