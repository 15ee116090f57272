"""The four tasks on the tiny preset zoo: parts, targets, twins, pairs, refusals, merging scores, CLI."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import copy_zoo

from benchmark import tasks
from benchmark.merging import (
    DEFAULT_LAMBDAS,
    check_lambdas,
    evaluate_pair,
    evaluation_data,
    interpolation_curve,
    loss_barrier,
    merge,
    pair_scores,
    unit_match_accuracy,
)
from benchmark.tasks import CLASSIFIER_TASKS, TASK_SPLITS, TaskUnavailable, load_task, shape_leaks
from zoo_builder.architecture import ArchSpec, apply
from zoo_builder.files import sha256_file
from zoo_builder.permutation import apply_permutation, permutation_spec
from zoo_builder.storage import MANIFEST, TABLE, load_zoo, read_table, write_manifest, write_table
from zoo_builder.symmetry import KINDS, symmetry_kinds
from zoobench import cli

COMBOS = [(name, split) for name in CLASSIFIER_TASKS for split in TASK_SPLITS[name]]  # INRs: test_inr_task


@pytest.fixture(scope="module")
def zoo_dir(tmp_path_factory, tiny_preset_zoo) -> Path:
    """A private copy of the tiny preset zoo; the tasks write its split files."""
    return copy_zoo(tiny_preset_zoo, tmp_path_factory.mktemp("tasks") / "tiny")


@pytest.fixture(scope="module")
def zoo(zoo_dir):
    return load_zoo(zoo_dir)


def edited_zoo(src: Path, dst: Path, edit) -> Path:
    """A copy of zoo `src` whose table went through `edit` (checksum updated, split files dropped)."""
    copy_zoo(src, dst)
    shutil.rmtree(dst / "splits", ignore_errors=True)
    write_table(dst / TABLE, edit(read_table(dst / TABLE)))
    manifest = json.loads((dst / MANIFEST).read_text())
    manifest["files"][TABLE] = sha256_file(dst / TABLE)
    write_manifest(dst, manifest)
    return dst


# --------------------------------------------------------------------------- every task


@pytest.mark.parametrize(("name", "split"), COMBOS)
def test_load_task_parts_targets_and_twins(zoo, name, split):
    task = load_task(name, zoo, split)
    answers = tasks.test_targets(task)
    twins = answers["twins"]
    ids = set(zoo.final["network_id"])
    originals = set(task.train.ids) | set(task.val.ids) | set(answers["ids"])
    assert originals == ids  # nothing diverged in the tiny preset
    assert len(task.train.ids) + len(task.val.ids) + len(answers["ids"]) == len(ids)
    assert set(task.test.ids) == set(answers["ids"]) | set(twins)
    assert twins and set(twins.values()) <= set(answers["ids"]) and not set(twins) & ids
    assert not set(twins) & set(answers["ids"])  # twins are not scored as primary items
    assert task.test.targets is None
    assert set(answers["targets"]) == set(task.targets) == set(tasks.TARGETS[name])
    for part in (task.train, task.val):
        assert set(part.targets) == set(task.targets)
        assert all(len(v) == len(part) for v in part.targets.values())
    for t, values in answers["targets"].items():
        assert len(values) == len(answers["ids"])
        if t in task.classes:
            assert values.dtype == np.int64 and values.min() >= 0 and values.max() < len(task.classes[t])
    split_file = json.loads((zoo.root / "splits" / f"{split}.json").read_text())
    assert task.split_fingerprint == split_file["fingerprint"]


def test_generalization_targets_are_the_table_columns(zoo):
    task = load_task("generalization", zoo)
    final = zoo.final.set_index("network_id")
    assert list(task.train.ids) == sorted(task.train.ids, key=lambda i: final.loc[i, "index"])
    np.testing.assert_array_equal(task.train.targets["test_acc"], final.loc[list(task.train.ids), "test_acc"])
    answers = tasks.test_targets(task)
    np.testing.assert_array_equal(answers["targets"]["gen_gap"], final.loc[list(answers["ids"]), "gen_gap"])


def test_classification_targets_index_sorted_classes(zoo):
    task = load_task("classification", zoo)
    assert task.classes == {"dataset": ("digits", "digits@perm1", "mnist5k"), "optimizer": ("adam", "sgd")}
    final = zoo.final.set_index("network_id")
    names = [task.classes["dataset"][k] for k in task.train.targets["dataset"]]
    assert names == list(final.loc[list(task.train.ids), "dataset"])


def test_ood_task_test_datasets_are_unseen(zoo):
    task = load_task("generalization", zoo, "ood-task")
    dataset = zoo.final.set_index("network_id")["dataset"]
    seen = {dataset[i] for i in task.train.ids + task.val.ids}
    assert {dataset[i] for i in tasks.test_targets(task)["ids"]} == {"mnist5k"} and "mnist5k" not in seen


@pytest.mark.parametrize(("args", "kwargs", "message"), [
    (("regression", "id"), {},
     "name must be one of ['generalization', 'classification', 'retrieval', 'merging', "
     "'inr-classification'], "
     "got 'regression'"),
    (("generalization", "ood"), {},
     "split must be one of ['id', 'ood-width', 'ood-task', 'published'], got 'ood'"),
    (("classification", "ood-task"), {}, "split 'ood-task' does not apply to the classification task; "
                                         "expected one of ['id', 'ood-width']"),
    (("merging", "id"), {"all_checkpoints": True},
     "all_checkpoints=True applies to the generalization task only"),
])
def test_bad_arguments_are_named(zoo, args, kwargs, message):
    with pytest.raises(ValueError) as e:
        load_task(args[0], zoo, args[1], **kwargs)
    assert str(e.value) == message


def test_all_checkpoints_keeps_a_network_in_one_part(zoo):
    task = load_task("generalization", zoo, "id", all_checkpoints=True)
    final = load_task("generalization", zoo, "id")
    for part, one in zip(task.parts, final.parts, strict=True):
        assert len(part) == 2 * len(one)  # checkpoints at epochs 5 and 10
        assert set(part.ids) == set(one.ids)
        assert sorted(zip(part.ids, part.epochs.tolist(), strict=True)) == sorted(
            (i, e) for i in one.ids for e in (5, 10))
    rows = zoo.table.set_index(["network_id", "epoch"])
    items = zip(task.train.ids, task.train.epochs, strict=True)
    expected = [rows.loc[(i, int(e)), "test_acc"] for i, e in items]
    np.testing.assert_array_equal(task.train.targets["test_acc"], expected)
    answers = tasks.test_targets(task)
    assert len(answers["ids"]) == 2 * len(tasks.test_targets(final)["ids"])
    assert len(task.test) == len(answers["ids"]) + 2 * len(answers["twins"])


def test_test_part_order_is_a_deterministic_shuffle(zoo_dir):
    a, b = load_task("retrieval", zoo_dir, "ood-width"), load_task("retrieval", zoo_dir, "ood-width")
    assert a.test.ids == b.test.ids
    assert list(a.test.ids) != sorted(a.test.ids)
    twins = tasks.test_targets(a)["twins"]
    assert [a.test.ids.index(t) for t in twins] != list(range(len(a.test) - len(twins), len(a.test)))


def test_test_targets_is_not_collected_as_a_test(tmp_path):
    """A test module that imports the scorer's `test_targets` gets no extra test from it."""
    module = tmp_path / "test_uses_answers.py"
    module.write_text("from benchmark.tasks import test_targets\n\n\ndef test_real():\n    pass\n")
    proc = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider",
                           str(module)], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    collected = [line for line in proc.stdout.splitlines() if "::" in line]
    assert collected == [f"{module.name}::test_real"], proc.stdout


