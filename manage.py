#!/usr/bin/env python3
import os
import sys

# Exit status of a command whose reader went away, as for `ls | head`: the shell's
# 128 + SIGPIPE. Not 0: the output was cut short, and `set -o pipefail` should see it.
EXIT_BROKEN_PIPE = 141


class StdoutUntilPipeCloses:
    """sys.stdout until its reader goes away (`manage.py task list | head -1`); then the rest goes
    to /dev/null and the command still finishes its work: a task it runs is not cut short by a
    closed pipe (its log file keeps every line), and the command exits 141 at the end."""

    def __init__(self, out):
        self._out = out
        self.pipe_closed = False

    def write(self, text):
        try:
            return self._out.write(text)
        except BrokenPipeError:
            self._to_devnull()
            return len(text)

    def flush(self):
        try:
            self._out.flush()
        except BrokenPipeError:
            self._to_devnull()

    def _to_devnull(self):
        self.pipe_closed = True
        os.dup2(os.open(os.devnull, os.O_WRONLY), self._out.fileno())

    def __getattr__(self, name):
        return getattr(self._out, name)


def main():
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "pbsweb.settings")
    from django.core.management import execute_from_command_line
    sys.stdout = stdout = StdoutUntilPipeCloses(sys.stdout)
    try:
        execute_from_command_line(sys.argv)
        stdout.flush()  # a pipe that closed shows here, not as a warning at exit
    except BrokenPipeError:  # written past the wrapper (sys.__stdout__, the raw buffer)
        stdout._to_devnull()
    if stdout.pipe_closed:
        sys.exit(EXIT_BROKEN_PIPE)


if __name__ == "__main__":
    main()
