"""Argument types and output helpers shared by the `zoobench` commands."""

from __future__ import annotations

import argparse
import json
import sys

from zoo_builder.devices import parse_address


def add_json_option(parser: argparse.ArgumentParser) -> None:
    """`--json`: the command prints exactly one JSON document on stdout."""
    parser.add_argument("--json", action="store_true", help="print one JSON document")


def emit(args, doc: dict, text: str) -> None:
    """Print `doc` as one JSON document under ``--json``, else `text`."""
    if getattr(args, "json", False):
        json.dump(doc, sys.stdout, indent=2, sort_keys=True, default=str)
        sys.stdout.write("\n")
    else:
        print(text)


def shard(value: str) -> tuple[int, int]:
    try:
        i, n = (int(v) for v in value.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected I/N such as 0/4, got {value!r}") from None
    if not 0 <= i < n:
        raise argparse.ArgumentTypeError(f"expected 0 <= I < N, got {value!r}")
    return i, n


def address(value: str) -> str:
    try:
        parse_address(value)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return value


def int_at_least(value: str, low: int) -> int:
    try:
        n = int(value)
    except ValueError:
        n = None
    if n is None or n < low:
        raise argparse.ArgumentTypeError(f"expected an integer >= {low}, got {value!r}")
    return n


def positive_int(value: str) -> int:
    return int_at_least(value, 1)


def non_negative_int(value: str) -> int:
    return int_at_least(value, 0)
