"""Importing the Small CNN Zoo format: round trip, table, manifest, errors and the CLI.

The source directories are written here in the published format (weights.npy,
layout.csv with TensorFlow varnames, metrics.csv[.gz] with config.* columns) at
the real 4,970-parameter MNIST layout; nothing is downloaded.
"""

from __future__ import annotations

import dataclasses
import json
import math
import pickle
import random
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import run_cli

from benchmark.merging import MergePair, evaluation_data, interpolation_curve, interpolation_curves
from benchmark.splits import SplitUnavailable, get_split
from benchmark.submission import task_metadata, validate_submission, write_submission
from benchmark.tasks import TASK_SPLITS, TASKS, TaskUnavailable, load_task, test_targets
from zoo_builder import datasets, smallcnnzoo, storage
from zoo_builder.architecture import apply
from zoo_builder.files import sha256_file
from zoo_builder.permutation import permutation_spec
from zoo_builder.smallcnnzoo import SourceError, import_smallcnnzoo, parse_input_shape, parse_shape
from zoo_builder.storage import ZooError, load_zoo, verify_zoo

STEPS = (0, 20, 86)
SHORT_STEPS = (0, 1, 40)  # the last network stops early: its final checkpoint is step 40
NAN_NETWORK, NAN_STEP = 2, 86  # its weights row holds a NaN
INF_NETWORK, INF_STEP = 3, 20  # its train_loss is inf


def mnist_layout(in_channels: int = 1, kernel: int = 3) -> list[tuple[str, tuple[int, ...]]]:
    """The Small CNN Zoo's variables in TensorFlow order: each layer's bias before its kernel."""
    out, c = [], in_channels
    for name in ("conv2d", "conv2d_1", "conv2d_2"):
        out += [(f"sequential/{name}/bias:0", (16,)),
                (f"sequential/{name}/kernel:0", (kernel, kernel, c, 16))]
        c = 16
    return out + [("sequential/dense/bias:0", (10,)), ("sequential/dense/kernel:0", (16, 10))]


def write_layout(path: Path, variables, index: bool = False) -> int:
    """layout.csv of `variables` (name, shape) laid end to end; `index`: pandas' unnamed index column."""
    rows, pos = [], 0
    for varname, shape in variables:
        size = math.prod(shape)
        rows.append({"varname": varname, "start_idx": pos, "end_idx": pos + size, "size": size,
                     "shape": str(tuple(shape))})
        pos += size
    pd.DataFrame(rows).to_csv(path, index=index)
    return pos


@dataclasses.dataclass(frozen=True)
class Source:
    path: Path
    weights: np.ndarray
    metrics: pd.DataFrame
    net_of_row: np.ndarray  # which written network each source row belongs to


def make_source(root: Path, *, in_channels: int = 1, dataset: str | None = "mnist",
                metrics_name: str = "metrics.csv.gz", seeds: tuple[int, ...] | None = None,
                drop: tuple[str, ...] = (), activations=("relu", "tanh")) -> Source:
    """6 networks x 3 checkpoints in the Small CNN Zoo format, rows shuffled."""
    root.mkdir(parents=True)
    width = write_layout(root / "layout.csv", mnist_layout(in_channels))
    rng = np.random.default_rng(0)
    rows, nets = [], []
    for n in range(6):
        config = {
            "config.activation": activations[n % len(activations)],
            "config.b_init": "zeros",
            "config.dataset": dataset,
            "config.dnn_architecture": "cnn",
            "config.dropout": [0.0, 0.05, 0.2][n % 3],
            "config.init_std": float(rng.uniform(0.01, 0.5)),
            "config.l2reg": float(rng.uniform(1e-8, 1e-2)),
            "config.learning_rate": float(rng.uniform(1e-4, 1e-1)),
            "config.optimizer": ["adam", "sgd", "rmsprop"][n % 3],
            "config.train_fraction": [0.1, 0.5, 1.0][n % 3],
            "config.w_init": ["he_normal", "glorot_normal", "RandomNormal"][n % 3],
        }
        if seeds is not None:
            config["config.seed"] = seeds[n]
            # Networks 0 and 1 differ only in their seed: replicates of one config.
            if n == 1:
                config.update({k: v for k, v in rows[0].items()
                               if k.startswith("config.") and k != "config.seed"})
        if dataset is None:
            del config["config.dataset"]
        for step in SHORT_STEPS if n == 5 else STEPS:
            train_acc = float(rng.uniform(0.1, 1.0))
            test_acc = float(train_acc - rng.uniform(0.0, 0.1))
            rows.append({"test_accuracy": test_acc, "test_loss": float(rng.uniform(0.1, 3)),
                         "train_accuracy": train_acc,
                         "train_loss": math.inf if (n, step) == (INF_NETWORK, INF_STEP) else 0.5,
                         "step": step, **config})
            nets.append(n)
    perm = rng.permutation(len(rows))
    metrics = pd.DataFrame([rows[i] for i in perm]).drop(columns=list(drop))
    weights = rng.normal(size=(len(rows), width)).astype(np.float32)
    for r, i in enumerate(perm):
        if (nets[i], rows[i]["step"]) == (NAN_NETWORK, NAN_STEP):
            weights[r, 100] = np.nan
    np.save(root / "weights.npy", weights)
    metrics.to_csv(root / metrics_name, index=False)
    return Source(root, weights, metrics, np.array(nets)[perm])


