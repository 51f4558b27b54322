#!/usr/bin/env python3
import os
import sys

# Exit status of a command whose reader went away, as for `ls | head`: the shell's
# 128 + SIGPIPE. Not 0: the output was cut short, and `set -o pipefail` should see it.
EXIT_BROKEN_PIPE = 141


def main():
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "pbsweb.settings")
    from django.core.management import execute_from_command_line
    try:
        execute_from_command_line(sys.argv)
        sys.stdout.flush()  # a pipe that closed shows here, not as a warning at exit
    except BrokenPipeError:
        # The reader closed the pipe (`manage.py task list | head -1`): stop quietly, and
        # point stdout at /dev/null so the interpreter's final flush cannot fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(EXIT_BROKEN_PIPE)


if __name__ == "__main__":
    main()
