"""Submissions for a task: their metadata, the checks against the task, and writing them.

`benchmark.submission_format` reads a file and checks its structure alone; here
every prediction is checked against what the method could see (`task.test`: ids,
classes, pairs and architectures), never against test targets. Every problem is
collected, each naming the field or id and what was expected. docs/submission.md
is the contract; methods call `write_submission`, the scorer `validate_submission`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from benchmark.submission_format import (
    MAX_BYTES,
    Metadata,
    Submission,
    SubmissionError,
    check_predictions,
    read_submission,
    read_with_problems,
    seed_problem,
    to_json_doc,
    to_npz_arrays,
)
from benchmark.tasks import TASK_KINDS, load_task
from zoo_builder.files import atomic_path
from zoo_builder.permutation import permutation_problems, permutation_spec

__all__ = ["Metadata", "Submission", "SubmissionError", "check_against_task", "item_keys",
           "load_submission_task", "read_submission", "read_with_problems", "task_metadata",
           "validate_submission", "write_submission"]


def task_metadata(task, *, method: str, version: str = "0", description: str = "",
                  seed: int | None = None) -> Metadata:
    """The metadata of a submission for `task` (a `benchmark.tasks.Task`); `seed`: the run's training seed."""
    if isinstance(seed, np.integer):
        seed = int(seed)
    if seed is not None and (problem := seed_problem(seed)):
        raise ValueError(problem)
    return Metadata(method=str(method), version=str(version), description=str(description), task=task.name,
                    split=task.split, all_checkpoints=bool(task.all_checkpoints), zoo_name=task.zoo.name,
                    weights_fingerprint=task.zoo.weights_fingerprint,
                    split_fingerprint=task.split_fingerprint, seed=seed)


def item_keys(task, all_checkpoints: bool) -> tuple[str, ...]:
    """The prediction keys a submission for `task` must have: test ids, or ``id@epoch`` per checkpoint."""
    if all_checkpoints:
        return tuple(f"{i}@{int(e)}" for i, e in zip(task.test.ids, task.test.epochs, strict=True))
    if task.name == "merging":
        return tuple(p.pair_id for p in (*task.test.pairs, *task.test.synthetic_pairs))
    return tuple(task.test.ids)


def write_submission(path, *, task, method: str, version: str = "0", description: str = "",
                     predictions: dict, seed: int | None = None) -> Path:
    """Validate `predictions` for `task` and write them to `path` (``.json`` or ``.npz``, atomically).

    predictions, keyed by the test part's ids (twins included):
      generalization: ``{id: {"test_acc": float, "gen_gap": float}}`` (``id@epoch`` keys with
        all_checkpoints);
      classification: ``{id: {"dataset": c, "optimizer": c}}``, c a class name of
        ``task.classes[target]`` or a list of probabilities over them;
      retrieval: ``{id: embedding}`` (one length for all);
      merging: ``{pair_id: {"P_0": perm, ...}}`` for every test pair and synthetic test pair.

    seed: the training seed of this run (optional); the leaderboard shows runs of one
    method and version with different seeds as mean ± standard deviation.

    Raises `SubmissionError` listing every problem; nothing is written then.
    """
    path = Path(path)
    if path.suffix not in (".json", ".npz"):
        raise ValueError(f"path must end in .json or .npz, got {str(path)!r}")
    meta = task_metadata(task, method=method, version=version, description=description, seed=seed)
    if not isinstance(predictions, Mapping):
        raise SubmissionError(path, [f"predictions: expected a dict keyed by item id, got "
                                     f"{type(predictions).__name__}"])
    problems: list[str] = []
    preds = check_predictions(meta.task, meta.all_checkpoints, dict(predictions), problems)
    sub = Submission(path=path, encoding=path.suffix[1:], metadata=meta, predictions=preds)
    if not problems:
        problems += check_against_task(sub, task)
    if problems:
        raise SubmissionError(path, problems)
    with atomic_path(path) as tmp:
        if path.suffix == ".json":
            tmp.write_text(json.dumps(to_json_doc(sub), sort_keys=True) + "\n", encoding="utf-8")
        else:
            with open(tmp, "wb") as f:
                np.savez_compressed(f, **to_npz_arrays(sub))
    return path