# --------------------------------------------------------------------------- the published format

# The published zoos' checkpoint steps (README of google-research/dnn_predict_accuracy).
PUBLISHED_STEPS = (0, 1, 2, 3, 20, 40, 60, 80, 86)
CRASHED_NETWORK = 7  # its run stopped after step 80: no step-86 checkpoint
NAN_ROW_NETWORK, NAN_ROW_STEP = 11, 20  # one weights row holds a NaN, mid-training


def keras_layout(in_channels: int = 1) -> list[tuple[str, tuple[int, ...]]]:
    """The published layout.csv's variables in Keras order: each layer's kernel before its bias."""
    out, c = [], in_channels
    for name in ("conv2d", "conv2d_1", "conv2d_2"):
        out += [(f"sequential/{name}/kernel:0", (3, 3, c, 16)), (f"sequential/{name}/bias:0", (16,))]
        c = 16
    return out + [("sequential/dense/kernel:0", (16, 10)), ("sequential/dense/bias:0", (10,))]


def make_published_source(root: Path, n_networks: int = 24) -> Source:
    """`n_networks` networks as the Small CNN Zoo published them, crashed run and NaN row included.

    layout.csv is written by pandas with its index column and a `size` column;
    metrics.csv.gz has the published `config.*` columns (README of
    dnn_predict_accuracy) and `modeldir`; rows are grouped by network, steps in order.
    """
    root.mkdir(parents=True)
    variables = keras_layout()
    pos = write_layout(root / "layout.csv", variables, index=True)
    rng = np.random.default_rng(1)
    rows, nets = [], []
    for n in range(n_networks):
        config = {
            "config.activation": ["relu", "tanh"][n % 2],
            "config.b_init": "zeros",
            "config.dataset": "mnist",
            "config.dnn_architecture": "cnn",
            "config.dropout": [0.0, 0.05, 0.2][n % 3],
            "config.epochs": 86,
            "config.epochs_between_checkpoints": 20,
            "config.init_std": float(rng.uniform(0.01, 0.5)),
            "config.l2reg": float(rng.uniform(1e-8, 1e-2)),
            "config.learning_rate": float(rng.uniform(1e-4, 1e-1)),
            "config.num_layers": 3,
            "config.num_units": 16,
            "config.optimizer": ["adam", "sgd", "rmsprop"][n % 3],
            "config.random_seed": 42,
            "config.train_fraction": [0.1, 0.25, 0.5, 1.0][n % 4],
            "config.w_init": ["he_normal", "glorot_normal", "RandomNormal"][n % 3],
        }
        steps = PUBLISHED_STEPS[:-1] if n == CRASHED_NETWORK else PUBLISHED_STEPS
        for step in steps:
            train_acc = float(rng.uniform(0.1, 1.0))
            rows.append({**config, "modeldir": f"/tmp/zoo/{n}", "step": step,
                         "test_accuracy": float(train_acc - rng.uniform(0.0, 0.1)),
                         "test_loss": float(rng.uniform(0.1, 3)), "train_accuracy": train_acc,
                         "train_loss": float(rng.uniform(0.1, 3))})
            nets.append(n)
    metrics = pd.DataFrame(rows)
    weights = (0.3 * rng.normal(size=(len(rows), pos))).astype(np.float32)
    weights[np.flatnonzero((np.array(nets) == NAN_ROW_NETWORK)
                           & (metrics["step"].to_numpy() == NAN_ROW_STEP))[0], 7] = np.nan
    np.save(root / "weights.npy", weights)
    metrics.to_csv(root / "metrics.csv.gz", index=False)
    return Source(root, weights, metrics, np.array(nets))


def expected_params(weights_row: np.ndarray, variables) -> list[dict[str, np.ndarray]]:
    """Canonical layers cut from one source row by hand (independent of the importer's layout code)."""
    cut, pos = {}, 0
    for varname, shape in variables:
        size = math.prod(shape)
        cut[varname] = weights_row[pos:pos + size].reshape(shape)
        pos += size
    return [{"kernel": cut[f"sequential/{name}/kernel:0"], "bias": cut[f"sequential/{name}/bias:0"]}
            for name in ("conv2d", "conv2d_1", "conv2d_2", "dense")]


@pytest.fixture
def source(tmp_path) -> Source:
    return make_source(tmp_path / "mnist")


@pytest.fixture
def imported(source, tmp_path) -> Path:
    import_smallcnnzoo(source.path, tmp_path / "zoo")
    return tmp_path / "zoo"


@pytest.fixture
def published(tmp_path) -> Source:
    return make_published_source(tmp_path / "mnist")


def ids_of_written_networks(source: Source, zoo) -> dict[int, str]:
    """Written network number -> its network id in the imported zoo (through source_row)."""
    return dict(zip(source.net_of_row[zoo.table["source_row"]], zoo.table["network_id"], strict=True))




# --------------------------------------------------------------------------- round trip


