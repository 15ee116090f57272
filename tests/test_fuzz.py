"""Property-based fuzzing of every document a user hands in: zoo configs, submissions, split files.

Each loader must answer a malformed input with its own error (ConfigError,
SubmissionError, SplitError) carrying a message, never with another exception,
and a refused submission must never reach the leaderboard store.
"""

from __future__ import annotations

import copy
import json
import math
import random
import sqlite3
from pathlib import Path

import numpy as np
import pytest
from conftest import MINI_DOC
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

SETTINGS = settings(max_examples=60, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

# --------------------------------------------------------------------------- value strategies

SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(-10**12, 10**12), st.integers(),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=12),
    st.sampled_from(["relu", "sgd", "digits", "mlp", "cnn", "choice", "uniform", "log_uniform", ""]),
)
JSONISH = st.recursive(
    SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=4),
                            st.dictionaries(st.text(max_size=8), inner, max_size=4)),
    max_leaves=12,
)
BAD_DISTRIBUTIONS = st.one_of(
    st.fixed_dictionaries({}),
    st.dictionaries(st.sampled_from(["choice", "uniform", "log_uniform", "int_uniform", "const", "normal"]),
                    JSONISH, min_size=1, max_size=2),
    st.builds(lambda k, a, b: {k: [a, b]},
              st.sampled_from(["uniform", "log_uniform", "int_uniform"]),
              st.floats(allow_nan=True, allow_infinity=True), st.floats(allow_nan=True, allow_infinity=True)),
    st.builds(lambda vs: {"choice": vs}, st.lists(SCALARS, max_size=4)),
)


def _paths(doc, prefix=()):
    """Every (path, value) inside a nested dict/list document."""
    yield prefix, doc
    if isinstance(doc, dict):
        for k, v in doc.items():
            yield from _paths(v, (*prefix, k))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            yield from _paths(v, (*prefix, i))


def _mutate(doc, data, values=JSONISH, extra_keys=True):
    """A copy of `doc` with one to three random edits: replace, delete, add a key, extreme numbers."""
    doc = copy.deepcopy(doc)
    for _ in range(data.draw(st.integers(1, 3), label="edits")):
        paths = [p for p, _ in _paths(doc) if p]
        if not paths:
            break
        path = data.draw(st.sampled_from(paths), label="path")
        parent = doc
        for k in path[:-1]:
            parent = parent[k]
        key = path[-1]
        how = data.draw(st.sampled_from(["replace", "delete", "add", "number", "dist"]), label="how")
        if how == "delete":
            del parent[key]
        elif how == "add" and isinstance(parent, dict) and extra_keys:
            parent[data.draw(st.text(min_size=1, max_size=8), label="new key")] = data.draw(values)
        elif how == "number":
            parent[key] = data.draw(st.one_of(
                st.sampled_from([0, -1, 1, 2**31, 2**63, -(2**63), 10**30, 0.0, -0.5, 1e308, 1e-320]),
                st.floats(allow_nan=True, allow_infinity=True), st.integers()), label="number")
        elif how == "dist":
            parent[key] = data.draw(BAD_DISTRIBUTIONS, label="distribution")
        else:
            parent[key] = data.draw(values, label="value")
    return doc


# --------------------------------------------------------------------------- zoo configs


def _config_outcome(doc):
    from zoo_builder.config import ConfigError, ZooConfig, config_from_dict

    try:
        cfg = config_from_dict(doc, source="fuzz")
    except ConfigError as e:
        assert str(e), "a ConfigError without a message"
        return None
    assert isinstance(cfg, ZooConfig)
    return cfg


@SETTINGS
@given(st.data())
def test_config_mutations_raise_config_error_only(data):
    cfg = _config_outcome(_mutate(MINI_DOC, data))
    if cfg is not None:
        # an accepted config must also be usable: it samples, and its to_dict loads back as the same
        # config, drawing the same networks
        from zoo_builder.config import config_from_dict, sample_network

        again = config_from_dict(cfg.to_dict(), source="roundtrip")
        assert again.fingerprint() == cfg.fingerprint()
        assert sample_network(again, 0).network_id == sample_network(cfg, 0).network_id


@SETTINGS
@given(st.one_of(JSONISH, st.dictionaries(st.sampled_from(["zoo", "training", "family", "hyper", "x"]),
                                          JSONISH, max_size=5)))