# --------------------------------------------------------------------------- twins


@pytest.mark.parametrize("split", ["id", "ood-width", "ood-task"])
def test_twins_compute_their_originals_function_with_other_weights(zoo, split):
    task = load_task("generalization", zoo, split)
    answers = tasks.test_targets(task)
    twins, kinds = answers["twins"], answers["twin_kinds"]
    assert twins and set(kinds) == set(twins) and set(kinds.values()) <= set(KINDS)
    for twin, original in twins.items():
        arch = zoo.arch(original)
        assert kinds[twin] in symmetry_kinds(arch), (twin, kinds[twin], arch.activation)
        x, _ = evaluation_data(zoo, zoo.row(original)["dataset"])
        ours, theirs = task.test.params(twin), zoo.params(original)
        assert task.test.arch(twin) == arch
        y_twin, y = np.asarray(apply(arch, ours, x)), np.asarray(apply(arch, theirs, x))
        assert np.max(np.abs(y_twin - y)) <= 1e-5 * np.max(np.abs(y)), (kinds[twin], twin)
        assert any(not np.array_equal(a[k], b[k]) for a, b in zip(ours, theirs, strict=True) for k in a)
        index = task.test.ids.index(twin)
        assert task.test.networks()[index][0][0]["kernel"].shape == theirs[0]["kernel"].shape
    if split == "id":  # the tiny preset has ReLU, tanh and gelu/sigmoid networks: twins of every kind
        assert set(kinds.values()) == set(KINDS)