@pytest.mark.parametrize("chunk_rows", [smallcnnzoo.DEFAULT_CHUNK_ROWS, 2])
def test_round_trip_exact(source, tmp_path, chunk_rows):
    import_smallcnnzoo(source.path, tmp_path / "zoo", chunk_rows=chunk_rows)
    zoo = load_zoo(tmp_path / "zoo")
    variables = mnist_layout()
    for _, row in zoo.table.iterrows():
        got = zoo.params(row["network_id"], int(row["epoch"]))
        src = source.weights[int(row["source_row"])]
        if np.isfinite(src).all():
            want = expected_params(src, variables)
        else:  # stored as zeros, flagged
            assert row["status"] == "diverged"
            want = [{k: np.zeros_like(v) for k, v in layer.items()}
                    for layer in expected_params(src, variables)]
        for g, w in zip(got, want, strict=True):
            for param in ("kernel", "bias"):
                assert g[param].dtype == np.float32
                np.testing.assert_array_equal(g[param], w[param])
    files = sorted(p.name for p in (tmp_path / "zoo" / storage.WEIGHTS_DIR).iterdir())
    if chunk_rows == 2:
        assert len(files) == 11  # steps 0 (6 rows) 20 (5) 86 (5) 1 (1) 40 (1), two rows a file
    else:
        assert files == [f"step{s:06d}-000.safetensors" for s in (0, 1, 20, 40, 86)]


def test_nothing_non_finite_is_stored(imported):
    from safetensors.numpy import load_file

    for path in (imported / storage.WEIGHTS_DIR).iterdir():
        for name, value in load_file(path).items():
            assert np.isfinite(value).all(), (path, name)


# --------------------------------------------------------------------------- table and manifest


def test_table_contents(source, imported):
    zoo = load_zoo(imported)
    t = zoo.table
    src = source.metrics
    assert len(t) == len(src) == 18 and zoo.num_networks == 6
    assert list(t.sort_values(["index", "epoch"])["source_row"]) == list(t["source_row"])
    by_src = t.set_index("source_row").sort_index()
    np.testing.assert_array_equal(by_src["test_acc"], src["test_accuracy"])
    np.testing.assert_array_equal(by_src["train_acc"], src["train_accuracy"])
    np.testing.assert_array_equal(by_src["test_loss"], src["test_loss"])
    np.testing.assert_array_equal(by_src["gen_gap"], src["train_accuracy"] - src["test_accuracy"])
    np.testing.assert_array_equal(by_src["epoch"], src["step"])
    np.testing.assert_array_equal(by_src["learning_rate"], src["config.learning_rate"])
    np.testing.assert_array_equal(by_src["weight_decay"], src["config.l2reg"])
    np.testing.assert_array_equal(by_src["init_scale"], src["config.init_std"])
    np.testing.assert_array_equal(by_src["dropout"], src["config.dropout"])
    np.testing.assert_array_equal(by_src["train_fraction"], src["config.train_fraction"])
    assert list(by_src["optimizer"]) == list(src["config.optimizer"])
    assert list(by_src["init"]) == list(src["config.w_init"])
    assert list(by_src["activation"]) == list(src["config.activation"])
    assert set(t["family"]) == {"cnn"} and set(t["hidden"]) == {"16-16-16"}
    assert set(t["depth"]) == {3} and set(t["max_width"]) == {16} and set(t["n_params"]) == {4970}
    assert set(t["dataset"]) == set(t["dataset_base"]) == {"mnist"}
    assert set(t["n_train"]) == set(t["batch_size"]) == set(t["seed"]) == {-1}
    assert (t["config_id"] == t["network_id"]).all()
    assert t["network_id"].str.fullmatch("[0-9a-f]{16}").all()
    # One network per written network, indexed by first appearance in the source rows.
    net_of = dict(zip(by_src.index, by_src["network_id"], strict=True))
    for n in range(6):
        rows = np.flatnonzero(source.net_of_row == n)
        assert len({net_of[r] for r in rows}) == 1
    first = [source.net_of_row[r] for r in sorted(np.unique(source.net_of_row, return_index=True)[1])]
    ids_in_order = t.drop_duplicates("index").sort_values("index")["network_id"].tolist()
    assert ids_in_order == [net_of[int(np.flatnonzero(source.net_of_row == n)[0])] for n in first]
    # Final flags and epochs: the short network ends at step 40.
    final = zoo.final
    assert len(final) == 6 and final["network_id"].is_unique
    short = net_of[int(np.flatnonzero(source.net_of_row == 5)[0])]
    assert zoo.row(short)["epoch"] == 40 and zoo.row(short)["final"]
    assert set(t.loc[t["network_id"] == short, "epochs"]) == {40}
    assert set(t.loc[t["network_id"] != short, "epochs"]) == {86}
    assert set(final["epoch"]) == {40, 86}
    # Diverged: the NaN weights row and the inf-loss row, nothing else.
    diverged = t[t["status"] == "diverged"]
    nan_id = net_of[int(np.flatnonzero(source.net_of_row == NAN_NETWORK)[0])]
    inf_id = net_of[int(np.flatnonzero(source.net_of_row == INF_NETWORK)[0])]
    assert sorted(zip(diverged["network_id"], diverged["epoch"], diverged["diverged_epoch"], strict=True)) \
        == sorted([(nan_id, NAN_STEP, NAN_STEP), (inf_id, INF_STEP, INF_STEP)])
    assert set(t.loc[t["status"] == "ok", "diverged_epoch"]) == {0}
    assert set(t["status"]) == {"ok", "diverged"}


