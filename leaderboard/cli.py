"""`zoobench leaderboard score|show|html`: score submission files into the database, print the tables.

Registered by `zoobench.cli.build_parser`, which sets up JAX (`zoobench.runtime`) before they run.
The database defaults to ``leaderboard.sqlite`` in the current directory (``--db`` to choose another).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from benchmark.submission import SubmissionError
from leaderboard.html import prediction_details, render_site
from leaderboard.score import score_submission
from leaderboard.store import DEFAULT_DB, add_result, connect, entries
from leaderboard.table import render
from zoo_builder.errors import UsageError
from zoo_builder.storage import load_zoo

EXIT_OK, EXIT_ERROR = 0, 1


def cmd_score(args) -> int:
    zoo = load_zoo(args.zoo)
    tasks: dict = {}
    results, lines = [], []
    conn = connect(args.db)
    try:
        for path in args.files:
            try:
                r = score_submission(path, zoo, seed=args.seed, resamples=args.resamples, tasks=tasks)
            except SubmissionError as e:
                results.append({"path": path, "ok": False, "problems": e.problems, "error": str(e)})
                lines.append(str(e))
                continue
            row_id, new = add_result(conn, r)
            results.append({**r, "ok": True, "id": row_id, "stored": new})
            head = (f"{path}: {r['method']} {r['version']} on {r['task']}/{r['split']}, "
                    f"{'stored as' if new else 'already stored as'} #{row_id}")
            lines.append(head + "".join(f"\n  {k}: {_fmt(m)}" for k, m in r["metrics"].items())
                         + "".join(f"\n  symmetry {k}: {v}" for k, v in r["symmetry"].items()))
    finally:
        conn.close()
    ok = all(r["ok"] for r in results)
    doc = {"db": str(args.db), "ok": ok, "results": results}
    if args.json:
        json.dump(doc, sys.stdout, indent=2, sort_keys=True, allow_nan=False)
        sys.stdout.write("\n")
    else:
        print("\n".join(lines))
    return EXIT_OK if ok else EXIT_ERROR


def _fmt(m: dict) -> str:
    return f"{m['value']} [{m['ci_low']}, {m['ci_high']}] (n={m['n']})"


def cmd_show(args) -> int:
    args.json = args.format == "json"  # so that an error, too, is printed as one JSON document
    if not Path(args.db).is_file():
        raise FileNotFoundError(f"{args.db}: no leaderboard database there; "
                                "`zoobench leaderboard score ... --db PATH` creates it")
    conn = connect(args.db)
    try:
        rows = entries(conn, task=args.task, split=args.split)
    finally:
        conn.close()
    print(render(rows, args.format))
    return EXIT_OK


def cmd_html(args) -> int:
    if not Path(args.db).is_file():
        raise FileNotFoundError(f"{args.db}: no leaderboard database there; "
                                "`zoobench leaderboard score ... --db PATH` creates it")
    if args.submissions and not args.zoo:
        raise UsageError("--submission needs --zoo (the zoo the submissions were scored on)")
    conn = connect(args.db)
    try:
        rows = entries(conn)
    finally:
        conn.close()
    details = prediction_details(args.submissions, args.zoo) if args.submissions else []
    print(render_site(rows, args.out_dir, details))
    return EXIT_OK


def add_commands(sub) -> None:
    """Add the `leaderboard` command group to the top-level subparsers `sub`."""
    lb = sub.add_parser("leaderboard", help="score submissions into a database and show the tables")
    lsub = lb.add_subparsers(dest="leaderboard_command", required=True)

    s = lsub.add_parser("score", help="validate and score submission files store the valid ones")
    s.add_argument("files", nargs="+", metavar="FILE", help="submission files")
    s.add_argument("--zoo", required=True, help="zoo directory the submissions were made for")
    s.add_argument("--db", default=DEFAULT_DB, help=f"SQLite database (default: ./{DEFAULT_DB})")
    s.add_argument("--seed", type=int, default=0, help="bootstrap seed (default: 0)")
    s.add_argument("--resamples", type=positive, default=1000, help="bootstrap resamples (default: 1000)")
    s.add_argument("--json", action="store_true", help="print one JSON document")
    s.set_defaults(func=cmd_score)

    sh = lsub.add_parser("show", help="print the leaderboard tables")
    sh.add_argument("--db", default=DEFAULT_DB, help=f"SQLite database (default: ./{DEFAULT_DB})")
    sh.add_argument("--task", help="only this task")
    sh.add_argument("--split", help="only this split")
    sh.add_argument("--format", choices=["text", "markdown", "json"], default="text",
                    help="table format (default: text); json prints one JSON document")
    sh.set_defaults(func=cmd_show)

    h = lsub.add_parser("html", help="write a static HTML page (tables and PNG plots) to a directory")
    h.add_argument("out_dir", metavar="OUT_DIR", help="directory for index.html and the plots")
    h.add_argument("--db", default=DEFAULT_DB, help=f"SQLite database (default: ./{DEFAULT_DB})")
    h.add_argument("--submission", dest="submissions", action="append", default=[], metavar="FILE",
                   help="a scored submission file whose per-network predictions to plot "
                        "(repeatable; needs --zoo)")
    h.add_argument("--zoo", help="zoo directory the --submission files were made for")
    h.set_defaults(func=cmd_html)


def positive(value: str) -> int:
    try:
        n = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value!r}")
    return n
