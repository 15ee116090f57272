"""The submission file format: what a method predicts for a task's test part, in JSON or NPZ.

A submission names the task, split and zoo it was made for (so the scorer can
refuse one made for other networks) and holds one prediction per test item,
twins included. Two encodings of one content (docs/submission.md is the
contract, benchmark/submission.schema.json the JSON Schema):

* ``.json``: the metadata keys plus ``"predictions": {id: prediction}``;
* ``.npz``: NumPy arrays only (read with ``allow_pickle=False``): ``metadata``
  (a 0-d unicode array holding the metadata as JSON), ``ids`` and one array
  per target, ``embedding`` (n, d), or ``PAIR_ID/P_i`` per pair and layer.

`read_submission` checks the structure alone (no zoo needed);
`benchmark.submission` checks it against the task. Nothing here unpickles anything.
"""

from __future__ import annotations

import dataclasses
import io
import json
import math
import re
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from benchmark.splits import SPLIT_NAMES
from benchmark.tasks import TARGETS, TASK_KINDS
from zoo_builder.errors import DomainError
from zoo_builder.files import read_bounded

FORMAT = "zoobench-submission"
FORMAT_VERSION = 1
# A file larger than this is refused before it is read whole (the tiny/small zoos need < 1 MiB).
MAX_BYTES = 64 << 20
MAX_LISTED_PROBLEMS = 50
PROBABILITY_TOLERANCE = 1e-3

# The targets a submission predicts per item: retrieval submits embeddings, not its target.
TASK_TARGETS = {**TARGETS, "retrieval": ()}
METADATA_KEYS = ("format", "format_version", "method", "version", "description", "task", "split",
                 "all_checkpoints", "zoo", "split_fingerprint", "seed")
_PERM_NAME = re.compile(r"^P_(0|[1-9][0-9]*)$")
_ITEM_KEY = re.compile(r"^(.+)@(0|[1-9][0-9]*)$")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
ZIP_MAGIC = b"PK\x03\x04"
PICKLE_MAGIC = b"\x80"
NPY_MAGIC = b"\x93NUMPY"


class SubmissionError(DomainError, ValueError):
    """A submission is unreadable or invalid; `problems` lists every problem found, the message the path."""

    def __init__(self, path, problems):
        self.path = str(path)
        self.problems = list(problems)
        shown = self.problems[:MAX_LISTED_PROBLEMS]
        more = len(self.problems) - len(shown)
        lines = [f"{self.path}: invalid submission ({len(self.problems)} problem"
                 f"{'s' if len(self.problems) != 1 else ''}):"]
        lines += [f"  - {p}" for p in shown]
        if more:
            lines.append(f"  - ... and {more} more")
        super().__init__("\n".join(lines))


@dataclasses.dataclass(frozen=True)
class Metadata:
    """Who made a submission and for which task, split and networks."""

    method: str
    version: str
    description: str
    task: str
    split: str
    all_checkpoints: bool
    zoo_name: str
    weights_fingerprint: str
    split_fingerprint: str
    # The training seed of this run: the leaderboard aggregates runs of one method and version
    # over seeds (mean ± std). None: an unseeded run, where the latest submission wins.
    seed: int | None = None

    def to_doc(self) -> dict:
        doc = {"format": FORMAT, "format_version": FORMAT_VERSION, "method": self.method,
               "version": self.version, "description": self.description, "task": self.task,
               "split": self.split, "all_checkpoints": self.all_checkpoints,
               "zoo": {"name": self.zoo_name, "weights_fingerprint": self.weights_fingerprint},
               "split_fingerprint": self.split_fingerprint}
        if self.seed is not None:  # absent, not null: files without a seed stay as they were
            doc["seed"] = self.seed
        return doc