def test_manifest(source, imported):
    zoo = load_zoo(imported)
    m = zoo.manifest
    assert (m["format"], m["format_version"]) == (storage.FORMAT, storage.FORMAT_VERSION)
    assert m["name"] == zoo.name == "smallcnnzoo-mnist" and m["num_networks"] == 6
    assert m["datasets"] == {} and m["shard"] is None
    assert m["config"]["zoo"]["input_shape"] == [28, 28, 1] and m["config"]["zoo"]["num_classes"] == 10
    assert m["config"]["zoo"]["checkpoint_epochs"] == [0, 1, 20, 40, 86]
    assert m["source"]["kind"] == "smallcnnzoo" and m["source"]["input_shape_from"] == "dataset"
    assert m["source"]["files"] == {name: sha256_file(source.path / name)
                                    for name in ("weights.npy", "layout.csv", "metrics.csv.gz")}
    assert set(m["files"]) == {storage.TABLE} | {f"{storage.WEIGHTS_DIR}/{p.name}"
                                                 for p in (imported / storage.WEIGHTS_DIR).iterdir()}
    assert m[storage.MANIFEST_CHECKSUM] == storage.manifest_sha256(m)  # the importer seals it too
    assert verify_zoo(imported) == []
    assert sorted(p.name for p in imported.parent.iterdir()) == ["mnist", "zoo"]  # no temporary left


def test_imported_networks_run(imported):
    zoo = load_zoo(imported)
    x = np.random.default_rng(1).uniform(-1, 1, size=(4, 28, 28, 1)).astype(np.float32)
    for nid in zoo.final["network_id"]:
        arch = zoo.arch(nid)
        assert arch.input_shape == (28, 28, 1) and arch.hidden == (16, 16, 16) and arch.num_classes == 10
    # One network per activation: each apply on a new shape or activation compiles.
    for nid in zoo.final[zoo.final["status"] == "ok"].drop_duplicates("activation")["network_id"]:
        logits = np.asarray(apply(zoo.arch(nid), zoo.params(nid), x))
        assert logits.shape == (4, 10) and np.isfinite(logits).all()


def test_ids_are_stable(source, imported, tmp_path):
    """Same config.* values, same ids and weights fingerprint: wherever the directory lies."""
    moved = tmp_path / "elsewhere" / "copy"
    shutil.copytree(source.path, moved)
    manifest = import_smallcnnzoo(moved, tmp_path / "zoo2")
    a, b = load_zoo(imported), load_zoo(tmp_path / "zoo2")
    assert manifest["weights_fingerprint"] == a.weights_fingerprint
    pd.testing.assert_frame_equal(a.table, b.table)


def test_seed_column_groups_replicates(tmp_path):
    src = make_source(tmp_path / "mnist", seeds=(7, 8, 9, 10, 11, 12), metrics_name="metrics.csv")
    import_smallcnnzoo(src.path, tmp_path / "zoo")
    final = load_zoo(tmp_path / "zoo").final
    assert final["network_id"].nunique() == 6 and final["config_id"].nunique() == 5
    assert sorted(final["seed"]) == [7, 8, 9, 10, 11, 12]
    pair = final[final["seed"].isin([7, 8])]
    assert pair["config_id"].nunique() == 1


def test_missing_optional_columns(tmp_path):
    drop = ("config.b_init", "config.dropout", "config.w_init", "config.optimizer", "test_loss", "train_loss")
    src = make_source(tmp_path / "mnist", dataset=None, drop=drop)
    import_smallcnnzoo(src.path, tmp_path / "zoo")
    t = load_zoo(tmp_path / "zoo").table
    assert set(t["init"]) == set(t["optimizer"]) == {"unknown"}
    assert t["dropout"].isna().all() and t["test_loss"].isna().all()
    assert set(t["dataset"]) == {"mnist"}  # the directory's name
    # Without train_loss, only the NaN weights row is diverged.
    assert (t["status"] == "diverged").sum() == 1


@pytest.mark.parametrize(("in_channels", "dataset", "option", "want", "source"), [
    (1, "cifar10", None, (32, 32, 1), "dataset"),
    (3, "svhn_cropped", None, (32, 32, 3), "dataset"),
    (3, "my_data", None, (32, 32, 3), "channels"),
    (1, "my_data", None, (28, 28, 1), "channels"),
    (1, "my_data", (64, 64, 1), (64, 64, 1), "option"),
])
def test_input_shape(tmp_path, in_channels, dataset, option, want, source):
    src = make_source(tmp_path / "src", in_channels=in_channels, dataset=dataset)
    manifest = import_smallcnnzoo(src.path, tmp_path / "zoo", input_shape=option)
    assert tuple(manifest["config"]["zoo"]["input_shape"]) == want
    assert manifest["source"]["input_shape_from"] == source
    zoo = load_zoo(tmp_path / "zoo")
    arch = zoo.arch(zoo.final["network_id"][0])
    assert arch.input_shape == want and arch.layer_shapes()[0][0] == (3, 3, in_channels, 16)


def test_dataset_option(source, tmp_path):
    manifest = import_smallcnnzoo(source.path, tmp_path / "zoo", dataset="mnist@perm1")
    assert manifest["name"] == "smallcnnzoo-mnist@perm1"
    assert set(load_zoo(tmp_path / "zoo").table["dataset"]) == {"mnist@perm1"}


