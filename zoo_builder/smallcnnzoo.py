"""Import the Small CNN Zoo (Unterthiner et al. 2020) into a zoobench zoo.

"Predicting Neural Network Accuracy from Weights" published its zoos as one
directory per dataset (mnist, fashion_mnist, cifar10, svhn_cropped):

    weights.npy                  float array, one row per checkpoint (flattened TF variables)
    layout.csv                   varname, start_idx, end_idx, shape of each variable in a row
    metrics.csv[.gz]             one row per checkpoint: accuracies, losses, step, config.* columns

Work on these zoos (NFN, Neural Graphs) also shares a row order file, one source
row a line, that fixes their train/val/test split; `read_row_order` reads and
checks it (benchmark.splits.published_split turns it into the `published` split).

`import_smallcnnzoo` turns such a directory into a zoo in the zoobench format
(docs/zoo_format.md, section "Importing the Small CNN Zoo"), so every task and
baseline runs on it unchanged. Nothing is unpickled: weights.npy is memory-mapped
only after its header says it is a plain float array. The zoo is written into a
temporary sibling directory renamed into place at the end, so a failed import
leaves nothing under the final name.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import re
import shutil
import time
import uuid
from pathlib import Path

import numpy as np
import pandas as pd

from zoo_builder import storage
from zoo_builder.architecture import CLASSIFIER_ACTIVATIONS, KERNEL_SIZE, ArchSpec
from zoo_builder.build import library_versions, zoo_files
from zoo_builder.files import read_bounded, sha256_file
from zoo_builder.storage import weights_fingerprint

SOURCE_KIND = "smallcnnzoo"
WEIGHTS_NPY = "weights.npy"
LAYOUT_CSV = "layout.csv"
METRICS_CSV = ("metrics.csv", "metrics.csv.gz")
REQUIRED_METRICS = ("test_accuracy", "train_accuracy", "step")
# Config columns that only pick a random seed: networks differing in them share a config_id.
SEED_COLUMNS = ("config.seed", "config.random_seed")
ACTIVATION_ALIASES = {"leakyrelu": "leaky_relu", "leaky-relu": "leaky_relu", "logistic": "sigmoid"}
# Input (H, W) of the published zoos; their CIFAR-10 and SVHN zoos are grayscale (C = 1).
DATASET_SIZES = {"mnist": (28, 28), "fashion_mnist": (28, 28), "cifar10": (32, 32), "svhn_cropped": (32, 32)}
# Fallback when the dataset is unknown: the input channels of the first kernel decide.
CHANNEL_SHAPES = {1: (28, 28, 1), 3: (32, 32, 3)}
# Checkpoints per weights file: bounds the memory an import needs (4,970 floats: ~160 MB).
DEFAULT_CHUNK_ROWS = 8192
# A row order of the 270,000-row published zoos is ~1.8 MB.
MAX_ROW_ORDER_BYTES = 64 << 20
UNKNOWN = "unknown"
# How the published networks were trained (google-research dnn_predict_accuracy/train_network.py):
# Keras Conv2D(16, 3, strides=2) with its default padding 'valid', on images divided by 255 and
# mapped onto [-1, 1] (then averaged over channels: grayscale). layout.csv records neither.
SOURCE_PADDING = "VALID"
SOURCE_INPUT_SCALING = "[-1, 1]"


class SourceError(storage.ZooError):
    """A Small CNN Zoo directory is incomplete or malformed; the message names the file."""


# --------------------------------------------------------------------------- layout.csv


@dataclasses.dataclass(frozen=True)
class Variable:
    """One TensorFlow variable's slice of a weights row."""

    varname: str
    start: int
    end: int
    shape: tuple[int, ...]


@dataclasses.dataclass(frozen=True)
class Layout:
    """The layers of a Small CNN Zoo network: (kernel, bias) in forward order."""

    layers: tuple[tuple[Variable, Variable], ...]
    width: int

    @property
    def hidden(self) -> tuple[int, ...]:
        return tuple(k.shape[-1] for k, _ in self.layers[:-1])

    @property
    def in_channels(self) -> int:
        return self.layers[0][0].shape[2]

    @property
    def num_classes(self) -> int:
        return self.layers[-1][0].shape[1]