def test_random_documents_raise_config_error_only(doc):
    if not isinstance(doc, dict):
        from zoo_builder.config import ConfigError, config_from_dict

        # config_from_dict takes a dict; the TOML loader always gives one. Non-dicts: ConfigError too.
        with pytest.raises(ConfigError):
            config_from_dict(doc, source="fuzz")
        return
    _config_outcome(doc)


@SETTINGS
@given(section=st.sampled_from(["zoo", "training", "hyper", "family0"]), data=st.data())
def test_config_section_fuzz(section, data):
    """Deeper: keep the document valid except for one section, filled with plausible keys and junk."""
    doc = copy.deepcopy(MINI_DOC)
    target = doc["family"][0] if section == "family0" else doc[section]
    key = data.draw(st.sampled_from(sorted(target)), label="key")
    target[key] = data.draw(st.one_of(JSONISH, BAD_DISTRIBUTIONS), label="value")
    _config_outcome(doc)


# --------------------------------------------------------------------------- submissions


@pytest.fixture(scope="module")
def preset(tiny_preset_zoo):
    from benchmark.tasks import load_task
    from zoo_builder.storage import load_zoo

    zoo = load_zoo(tiny_preset_zoo)
    return zoo, {name: load_task(name, zoo, "id") for name in ("generalization", "classification")}


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz")


def valid_doc(task) -> dict:
    from benchmark.submission import task_metadata
    from benchmark.submission_format import jsonable

    rng = np.random.default_rng(0)
    if task.name == "generalization":
        preds = {i: {"test_acc": float(rng.random()), "gen_gap": float(rng.random())} for i in task.test.ids}
    else:
        preds = {i: {t: task.classes[t][0] for t in task.targets} for i in task.test.ids}
    doc = task_metadata(task, method="fuzz").to_doc()
    doc["predictions"] = jsonable(preds)
    return doc


PRED_VALUES = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=8), JSONISH,
    st.sampled_from([math.nan, math.inf, -math.inf, "nan", "Infinity", [], {}, [[1.0]], {"a": {"b": 1}}]),
)


def _submission_bytes(doc: dict, data) -> bytes:
    """Serialise a (mutated) document, then maybe damage the bytes."""
    preds = doc.get("predictions")
    how = data.draw(st.sampled_from(["mutate", "ids", "metadata", "bytes", "truncate", "duplicate"]),
                    label="fault")
    if how == "ids" and isinstance(preds, dict) and preds:
        ids = sorted(preds)
        op = data.draw(st.sampled_from(["drop", "rename", "extra", "value"]), label="id op")
        victim = data.draw(st.sampled_from(ids), label="id")
        if op == "drop":
            del preds[victim]
        elif op == "rename":
            preds[data.draw(st.text(max_size=10), label="new id")] = preds.pop(victim)
        elif op == "extra":
            preds[data.draw(st.text(max_size=10), label="extra id")] = copy.deepcopy(preds[victim])
        else:
            item = preds[victim]
            if isinstance(item, dict) and item and data.draw(st.booleans()):
                item[data.draw(st.sampled_from(sorted(item)))] = data.draw(PRED_VALUES, label="pred")
            else:
                preds[victim] = data.draw(PRED_VALUES, label="item")
    elif how == "metadata":
        meta_keys = sorted(k for k in doc if k != "predictions")
        key = data.draw(st.sampled_from(meta_keys), label="meta key")
        if data.draw(st.booleans()):
            del doc[key]
        else:
            doc[key] = data.draw(JSONISH, label="meta value")
    elif how == "mutate":
        doc = _mutate(doc, data, values=PRED_VALUES)
    if how == "bytes":
        return data.draw(st.binary(min_size=0, max_size=200), label="bytes")
    raw = json.dumps(doc, allow_nan=True).encode()
    if how == "truncate":
        return raw[:data.draw(st.integers(0, max(0, len(raw) - 1)), label="cut")]
    if how == "duplicate" and isinstance(preds, dict) and preds:
        # a duplicated id: the same key twice in the predictions object
        victim = sorted(preds)[0]
        item = json.dumps({victim: preds[victim]})[1:-1]
        return raw.replace(b'"predictions": {', b'"predictions": {' + item.encode() + b", ", 1)
    return raw


def _check_submission(path: Path, zoo):
    from benchmark.submission import SubmissionError, item_keys, validate_submission

    try:
        sub, task = validate_submission(path, zoo)
    except SubmissionError as e:
        assert str(e) and e.problems and all(isinstance(p, str) and p for p in e.problems), repr(e)
        return False
    # accepted: one prediction for every item of the task it names, nothing else
    assert sub.metadata.task == task.name
    assert set(sub.predictions) == set(item_keys(task, sub.metadata.all_checkpoints))
    return True