@dataclasses.dataclass(frozen=True, eq=False)
class Submission:
    """A structurally valid submission.

    Attributes:
      path: where it was read from (None if built in memory).
      encoding: "json" or "npz".
      metadata: see `Metadata`.
      predictions: item key -> prediction, as documented for `write_submission`;
        numbers as Python floats, vectors and permutations as NumPy arrays,
        class probabilities as float arrays, class names as str.
    """

    path: Path | None
    encoding: str
    metadata: Metadata
    predictions: Mapping[str, Any]


# --------------------------------------------------------------------------- encodings


def seed_problem(seed) -> str | None:
    """Why `seed` is not a valid training seed, or None when it is (a non-negative int, not a bool)."""
    if isinstance(seed, int) and not isinstance(seed, bool) and seed >= 0:
        return None
    return (f"seed: expected a non-negative integer (the run's training seed; leave the key out when "
            f"there is none), got {_show(seed)}")


def jsonable(value):
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Mapping):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, np.generic):
        return value.item()
    return value


def to_json_doc(sub: Submission) -> dict:
    """The JSON document of a submission."""
    return {**sub.metadata.to_doc(), "predictions": {k: jsonable(v) for k, v in sub.predictions.items()}}


def to_npz_arrays(sub: Submission) -> dict[str, np.ndarray]:
    """The NPZ members of a (valid) submission."""
    ids = list(sub.predictions)
    out = {"metadata": np.array(json.dumps(sub.metadata.to_doc(), sort_keys=True)), "ids": np.array(ids, str)}
    preds = [sub.predictions[i] for i in ids]
    task = sub.metadata.task
    if task == "generalization":
        for t in TASK_TARGETS[task]:
            out[t] = np.array([p[t] for p in preds], np.float64)
    elif TASK_KINDS.get(task) == "classification":
        for t in TASK_TARGETS[task]:
            values = [p[t] for p in preds]
            if all(isinstance(v, str) for v in values):
                out[t] = np.array(values, str)
            elif all(not isinstance(v, str) for v in values):
                out[t] = np.array(values, np.float64)
            else:  # mixed: one-hot the names is impossible without the classes; keep probabilities
                raise ValueError(f"npz needs one kind of prediction per target; {t!r} mixes class names "
                                 "and probabilities (use .json, or one kind)")
    elif task == "retrieval":
        out["embedding"] = np.array(preds, np.float64).reshape(len(preds), -1)
    else:
        for pid, perms in zip(ids, preds, strict=True):
            for name, perm in perms.items():
                out[f"{pid}/{name}"] = np.asarray(perm, np.int64)
    return out


# --------------------------------------------------------------------------- reading


def read_submission(path, max_bytes: int = MAX_BYTES) -> Submission:
    """Read and structurally check a submission file (JSON or NPZ, decided by its first bytes).

    Checks what needs no zoo: size, format, metadata, and each prediction's type,
    shape and finiteness. Raises `SubmissionError` listing every problem.
    """
    sub, problems = read_with_problems(path, max_bytes)
    if problems:
        raise SubmissionError(path, problems)
    return sub


def read_with_problems(path, max_bytes: int = MAX_BYTES) -> tuple[Submission | None, list[str]]:
    """The submission as far as it could be read, and every structural problem found.

    None when not even the metadata could be read. Refusals that must stop
    reading (size, pickle, unknown format) raise `SubmissionError` at once.
    """
    path = Path(path)
    raw = _read_bounded(path, max_bytes)
    problems: list[str] = []
    head = raw[:8].lstrip(b"\xef\xbb\xbf \t\r\n")
    if raw.startswith(PICKLE_MAGIC):
        raise SubmissionError(path, ["file: a Python pickle (protocol header 0x80); pickles are never "
                                     "loaded, expected a JSON or NPZ submission"])
    if raw.startswith(NPY_MAGIC):
        raise SubmissionError(path, ["file: a single .npy array; expected an .npz archive (np.savez) "
                                     "or a JSON submission"])
    if raw.startswith(ZIP_MAGIC):
        meta_doc, preds = _parse_npz(raw, max_bytes, problems)
        encoding = "npz"
    elif head.startswith(b"{"):
        meta_doc, preds = _parse_json(raw, problems)
        encoding = "json"
    else:
        raise SubmissionError(path, [f"file: not a zoobench submission (starts with {raw[:8]!r}); expected "
                                     "a JSON object or an NPZ (zip) archive"])
    if meta_doc is None:
        return None, problems
    meta = _check_metadata(meta_doc, problems)
    if meta is None:
        return None, problems
    raw_preds = preds
    preds = check_predictions(meta.task, meta.all_checkpoints, preds or {}, problems)
    if encoding == "json" and not problems:
        problems += schema_problems({**meta_doc, "predictions": raw_preds})
    return Submission(path=path, encoding=encoding, metadata=meta, predictions=preds), problems


