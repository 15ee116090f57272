"""`zoobench baselines run`: train reference methods on a zoo's tasks and write submissions.

The top layer runs it because ``--db`` scores what the baselines wrote into the
leaderboard: `baselines` and `leaderboard` never import each other.
"""

from __future__ import annotations

import json
import sys

from baselines.run import METHODS, PROFILES, applies, run
from benchmark.splits import SPLIT_NAMES
from benchmark.tasks import TASKS, TaskUnavailable
from leaderboard.score import score_submission
from leaderboard.store import add_result, connect
from zoo_builder.errors import UsageError
from zoobench.options import add_json_option


def score_into(path, zoo, db) -> int:
    """Score a written submission into the leaderboard database `db`; returns its row id."""
    conn = connect(db)
    try:
        return add_result(conn, score_submission(path, zoo))[0]
    finally:
        conn.close()


def cmd_baselines_run(args) -> int:
    tasks = TASKS if args.task == "all" else (args.task,)
    methods = METHODS if args.method == "all" else (args.method,)
    written, skipped = [], []
    for t in tasks:
        for m in methods:
            if not applies(t, m):
                if args.task != "all" and args.method != "all":
                    raise UsageError(f"method {m!r} does not handle the {t!r} task")
                continue
            try:
                paths = run(args.zoo, t, m, args.split, tuple(range(args.seeds)), args.out,
                            profile=args.profile)
            except TaskUnavailable as e:
                if args.task != "all":
                    raise
                skipped.append({"task": t, "method": m, "reason": str(e)})
                break
            written += [{"task": t, "method": m, "path": str(p)} for p in paths]
    if args.db:
        for w in written:
            w["stored_as"] = score_into(w["path"], args.zoo, args.db)
    if args.json:
        json.dump({"written": written, "skipped": skipped}, sys.stdout)
        sys.stdout.write("\n")
    else:
        for w in written:
            stored = f"  (leaderboard #{w['stored_as']})" if "stored_as" in w else ""
            print(f"{w['task']:15s} {w['method']:13s} {w['path']}{stored}")
        for s in skipped:
            print(f"{s['task']:15s} skipped: {s['reason']}")
    return 0


def add_commands(sub) -> None:
    """Add ``baselines run`` to the ``zoobench`` parser's subcommands."""
    b = sub.add_parser("baselines", help="run reference methods and write leaderboard submissions")
    bsub = b.add_subparsers(dest="baselines_command", required=True)
    r = bsub.add_parser("run", help="train a method on a task (one submission per seed)")
    r.add_argument("--zoo", required=True, help="zoo directory")
    r.add_argument("--task", required=True, choices=[*TASKS, "all"])
    r.add_argument("--method", required=True, choices=[*METHODS, "all"])
    r.add_argument("--split", default="id", choices=list(SPLIT_NAMES))
    r.add_argument("--seeds", type=int, default=1, help="number of seeds: 0..N-1 (default 1)")
    r.add_argument("--out", required=True, help="directory for the submissions")
    r.add_argument("--profile", default="full", choices=list(PROFILES),
                   help="hyper-parameter profile (default: full; docs/baselines.md)")
    r.add_argument("--db", help="also score every submission into this leaderboard database")
    add_json_option(r)
    r.set_defaults(func=cmd_baselines_run)