@SETTINGS
@given(task_name=st.sampled_from(["generalization", "classification"]), data=st.data())
def test_malformed_submissions_raise_submission_error_only(preset, workdir, task_name, data):
    zoo, tasks = preset
    raw = _submission_bytes(valid_doc(tasks[task_name]), data)
    path = workdir / "s.json"
    path.write_bytes(raw)
    _check_submission(path, zoo)


@pytest.mark.parametrize("key", ["task", "split", "format", "format_version", "all_checkpoints", "zoo"])
@pytest.mark.parametrize("value", [[], {}, [["x"]], {"a": []}])
def test_unhashable_metadata_values_refused(preset, workdir, key, value):
    """Found by the fuzzer: `"task": []` raised TypeError (unhashable list tested against a dict)."""
    zoo, tasks = preset
    doc = valid_doc(tasks["generalization"])
    doc[key] = value
    path = workdir / "unhashable.json"
    path.write_text(json.dumps(doc), encoding="utf-8")
    assert not _check_submission(path, zoo)


def test_valid_submissions_accepted(preset, workdir):
    zoo, tasks = preset
    for name, task in tasks.items():
        path = workdir / f"valid-{name}.json"
        path.write_text(json.dumps(valid_doc(task)), encoding="utf-8")
        assert _check_submission(path, zoo)


def _refused_corpus(tasks, out: Path, count: int) -> list[Path]:
    """Deterministic malformed submissions, one per fault class, for the store test."""
    files = []
    rng = random.Random(0)
    for k in range(count):
        task = tasks[["generalization", "classification"][k % 2]]
        doc = valid_doc(task)
        ids = sorted(doc["predictions"])
        fault = k % 6
        if fault == 0:
            del doc["predictions"][ids[0]]
        elif fault == 1:
            doc["predictions"]["not-a-network"] = doc["predictions"][ids[0]]
        elif fault == 2:
            first = doc["predictions"][ids[0]]
            first[sorted(first)[0]] = [math.nan] if task.name == "generalization" else {"x": 1}
        elif fault == 3:
            doc["task"] = "segmentation"
        elif fault == 4:
            raw = json.dumps(doc).encode()
            files.append(out / f"bad{k}.json")
            files[-1].write_bytes(raw[: rng.randrange(1, len(raw) - 1)])
            continue
        else:
            files.append(out / f"bad{k}.json")
            files[-1].write_bytes(bytes(rng.randrange(256) for _ in range(64)))
            continue
        files.append(out / f"bad{k}.json")
        files[-1].write_text(json.dumps(doc, allow_nan=True), encoding="utf-8")
    return files


def test_refused_submissions_never_reach_the_store(preset, tmp_path, tiny_preset_zoo):
    from zoobench.cli import main

    zoo, tasks = preset
    files = _refused_corpus(tasks, tmp_path, 12)
    for f in files:
        assert not _check_submission(f, zoo), f
    db = tmp_path / "fuzz.sqlite"
    for f in files:
        rc = main(["leaderboard", "score", str(f), "--zoo", str(tiny_preset_zoo), "--db", str(db),
                   "--resamples", "20", "--json"])
        assert rc != 0, f
    conn = sqlite3.connect(db)
    try:
        assert conn.execute("SELECT COUNT(*) FROM submissions").fetchone()[0] == 0
    finally:
        conn.close()


# --------------------------------------------------------------------------- split files


@pytest.fixture(scope="module")
def split_doc(preset):
    from benchmark.splits import make_split

    zoo, _ = preset
    return make_split(zoo, "id").to_doc()


@SETTINGS
@given(data=st.data())
def test_malformed_split_files_raise_split_error_only(split_doc, workdir, data):
    from benchmark.splits import SplitError, read_split

    fault = data.draw(st.sampled_from(["mutate", "bytes", "truncate"]), label="fault")
    raw = json.dumps(split_doc).encode()
    if fault == "mutate":
        raw = json.dumps(_mutate(split_doc, data), allow_nan=True).encode()
    elif fault == "bytes":
        raw = data.draw(st.binary(max_size=200), label="bytes")
    else:
        raw = raw[:data.draw(st.integers(0, len(raw) - 1), label="cut")]
    path = workdir / "split.json"
    path.write_bytes(raw)
    try:
        read_split(path)
    except SplitError as e:
        assert str(e).startswith(str(path))