SCHEMA_PATH = Path(__file__).with_name("submission.schema.json")


def schema_problems(doc: dict) -> list[str]:
    """Problems the JSON Schema finds in a JSON submission; [] when `jsonschema` is not installed.

    The schema is a second, independent statement of the structure: the checks
    here never need it, and run first (so its messages never repeat theirs).
    """
    try:
        import jsonschema  # noqa: PLC0415 (optional: not a dependency)
    except ImportError:
        return []
    schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    validator = jsonschema.Draft202012Validator(schema)
    return [f"{'.'.join(str(p) for p in e.absolute_path) or 'file'}: {e.message} (JSON Schema)"
            for e in validator.iter_errors(doc)]


def _read_bounded(path: Path, max_bytes: int) -> bytes:
    """The file's bytes (`zoo_builder.files.read_bounded`), its refusals as a submission's problems."""
    try:
        raw = read_bounded(path, max_bytes, "submission")
    except OSError as e:
        raise SubmissionError(path, [f"file: cannot be read ({e.strerror or e})"]) from None
    except ValueError as e:  # not a regular file, or over the limit
        raise SubmissionError(path, [f"file: {str(e).removeprefix(f'{path}: ')}"]) from None
    if not raw:
        raise SubmissionError(path, ["file: empty; expected a JSON or NPZ submission"])
    return raw


def _no_duplicates(problems: list[str]):
    def hook(pairs):
        out = {}
        for k, v in pairs:
            if k in out:
                problems.append(f"{k}: duplicate key in a JSON object")
            out[k] = v
        return out
    return hook


def _parse_json(raw: bytes, problems: list[str]):
    try:
        doc = json.loads(raw.decode("utf-8-sig"), object_pairs_hook=_no_duplicates(problems))
    except (UnicodeDecodeError, ValueError) as e:
        problems.append(f"file: not valid JSON ({e})")
        return None, None
    if not isinstance(doc, dict):
        problems.append(f"file: expected a JSON object, got {type(doc).__name__}")
        return None, None
    preds = doc.pop("predictions", None)
    if preds is None:
        problems.append("predictions: missing; expected an object {id: prediction}")
    elif not isinstance(preds, dict):
        problems.append(f"predictions: expected an object {{id: prediction}}, got {type(preds).__name__}")
        preds = None
    return doc, preds