def parse_shape(text: str, where: str) -> tuple[int, ...]:
    """'(3, 3, 1, 16)' or '(16,)' -> a tuple of positive ints, without eval."""
    body = str(text).strip()
    if len(body) >= 2 and body[0] + body[-1] in ("()", "[]"):
        body = body[1:-1]
    parts = [p.strip() for p in body.split(",")]
    if parts and parts[-1] == "" and len(parts) > 1:
        parts = parts[:-1]
    if not parts or not all(re.fullmatch(r"\d+", p) for p in parts) or any(int(p) == 0 for p in parts):
        raise SourceError(f"{where}: unparsable shape {text!r} (expected e.g. '(3, 3, 1, 16)')")
    return tuple(int(p) for p in parts)


def _split_varname(varname: str, where: str) -> tuple[str, str]:
    """'sequential/conv2d/kernel:0' -> ('sequential/conv2d', 'kernel')."""
    base = re.sub(r":\d+$", "", varname.strip())
    layer, _, param = base.rpartition("/")
    if param not in ("kernel", "bias") or not layer:
        raise SourceError(f"{where}: variable {varname!r} is neither a layer's kernel nor its bias; "
                          "zoobench reads CNNs of conv layers and a dense head only")
    return layer, param


def read_layout(path: Path) -> Layout:
    """Parse layout.csv into layers; the variables must tile a weights row exactly."""
    if not path.is_file():
        raise SourceError(f"{path}: missing; a Small CNN Zoo directory has {WEIGHTS_NPY}, {LAYOUT_CSV} "
                          f"and {METRICS_CSV[0]} (or {METRICS_CSV[1]})")
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise SourceError(f"{path}: not a readable CSV file ({e})") from e
    missing = [c for c in ("varname", "start_idx", "end_idx", "shape") if c not in df.columns]
    if missing or df.empty:
        raise SourceError(f"{path}: needs columns varname, start_idx, end_idx, shape and one row per "
                          f"variable (missing {missing or 'rows'})")
    variables = []
    for i, r in enumerate(df.itertuples(index=False)):
        where = f"{path} row {i + 1} ({r.varname})"
        if not (re.fullmatch(r"\d+", r.start_idx.strip()) and re.fullmatch(r"\d+", r.end_idx.strip())):
            raise SourceError(f"{where}: start_idx {r.start_idx!r} and end_idx {r.end_idx!r} "
                              "must be integers")
        var = Variable(r.varname.strip(), int(r.start_idx), int(r.end_idx), parse_shape(r.shape, where))
        if var.end - var.start != math.prod(var.shape):
            raise SourceError(f"{where}: end_idx - start_idx = {var.end - var.start} but shape "
                              f"{var.shape} has {math.prod(var.shape)} values")
        variables.append(var)
    variables.sort(key=lambda v: v.start)
    pos = 0
    for v in variables:
        if v.start != pos:
            raise SourceError(f"{path}: variable {v.varname} starts at {v.start}, expected {pos} "
                              "(variables overlap or leave a gap)")
        pos = v.end
    layers: dict[str, dict[str, Variable]] = {}
    for v in variables:
        layer, param = _split_varname(v.varname, str(path))
        if param in layers.setdefault(layer, {}):
            raise SourceError(f"{path}: layer {layer} has two {param} variables")
        layers[layer][param] = v
    for name, params in layers.items():
        if set(params) != {"kernel", "bias"}:
            raise SourceError(f"{path}: layer {name} needs a kernel and a bias, has {sorted(params)}")
    ordered = sorted(layers.values(), key=lambda p: min(p["kernel"].start, p["bias"].start))
    layout = Layout(tuple((p["kernel"], p["bias"]) for p in ordered), pos)
    check_cnn(layout, path)
    return layout


