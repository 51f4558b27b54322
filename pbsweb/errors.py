"""The one user-facing validation error of every layer above the engines (docs/DESIGN.md).

Views, the JSON API, the command line and the services raise `UserError(field, message)`;
the API answers 400 `{"errors": {field: message}}`, a form shows the message at the field,
the command line prints `field: message` and exits 2.
"""


class UserError(ValueError):
    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field, self.message = field, message


class NotFound(UserError):
    """The object the request names does not exist (the API answers 404)."""

    status = 404


class Conflict(UserError):
    """The change conflicts with the current state, e.g. the object is still in use (the API answers 409)."""

    status = 409


def field_errors(errors: dict[str, str]) -> UserError:
    """One UserError for several fields at once: it names the first; `.errors` holds them all."""
    field, message = next(iter(errors.items()))
    error = UserError(field, message)
    error.errors = dict(errors)
    return error