@pytest.mark.parametrize(("text", "want"), [("(3, 3, 1, 16)", (3, 3, 1, 16)), ("(16,)", (16,)),
                                            ("[16, 10]", (16, 10)), ("16", (16,))])
def test_parse_shape(text, want):
    assert parse_shape(text, "layout.csv") == want


@pytest.mark.parametrize("text", ["(3, 3, one, 16)", "()", "(3, -3)", "__import__('os')", "(0, 3)", "(3,,3)"])
def test_parse_shape_refuses(text):
    with pytest.raises(SourceError, match="layout.csv: unparsable shape"):
        parse_shape(text, "layout.csv")


def test_parse_input_shape():
    assert parse_input_shape("28,28,1") == parse_input_shape("28x28x1") == (28, 28, 1)
    with pytest.raises(ValueError, match="expected H,W,C"):
        parse_input_shape("28,28")


# --------------------------------------------------------------------------- errors


def assert_nothing_written(tmp_path: Path, out: Path) -> None:
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


class _Trap:
    """Unpickling this creates a file: proof that a loader unpickled."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_pickled_weights_refused(source, tmp_path):
    # The trap works: unpickling a copy creates its marker.
    probe = tmp_path / "probe"
    pickle.loads(pickle.dumps(_Trap(probe))).close()
    assert probe.exists()
    marker = tmp_path / "unpickled"
    np.save(source.path / "weights.npy", np.array([_Trap(marker)] * 3, dtype=object), allow_pickle=True)
    with pytest.raises(SourceError, match=r"weights\.npy: holds a object array, not plain floats"):
        import_smallcnnzoo(source.path, tmp_path / "zoo")
    assert not marker.exists()
    assert_nothing_written(tmp_path, tmp_path / "zoo")


@pytest.mark.parametrize(("damage", "message"), [
    ("missing_layout", r"layout\.csv: missing"),
    ("missing_weights", r"weights\.npy: missing"),
    ("missing_metrics", r"metrics\.csv: missing"),
    ("wider_weights", r"weights\.npy: rows have 4971 values but .*layout\.csv lays out 4970"),
    ("fewer_metrics", r"metrics\.csv\.gz: 17 rows but .*weights\.npy holds 18 checkpoints"),
    ("bad_shape", r"layout\.csv row 2 \(sequential/conv2d/kernel:0\): unparsable shape '\(3, 3, one, 16\)'"),
    ("size_mismatch", r"layout\.csv row 1 .*end_idx - start_idx = 15 but shape \(16,\) has 16 values"),
    ("kernel_5x5",
     r"layout\.csv: sequential/conv2d/kernel:0 has shape \(5, 5, 1, 16\); zoobench's CNNs have 3x3"),
    ("flatten_head",
     r"layout\.csv: the dense head .* takes 64 inputs but the last conv layer has 16 channels"),
    ("batchnorm", r"layout\.csv: variable 'sequential/bn/gamma:0' is neither a layer's kernel nor its bias"),
    ("unknown_activation", r"metrics\.csv\.gz: config\.activation 'swish' is not one of zoobench's"),
    ("no_test_accuracy", r"metrics\.csv\.gz: missing required column\(s\) \['test_accuracy'\]"),
    ("no_config", r"metrics\.csv\.gz: no config\.\* columns"),
    ("fractional_step", r"metrics\.csv\.gz: step row 1 is 0\.5"),
    ("not_npy", r"weights\.npy: not a \.npy file"),
    ("int_weights", r"weights\.npy: holds a int32 array, not plain floats"),
])
def test_source_errors(source, tmp_path, damage, message):
    src = source.path
    if damage.startswith("missing_"):
        name = {"layout": "layout.csv", "weights": "weights.npy", "metrics": "metrics.csv.gz"}[damage[8:]]
        (src / name).unlink()
    elif damage == "wider_weights":
        np.save(src / "weights.npy", np.zeros((18, 4971), np.float32))
    elif damage == "fewer_metrics":
        source.metrics.iloc[:-1].to_csv(src / "metrics.csv.gz", index=False)
    elif damage in ("bad_shape", "size_mismatch"):
        layout = pd.read_csv(src / "layout.csv")
        if damage == "bad_shape":
            layout.loc[1, "shape"] = "(3, 3, one, 16)"
        else:
            layout.loc[0, "end_idx"] = 15
        layout.to_csv(src / "layout.csv", index=False)
    elif damage == "kernel_5x5":
        width = write_layout(src / "layout.csv", mnist_layout(kernel=5))
        np.save(src / "weights.npy", np.zeros((18, width), np.float32))
    elif damage == "flatten_head":
        variables = mnist_layout()
        variables[-1] = ("sequential/dense/kernel:0", (64, 10))
        width = write_layout(src / "layout.csv", variables)
        np.save(src / "weights.npy", np.zeros((18, width), np.float32))
    elif damage == "batchnorm":
        width = write_layout(src / "layout.csv", [*mnist_layout(), ("sequential/bn/gamma:0", (16,))])
        np.save(src / "weights.npy", np.zeros((18, width), np.float32))
    elif damage == "unknown_activation":
        source.metrics.assign(**{"config.activation": "swish"}).to_csv(src / "metrics.csv.gz", index=False)
    elif damage == "no_test_accuracy":
        source.metrics.drop(columns=["test_accuracy"]).to_csv(src / "metrics.csv.gz", index=False)
    elif damage == "no_config":
        cols = [c for c in source.metrics.columns if c.startswith("config.")]
        source.metrics.drop(columns=cols).to_csv(src / "metrics.csv.gz", index=False)
    elif damage == "fractional_step":
        source.metrics.assign(step=0.5).to_csv(src / "metrics.csv.gz", index=False)
    elif damage == "not_npy":
        (src / "weights.npy").write_bytes(b"not an array")
    elif damage == "int_weights":
        np.save(src / "weights.npy", np.zeros((18, 4970), np.int32))
    out = tmp_path / "zoo"
    with pytest.raises(SourceError, match=message):
        import_smallcnnzoo(src, out)
    assert_nothing_written(tmp_path, out)


def test_refuses_non_empty_out(source, tmp_path):
    out = tmp_path / "zoo"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(ZooError, match=r"zoo: already exists and is not empty"):
        import_smallcnnzoo(source.path, out)
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt"]
    (out / "keep.txt").unlink()  # an empty directory is fine
    import_smallcnnzoo(source.path, out)
    assert verify_zoo(out) == []


def test_failure_while_writing_leaves_nothing(source, tmp_path, monkeypatch):
    def boom(*_args, **_kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(storage, "write_table", boom)
    with pytest.raises(OSError, match="disk full"):
        import_smallcnnzoo(source.path, tmp_path / "zoo")
    assert_nothing_written(tmp_path, tmp_path / "zoo")


# --------------------------------------------------------------------------- CLI


def test_cli_json(source, tmp_path, capsys):
    out = tmp_path / "zoo"
    code, stdout, _ = run_cli(capsys, "zoo", "import-smallcnnzoo", source.path, "--out", out, "--json")
    assert code == 0
    doc = json.loads(stdout)  # exactly one JSON document
    assert doc["num_networks"] == 6 and doc["checkpoints"] == 18 and doc["input_shape"] == [28, 28, 1]
    assert doc["weights_fingerprint"] == load_zoo(out).weights_fingerprint
    code, stdout, _ = run_cli(capsys, "zoo", "verify", out, "--json")
    assert code == 0 and json.loads(stdout)["ok"] is True
    code, stdout, _ = run_cli(capsys, "zoo", "info", out, "--json")
    info = json.loads(stdout)
    assert code == 0 and info["num_networks"] == 6 and info["diverged"] == 1
    assert info["checkpoint_epochs"] == [0, 1, 20, 40, 86]


def test_cli_text_and_options(source, tmp_path, capsys):
    out = tmp_path / "zoo"
    code, stdout, _ = run_cli(capsys, "zoo", "import-smallcnnzoo", source.path, "--out", out,
                              "--dataset", "digits", "--input-shape", "16,16,1")
    assert code == 0
    assert stdout.startswith(f"imported {source.path} into {out}: 6 networks, 18 checkpoints, "
                             "input shape (16, 16, 1)")
    assert set(load_zoo(out).table["dataset"]) == {"digits"}


def test_cli_errors(source, tmp_path, capsys):
    (source.path / "layout.csv").unlink()
    code, stdout, stderr = run_cli(capsys, "zoo", "import-smallcnnzoo", source.path, "--out", tmp_path / "z",
                                   "--json")
    assert code == 1
    assert "layout.csv: missing" in json.loads(stdout)["error"] and "layout.csv: missing" in stderr
    code, _, stderr = run_cli(capsys, "zoo", "import-smallcnnzoo", source.path, "--out", tmp_path / "z",
                              "--input-shape", "28")
    assert code == 2 and "expected H,W,C" in stderr
    code, _, stderr = run_cli(capsys, "zoo", "import-smallcnnzoo", source.path)
    assert code == 2 and "--out" in stderr


# --------------------------------------------------------------------------- crashed runs


def test_crashed_runs_every_task_loads(published, tmp_path, capsys):
    """A run that stopped early ends at its last stored checkpoint: every task builds on the zoo.

    The published MNIST zoo has 269,973 rows, not 30,000 x 9: some runs crashed
    before epoch 86. Their last checkpoint is their final one.
    """
    out = tmp_path / "zoo"
    code, _, err = run_cli(capsys, "zoo", "import-smallcnnzoo", published.path, "--out", out)
    assert code == 0, err
    zoo = load_zoo(out)
    assert zoo.num_networks == 24
    by_net = ids_of_written_networks(published, zoo)
    crashed = by_net[CRASHED_NETWORK]
    assert zoo.row(crashed)["epoch"] == 80
    final_epoch = dict(zip(zoo.final["network_id"], zoo.final["epoch"], strict=True))
    loaded = []
    for name in TASKS:
        for split in TASK_SPLITS[name]:
            for all_checkpoints in (False, True) if name == "generalization" else (False,):
                try:
                    task = load_task(name, zoo, split, all_checkpoints=all_checkpoints)
                except (TaskUnavailable, SplitUnavailable):
                    continue
                loaded.append((name, split, all_checkpoints))
                answers = test_targets(task)
                for part in task.parts:
                    originals = [(i, int(e)) for i, e in zip(part.ids, part.epochs, strict=True)
                                 if i in final_epoch]
                    if not all_checkpoints:
                        assert all(e == final_epoch[i] for i, e in originals)
                    for i, e in originals:
                        assert zoo.row(i, e)["status"] == "ok"  # the NaN row is left out
                    assert all(np.isfinite(v).all() for v in (part.targets or answers["targets"]).values())
                    assert len(part.networks()) == len(part)
                assert task_metadata(task, method="m").all_checkpoints is all_checkpoints
    assert ("generalization", "id", False) in loaded and ("generalization", "id", True) in loaded
    task = load_task("generalization", zoo, "id")
    # Which part holds the crashed network is fixed by its id; in the test part, it also checks
    # that submission metadata tells its final checkpoint from an all-checkpoints item.
    assert crashed in test_targets(task)["ids"]
    code, stdout, err = run_cli(capsys, "tasks", out)
    assert code == 0, err
    assert re.search(r"generalization\s+id\s+train \d+, val \d+, test \d+", stdout)


# --------------------------------------------------------------------------- the function they compute


def keras_logits(params, x: np.ndarray, activation: str) -> np.ndarray:
    """The Small CNN Zoo's forward pass as Keras computes it, in float64 NumPy.

    `Conv2D(16, 3, strides=2)` with Keras' default padding 'valid' (HWIO kernel,
    cross-correlation: out[i, j] = sum over (a, b, c) of x[2i + a, 2j + b, c] * k[a, b, c]),
    the activation, then GlobalAveragePooling2D and the dense head
    (dnn_predict_accuracy/train_network.py, build_cnn).
    """
    act = {"relu": lambda z: np.maximum(z, 0.0), "tanh": np.tanh}[activation]
    h = np.asarray(x, np.float64)
    for layer in params[:-1]:
        kernel, bias = np.asarray(layer["kernel"], np.float64), np.asarray(layer["bias"], np.float64)
        oh, ow = (h.shape[1] - 3) // 2 + 1, (h.shape[2] - 3) // 2 + 1
        out = np.zeros((h.shape[0], oh, ow, kernel.shape[-1]))
        for a in range(3):
            for b in range(3):
                out += h[:, a:a + 2 * oh - 1:2, b:b + 2 * ow - 1:2, :] @ kernel[a, b]
        h = act(out + bias)
    head = params[-1]
    return h.mean(axis=(1, 2)) @ np.asarray(head["kernel"], np.float64) + np.asarray(head["bias"], np.float64)


def test_keras_reference_output_sizes():
    """Guards the reference: VALID stride-2 3x3 maps 28 -> 13 -> 6 -> 2, as Keras does."""
    h = np.zeros((1, 28, 28, 1))
    sizes = []
    for _ in range(3):
        h = h[:, : 2 * ((h.shape[1] - 3) // 2 + 1) - 1:2, : 2 * ((h.shape[2] - 3) // 2 + 1) - 1:2]
        sizes.append(h.shape[1])
    assert sizes == [13, 6, 2]


def test_imported_networks_compute_the_keras_function(published, tmp_path):
    """Inputs scaled as the zoo says, zoobench's apply gives the logits Keras gave."""
    import_smallcnnzoo(published.path, tmp_path / "zoo")
    zoo = load_zoo(tmp_path / "zoo")
    pixels = np.random.default_rng(3).integers(0, 256, size=(5, 28, 28, 1)) / 255.0
    x = -1.0 + 2.0 * pixels  # train_network.py: image / 255, then into [-1, 1]
    final = zoo.final[zoo.final["status"] == "ok"]
    for nid in final.drop_duplicates("activation")["network_id"]:
        arch = zoo.arch(nid)
        params = zoo.params(nid)
        want = keras_logits(params, x, arch.activation)
        got = np.asarray(apply(arch, params, x.astype(np.float32)), np.float64)
        relative_error = float(np.abs(got - want).max() / np.abs(want).max())
        assert relative_error <= 1e-5, (arch.activation, relative_error)
    assert zoo.arch(nid).padding == "VALID"
    assert zoo.manifest["config"]["zoo"]["input_scaling"] == "[-1, 1]"