def check_cnn(layout: Layout, path: Path) -> None:
    """Refuse layouts outside zoobench's CNN family: 3x3 conv layers, pooling, one dense head."""
    *convs, (head, head_bias) = layout.layers
    if not convs:
        raise SourceError(f"{path}: no conv layer; zoobench's CNNs have conv layers then a dense head")
    fan_in = None
    for kernel, bias in convs:
        if len(kernel.shape) != 4 or kernel.shape[:2] != (KERNEL_SIZE, KERNEL_SIZE):
            raise SourceError(f"{path}: {kernel.varname} has shape {kernel.shape}; zoobench's CNNs have "
                              f"{KERNEL_SIZE}x{KERNEL_SIZE} conv kernels (HWIO) before a single dense head")
        if fan_in is not None and kernel.shape[2] != fan_in:
            raise SourceError(f"{path}: {kernel.varname} takes {kernel.shape[2]} channels but the layer "
                              f"before it has {fan_in}")
        if bias.shape != kernel.shape[-1:]:
            raise SourceError(f"{path}: {bias.varname} has shape {bias.shape}, expected {kernel.shape[-1:]}")
        fan_in = kernel.shape[-1]
    if len(head.shape) != 2:
        raise SourceError(f"{path}: the last layer {head.varname} has shape {head.shape}; zoobench's CNNs "
                          "end with a dense (in, out) head")
    if head.shape[0] != fan_in:
        raise SourceError(f"{path}: the dense head {head.varname} takes {head.shape[0]} inputs but the last "
                          f"conv layer has {fan_in} channels; zoobench's CNNs pool globally before the head")
    if head_bias.shape != head.shape[-1:]:
        raise SourceError(f"{path}: {head_bias.varname} has shape {head_bias.shape}, "
                          f"expected {head.shape[-1:]}")


# --------------------------------------------------------------------------- weights.npy


def open_weights(path: Path) -> np.ndarray:
    """Memory-map weights.npy after checking its header: a 2-D float array, never a pickle."""
    if not path.is_file():
        raise SourceError(f"{path}: missing; the Small CNN Zoo's weights file")
    try:
        with open(path, "rb") as f:
            version = np.lib.format.read_magic(f)
            if version == (1, 0):
                shape, _, dtype = np.lib.format.read_array_header_1_0(f)
            elif version == (2, 0):
                shape, _, dtype = np.lib.format.read_array_header_2_0(f)
            else:
                raise SourceError(f"{path}: .npy format version {version} is not supported (1.0 or 2.0)")
    except ValueError as e:
        raise SourceError(f"{path}: not a .npy file ({e})") from e
    if dtype.hasobject or dtype.kind != "f":
        raise SourceError(f"{path}: holds a {dtype} array, not plain floats; refusing to load it "
                          "(object arrays are pickles and could run code)")
    if len(shape) != 2 or shape[0] == 0:
        raise SourceError(f"{path}: shape {shape}; expected (checkpoints, parameters) with at least one row")
    return np.load(path, mmap_mode="r", allow_pickle=False)


def checkpoint_count(src: str | Path) -> int:
    """Rows of `src`'s weights.npy (its checkpoints), from the header alone."""
    return open_weights(Path(src) / WEIGHTS_NPY).shape[0]


# --------------------------------------------------------------------------- row order (split file)


