"""Validating a submission against the task it names, before anything is scored or stored.

`read_submission` has checked the structure; here every prediction is checked
against what the method could see (`task.test`: ids, classes, pairs and
architectures), never against test targets. Every problem is collected, each
naming the field or id and what was expected.
"""

from __future__ import annotations

import numpy as np

from leaderboard.submission import (
    MAX_BYTES,
    Submission,
    SubmissionError,
    item_keys,
    read_with_problems,
    task_metadata,
)
from zoo_builder.permutation import permutation_spec

__all__ = ["SubmissionError", "check_against_task", "validate_submission", "load_submission_task",
           "read_with_problems"]


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
        if key not in pairs or perms is None:
            continue
        sizes = permutation_spec(task.test.arch(pairs[key].id_b)).sizes
        for name in sorted(set(sizes) - set(perms)):
            problems.append(f"{key}.{name}: missing layer; expected permutations {sorted(sizes)}")
        for name in sorted(set(perms) - set(sizes)):
            problems.append(f"{key}.{name}: unknown layer; the architecture has {sorted(sizes)}")
        for name, perm in perms.items():
            if name not in sizes or perm is None:
                continue
            size = sizes[name]
            if len(perm) != size:
                problems.append(f"{key}.{name}: expected a permutation of 0..{size - 1} ({size} units), "
                                f"got {len(perm)} values")
            elif not np.array_equal(np.sort(perm), np.arange(size)):
                counts = np.bincount(np.clip(perm, 0, size), minlength=size + 1)[:size]
                missing = np.flatnonzero(counts == 0)[:5].tolist()
                problems.append(f"{key}.{name}: not a bijection of 0..{size - 1}; units {missing} missing "
                                f"(values must be distinct, in range)")
    return problems


def check_against_task(sub: Submission, task) -> list[str]:
    """Every problem of a structurally valid submission for `task` (empty list: valid)."""
    problems = _check_metadata(sub, task)
    if sub.metadata.task != task.name or sub.metadata.all_checkpoints != task_metadata(task, method="-") \
            .all_checkpoints:
        return problems  # its items are of another kind; listing each would only repeat that
    what = "test pair and synthetic test pair" if task.name == "merging" else "test item (twins included)"
    problems += _check_ids(list(sub.predictions), item_keys(task, sub.metadata.all_checkpoints), what)
    if task.name == "classification":
        problems += _check_classes(sub, task)
    elif task.name == "merging":
        problems += _check_perms(sub, task)
    return problems


def load_submission_task(sub: Submission, zoo):
    """The task a submission names, on `zoo` (a Zoo or its directory)."""
    from benchmark.tasks import load_task  # noqa: PLC0415

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