def test_an_import_of_format_version_1_warns(imported):
    """Zoos imported before version 2 hold no padding or scaling: read as SAME, standardised, and said so."""
    path = imported / storage.MANIFEST
    storage.write_manifest(imported, {**json.loads(path.read_text()), "format_version": 1})
    with pytest.warns(UserWarning, match="imported before format version 2.*Import it again"):
        load_zoo(imported)


def test_imported_networks_are_evaluated_as_trained(published, tmp_path):
    """evaluation_data scales pixels into [-1, 1]; the batched merging path uses VALID convs too."""
    import_smallcnnzoo(published.path, tmp_path / "zoo", dataset="mnist5k")
    zoo = load_zoo(tmp_path / "zoo")
    x, y = evaluation_data(zoo, "mnist5k")
    raw = datasets._builtin_raw("mnist5k").x_test
    np.testing.assert_allclose(x, (-1.0 + 2.0 * raw / 255.0).astype(np.float32), rtol=0, atol=1e-6)
    x, y = x[:64], y[:64]
    ok = zoo.final[zoo.final["status"] == "ok"]
    a, b = ok.loc[ok["activation"] == "tanh", "network_id"][:2]
    arch = zoo.arch(a)
    assert zoo.arch(b) == arch
    identity = {name: np.arange(size) for name, size in permutation_spec(arch).sizes.items()}
    [curve] = interpolation_curves([MergePair(arch, zoo.params(a), zoo.params(b), identity, "d")],
                                   {"d": (x, y)})
    for lam, params in ((0, zoo.params(a)), (-1, zoo.params(b))):
        logits = keras_logits(params, x, arch.activation)
        logp = logits - logits.max(axis=1, keepdims=True)
        logp -= np.log(np.exp(logp).sum(axis=1, keepdims=True))
        np.testing.assert_allclose(curve["loss"][lam], -logp[np.arange(len(y)), y].mean(), rtol=1e-5)
    eager = interpolation_curve(arch, zoo.params(a), zoo.params(b), x, y)
    np.testing.assert_allclose(curve["loss"], eager["loss"], rtol=1e-5)