def _parse_npz(raw: bytes, max_bytes: int, problems: list[str]):
    """Metadata doc and predictions of an NPZ archive; object (pickled) members are refused unloaded."""
    try:
        with zipfile.ZipFile(io.BytesIO(raw)) as zf:
            infos = zf.infolist()
    except zipfile.BadZipFile as e:
        problems.append(f"file: a corrupt zip/NPZ archive ({e})")
        return None, None
    total = sum(i.file_size for i in infos)
    if total > 4 * max_bytes:
        problems.append(f"file: its members unpack to {total} bytes, over the limit of {4 * max_bytes}")
        return None, None
    arrays: dict[str, np.ndarray] = {}
    try:
        with np.load(io.BytesIO(raw), allow_pickle=False) as npz:
            for name in npz.files:
                try:
                    arrays[name] = npz[name]
                except ValueError as e:
                    if "allow_pickle" in str(e):
                        problems.append(f"{name}: an object array (pickled); refused unloaded, expected "
                                        "numeric or unicode arrays")
                    else:
                        problems.append(f"{name}: unreadable array ({e})")
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as e:
        problems.append(f"file: not a readable NPZ archive ({e})")
        return None, None
    if "metadata" not in arrays:
        if not any("metadata" in p for p in problems):
            problems.append("metadata: missing; expected a 0-d unicode array holding the metadata as JSON")
        return None, None
    m = arrays.pop("metadata")
    if m.shape != () or m.dtype.kind != "U":
        problems.append(f"metadata: expected a 0-d unicode array (np.array(json.dumps(meta))), "
                        f"got dtype {m.dtype} shape {m.shape}")
        return None, None
    try:
        doc = json.loads(str(m), object_pairs_hook=_no_duplicates(problems))
    except ValueError as e:
        problems.append(f"metadata: not valid JSON ({e})")
        return None, None
    if not isinstance(doc, dict):
        problems.append(f"metadata: expected a JSON object, got {type(doc).__name__}")
        return None, None
    task = doc.get("task")
    if task not in TASK_TARGETS:
        return doc, None  # _check_metadata reports the task
    return doc, _npz_predictions(task, arrays, problems)


def _npz_predictions(task: str, arrays: dict[str, np.ndarray], problems: list[str]) -> dict | None:
    """Predictions ({key: prediction}) from the NPZ arrays of `task`."""
    ids = arrays.pop("ids", None)
    if ids is None:
        problems.append("ids: missing; expected a 1-d unicode array of item ids")
        return None
    if ids.ndim != 1 or ids.dtype.kind != "U":
        problems.append(f"ids: expected a 1-d unicode array, got dtype {ids.dtype} shape {ids.shape}")
        return None
    ids = [str(i) for i in ids]
    seen: set[str] = set()
    for i in ids:
        if i in seen:
            problems.append(f"{i}: duplicate id in ids")
        seen.add(i)
    n = len(ids)
    preds: dict[str, Any] = {i: {} for i in ids}
    if task == "merging":
        for name, a in arrays.items():
            pid, _, layer = name.rpartition("/")
            if pid not in seen or not layer:
                problems.append(f"{name}: unknown member; expected 'PAIR_ID/P_i' with PAIR_ID in ids")
                continue
            preds[pid][layer] = a
        return preds
    expected = ("embedding",) if task == "retrieval" else TASK_TARGETS[task]
    for name in sorted(set(arrays) - set(expected)):
        problems.append(f"{name}: unknown member; expected {['metadata', 'ids', *expected]}")
    for t in expected:
        a = arrays.get(t)
        if a is None:
            problems.append(f"{t}: missing array; expected one value per id")
            continue
        if a.ndim == 0 or a.shape[0] != n:
            problems.append(f"{t}: expected {n} rows (one per id), got shape {a.shape}")
            continue
        if task == "retrieval":
            if a.ndim != 2:
                problems.append(f"embedding: expected shape (n, d), got {a.shape}")
                continue
            for i, row in zip(ids, a, strict=True):
                preds[i] = row
        else:
            for i, v in zip(ids, a, strict=True):
                preds[i][t] = v.item() if v.ndim == 0 else v
    return preds


# --------------------------------------------------------------------------- structural checks