def _check_metadata(sub: Submission, task) -> list[str]:
    m, want = sub.metadata, task_metadata(task, method="-")
    problems = []
    for field, got, expected in (
        ("task", m.task, want.task),
        ("split", m.split, want.split),
        ("zoo.name", m.zoo_name, want.zoo_name),
        ("zoo.weights_fingerprint", m.weights_fingerprint, want.weights_fingerprint),
        ("split_fingerprint", m.split_fingerprint, want.split_fingerprint),
        ("all_checkpoints", m.all_checkpoints, want.all_checkpoints),
    ):
        if got != expected:
            problems.append(f"{field}: the submission was made for {got!r}, but the zoo's task has "
                            f"{expected!r}")
    return problems


def _check_ids(keys, expected, what: str) -> list[str]:
    have, want = set(keys), set(expected)
    return ([f"{k}: missing; expected a prediction for every {what}" for k in expected if k not in have]
            + [f"{k}: unknown id; not a {what} of this task" for k in keys if k not in want])


def _check_classes(sub: Submission, task) -> list[str]:
    problems = []
    for key, item in sub.predictions.items():
        for target, value in (item or {}).items():
            classes = task.classes[target]
            if isinstance(value, str):
                if value not in classes:
                    problems.append(f"{key}.{target}: class {value!r} is not one of the task's classes "
                                    f"{list(classes)}")
            elif value is not None and len(value) != len(classes):
                problems.append(f"{key}.{target}: expected {len(classes)} probabilities (one per class "
                                f"{list(classes)}), got {len(value)}")
    return problems


def _check_perms(sub: Submission, task) -> list[str]:
    problems = []
    pairs = {p.pair_id: p for p in (*task.test.pairs, *task.test.synthetic_pairs)}
    for key, perms in sub.predictions.items():
        if key in pairs and perms is not None:
            sizes = permutation_spec(task.test.arch(pairs[key].id_b)).sizes
            problems += permutation_problems(sizes, perms, key)
    return problems


def check_against_task(sub: Submission, task) -> list[str]:
    """Every problem of a structurally valid submission for `task` (empty list: valid)."""
    problems = _check_metadata(sub, task)
    if sub.metadata.task != task.name or sub.metadata.all_checkpoints != task_metadata(task, method="-") \
            .all_checkpoints:
        return problems  # its items are of another kind; listing each would only repeat that
    what = "test pair and synthetic test pair" if task.name == "merging" else "test item (twins included)"
    problems += _check_ids(list(sub.predictions), item_keys(task, sub.metadata.all_checkpoints), what)
    if TASK_KINDS[task.name] == "classification":
        problems += _check_classes(sub, task)
    elif task.name == "merging":
        problems += _check_perms(sub, task)
    return problems


def load_submission_task(sub: Submission, zoo):
    """The task a submission names, on `zoo` (a Zoo or its directory)."""
    m = sub.metadata
    try:
        return load_task(m.task, zoo, m.split, all_checkpoints=m.all_checkpoints)
    except ValueError as e:
        raise SubmissionError(sub.path, [f"task: cannot build {m.task!r} on split {m.split!r} of this zoo "
                                         f"({e})"]) from None


def validate_submission(path, zoo=None, *, task=None,
                        max_bytes: int = MAX_BYTES) -> tuple[Submission, object]:
    """Read `path` and check it against its task on `zoo` (or against `task` given explicitly).

    Returns (submission, task). Raises `SubmissionError` listing every problem.
    """
    if task is None and zoo is None:
        raise ValueError("validate_submission needs zoo or task")
    sub, problems = read_with_problems(path, max_bytes=max_bytes)
    if sub is not None:
        if task is None:
            try:
                task = load_submission_task(sub, zoo)
            except SubmissionError as e:
                raise SubmissionError(path, problems + e.problems) from None
        problems += check_against_task(sub, task)
    if problems:
        raise SubmissionError(path, problems)
    return sub, task
