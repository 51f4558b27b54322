"""Progress and log reporting for long-running engine work.

The engines call a Reporter; the Django task system subclasses it to write the
task log, store progress and raise TaskAborted when the user stops the task.
"""


class TaskAborted(Exception):
    """Raised by Reporter.check_abort() when the task was asked to stop."""


class Reporter:
    """Base reporter: does nothing. Subclass to log, show progress, abort."""

    def log(self, msg: str) -> None:
        pass

    def warn(self, msg: str) -> None:
        pass

    def progress(self, fraction: float, text: str = "") -> None:
        pass

    def check_abort(self) -> None:
        pass


class ListReporter(Reporter):
    """Collects messages in memory (tests, CLI summaries)."""

    def __init__(self):
        self.lines: list[str] = []
        self.warnings: list[str] = []
        self.last_progress: tuple[float, str] | None = None

    def log(self, msg: str) -> None:
        self.lines.append(msg)

    def warn(self, msg: str) -> None:
        self.warnings.append(msg)
        self.lines.append("WARN: " + msg)

    def progress(self, fraction: float, text: str = "") -> None:
        self.last_progress = (fraction, text)
