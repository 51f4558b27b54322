"""The client's errors (kept apart from http.py so `--help` need not load ssl)."""


class ClientError(Exception):
    """A failure to show the user (exit 1)."""


class RequestError(ClientError):
    """The server refused a request: its HTTP status and message."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