def _check_metadata(doc: dict, problems: list[str]) -> Metadata | None:
    before = len(problems)
    if doc.get("format") != FORMAT:
        problems.append(f"format: expected {FORMAT!r}, got {doc.get('format')!r}")
    if doc.get("format_version") != FORMAT_VERSION:
        problems.append(f"format_version: expected {FORMAT_VERSION}, got {doc.get('format_version')!r}")
    for key in sorted(set(doc) - set(METADATA_KEYS)):
        problems.append(f"{key}: unknown metadata key; expected {list(METADATA_KEYS)}")
    for key in ("method", "version", "description", "split_fingerprint"):
        if not isinstance(doc.get(key), str):
            problems.append(f"{key}: expected a string, got {doc.get(key)!r}")
    if isinstance(doc.get("method"), str) and not doc["method"].strip():
        problems.append("method: expected a non-empty name")
    if not isinstance(doc.get("task"), str) or doc["task"] not in TASK_TARGETS:  # unhashable: not a key
        problems.append(f"task: expected one of {list(TASK_TARGETS)}, got {doc.get('task')!r}")
    if doc.get("split") not in SPLIT_NAMES:
        problems.append(f"split: expected one of {list(SPLIT_NAMES)}, got {doc.get('split')!r}")
    if not isinstance(doc.get("all_checkpoints"), bool):
        problems.append(f"all_checkpoints: expected true or false, got {doc.get('all_checkpoints')!r}")
    elif doc["all_checkpoints"] and doc.get("task") != "generalization":
        problems.append("all_checkpoints: true applies to the generalization task only")
    zoo = doc.get("zoo")
    if not (isinstance(zoo, dict) and set(zoo) == {"name", "weights_fingerprint"}
            and all(isinstance(v, str) for v in zoo.values())):
        problems.append(f"zoo: expected {{'name': str, 'weights_fingerprint': str}}, got {zoo!r}")
    if isinstance(doc.get("split_fingerprint"), str) and not _HEX64.match(doc["split_fingerprint"]):
        problems.append(f"split_fingerprint: expected 64 hex digits, got {doc['split_fingerprint']!r}")
    if "seed" in doc and (problem := seed_problem(doc["seed"])):
        problems.append(problem)
    if len(problems) > before:
        return None
    return Metadata(method=doc["method"], version=doc["version"], description=doc["description"],
                    task=doc["task"], split=doc["split"], all_checkpoints=doc["all_checkpoints"],
                    zoo_name=zoo["name"], weights_fingerprint=zoo["weights_fingerprint"],
                    split_fingerprint=doc["split_fingerprint"], seed=doc.get("seed"))


def _is_real(v) -> bool:
    return isinstance(v, int | float | np.integer | np.floating) and not isinstance(v, bool | np.bool_)


def _real(v, where: str, problems: list[str]) -> float | None:
    """`v` as a finite float, or None after recording why not."""
    if isinstance(v, np.ndarray) and v.ndim == 0:
        v = v.item()
    if not _is_real(v):
        problems.append(f"{where}: expected a number, got {_show(v)}")
        return None
    if not math.isfinite(float(v)):
        problems.append(f"{where}: expected a finite number, got {float(v)}")
        return None
    return float(v)


def _show(v) -> str:
    text = repr(v.tolist() if isinstance(v, np.ndarray) else v)
    return f"{type(v).__name__} {text[:60]}{'...' if len(text) > 60 else ''}"


def _vector(v, where: str, problems: list[str], what: str = "a list of numbers") -> np.ndarray | None:
    """`v` as a finite 1-d float array, or None after recording why not."""
    if not isinstance(v, np.ndarray) and hasattr(v, "__array__"):  # e.g. a CPU torch tensor, in memory
        v = np.asarray(v)
    if isinstance(v, list | tuple) and all(_is_real(x) for x in v):
        v = np.array(v, np.float64)
    if not isinstance(v, np.ndarray) or v.dtype.kind not in "iuf" or v.ndim != 1 or len(v) == 0:
        shape = f" of shape {v.shape}, dtype {v.dtype}" if isinstance(v, np.ndarray) else ""
        problems.append(f"{where}: expected {what} (non-empty, 1-d), got {_show(v)}{shape}")
        return None
    bad = np.flatnonzero(~np.isfinite(v))
    if len(bad):
        problems.append(f"{where}: expected finite numbers, got {v[bad[0]]} at position {int(bad[0])}")
        return None
    return v.astype(np.float64)


