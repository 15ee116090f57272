"""The `zoobench` command line: every room's commands under one parser.

Every command that reports something takes `--json` and then prints exactly one
JSON document on stdout (progress bars and logs go to stderr).

Errors: a domain error (`zoo_builder.errors.DomainError`: a bad file, config or
option, a zoo a task cannot use, a failed peer) and an OS error that names its
path or a connection that failed are the user's to fix: ``zoobench: error:
MESSAGE`` on stderr (and ``{"error": MESSAGE}`` under ``--json``), exit 1. Any
other exception is a bug and propagates with its traceback. ``zoobench --debug
...`` shows the traceback of domain errors too.
"""

from __future__ import annotations

import argparse
import json
import sys

from leaderboard.cli import add_commands as add_leaderboard_commands
from zoo_builder.errors import DomainError
from zoobench import baselines_command, reproduce, zoo_commands
from zoobench.runtime import set_up

EXIT_OK, EXIT_ERROR, EXIT_USAGE = 0, 1, 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="zoobench", description="Model-zoo benchmark for learning over neural networks.")
    parser.add_argument("--debug", action="store_true",
                        help="show the traceback of an error in your input too (a bad file, config, option)")
    sub = parser.add_subparsers(dest="command", required=True)
    zoo_commands.add_commands(sub)
    add_leaderboard_commands(sub)
    baselines_command.add_commands(sub)
    reproduce.add_commands(sub)
    return parser


def reported(error: DomainError | OSError) -> bool:
    """Whether `error` is the user's to fix (printed as one line), not a bug (shown with its traceback).

    Domain errors are; of OS errors, a missing file, a failed connection and any
    that names its path (permission denied, a directory where a file should be).
    """
    if isinstance(error, DomainError | FileNotFoundError | ConnectionError):
        return True
    return error.filename is not None


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    set_up()
    try:
        return args.func(args)
    except (DomainError, OSError) as e:  # anything else is a bug: its traceback, unchanged
        if args.debug or not reported(e):
            raise
        msg = str(e)
        if getattr(args, "json", False):
            json.dump({"error": msg}, sys.stdout)
            sys.stdout.write("\n")
        print(f"zoobench: error: {msg}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("zoobench: interrupted; run the same command again to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
