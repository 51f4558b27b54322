"""The one user-facing validation error of every layer above the engines (docs/DESIGN.md).

Views, the JSON API, the command line and the services raise `UserError(field, message)`;
the API answers 400 `{"errors": {field: message}}`, a form shows the message at the field,
the command line prints `field: message` and exits 2.
"""


class UserError(ValueError):
    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field, self.message = field, message
