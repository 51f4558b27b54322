"""Errors raised by the datastore engine. Messages are meant for users."""


class DatastoreError(Exception):
    """A user-facing error; the message names the object or field at fault."""


class CorruptionError(DatastoreError):
    """Stored data failed a checksum or digest check.

    `object` names what is corrupt: a chunk digest (hex) or a file path.
    """

    def __init__(self, message: str, object: str = ""):
        super().__init__(message)
        self.object = object


class MissingObjectError(CorruptionError):
    """A chunk or file a reader needs is not where it should be (`object` names it)."""


class GroupLockedError(DatastoreError):
    """A backup group is locked by a running backup (docs/PROTOCOL.md §4): it may not be
    pruned or forgotten until the backup ends."""
