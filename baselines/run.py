"""Run reference methods on a zoo's tasks and write leaderboard submissions.

`run(zoo, task_name, method, split, seeds, out_dir)` trains `method` once per seed
on the task's train part (model selection on val), predicts its test part and
writes one submission per seed with `leaderboard.submission.write_submission`.
The CLI is ``zoobench baselines run`` (`add_commands`).

The merging task has its own methods (`baselines.weight_matching`): ``naive``
(identity permutations) and ``weight-matching`` (Git Re-Basin); the other
methods do not apply to it, and the merging methods apply to nothing else
(``--task all`` / ``--method all`` run only the pairs that make sense).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path

from baselines import classic, harness, weight_matching

PREDICTION_METHODS = (*classic.METHODS, "ng-gnn")
METHODS = (*PREDICTION_METHODS, *weight_matching.MERGING_METHODS)
TASKS = ("generalization", "classification", "retrieval", "merging")


def applies(task_name: str, method: str) -> bool:
    """Whether `method` handles `task_name` (merging methods <-> the merging task)."""
    return (task_name == "merging") == (method in weight_matching.MERGING_METHODS)


def _fit_predict(method: str, task, seed: int, train_cfg: harness.TrainConfig | None,
                 overrides: dict) -> dict:
    if method in weight_matching.MERGING_METHODS:
        return weight_matching.predict_pairs(task.test, method, seed=seed)
    if method == "ng-gnn":
        cfg = harness.model_config_for(task, **overrides)
        trained, _ = harness.fit(cfg, train_cfg or harness.TrainConfig(progress=False), task, seed=seed)
        return harness.predict(trained, task.test)
    trained, _ = classic.fit(method, task, seed=seed, train_cfg=train_cfg, **overrides)
    return classic.predict(trained, task.test)


def run(zoo, task_name: str, method: str, split: str = "id", seeds: Sequence[int] = (0,), out_dir=".",
        *, train_config: harness.TrainConfig | None = None,
        model_overrides: dict | None = None) -> list[Path]:
    """Write ``OUT/{task}-{split}-{method}-seed{S}.json`` for every seed; returns the paths.

    `train_config` (neural methods) and `model_overrides` (fields of the method's model config,
    e.g. ``hidden`` or statnn-gbt's ``max_iter``) default to each method's defaults.
    """
    from benchmark import load_task  # noqa: PLC0415
    from leaderboard.submission import write_submission  # noqa: PLC0415

    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if task_name not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {task_name!r}")
    if not applies(task_name, method):
        raise ValueError(f"method {method!r} does not handle the {task_name!r} task")
    task = load_task(task_name, zoo, split)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for seed in seeds:
        preds = _fit_predict(method, task, int(seed), train_config, dict(model_overrides or {}))
        path = out_dir / f"{task_name}-{split}-{method}-seed{seed}.json"
        paths.append(write_submission(path, task=task, method=method, version="0",
                                      description=f"zoobench reference baseline {method}, seed {seed}",
                                      predictions=preds))
    return paths


def cmd_baselines_run(args) -> int:
    from benchmark import TaskUnavailable  # noqa: PLC0415

    tasks = TASKS if args.task == "all" else (args.task,)
    methods = METHODS if args.method == "all" else (args.method,)
    written, skipped = [], []
    for t in tasks:
        for m in methods:
            if not applies(t, m):
                if args.task != "all" and args.method != "all":
                    raise ValueError(f"method {m!r} does not handle the {t!r} task")
                continue
            try:
                paths = run(args.zoo, t, m, args.split, tuple(range(args.seeds)), args.out)
            except TaskUnavailable as e:
                if args.task != "all":
                    raise
                skipped.append({"task": t, "method": m, "reason": str(e)})
                break
            written += [{"task": t, "method": m, "path": str(p)} for p in paths]
    if args.json:
        json.dump({"written": written, "skipped": skipped}, sys.stdout)
        sys.stdout.write("\n")
    else:
        for w in written:
            print(f"{w['task']:15s} {w['method']:13s} {w['path']}")
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
    r.add_argument("--split", default="id", choices=["id", "ood-width", "ood-task"])
    r.add_argument("--seeds", type=int, default=1, help="number of seeds: 0..N-1 (default 1)")
    r.add_argument("--out", required=True, help="directory for the submissions")
    r.add_argument("--json", action="store_true", help="print one JSON document")
    r.set_defaults(func=cmd_baselines_run)