def read_row_order(path: str | Path, n_rows: int) -> np.ndarray:
    """The source rows a split file lists, in its order: one integer a line, as published.

    The NFN and Neural Graphs code read it with ``pd.read_csv(f, header=None)`` and
    index weights.npy and metrics.csv.gz with it, so each line is a row of those files
    (0-based, the header not counted). A line that is not a non-negative integer, a
    row outside ``[0, n_rows)`` or one listed twice is refused, naming the file and line.
    Blank lines at the end are ignored.
    """
    path = Path(path)
    try:
        text = read_bounded(path, MAX_ROW_ORDER_BYTES, "split").decode("utf-8")
    except FileNotFoundError:
        raise SourceError(f"{path}: no such split file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise SourceError(f"{path}: not a readable text file ({e})") from e
    except ValueError as e:  # from read_bounded: not a regular file, or over the limit
        raise SourceError(str(e)) from None
    lines = text.splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    if not lines:
        raise SourceError(f"{path}: empty; expected one source row number a line")
    rows, line_of = [], {}
    for lineno, line in enumerate(lines, start=1):
        if not re.fullmatch(r"\s*[0-9]+\s*", line):
            raise SourceError(f"{path} line {lineno}: {line!r} is not a row number "
                              "(expected one non-negative integer a line)")
        row = int(line)
        if row >= n_rows:
            raise SourceError(f"{path} line {lineno}: row {row} is out of range; the source has "
                              f"{n_rows} rows (0 to {n_rows - 1})")
        if row in line_of:
            raise SourceError(f"{path} line {lineno}: row {row} is listed again (first on line "
                              f"{line_of[row]}); a split lists each row once")
        line_of[row] = lineno
        rows.append(row)
    return np.array(rows, dtype=np.int64)


# --------------------------------------------------------------------------- metrics.csv


def metrics_path(src: Path) -> Path:
    found = [src / name for name in METRICS_CSV if (src / name).is_file()]
    if not found:
        raise SourceError(f"{src / METRICS_CSV[0]}: missing (and no {METRICS_CSV[1]}); "
                          "the per-checkpoint metrics")
    if len(found) > 1:
        raise SourceError(f"{src}: has both {METRICS_CSV[0]} and {METRICS_CSV[1]}; keep one")
    return found[0]


def read_metrics(path: Path) -> pd.DataFrame:
    try:
        df = pd.read_csv(path, low_memory=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, OSError, EOFError) as e:
        raise SourceError(f"{path}: not a readable CSV file ({e})") from e
    missing = [c for c in REQUIRED_METRICS if c not in df.columns]
    if missing:
        raise SourceError(f"{path}: missing required column(s) {missing}")
    if not any(c.startswith("config.") for c in df.columns):
        raise SourceError(f"{path}: no config.* columns; they tell which checkpoints belong to one network")
    return df


def _numeric(df: pd.DataFrame, col: str, path: Path, default: float = math.nan) -> np.ndarray:
    """A column as float64 (default where absent); a non-numeric value is an error naming it."""
    if col not in df.columns:
        return np.full(len(df), default)
    values = pd.to_numeric(df[col], errors="coerce")
    bad = values.isna() & df[col].notna()
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        value = _jsonable(df[col].iloc[i])
        raise SourceError(f"{path}: column {col} row {i + 1} holds {value!r}, not a number")
    return values.to_numpy(dtype=np.float64)


def _integer(df: pd.DataFrame, col: str, path: Path) -> np.ndarray:
    """An integer column; -1 where absent or empty (the Small CNN Zoo records no seed, batch size)."""
    return np.nan_to_num(_numeric(df, col, path), nan=-1).astype(np.int64)


def _text(df: pd.DataFrame, col: str) -> np.ndarray:
    if col not in df.columns:
        return np.full(len(df), UNKNOWN, dtype=object)
    return np.array([UNKNOWN if pd.isna(v) else str(v) for v in df[col]], dtype=object)


def map_activation(name, path: Path) -> str:
    """Small CNN Zoo activation name -> zoobench's (e.g. 'relu', 'tf.nn.tanh' -> 'tanh')."""
    key = str(name).strip().lower().rsplit(".", 1)[-1]
    key = ACTIVATION_ALIASES.get(key, key)
    if pd.isna(name) or key not in CLASSIFIER_ACTIVATIONS:
        raise SourceError(f"{path}: config.activation {name!r} is not one of zoobench's "
                          f"{CLASSIFIER_ACTIVATIONS}")
    return key


def _steps(df: pd.DataFrame, path: Path) -> np.ndarray:
    steps = _numeric(df, "step", path)
    if not np.all(np.isfinite(steps)) or np.any(steps != np.round(steps)) or np.any(steps < 0):
        i = int(np.flatnonzero(~np.isfinite(steps) | (steps != np.round(steps)) | (steps < 0))[0])
        raise SourceError(f"{path}: step row {i + 1} is {_jsonable(df['step'].iloc[i])!r}, "
                          "not a non-negative integer")
    return steps.astype(np.int64)


def _jsonable(value):
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def _canonical(value):
    """A config value as hashed: ints as floats, so '0' and '0.0' columns give one id."""
    value = _jsonable(value)
    return float(value) if isinstance(value, int) and not isinstance(value, bool) else value


def _hash16(doc: dict) -> str:
    return hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()[:16]


def network_ids(df: pd.DataFrame, datasets: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(index, network_id, config_id) of every row: a network is a group of rows sharing all config.*.

    The id hashes the source kind, the dataset and the network's config.* values,
    so it does not depend on where the directory lies or on row order. Networks
    are indexed in order of first appearance.
    """
    cols = sorted(c for c in df.columns if c.startswith("config."))
    keyed = df[cols].assign(_dataset=datasets)
    index = keyed.groupby([*cols, "_dataset"], dropna=False, sort=False).ngroup().to_numpy()
    _, first = np.unique(index, return_index=True)
    nids, cids = [], []
    for row in first:
        config = {c: _canonical(df[c].iloc[row]) for c in cols}
        doc = {"source": SOURCE_KIND, "dataset": str(datasets[row]), "config": config}
        nids.append(_hash16(doc))
        unseeded = {k: v for k, v in config.items() if k not in SEED_COLUMNS}
        cids.append(nids[-1] if unseeded == config else _hash16({**doc, "config": unseeded}))
    return index, np.array(nids, dtype=object)[index], np.array(cids, dtype=object)[index]


# --------------------------------------------------------------------------- mapping


def resolve_datasets(df: pd.DataFrame, src: Path, dataset: str | None) -> np.ndarray:
    """Each row's dataset: --dataset, else config.dataset, else the directory's name."""
    if dataset:
        return np.full(len(df), dataset, dtype=object)
    if "config.dataset" in df.columns:
        return np.array([src.name if pd.isna(v) else str(v) for v in df["config.dataset"]], dtype=object)
    return np.full(len(df), src.name, dtype=object)


def resolve_input_shape(layout: Layout, datasets: np.ndarray, input_shape, path: Path) -> tuple[tuple, str]:
    """(H, W, C) and where it came from: --input-shape, the dataset's known size, or the channels."""
    c = layout.in_channels
    if input_shape is not None:
        shape = tuple(int(d) for d in input_shape)
        if len(shape) != 3 or shape[2] != c or min(shape) < 1:
            raise SourceError(f"{path}: input shape {shape} does not fit the first kernel's "
                              f"{c} input channels")
        try:  # VALID convolutions shrink the input: refuse one they shrink to nothing
            ArchSpec("cnn", shape, layout.hidden, layout.num_classes, "relu", padding=SOURCE_PADDING)
        except ValueError as e:
            raise SourceError(f"{path}: {e}") from None
        return shape, "option"
    sizes = {DATASET_SIZES.get(str(d)) for d in set(datasets)}
    if len(sizes) == 1 and None not in sizes:
        return (*sizes.pop(), c), "dataset"
    if c in CHANNEL_SHAPES:
        return CHANNEL_SHAPES[c], "channels"
    raise SourceError(f"{path}: cannot infer the input shape of {c}-channel inputs; pass --input-shape H,W,C")


def parse_input_shape(text: str) -> tuple[int, int, int]:
    """'28,28,1' or '28x28x1' -> (28, 28, 1)."""
    parts = re.split(r"[,x]", text.strip().strip("()"))
    if len(parts) != 3 or not all(p.strip().isdigit() and int(p) > 0 for p in parts):
        raise ValueError(f"expected H,W,C such as 28,28,1, got {text!r}")
    return tuple(int(p) for p in parts)


def _chunks(table: pd.DataFrame, chunk_rows: int) -> list[tuple[str, int, pd.DataFrame]]:
    """(file stem, step, rows) per weights file: one step per file, networks in index order."""
    out = []
    for step, rows in table.sort_values(["epoch", "index"]).groupby("epoch", sort=True):
        for j, start in enumerate(range(0, len(rows), chunk_rows)):
            out.append((f"step{int(step):06d}-{j:03d}", int(step), rows.iloc[start:start + chunk_rows]))
    return out


def write_chunk(root: Path, stem: str, step: int, rows: pd.DataFrame, weights: np.ndarray,
                layout: Layout) -> np.ndarray:
    """Write one weights file of checkpoints at `step`; return which rows were finite.

    Non-finite rows are stored as zeros (their table row says diverged), so no
    NaN or inf ever reaches a zoo.
    """
    source_rows = rows["source_row"].to_numpy()
    order = np.argsort(source_rows)  # read the memory-mapped rows in file order
    block = np.empty((len(rows), layout.width), dtype=np.float32)
    block[order] = weights[source_rows[order]]
    finite = np.isfinite(block).all(axis=1)
    block[~finite] = 0.0
    tensors = {}
    for i, (kernel, bias) in enumerate(layout.layers):
        for param, var in (("kernel", kernel), ("bias", bias)):
            tensors[storage.tensor_name(step, i, param)] = block[:, var.start:var.end].reshape(-1, *var.shape)
    ids = rows["network_id"].tolist()
    meta = {"zoobench": json.dumps({"group": stem, "network_ids": ids}, sort_keys=True)}
    storage.write_weights(root / storage.WEIGHTS_DIR / f"{stem}.safetensors", tensors, meta)
    return finite


def build_table(df: pd.DataFrame, mpath: Path, datasets: np.ndarray, hidden: tuple[int, ...],
                n_params: int) -> pd.DataFrame:
    """The zoobench table rows of every checkpoint, before the weights are written."""
    steps = _steps(df, mpath)
    index, nids, cids = network_ids(df, datasets)
    if "config.activation" not in df.columns:
        raise SourceError(f"{mpath}: missing column config.activation; the networks cannot run without it")
    act_of = {v: map_activation(v, mpath) for v in df["config.activation"].drop_duplicates()}
    train_acc, test_acc = _numeric(df, "train_accuracy", mpath), _numeric(df, "test_accuracy", mpath)
    table = pd.DataFrame({
        "network_id": nids,
        "index": index.astype(np.int64),
        "config_id": cids,
        "epoch": steps,
    })
    dup = table.duplicated(["network_id", "epoch"])
    if dup.any():
        i = int(np.flatnonzero(dup.to_numpy())[0])
        raise SourceError(f"{mpath}: row {i + 1} repeats step {steps[i]} of a network with the same config.* "
                          "values; cannot tell the networks apart")
    last = table.groupby("network_id")["epoch"].transform("max").to_numpy()
    metrics_finite = np.ones(len(df), dtype=bool)
    for col in ("train_accuracy", "test_accuracy", "train_loss", "test_loss"):
        if col in df.columns:
            metrics_finite &= np.isfinite(_numeric(df, col, mpath))
    table = table.assign(
        final=steps == last,
        family="cnn",
        padding=SOURCE_PADDING,
        depth=len(hidden),
        hidden="-".join(map(str, hidden)),
        max_width=max(hidden),
        activation=[act_of[v] for v in df["config.activation"]],
        n_params=n_params,
        dataset=datasets,
        dataset_base=datasets,
        optimizer=[s.lower() for s in _text(df, "config.optimizer")],
        learning_rate=_numeric(df, "config.learning_rate", mpath),
        weight_decay=_numeric(df, "config.l2reg", mpath),
        momentum=_numeric(df, "config.momentum", mpath),
        init=_text(df, "config.w_init"),
        init_scale=_numeric(df, "config.init_std", mpath),
        dropout=_numeric(df, "config.dropout", mpath),
        batch_size=_integer(df, "config.batch_size", mpath),
        train_fraction=_numeric(df, "config.train_fraction", mpath),
        n_train=-1,
        epochs=last,
        seed=_integer(df, next((c for c in SEED_COLUMNS if c in df.columns), SEED_COLUMNS[0]), mpath),
        train_acc=train_acc,
        train_loss=_numeric(df, "train_loss", mpath),
        test_acc=test_acc,
        test_loss=_numeric(df, "test_loss", mpath),
        gen_gap=train_acc - test_acc,
        status=np.where(metrics_finite, "ok", "diverged"),
        diverged_epoch=0,
        group="",
        weights_file="",
        weights_row=-1,
        source_row=np.arange(len(df), dtype=np.int64),
    )
    return table


def _mark_diverged(table: pd.DataFrame, finite_weights: np.ndarray) -> pd.DataFrame:
    """status 'diverged' where weights or metrics are non-finite; diverged_epoch = the network's first."""
    diverged = (table["status"] == "diverged").to_numpy() | ~finite_weights
    first = pd.Series(np.where(diverged, table["epoch"], np.iinfo(np.int64).max)).groupby(
        table["network_id"].to_numpy()).transform("min").to_numpy()
    return table.assign(status=np.where(diverged, "diverged", "ok"),
                        diverged_epoch=np.where(diverged, first, 0).astype(np.int64))


def _sha256_sources(paths: list[Path]) -> dict[str, str]:
    return {p.name: sha256_file(p) for p in paths}


def _check_out(out: Path) -> None:
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise storage.ZooError(f"{out}: already exists and is not empty; choose another --out")


def _temporary_dir(out: Path) -> Path:
    """A fresh sibling of `out` to build in, renamed onto `out` when the zoo is complete."""
    _check_out(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.{uuid.uuid4().hex[:12]}.tmp"
    tmp.mkdir()
    return tmp


def import_smallcnnzoo(src: str | Path, out: str | Path, dataset: str | None = None,
                       input_shape: tuple[int, int, int] | None = None,
                       chunk_rows: int = DEFAULT_CHUNK_ROWS) -> dict:
    """Import the Small CNN Zoo directory `src` as a zoobench zoo at `out`; return its manifest.

    Args:
      src: directory with weights.npy, layout.csv and metrics.csv or metrics.csv.gz.
      out: the zoo directory to create (must not exist or be empty).
      dataset: dataset name of every network (default: config.dataset, else src's name).
      input_shape: (H, W, C) of the inputs (default: the dataset's known size, else from
        the first kernel's input channels: 1 -> 28x28x1, 3 -> 32x32x3).
      chunk_rows: most checkpoints per weights file.
    """
    t0 = time.perf_counter()
    src, out = Path(src), Path(out)
    if not src.is_dir():
        raise SourceError(f"{src}: not a directory (expected a Small CNN Zoo directory such as mnist/)")
    if chunk_rows < 1:
        raise ValueError(f"chunk_rows must be positive, got {chunk_rows}")
    _check_out(out)
    wpath, lpath, mpath = src / WEIGHTS_NPY, src / LAYOUT_CSV, metrics_path(src)
    layout = read_layout(lpath)
    weights = open_weights(wpath)
    if weights.shape[1] != layout.width:
        raise SourceError(f"{wpath}: rows have {weights.shape[1]} values but {lpath} lays out {layout.width}")
    df = read_metrics(mpath)
    if len(df) != weights.shape[0]:
        raise SourceError(f"{mpath}: {len(df)} rows but {wpath} holds {weights.shape[0]} checkpoints; "
                          "they must align row by row")
    datasets = resolve_datasets(df, src, dataset)
    shape, shape_from = resolve_input_shape(layout, datasets, input_shape, lpath)
    table = build_table(df, mpath, datasets, layout.hidden, layout.width)

    tmp = _temporary_dir(out)
    try:
        finite = np.ones(len(table), dtype=bool)
        chunks = _chunks(table, chunk_rows)
        for stem, step, rows in chunks:
            ok = write_chunk(tmp, stem, step, rows, weights, layout)
            pos = rows.index.to_numpy()
            finite[pos] = ok
            table.loc[pos, "weights_file"] = f"{storage.WEIGHTS_DIR}/{stem}.safetensors"
            table.loc[pos, "group"] = stem
            table.loc[pos, "weights_row"] = np.arange(len(rows))
        table = _mark_diverged(table, finite)
        table = table.sort_values(["index", "epoch"]).reset_index(drop=True)
        storage.write_table(tmp / storage.TABLE, table)
        manifest = _manifest(tmp, src, table, layout, shape, [wpath, lpath, mpath], shape_from,
                             len(chunks), t0)
        manifest = storage.write_manifest(tmp, manifest)
        os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    dir_fd = os.open(out.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return manifest


def _manifest(root: Path, src: Path, table: pd.DataFrame, layout: Layout, input_shape: tuple,
              sources: list[Path], shape_from: str, n_chunks: int, t0: float) -> dict:
    """A zoobench manifest; `config.zoo` holds what storage.Zoo reads, `source` the provenance."""
    datasets = sorted(table["dataset"].unique())
    name = f"{SOURCE_KIND}-{datasets[0] if len(datasets) == 1 else src.name}"
    steps = sorted(int(s) for s in table["epoch"].unique())
    config = {"zoo": {
        "name": name,
        "num_networks": int(table["network_id"].nunique()),
        "replicates": 1,
        "input_shape": list(input_shape),
        "num_classes": layout.num_classes,
        "datasets": datasets[0] if len(datasets) == 1 else {"choice": datasets},
        "epochs": steps[-1],
        "checkpoint_epochs": steps,
        "input_scaling": SOURCE_INPUT_SCALING,
    }}
    files = zoo_files(root)
    return {
        "format": storage.FORMAT,
        "format_version": storage.FORMAT_VERSION,
        "name": name,
        "config": config,
        "config_fingerprint": hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest(),
        "datasets": {},
        "num_networks": config["zoo"]["num_networks"],
        "shard": None,
        "files": files,
        "weights_fingerprint": weights_fingerprint(files),
        "library_versions": library_versions(),
        "build": {"imported_from": str(src), "chunks": n_chunks,
                  "wall_s": round(time.perf_counter() - t0, 3)},
        "source": {
            "kind": SOURCE_KIND,
            "files": _sha256_sources(sources),
            "checkpoints": len(table),
            "input_shape_from": shape_from,
            "hidden": list(layout.hidden),
        },
    }