# --------------------------------------------------------------------------- the published split


def write_row_order(path: Path, rows) -> Path:
    path.write_text("".join(f"{int(r)}\n" for r in rows))
    return path


def protocol_parts(source: Source, order, network_id: dict[int, str]) -> dict[str, set[str]]:
    """The published protocol as NFNZooDataset computes it, on this test's own bookkeeping.

    Rows in file order, those at step 86 kept; test: the second half; train and val:
    the first 80% and the rest of the first half shuffled by random.Random(0).
    """
    steps = source.metrics["step"].to_numpy()
    nets = [source.net_of_row[r] for r in order if steps[r] == 86]
    half = int(0.5 * len(nets))
    trainval = list(range(half))
    random.Random(0).shuffle(trainval)
    cut = int(0.8 * len(trainval))
    return {"train": {network_id[nets[i]] for i in trainval[:cut]},
            "val": {network_id[nets[i]] for i in trainval[cut:]},
            "test": {network_id[n] for n in nets[half:]}}


def test_split_file_gives_the_published_split(published, tmp_path, capsys):
    order = np.random.default_rng(5).permutation(len(published.metrics))
    split_file = write_row_order(tmp_path / "nfn_mnist_split.csv", order)
    out = tmp_path / "zoo"
    code, stdout, err = run_cli(capsys, "zoo", "import-smallcnnzoo", published.path, "--out", out,
                                "--split-file", split_file)
    assert code == 0, err
    assert ("split 'published': train 9, val 3, test 12 (1 networks outside the protocol put in train)"
            in stdout)
    zoo = load_zoo(out)
    network_id = ids_of_written_networks(published, zoo)
    want = protocol_parts(published, order, network_id)
    want["train"].add(network_id[CRASHED_NETWORK])  # no step-86 row: outside the protocol, in train
    split = get_split(zoo, "published")
    assert split.path == out / "splits" / "published.json"
    assert {p: set(ids) for p, ids in split.parts.items()} == want
    assert split.details["outside_protocol_in_train"] == 1 and split.details["networks_in_protocol"] == 23
    assert split.details["source"] == {"file": split_file.name, "sha256": sha256_file(split_file)}
    code, _, err = run_cli(capsys, "zoo", "verify", out)
    assert code == 0, err
    # Generalization accepts it; its test part is the protocol's, and a submission for it validates.
    task = load_task("generalization", zoo, "published")
    assert set(test_targets(task)["ids"]) == want["test"]
    assert set(task.train.ids) == want["train"] and set(task.val.ids) == want["val"]
    path = write_submission(tmp_path / "sub.json", task=task, method="m",
                            predictions={i: {"test_acc": 0.5, "gen_gap": 0.0} for i in task.test.ids})
    sub, _ = validate_submission(path, zoo)
    assert sub.metadata.split == "published"
    code, stdout, err = run_cli(capsys, "tasks", out)
    assert code == 0, err
    assert re.search(r"generalization\s+published\s+train 9, val 3, test 12", stdout)
    with pytest.raises(ValueError, match="split 'published' does not apply to the classification task"):
        load_task("classification", zoo, "published")


