"""The INR classification task, retrieval on INR zoos, and the baselines on them (`inr-tiny`)."""

from __future__ import annotations

import collections

import numpy as np
import pytest

from baselines import run as baselines_run
from benchmark import load_task
from benchmark.augmentation import augmented_part, augmented_task
from benchmark.splits import checked_in_path, make_split, read_split
from benchmark.submission import validate_submission, write_submission
from benchmark.tasks import ZOO_TASKS, TaskUnavailable, tasks_summary, test_targets
from leaderboard.score import score_submission
from zoo_builder.architecture import apply
from zoo_builder.storage import load_zoo


@pytest.fixture(scope="module")
def task(inr_tiny_zoo):
    return load_task("inr-classification", inr_tiny_zoo)


def test_parts_are_stratified_by_class_and_hold_whole_images(task, inr_tiny_zoo):
    zoo = load_zoo(inr_tiny_zoo)
    label_of = dict(zip(zoo.final["network_id"], zoo.final["label"].astype(str), strict=True))
    image_of = dict(zip(zoo.final["network_id"], zoo.final["config_id"], strict=True))
    answers = test_targets(task)
    parts = {"train": task.train.ids, "val": task.val.ids, "test": answers["ids"]}
    assert {p: len(ids) for p, ids in parts.items()} == {"train": 28, "val": 4, "test": 8}
    assert task.targets == ("label",) and task.classes["label"] == tuple(str(d) for d in range(10))
    # 4 INRs of each digit: 70/10/20 per class can only be approximate, but every class is in train.
    train_classes = collections.Counter(label_of[i] for i in parts["train"])
    assert set(train_classes) == set(task.classes["label"]) and max(train_classes.values()) <= 3
    for ids in (parts["val"], parts["test"]):  # stratified: no class twice in a part this small
        assert len({label_of[i] for i in ids}) == len(ids)
    images = [{image_of[i] for i in ids} for ids in parts.values()]
    assert sum(map(len, images)) == len(set().union(*images)) == 40  # no image in two parts
    np.testing.assert_array_equal(task.train.targets["label"],
                                  [task.classes["label"].index(label_of[i]) for i in task.train.ids])
    assert make_split(inr_tiny_zoo, "id").details["stratify"] == ["dataset", "label"]


def test_the_checked_in_split_is_the_one_a_build_makes(inr_tiny_zoo):
    shipped = read_split(checked_in_path("inr-tiny", "id"))
    made = make_split(inr_tiny_zoo, "id")
    assert shipped.parts == made.parts and shipped.twins == made.twins


def test_twins_of_an_inr_are_permutation_and_sign_twins_that_draw_the_same_image(task):
    answers = test_targets(task)
    assert sorted(answers["twin_kinds"].values()) == ["permutation", "sign"]
    x = np.random.default_rng(0).uniform(-1, 1, size=(64, 2)).astype(np.float32)
    for twin, original in answers["twins"].items():
        arch = task.test.arch(twin)
        np.testing.assert_allclose(apply(arch, task.test.params(twin), x),
                                   apply(arch, task.test.params(original), x), rtol=1e-5, atol=1e-6)
        assert not np.allclose(task.test.params(twin)[0]["kernel"], task.test.params(original)[0]["kernel"])


def test_only_the_tasks_of_its_kind_apply(inr_tiny_zoo, tiny_zoo):
    summary = tasks_summary(inr_tiny_zoo)["tasks"]
    assert tuple(summary) == ZOO_TASKS["inr"] == ("inr-classification", "retrieval")
    assert "unavailable" not in summary["retrieval"]["id"]
    with pytest.raises(TaskUnavailable, match="needs a zoo of trained classifiers; this zoo is of kind 'inr"):
        load_task("generalization", inr_tiny_zoo)
    with pytest.raises(TaskUnavailable, match="needs a zoo of INRs; this zoo is of kind 'classifier'"):
        load_task("inr-classification", tiny_zoo)
    assert load_task("retrieval", inr_tiny_zoo).targets == ("label",)


def test_augmented_train_part_repeats_targets_and_leaves_val_and_test_alone(task):
    aug = augmented_task(task, 2, seed=0)
    assert len(aug.train) == 3 * len(task.train) and aug.val is task.val and aug.test is task.test
    np.testing.assert_array_equal(aug.train.targets["label"], np.tile(task.train.targets["label"], 3))
    (p0, a0), (p1, _) = aug.train.networks()[0], aug.train.networks()[len(task.train)]
    assert aug.train.ids[len(task.train)] == f"{task.train.ids[0]}~aug1"
    assert p0 is task.train.networks()[0][0] and a0.family == "siren"
    assert not np.allclose(p0[0]["kernel"], p1[0]["kernel"])
    flat, _ = aug.train.view("flat")
    assert flat.shape[0] == len(aug.train)
    with pytest.raises(ValueError, match="for training networks; got the test part"):
        augmented_part(task.test, 1, seed=0)


@pytest.mark.parametrize("method", ["statnn", "flat-mlp-aug", "ng-gnn"])
def test_baselines_write_valid_submissions_that_score(task, inr_tiny_zoo, tmp_path, method):
    fitted = baselines_run.fit_predict(method, task, 0, baselines_run.settings_for(method, "smoke"))
    path = write_submission(tmp_path / "sub.json", task=task, method=method, predictions=fitted.predictions)
    validate_submission(path, task=task)
    scores = score_submission(path, inr_tiny_zoo, resamples=50)
    assert set(scores["metrics"]) == {"label/accuracy", "label/macro_f1"}
    assert 0 <= scores["metrics"]["label/accuracy"]["value"] <= 1
    assert {k.split("/")[0] for k in scores["symmetry"]} == {"permutation", "sign"}
    assert fitted.history and all(np.isfinite(h.get("train_loss", 0.0)) for h in fitted.history)