def test_twin_kinds_differ_in_what_they_change(zoo):
    """Permutation twins keep each layer's multiset of weights; scale twins do not; sign twins keep |w|."""
    answers = tasks.test_targets(task := load_task("generalization", zoo))
    for twin, kind in answers["twin_kinds"].items():
        ours, theirs = task.test.params(twin), zoo.params(answers["twins"][twin])
        def values(params, f=lambda w: w):
            return np.sort(f(np.ravel(params[0]["kernel"])))

        assert np.array_equal(values(ours), values(theirs)) == (kind == "permutation"), kind
        assert np.allclose(values(ours, np.abs), values(theirs, np.abs)) == (kind != "scale"), kind


def test_a_part_loads_only_its_own_networks(zoo):
    task = load_task("generalization", zoo)
    with pytest.raises(KeyError, match="is not in the test part"):
        task.test.params(task.train.ids[0])


# --------------------------------------------------------------------------- views through a part


def test_views_line_up_across_parts_and_are_cached(zoo):
    task = load_task("generalization", zoo)
    stats = [p.view("stats") for p in task.parts]
    assert [s.shape[0] for s in stats] == [len(p) for p in task.parts]
    assert len({s.shape[1] for s in stats}) == 1
    flats = [p.view("flat")[0] for p in task.parts]
    assert len({f.shape[1] for f in flats}) == 1
    assert task.test.view("stats") is stats[2]
    task.test.clear_cache()  # recomputed on demand, equal to what was cached
    again = task.test.view("stats")
    assert again is not stats[2]
    np.testing.assert_array_equal(again, stats[2])
    assert task.test.view("flat", dim=5000)[0].shape == (len(task.test), 5000)
    mats = [p.view("matrices")[0].shape[1:] for p in task.parts]
    assert len(set(mats)) == 1
    graphs = task.val.view("neural_graph")
    assert len(graphs) == len(task.val) and {g.edges["weight"].shape[1] for g in graphs} == {9}
    with pytest.raises(ValueError, match="kind must be one of"):
        task.test.view("pixels")


# --------------------------------------------------------------------------- classification refusal


def _meta(rows):
    return pd.DataFrame(rows, columns=["family", "depth", "dataset", "optimizer"])


def test_shape_leaks_accepts_classes_with_the_same_architectures():
    rows = [(f, d, ds, opt) for f, d in (("mlp", 1), ("mlp", 2), ("cnn", 2))
            for ds in ("a", "b") for opt in ("sgd", "adam")]
    assert shape_leaks(_meta(rows), ["dataset", "optimizer"]) == []


def test_shape_leaks_names_the_class_missing_a_family():
    rows = [("mlp", 1, "a", "sgd"), ("cnn", 2, "a", "adam"), ("mlp", 1, "b", "adam"), ("cnn", 2, "a", "sgd"),
            ("mlp", 1, "b", "sgd")]
    problems = shape_leaks(_meta(rows), ["dataset", "optimizer"])
    assert any("class 'b' of target 'dataset' has no cnn networks" in p for p in problems)
    assert any("class 'a' of target 'dataset' is the only one with cnn-d2 networks" in p for p in problems)
    assert not any("'optimizer'" in p for p in problems)


