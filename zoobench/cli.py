"""The `zoobench` command line: every room's commands under one parser.

Every command that reports something takes `--json` and then prints exactly one
JSON document on stdout (progress bars and logs go to stderr).
"""

from __future__ import annotations

import argparse
import json
import sys

from leaderboard.cli import add_commands as add_leaderboard_commands
from zoo_builder.config import ConfigError
from zoo_builder.devices import PeerFailed
from zoo_builder.storage import ZooError
from zoobench import baselines_command, reproduce, zoo_commands
from zoobench.runtime import set_up

EXIT_OK, EXIT_ERROR, EXIT_USAGE = 0, 1, 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="zoobench", description="Model-zoo benchmark for learning over neural networks.")
    sub = parser.add_subparsers(dest="command", required=True)
    zoo_commands.add_commands(sub)
    add_leaderboard_commands(sub)
    baselines_command.add_commands(sub)
    reproduce.add_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    set_up()
    try:
        return args.func(args)
    except (ConfigError, ZooError, ValueError, KeyError, FileNotFoundError, ConnectionError, PeerFailed) as e:
        msg = str(e) if not isinstance(e, KeyError) else str(e.args[0])
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