def test_no_split_file_no_published_split(imported, capsys):
    with pytest.raises(SplitUnavailable, match="has no 'published' split"):
        load_task("generalization", imported, "published")
    code, stdout, _ = run_cli(capsys, "tasks", imported)
    assert code == 0 and "published" not in stdout


@pytest.mark.parametrize(("text", "message"), [
    ("3\n1\nx7\n", r"line 3: 'x7' is not a row number \(expected one non-negative integer a line\)"),
    ("0\n-1\n", r"line 2: '-1' is not a row number"),
    ("0\n1.0\n", r"line 2: '1.0' is not a row number"),
    ("0,1\n", r"line 1: '0,1' is not a row number"),
    ("0\n215\n", r"line 2: row 215 is out of range; the source has 215 rows \(0 to 214\)"),
    ("4\n2\n4\n", r"line 3: row 4 is listed again \(first on line 1\)"),
    ("\n\n", r"empty; expected one source row number a line"),
    ("0\n", r"lists 0 network\(s\) at step 86: too few for a train and a test part"),  # found after import
])
def test_bad_split_files_are_refused(published, tmp_path, capsys, text, message):
    split_file = tmp_path / "split.csv"
    split_file.write_text(text)
    out = tmp_path / "zoo"
    code, _, err = run_cli(capsys, "zoo", "import-smallcnnzoo", published.path, "--out", out,
                           "--split-file", split_file)
    assert code == 1
    assert re.search(f"{re.escape(str(split_file))}( line \\d+)?: ", err) and re.search(message, err), err
    assert_nothing_written(tmp_path, out)