def test_shape_leaks_names_an_architecture_unique_to_a_class():
    rows = [("mlp", 1, "a", "sgd"), ("mlp", 1, "b", "sgd"), ("mlp", 3, "b", "sgd"),
            ("mlp", 1, "a", "adam"), ("mlp", 1, "b", "adam")]
    problems = shape_leaks(_meta(rows), ["dataset", "optimizer"])
    assert problems == [
        "class 'b' of target 'dataset' is the only one with mlp-d3 networks, so their shapes give the "
        "class away",
        "class 'sgd' of target 'optimizer' is the only one with mlp-d3 networks, so their shapes give the "
        "class away",
    ]


def test_shape_leaks_needs_two_classes():
    rows = [("mlp", 1, "a", "sgd"), ("mlp", 1, "b", "sgd")]
    assert shape_leaks(_meta(rows), ["optimizer"]) == ["target 'optimizer' has a single class ['sgd']: "
                                                        "nothing to classify"]


def _cnns_on_mnist1d(table: pd.DataFrame) -> pd.DataFrame:
    cnn = table["family"] == "cnn"
    return table.assign(dataset=table["dataset"].where(~cnn, "mnist1d"),
                        dataset_base=table["dataset_base"].where(~cnn, "mnist1d"))


def test_classification_is_refused_where_shapes_give_the_dataset_away(tiny_preset_zoo, tmp_path, capsys):
    root = edited_zoo(tiny_preset_zoo, tmp_path / "leaky", _cnns_on_mnist1d)
    with pytest.raises(TaskUnavailable) as e:
        load_task("classification", root)
    assert "class 'digits' of target 'dataset' has no cnn networks" in str(e.value)
    assert "class 'digits@perm1' of target 'dataset' has no cnn networks" in str(e.value)
    load_task("retrieval", root)  # the other tasks are unaffected
    capsys.readouterr()
    assert cli.main(["tasks", str(root), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["tasks"]["classification"]["id"]["unavailable"].startswith("classification refused")
    assert doc["tasks"]["retrieval"]["id"]["test"] > 0


def test_diverged_networks_are_left_out_unless_asked(tiny_preset_zoo, tmp_path):
    zoo = load_zoo(tiny_preset_zoo)
    victim = load_task("generalization", zoo)  # any test original with a twin, to see the twin go too
    gone = next(iter(tasks.test_targets(victim)["twins"].values()))
    root = edited_zoo(tiny_preset_zoo, tmp_path / "diverged",
                      lambda t: t.assign(status=t["status"].where(t["network_id"] != gone, "diverged")))
    for name in CLASSIFIER_TASKS:
        task = load_task(name, root)
        answers = tasks.test_targets(task)
        assert gone not in set(task.train.ids) | set(task.val.ids) | set(answers["ids"])
        assert gone not in answers["twins"].values()
        assert len(task.test) == len(answers["ids"]) + len(answers["twins"])
        assert all(gone not in (p.id_a, p.id_b) for part in task.parts for p in part.pairs)
        kept = load_task(name, root, include_diverged=True)
        assert gone in tasks.test_targets(kept)["ids"]


# --------------------------------------------------------------------------- merging


@pytest.mark.parametrize("split", ["id", "ood-width"])
def test_merging_pairs_are_replicates_in_one_part(zoo, split):
    task = load_task("merging", zoo, split)
    final = zoo.final.set_index("network_id")
    for part in task.parts:
        assert part.pairs and len({p.pair_id for p in part.pairs}) == len(part.pairs)
        for _, a, b in part.pairs:
            assert {a, b} <= set(part.ids) and a != b
            ra, rb = final.loc[a], final.loc[b]
            assert ra["config_id"] == rb["config_id"] and ra["dataset"] == rb["dataset"]
            assert zoo.arch(a) == zoo.arch(b) and ra["seed"] != rb["seed"]
    # Every replicate pair of the zoo is in exactly one part.
    configs = final.groupby("config_id").size()
    assert sum(len(p.pairs) for p in task.parts) == int((configs == 2).sum())


def _recovers(arch, aligning, params_b, params_a) -> None:
    aligned = apply_permutation(permutation_spec(arch), aligning, params_b)
    for la, lb in zip(params_a, aligned, strict=True):
        for k in la:
            bound = 6 * 0.01 * float(np.std(la[k])) + 1e-7
            assert np.max(np.abs(la[k] - lb[k])) <= bound
            assert la[k].size == 0 or not np.array_equal(la[k], lb[k]) or np.std(la[k]) == 0


def test_synthetic_pairs_true_permutations_recover_a_from_b(zoo):
    task = load_task("merging", zoo)
    answers = tasks.test_targets(task)
    assert task.test.synthetic_permutations is None
    assert set(answers["synthetic_permutations"]) == {p.pair_id for p in task.test.synthetic_pairs}
    for part, truth in ((task.train, task.train.synthetic_permutations),
                        (task.test, answers["synthetic_permutations"])):
        assert len(part.synthetic_pairs) == len(part.pairs)
        for pair_id, a, b in part.synthetic_pairs:
            assert b not in set(zoo.final["network_id"]) and a in part.ids
            arch = part.arch(b)
            assert arch == zoo.arch(a)
            _recovers(arch, truth[pair_id], part.params(b), zoo.params(a))
        assert not all(all(np.array_equal(p, np.arange(len(p))) for p in perms.values())
                       for perms in truth.values())


def test_a_true_alignment_merges_well(zoo):
    task = load_task("merging", zoo)
    answers = tasks.test_targets(task)
    acc = zoo.final.set_index("network_id")["test_acc"]
    pair_id, a, b = max(task.test.synthetic_pairs, key=lambda p: acc[p.id_a])
    arch = zoo.arch(a)
    x, y = evaluation_data(zoo, zoo.row(a)["dataset"])
    assert len(x) == 256  # the tiny preset's max_test
    truth = answers["synthetic_permutations"][pair_id]
    good = evaluate_pair(arch, zoo.params(a), task.test.params(b), truth, x, y)
    assert good["acc_a"] == pytest.approx(acc[a], abs=1e-6)
    assert good["acc_ratio"] == pytest.approx(1.0, abs=0.03) and good["loss_barrier"] < 0.02
    assert unit_match_accuracy(truth, truth) == 1.0


def _toy_mlp(seed: int = 0):
    arch = ArchSpec("mlp", (2, 2, 1), (4, 6), 3, "relu")
    rng = np.random.default_rng(seed)
    params = [{"kernel": rng.normal(size=k).astype(np.float32), "bias": rng.normal(size=b).astype(np.float32)}
              for k, b in arch.layer_shapes()]
    x = rng.normal(size=(64, 2, 2, 1)).astype(np.float32)
    y = rng.integers(0, 3, size=64)
    return arch, params, x, y


def test_merge_blends_tensor_by_tensor():
    _, a, _, _ = _toy_mlp(0)
    _, b, _, _ = _toy_mlp(1)
    for lam in (0.0, 0.3, 1.0):
        m = merge(a, b, lam)
        for la, lb, lm in zip(a, b, m, strict=True):
            np.testing.assert_allclose(lm["kernel"], (1 - lam) * la["kernel"] + lam * lb["kernel"], rtol=1e-6)
    with pytest.raises(ValueError, match="shapes"):
        merge(a, [{"kernel": l["kernel"][:1], "bias": l["bias"]} for l in b], 0.5)


def test_the_path_through_the_zero_network_has_the_known_midpoint():
    """B = -A: the midpoint is the all-zero network, whose loss is ln(classes) and which predicts class 0."""
    arch, a, x, y = _toy_mlp()
    b = [{k: -v for k, v in layer.items()} for layer in a]
    curve = interpolation_curve(arch, a, b, x, y)
    np.testing.assert_array_equal(curve["lambdas"], DEFAULT_LAMBDAS)
    assert curve["loss"][5] == pytest.approx(math.log(3), rel=1e-6)
    assert curve["accuracy"][5] == pytest.approx(np.mean(y == 0))
    chord = (curve["loss"][0] + curve["loss"][-1]) / 2
    barrier = loss_barrier(curve["lambdas"], curve["loss"])
    lam = DEFAULT_LAMBDAS
    assert barrier >= math.log(3) - chord - 1e-6
    loss = curve["loss"]
    assert barrier == pytest.approx(np.max(loss - ((1 - lam) * loss[0] + lam * loss[-1])))
    scores = pair_scores(curve)
    assert scores["merged_acc"] == curve["accuracy"][5]
    acc = curve["accuracy"]
    assert scores["acc_ratio"] == pytest.approx(acc[5] / ((acc[0] + acc[-1]) / 2))
    flat = interpolation_curve(arch, a, a, x, y)
    assert loss_barrier(flat["lambdas"], flat["loss"]) == pytest.approx(0.0, abs=1e-6)
    assert pair_scores(flat)["acc_ratio"] == pytest.approx(1.0)


def test_loss_barrier_of_known_paths():
    lam = DEFAULT_LAMBDAS
    assert loss_barrier(lam, 1 + lam) == pytest.approx(0.0)
    assert loss_barrier(lam, 1 + lam + 0.3 * (lam == 0.5)) == pytest.approx(0.3)
    assert loss_barrier(lam, 2 - 4 * lam * (1 - lam)) == pytest.approx(0.0)  # below the chord: 0 at endpoints
    assert loss_barrier(lam, np.where(lam == 0.2, np.nan, lam)) == math.inf
    with pytest.raises(ValueError, match="at least 11 increasing values from 0 to 1"):
        check_lambdas(np.linspace(0, 1, 5))
    with pytest.raises(ValueError, match="at least 11 increasing"):
        loss_barrier(np.linspace(0.1, 1, 11), np.zeros(11))
    with pytest.raises(ValueError, match="one value per lambda"):
        loss_barrier(lam, np.zeros(10))


def test_unit_match_accuracy():
    true = {"P_0": np.array([2, 0, 1, 3]), "P_1": np.array([5, 4, 3, 2, 1, 0])}
    swapped = {"P_0": np.array([0, 2, 1, 3]), "P_1": true["P_1"]}
    assert unit_match_accuracy(true, true) == 1.0
    assert unit_match_accuracy(true, swapped) == pytest.approx(8 / 10)
    assert unit_match_accuracy({"x": true, "y": true}, {"x": true, "y": swapped}) == pytest.approx(18 / 20)
    with pytest.raises(ValueError, match=r"pair x.P_0: not a bijection of 0..3"):
        unit_match_accuracy({"x": true}, {"x": {"P_0": np.array([0, 0, 1, 3]), "P_1": true["P_1"]}})
    with pytest.raises(ValueError, match=r"expected permutations \['P_0', 'P_1'\]"):
        unit_match_accuracy(true, {"P_0": true["P_0"]})
    with pytest.raises(ValueError, match="missing"):
        unit_match_accuracy({"x": true, "y": true}, {"x": true})


# --------------------------------------------------------------------------- command line


def test_cli_tasks_prints_one_json_document(zoo_dir, capsys):
    capsys.readouterr()
    assert cli.main(["tasks", str(zoo_dir), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["name"] == "tiny" and set(doc["tasks"]) == set(CLASSIFIER_TASKS)
    assert set(doc["tasks"]["generalization"]) == {"id", "ood-width", "ood-task"}
    assert set(doc["tasks"]["merging"]) == {"id", "ood-width"}
    gen = doc["tasks"]["generalization"]["id"]
    assert gen["train"] + gen["val"] + gen["test"] == 48 and gen["twins"] >= 1
    assert set(gen["twins_by_kind"]) == set(KINDS) and sum(gen["twins_by_kind"].values()) == gen["twins"]
    assert doc["tasks"]["merging"]["id"]["pairs"]["test"] >= 1
    assert cli.main(["tasks", str(zoo_dir)]) == 0
    text = capsys.readouterr().out
    assert text.startswith("tasks on zoo tiny at ") and "merging         id" in text and "pairs" in text


def test_cli_tasks_reports_a_corrupted_split_file(zoo_dir, tmp_path, capsys):
    root = copy_zoo(zoo_dir, tmp_path / "corrupt")
    load_task("generalization", root)
    (root / "splits" / "id.json").write_text("{")
    capsys.readouterr()
    assert cli.main(["tasks", str(root), "--json"]) == 1
    assert str(root / "splits" / "id.json") in json.loads(capsys.readouterr().out)["error"]