def _check_key(key, task: str, all_checkpoints: bool, problems: list[str]) -> bool:
    if not isinstance(key, str) or not key:
        problems.append(f"{key!r}: expected a non-empty string id")
        return False
    if all_checkpoints and not _ITEM_KEY.match(key):
        problems.append(f"{key}: expected 'NETWORK_ID@EPOCH' (all_checkpoints is true)")
        return False
    return True


def check_predictions(task: str, all_checkpoints: bool, preds: dict, problems: list[str]) -> dict:
    """Per-item structural checks; returns the predictions normalised (floats, NumPy arrays)."""
    out: dict[str, Any] = {}
    dims: dict[int, list[str]] = {}
    for key, p in preds.items():
        if not _check_key(key, task, all_checkpoints, problems):
            continue
        if task == "retrieval":
            v = out[key] = _vector(p, key, problems, "an embedding (a list of numbers)")
            if v is not None:
                dims.setdefault(len(v), []).append(key)
            continue
        if not isinstance(p, Mapping):
            problems.append(f"{key}: expected an object, got {_show(p)}")
            out[key] = None
            continue
        if task == "merging":
            out[key] = _check_perms(key, p, problems)
            continue
        targets = TASK_TARGETS[task]
        for extra in sorted(set(p) - set(targets)):
            problems.append(f"{key}.{extra}: unknown target; expected {list(targets)}")
        item = {}
        for t in targets:
            if t not in p:
                problems.append(f"{key}.{t}: missing; expected a prediction for every target {list(targets)}")
            elif task == "generalization":
                item[t] = _real(p[t], f"{key}.{t}", problems)
            else:
                item[t] = _class_prediction(p[t], f"{key}.{t}", problems)
        out[key] = item
    if len(dims) > 1:
        common = max(dims, key=lambda d: len(dims[d]))
        for d, keys in sorted(dims.items()):
            if d != common:
                problems.append(f"{keys[0]}: embedding of length {d}, but most have length {common} "
                                f"({len(keys)} item(s) of length {d}); expected one length for all")
    return out


def _class_prediction(v, where: str, problems: list[str]):
    """A class name (str) or a probability vector summing to 1."""
    if isinstance(v, np.ndarray) and v.ndim == 0:
        v = v.item()
    if isinstance(v, str):
        return v
    if _is_real(v):
        problems.append(f"{where}: expected a class name (str) or a list of probabilities, got {_show(v)}; "
                        "a class index is ambiguous: write task.classes[target][index]")
        return None
    probs = _vector(v, where, problems, "a class name (str) or a list of probabilities")
    if probs is None:
        return None
    if np.any(probs < 0) or abs(probs.sum() - 1.0) > PROBABILITY_TOLERANCE:
        problems.append(f"{where}: probabilities must be >= 0 and sum to 1 (within {PROBABILITY_TOLERANCE}), "
                        f"got sum {probs.sum():.6g}, min {probs.min():.6g}")
        return None
    return probs


def _check_perms(key: str, perms: Mapping, problems: list[str]) -> dict:
    out = {}
    for name, perm in perms.items():
        where = f"{key}.{name}"
        if not isinstance(name, str) or not _PERM_NAME.match(name):
            problems.append(f"{where}: unknown layer name; expected P_0, P_1, ...")
            continue
        if not isinstance(perm, np.ndarray) and hasattr(perm, "__array__"):
            perm = np.asarray(perm)
        if isinstance(perm, list | tuple) and all(type(x) is int for x in perm):
            perm = np.array(perm, np.int64)
        if not isinstance(perm, np.ndarray) or perm.ndim != 1 or perm.dtype.kind not in "iu":
            problems.append(f"{where}: expected a list of integers (a permutation), got {_show(perm)}")
            out[name] = None
            continue
        out[name] = perm.astype(np.int64)
    return out
