"""The main job: build a preset's zoo, run every baseline on every task and split, score, report.

``zoobench reproduce [--preset small] [--out results] [--seeds N]`` runs five
stages, each timed; a stage whose outputs exist and match is skipped, so an
interrupted run continues where it stopped:

1. ``zoo``: `zoo_builder.build.build_zoo` reuses a finished zoo of the same
   config (its files verified) and resumes a partial one;
2. ``tasks``: every task on every split that applies (`benchmark.load_task`);
3. ``baselines``: one submission per (task, split, method, seed) in
   ``OUT/submissions/``; a file that validates against this zoo and split is kept;
4. ``score``: every submission into ``OUT/leaderboard.sqlite``; files already
   stored (same sha256 and zoo) are not scored again;
5. ``report``: ``OUT/leaderboard.md`` (every metric), ``OUT/summary.md`` (headline
   metrics, the README's table), ``OUT/index.html`` with its plots, and
   ``OUT/reproduce.json`` (stage and job timings, machine, versions).

The baselines' hyper-parameters come from a profile per preset
(`PRESET_PROFILE`, `baselines.run.PROFILES`); docs/baselines.md lists them.
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path

import jax
from tqdm.auto import tqdm

from baselines.run import METHODS, applies, epoch_cap, fit_predict, settings_for, submission_name
from benchmark.splits import SplitUnavailable
from benchmark.submission import SubmissionError, validate_submission, write_submission
from benchmark.tasks import TASK_SPLITS, ZOO_TASKS, TaskUnavailable, load_task
from leaderboard.html import prediction_details, render_site, safe_name
from leaderboard.score import score_submission, strict_json
from leaderboard.store import add_result, connect, entries, find_result
from leaderboard.table import group_rows, render
from zoo_builder.build import build_zoo
from zoo_builder.config import load_config, preset_path
from zoo_builder.files import sha256_file, write_json
from zoo_builder.storage import load_zoo
from zoobench.options import positive_int
from zoobench.zoo_commands import draw_inr_gallery

PRESET_PROFILE = {"tiny": "smoke", "small": "fast", "paper": "full"}
# The INR zoo each preset's main job also builds, with its tables beside the first zoo's.
PRESET_INR = {"tiny": "inr-tiny", "small": "inr-small", "paper": "inr-paper"}
DB_NAME = "leaderboard.sqlite"


@dataclasses.dataclass(frozen=True)
class Job:
    """One baseline run: a method trained with one seed on one task and split."""

    task: str
    split: str
    method: str
    seed: int

    @property
    def name(self) -> str:
        return submission_name(self.task, self.split, self.method, self.seed)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def timed(stage: str, timings: dict, fn: Callable, *args):
    """Run one stage, log and record how long it took."""
    log(f"[{stage}] ...")
    t0 = time.perf_counter()
    out = fn(*args)
    timings[stage] = round(time.perf_counter() - t0, 2)
    log(f"[{stage}] done in {timings[stage]:.1f} s")
    return out


# --------------------------------------------------------------------------- stages


def stage_zoo(preset: str, zoo_dir: Path, progress: bool):
    report = build_zoo(load_config(preset_path(preset)), zoo_dir, progress=progress)
    if report.chunks_trained == 0:
        log(f"[zoo] reusing the finished zoo at {zoo_dir} ({report.num_networks} networks)")
    return load_zoo(zoo_dir, verify=False)  # build_zoo has just verified or written every file


def stage_tasks(zoo) -> tuple[dict, dict]:
    """Tasks by (name, split, all_checkpoints) (the scorer's cache key) and why others are unavailable."""
    tasks, unavailable = {}, {}
    for name in ZOO_TASKS[zoo.kind]:  # the tasks that make sense on this kind of zoo
        for split in TASK_SPLITS[name]:
            try:
                tasks[(name, split, False)] = load_task(name, zoo, split)
            except (TaskUnavailable, SplitUnavailable) as e:
                unavailable[f"{name}/{split}"] = str(e)
                log(f"[tasks] {name}/{split} unavailable: {e}")
    return tasks, unavailable


def plan(tasks: dict, seeds: int) -> list[Job]:
    """Every (task, split, method, seed) whose method handles the task, in a fixed order."""
    return [Job(name, split, method, seed) for (name, split, _) in tasks
            for method in METHODS if applies(name, method) for seed in range(seeds)]


def _existing_is_valid(path: Path, task) -> bool:
    if not path.is_file():
        return False
    try:
        validate_submission(path, task=task)
    except (SubmissionError, OSError, ValueError):
        return False
    return True


def _history_path(submission: Path) -> Path:
    """Where a run's learning curve is kept beside its submission (a kept submission keeps its curve)."""
    return submission.with_suffix(".history.json")


def _read_history(submission: Path) -> list[dict]:
    try:
        return json.loads(_history_path(submission).read_text(encoding="utf-8"))["history"]
    except (OSError, ValueError, KeyError, TypeError):
        return []


def _curve(history: list[dict], method: str, profile: str) -> dict:
    """A run's learning curve for reproduce.json and, for epoch-trained methods, whether early
    stopping ended it before the profile's epoch cap."""
    out: dict = {"history": history}
    epochs = sum("epoch" in h for h in history)
    if epochs:
        cap = epoch_cap(method, profile)
        out.update(epochs=epochs, epoch_cap=cap, stopped_early=epochs < cap)
    return out


def stage_baselines(jobs: list[Job], tasks: dict, sub_dir: Path, profile: str, progress: bool) -> dict:
    """Write every job's submission (kept when already valid); returns per-job {seconds | skipped | error}."""
    sub_dir.mkdir(parents=True, exist_ok=True)
    record, previous = {}, None
    bar = tqdm(jobs, desc="baselines", unit="run", disable=not progress, file=sys.stderr)
    for job in bar:
        bar.set_postfix_str(f"{job.task}/{job.split} {job.method} seed {job.seed}")
        task = tasks[(job.task, job.split, False)]
        if previous is not None and previous is not task:
            for part in previous.parts:  # its views are not needed again: keep memory bounded
                part.clear_cache()
        previous = task
        path = sub_dir / job.name
        if _existing_is_valid(path, task):
            record[job.name] = {"skipped": True, **_curve(_read_history(path), job.method, profile)}
            continue
        t0 = time.perf_counter()
        try:
            fitted = fit_predict(job.method, task, job.seed, settings_for(job.method, profile))
            write_submission(path, task=task, method=job.method, version="0", seed=job.seed,
                             description=f"zoobench reference baseline {job.method} ({profile} profile)",
                             predictions=fitted.predictions)
        except Exception as e:  # noqa: BLE001 (one failed run must not lose the others)
            record[job.name] = {"error": f"{type(e).__name__}: {e}"}
            bar.write(f"[baselines] {job.name} failed: {type(e).__name__}: {e}")
            continue
        history = strict_json(fitted.history)
        write_json(_history_path(path), {"history": history})
        seconds = round(time.perf_counter() - t0, 2)
        record[job.name] = {"seconds": seconds, **_curve(history, job.method, profile)}
    bar.close()
    return record


def stage_score(jobs: list[Job], tasks: dict, zoo, sub_dir: Path, db: Path, progress: bool) -> dict:
    """Score every written submission into `db`; files already stored for this zoo are skipped."""
    paths = [sub_dir / j.name for j in jobs if (sub_dir / j.name).is_file()]
    record = {}
    conn = connect(db)
    try:
        for path in tqdm(paths, desc="score", unit="file", disable=not progress, file=sys.stderr):
            stored = find_result(conn, sha256_file(path), zoo.weights_fingerprint)
            if stored is not None:
                record[path.name] = {"skipped": True, "id": stored}
                continue
            t0 = time.perf_counter()
            try:
                result = score_submission(path, zoo, tasks=tasks)
            except SubmissionError as e:
                record[path.name] = {"error": str(e)}
                log(f"[score] {e}")
                continue
            row_id, _ = add_result(conn, result)
            record[path.name] = {"seconds": round(time.perf_counter() - t0, 2), "id": row_id}
    finally:
        conn.close()
    return record


def _run_key(run: ZooRun, name: str) -> str:
    """A job's key in reproduce.json: its file name, under its folder for every zoo but the first."""
    return name if run.sub_dir.name == "submissions" else f"{run.sub_dir.name}/{name}"


def _merged(done: list[ZooRun], field: str) -> dict:
    """One of `ZooRun`'s per-job dicts over every zoo, keyed by `_run_key`."""
    return {_run_key(r, name): value for r in done for name, value in getattr(r, field).items()}


def stage_report(done: list[ZooRun], db: Path, out: Path, header: str) -> str:
    """leaderboard.md, summary.md and index.html (tables, metric bars, seed-0 prediction plots and
    learning curves) over every zoo of the job; returns the markdown."""
    conn = connect(db)
    try:
        # Only these zoos' rows: a database reused across zoos keeps the others, but not in this report.
        fingerprints = {r.zoo.weights_fingerprint for r in done}
        rows = [r for r in entries(conn) if r["zoo_fingerprint"] in fingerprints]
    finally:
        conn.close()
    markdown = header + render(rows, "markdown") + "\n"
    (out / "leaderboard.md").write_text(markdown, encoding="utf-8")
    summaries = [f"## zoo `{r.zoo.name}`\n\n" + summary_markdown(
        [row for row in rows if row["zoo_fingerprint"] == r.zoo.weights_fingerprint]) for r in done]
    (out / "summary.md").write_text(header + "\n".join(summaries), encoding="utf-8")
    details, curves = [], []
    for r in done:
        plotted = [r.sub_dir / j.name for j in r.jobs if j.seed == 0
                   and j.task in ("generalization", "retrieval") and (r.sub_dir / j.name).is_file()]
        details += prediction_details(plotted, r.zoo)
        curves += [{"title": f"{j.method} {j.task}/{j.split} ({r.zoo.name})",
                    "history": r.runs[j.name]["history"]}
                   for j in r.jobs if j.seed == 0 and r.runs.get(j.name, {}).get("history")]
    figures = []
    for r in done:
        if r.zoo.kind == "inr":
            name = f"inr-reconstructions-{safe_name(r.zoo.name)}.png"
            draw_inr_gallery(r.zoo, out / name)
            figures.append({"file": name, "title": f"INR reconstructions ({r.zoo.name})",
                            "caption": "one INR per label: the image it was fitted to (top), the image the "
                                       "INR gives at every pixel (bottom), and its PSNR"})
    render_site(rows, out, details, curves=curves, figures=figures,
                title="zoobench leaderboard: zoos " + ", ".join(r.zoo.name for r in done))
    return markdown


SPLIT_ORDER = ("id", "ood-width", "ood-task")
SUMMARY_METRICS = {
    "generalization": ("test_acc/kendall_tau", "gen_gap/kendall_tau"),
    "classification": ("dataset/accuracy", "optimizer/accuracy"),
    "retrieval": ("mAP", "recall@1"),
    "merging": ("unit_match_acc", "merged_acc"),
    "inr-classification": ("label/accuracy", "label/macro_f1"),
}


def _summary_cell(m: dict | None) -> str:
    if not m or m.get("value") is None:
        return "–"
    if (m.get("seeds") or 1) > 1:
        return f"{m['value']:.3f} ± {m['std']:.3f}"
    return f"{m['value']:.3f}"


def summary_markdown(rows: list[dict]) -> str:
    """One compact table per task: methods × (split, headline metric); mean ± std over seeds.

    A column's split carries its table's qualifiers (`leaderboard.table.group_rows`), e.g.
    "(id, every checkpoint)", so that two item sets of one split stay two columns.
    """
    by_task: dict[str, list[dict]] = {}
    for g in group_rows(rows):
        by_task.setdefault(g["task"], []).append(g)
    parts = []
    for task, metrics in SUMMARY_METRICS.items():
        groups = sorted(by_task.get(task, []), key=lambda g: SPLIT_ORDER.index(g["split"]))
        if not groups:
            continue
        columns = [(g, m) for g in groups for m in metrics]
        methods = sorted({r["method"] for g in groups for r in g["rows"]})
        header = " | ".join(f"{m} ({', '.join([g['split'], *g['qualifiers']])})" for g, m in columns)
        lines = [f"**{task}**", "", f"| method | {header} |", "|---|" + "---|" * len(columns)]
        for method in methods:
            cells = []
            for g, m in columns:
                row = next((r for r in g["rows"] if r["method"] == method), None)
                cells.append(_summary_cell(row["metrics"].get(m) if row else None))
            lines.append(f"| {method} | " + " | ".join(cells) + " |")
        parts.append("\n".join(lines))
    return "\n\n".join(parts) + "\n"


# --------------------------------------------------------------------------- the job


def machine() -> dict:
    return {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(), "python": platform.python_version(), "jax": jax.__version__,
            "devices": [str(d) for d in jax.devices()]}


@dataclasses.dataclass(frozen=True)
class ZooRun:
    """What the stages did on one zoo of the main job."""

    zoo: object
    zoo_dir: Path
    sub_dir: Path
    jobs: list
    unavailable: dict
    runs: dict
    scores: dict
    timings: dict


def run_zoo(preset: str, zoo_dir: Path, sub_dir: Path, db: Path, profile: str, seeds: int,
            progress: bool) -> ZooRun:
    """Stages 1-4 on one zoo: build it, its tasks, every baseline run, their scores."""
    timings: dict[str, float] = {}
    zoo = timed("zoo", timings, stage_zoo, preset, zoo_dir, progress)
    tasks, unavailable = timed("tasks", timings, stage_tasks, zoo)
    jobs = plan(tasks, seeds)
    runs = timed("baselines", timings, stage_baselines, jobs, tasks, sub_dir, profile, progress)
    scores = timed("score", timings, stage_score, jobs, tasks, zoo, sub_dir, db, progress)
    return ZooRun(zoo, zoo_dir, sub_dir, jobs, unavailable, runs, scores, timings)


def reproduce(preset: str = "small", out: str | Path = "results", seeds: int = 1,
              zoo_dir: str | Path | None = None, progress: bool = True,
              inr_zoo_dir: str | Path | None = None) -> dict:
    """Run the five stages on the preset's zoo and on its INR zoo; returns ``OUT/reproduce.json``'s record.

    The first zoo's submissions go to ``OUT/submissions/``, the INR zoo's to
    ``OUT/submissions-{INR preset}/``; one database, one page and one table file hold both.
    """
    if preset not in PRESET_PROFILE:
        raise ValueError(f"preset must be one of {list(PRESET_PROFILE)}, got {preset!r}")
    if seeds < 1:
        raise ValueError(f"seeds must be at least 1, got {seeds}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    inr = PRESET_INR[preset]
    zoo_dir = Path(zoo_dir) if zoo_dir is not None else Path("zoos") / preset
    inr_zoo_dir = Path(inr_zoo_dir) if inr_zoo_dir is not None else Path("zoos") / inr
    db = out / DB_NAME
    profile = PRESET_PROFILE[preset]
    t0 = time.perf_counter()

    done = [run_zoo(preset, zoo_dir, out / "submissions", db, profile, seeds, progress)]
    log(f"[{inr}] the INR zoo ...")
    done.append(run_zoo(inr, inr_zoo_dir, out / f"submissions-{inr}", db, profile, seeds, progress))
    info = machine()
    names = ", ".join(f"`{r.zoo.name}` ({r.zoo.weights_fingerprint[:12]})" for r in done)
    header = (f"# zoobench leaderboard: zoos {names}\n\n"
              f"`zoobench reproduce --preset {preset} --seeds {seeds}`, baselines' `{profile}` profile; "
              f"{info['cpu_count']} CPU cores, devices {', '.join(info['devices'])}, jax {info['jax']}.\n\n")
    report_timings: dict[str, float] = {}
    markdown = timed("report", report_timings, stage_report, done, db, out, header)
    timings = {stage: round(sum(r.timings[stage] for r in done), 2)
               for stage in ("zoo", "tasks", "baselines", "score")}
    timings["report"] = report_timings["report"]
    timings["total"] = round(time.perf_counter() - t0, 2)

    first = done[0]
    runs, scores = _merged(done, "runs"), _merged(done, "scores")
    failed = sorted(n for n, r in {**runs, **scores}.items() if "error" in r)
    record = {"preset": preset, "profile": profile, "seeds": seeds, "zoo": str(first.zoo_dir),
              "weights_fingerprint": first.zoo.weights_fingerprint, "timings_s": timings, "machine": info,
              "zoos": [{"name": r.zoo.name, "dir": str(r.zoo_dir), "kind": r.zoo.kind,
                        "weights_fingerprint": r.zoo.weights_fingerprint, "timings_s": r.timings,
                        "submissions": str(r.sub_dir)} for r in done],
              "unavailable": _merged(done, "unavailable"),
              "runs": runs, "scores": scores, "failed": failed,
              "leaderboard_md": str(out / "leaderboard.md"), "summary_md": str(out / "summary.md"),
              "index_html": str(out / "index.html"),
              "database": str(db)}
    (out / "reproduce.json").write_text(json.dumps(record, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    record["markdown"] = markdown
    return record


def cmd_reproduce(args) -> int:
    record = reproduce(args.preset, args.out, args.seeds, args.zoo, progress=not args.no_progress,
                       inr_zoo_dir=args.inr_zoo)
    if args.json:
        json.dump({k: v for k, v in record.items() if k != "markdown"}, sys.stdout, indent=2, sort_keys=True)
        sys.stdout.write("\n")
    else:
        print(record["markdown"])
        for name in record["failed"]:
            print(f"failed: {name}: {record['runs'].get(name, record['scores'].get(name))['error']}")
        print(f"total {record['timings_s']['total']:.0f} s ("
              + ", ".join(f"{k} {v:.0f} s" for k, v in record["timings_s"].items() if k != "total") + ")")
        print(f"table: {record['leaderboard_md']} (headline metrics: {record['summary_md']})")
        print(f"page:  {record['index_html']}")
    return 1 if record["failed"] else 0


def add_commands(sub) -> None:
    """Add ``reproduce`` to the ``zoobench`` parser's subcommands."""
    r = sub.add_parser("reproduce", help="build the default zoo, run every baseline on every task, "
                                         "score them and write the tables and plots")
    r.add_argument("--preset", default="small", choices=list(PRESET_PROFILE),
                   help="zoo preset (default: small)")
    r.add_argument("--out", default="results", help="output directory (default: results)")
    r.add_argument("--seeds", type=positive_int, default=1,
                   help="training seeds per baseline: 0..N-1 (default 1)")
    r.add_argument("--zoo", help="zoo directory (default: zoos/PRESET; reused when finished)")
    r.add_argument("--inr-zoo", help="the INR zoo's directory (default: zoos/inr-PRESET; reused when "
                                     "finished)")
    r.add_argument("--no-progress", action="store_true", help="no progress bars")
    r.add_argument("--json", action="store_true", help="print one JSON document")
    r.set_defaults(func=cmd_reproduce)
