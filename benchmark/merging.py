"""Evaluating a merging method: interpolation curves, loss barriers and unit matching.

A merging method aligns network B to network A by permuting B's hidden units
(one permutation ``P_i`` per hidden layer, as in `zoo_builder.permutation`). If
the alignment is good, the networks on the straight line between A and the
aligned B are about as good as the endpoints (Git Re-Basin, Ainsworth et al.
2023). The leaderboard's scorer calls these functions; docs/tasks.md defines
the metrics.

`interpolation_curve` is the per-pair definition (eager, one forward pass per
lambda). `evaluate_pairs` computes the same numbers for many pairs at once: a
pair's merged networks along the path are one stacked pytree evaluated by one
jitted, vmapped forward pass, and every pair of one (family, depth) is
zero-padded to that group's widest layers, so one compiled program serves all
of them whatever their widths and activations.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from zoo_builder.architecture import (
    ACTIVATIONS,
    CLASSIFIER_ACTIVATIONS,
    ArchSpec,
    Params,
    apply,
    check_params,
    forward,
)
from zoo_builder.datasets import DEFAULT_INPUT_SCALING, load_dataset
from zoo_builder.permutation import apply_permutation, permutation_problems, permutation_spec

# lambda_k = k / 10, k = 0..10: the endpoints and the midpoint are on the grid.
DEFAULT_LAMBDAS = np.linspace(0.0, 1.0, 11)
MIN_LAMBDAS = 11


def merge(params_a, params_b_aligned, lam: float):
    """The network ``(1 - lam) * A + lam * B`` (tensor by tensor); ``lam = 0.5`` is the merged network.

    B must already be aligned to A (same architecture, units in A's order).
    """
    lam = float(lam)
    if not np.isfinite(lam):
        raise ValueError(f"lam must be a finite number, got {lam!r}")
    if len(params_a) != len(params_b_aligned):
        raise ValueError(f"params_a has {len(params_a)} layers but params_b_aligned {len(params_b_aligned)}")
    out = []
    for i, (la, lb) in enumerate(zip(params_a, params_b_aligned, strict=True)):
        if set(la) != set(lb):
            raise ValueError(f"layer {i}: params_a has {sorted(la)} but params_b_aligned {sorted(lb)}")
        layer = {}
        for key in la:
            a, b = np.asarray(la[key]), np.asarray(lb[key])
            if a.shape != b.shape:
                raise ValueError(f"layer {i} {key}: shapes {a.shape} and {b.shape} differ; "
                                 "expected two networks of one architecture")
            layer[key] = ((1.0 - lam) * a + lam * b).astype(a.dtype)
        out.append(layer)
    return out


def _metrics(logits: jax.Array, y: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Mean softmax cross-entropy (natural log) and accuracy of `logits` for int32 labels `y`."""
    logp = jax.nn.log_softmax(logits, axis=-1)
    loss = -jnp.take_along_axis(logp, y[:, None], axis=-1).mean()
    accuracy = (jnp.argmax(logits, axis=-1) == y).mean()
    return loss, accuracy


def loss_and_accuracy(arch: ArchSpec, params, x, y) -> tuple[float, float]:
    """Mean softmax cross-entropy (natural log) and accuracy of a network on (x, y)."""
    loss, accuracy = _metrics(apply(arch, params, x), jnp.asarray(y, jnp.int32))
    return float(loss), float(accuracy)


def check_lambdas(lambdas) -> np.ndarray:
    """`lambdas` as a float array: at least `MIN_LAMBDAS` increasing values from 0 to 1."""
    lam = np.asarray(lambdas, np.float64)
    if (lam.ndim != 1 or len(lam) < MIN_LAMBDAS or lam[0] != 0.0 or lam[-1] != 1.0
            or not np.all(np.diff(lam) > 0)):
        raise ValueError(f"lambdas must be at least {MIN_LAMBDAS} increasing values from 0 to 1 "
                         f"(e.g. DEFAULT_LAMBDAS), got {np.asarray(lambdas).tolist()}")
    return lam


def interpolation_curve(arch: ArchSpec, params_a, params_b, x, y, lambdas=DEFAULT_LAMBDAS) -> dict:
    """Loss and accuracy of ``merge(A, B, lam)`` for every lam (B already aligned to A).

    Args:
      arch: the architecture of both networks.
      params_a, params_b: canonical parameters; B aligned to A by the method.
      x, y: evaluation inputs (N, H, W, C) and integer labels (N,): the test split
        of the pair's dataset (`evaluation_data`).
      lambdas: see `check_lambdas`.

    Returns:
      {"lambdas", "loss", "accuracy"}: float64 arrays of equal length.
    """
    lam = check_lambdas(lambdas)
    check_params(arch, params_a)
    check_params(arch, params_b)
    if len(x) != len(y) or len(x) == 0:
        raise ValueError(
            f"x and y must hold the same, non-zero number of examples, got {len(x)} and {len(y)}")
    results = [loss_and_accuracy(arch, merge(params_a, params_b, l), x, y) for l in lam]
    return {"lambdas": lam, "loss": np.array([r[0] for r in results]),
            "accuracy": np.array([r[1] for r in results])}


def loss_barrier(lambdas, losses) -> float:
    """``max_k [L(lam_k) - ((1 - lam_k) L(0) + lam_k L(1))]``: how far the path rises above the chord.

    Zero at the endpoints, so never negative; infinite if a loss on the path is not finite.
    """
    lam = check_lambdas(lambdas)
    loss = np.asarray(losses, np.float64)
    if loss.shape != lam.shape:
        raise ValueError(f"losses must have one value per lambda ({lam.shape}), got {loss.shape}")
    if not np.all(np.isfinite(loss)):
        return float("inf")
    chord = (1.0 - lam) * loss[0] + lam * loss[-1]
    return float(np.max(loss - chord))


def pair_scores(curve: Mapping) -> dict:
    """Merging scores of one pair from its `interpolation_curve` (0.5 must be on its grid).

    ``acc_ratio = acc(0.5) / ((acc(0) + acc(1)) / 2)`` (nan if both endpoints have
    accuracy 0) and ``loss_barrier``.
    """
    lam = check_lambdas(curve["lambdas"])
    mid = np.flatnonzero(np.isclose(lam, 0.5, rtol=0, atol=1e-12))
    if len(mid) != 1:
        raise ValueError("the curve's lambdas must include 0.5 (the merged network)")
    acc = np.asarray(curve["accuracy"], np.float64)
    endpoints = (acc[0] + acc[-1]) / 2
    return {
        "merged_acc": float(acc[mid[0]]),
        "acc_a": float(acc[0]),
        "acc_b": float(acc[-1]),
        "acc_ratio": float(acc[mid[0]] / endpoints) if endpoints > 0 else float("nan"),
        "loss_barrier": loss_barrier(lam, curve["loss"]),
    }


def check_permutations(sizes: Mapping[str, int], perms: Mapping, where: str = "permutations") -> None:
    """Raise ValueError unless `perms` holds, for every name in `sizes`, a permutation of range(size)."""
    if problems := permutation_problems(sizes, perms, where):
        raise ValueError("; ".join(problems))


def align(arch: ArchSpec, params_b, perms: Mapping[str, np.ndarray]):
    """B with its units permuted by a method's `perms` (``perms["P_i"][j]``: B's unit placed at j)."""
    spec = permutation_spec(arch)
    check_permutations(spec.sizes, perms)
    return apply_permutation(spec, perms, params_b)


def evaluate_pair(arch: ArchSpec, params_a, params_b, perms, x, y, lambdas=DEFAULT_LAMBDAS) -> dict:
    """`pair_scores` of A and B aligned by a method's `perms`."""
    return pair_scores(interpolation_curve(arch, params_a, align(arch, params_b, perms), x, y, lambdas))


@dataclasses.dataclass(frozen=True)
class MergePair:
    """One pair for `evaluate_pairs`: A, B (unaligned), the method's `perms` and its data's key.

    Attributes:
      arch: the architecture of both networks.
      params_a, params_b: canonical parameters.
      perms: ``{"P_i": permutation}`` aligning B to A (as in `align`).
      data: key of the pair's evaluation (x, y) in the `data` mapping given with it.
    """

    arch: ArchSpec
    params_a: Params
    params_b: Params
    perms: Mapping
    data: str


def merge_path(params_a, params_b_aligned, lambdas) -> Params:
    """``merge(A, B, lam)`` for every lam, stacked on a new leading axis (values identical to `merge`)."""
    lam = np.asarray(lambdas, np.float64)
    # Like merge: the coefficients are rounded to the tensor's dtype, the arithmetic is in it.
    out = []
    for la, lb in zip(params_a, params_b_aligned, strict=True):
        layer = {}
        for key in la:
            a, b = np.asarray(la[key]), np.asarray(lb[key])
            shape = (len(lam),) + (1,) * a.ndim
            ca, cb = (1.0 - lam).astype(a.dtype).reshape(shape), lam.astype(a.dtype).reshape(shape)
            layer[key] = ca * a + cb * b
        out.append(layer)
    return out


def pad_params(params, hidden: Sequence[int]) -> Params:
    """`params` with hidden layer i zero-padded to ``hidden[i]`` units.

    Padded units get zero incoming weights, bias and outgoing weights, so whatever
    the activation does to them, the next layer ignores them: the logits are the
    unpadded network's (see `zoo_builder.architecture`). Kernel axes are
    (..., in, out) for dense and HWIO conv kernels alike.
    """
    depth = len(params) - 1
    if len(hidden) != depth:
        raise ValueError(f"hidden must give one width per hidden layer ({depth}), got {list(hidden)}")
    out = []
    for i, layer in enumerate(params):
        kernel, bias = np.asarray(layer["kernel"]), np.asarray(layer["bias"])
        grow_out = hidden[i] - kernel.shape[-1] if i < depth else 0
        grow_in = hidden[i - 1] - kernel.shape[-2] if i > 0 else 0
        if grow_out < 0 or grow_in < 0:
            raise ValueError(f"layer {i}: kernel {kernel.shape} is wider than the padded widths "
                             f"{list(hidden)}")
        pad = [(0, 0)] * (kernel.ndim - 2) + [(0, grow_in), (0, grow_out)]
        out.append({"kernel": np.pad(kernel, pad), "bias": np.pad(bias, (0, grow_out))})
    return out


def _padded_widths(archs: Sequence[ArchSpec]) -> dict[tuple[str, int], tuple[int, ...]]:
    """(family, depth) -> its widest width per hidden layer: the shapes one compiled program serves."""
    widest: dict[tuple[str, int], np.ndarray] = {}
    for arch in archs:
        key = (arch.family, arch.depth)
        widest[key] = np.maximum(widest.get(key, 0), arch.hidden)
    return {key: tuple(int(w) for w in v) for key, v in widest.items()}


_ACTIVATION_FNS = tuple(ACTIVATIONS[name] for name in CLASSIFIER_ACTIVATIONS)  # merging is of classifiers


def _activation(family: str, index: jax.Array):
    """The activation `CLASSIFIER_ACTIVATIONS[index]` with `index` traced: data, not part of a program's key.

    Measured on CPU: for MLPs, computing every activation and selecting one with
    `jnp.where` runs as fast as `lax.switch` and compiles about three times faster;
    for CNNs, whose activations are larger next to their matmuls, `lax.switch` runs
    about 1.5 times faster, which outweighs its compile time when many pairs are scored.
    """
    if family != "mlp":
        return lambda z: jax.lax.switch(index, _ACTIVATION_FNS, z)

    def select(z):
        out = _ACTIVATION_FNS[0](z)
        for k, fn in enumerate(_ACTIVATION_FNS[1:], start=1):
            out = jnp.where(index == k, fn(z), out)
        return out

    return select


@functools.partial(jax.jit, static_argnames=("family", "padding"))
def _path_metrics(family: str, padding: str, stacked, x, y, activation) -> tuple[jax.Array, jax.Array]:
    """(loss, accuracy) of every network in `stacked` (leading axis: lambdas) on (x, y).

    `activation` is an index into `CLASSIFIER_ACTIVATIONS` (see `_activation`); `padding`
    is the networks' conv padding (`ArchSpec.padding`).
    """
    act = _activation(family, activation)
    return jax.vmap(lambda params: _metrics(forward(family, params, x, act, padding=padding), y))(stacked)


def interpolation_curves(pairs: Sequence[MergePair], data: Mapping[str, tuple], lambdas=DEFAULT_LAMBDAS
                         ) -> list[dict]:
    """`interpolation_curve` of every pair (B aligned by its `perms`), computed in batches.

    Args:
      pairs: the pairs, each naming its evaluation data.
      data: key -> (x, y) as for `interpolation_curve` (e.g. `evaluation_data`).
      lambdas: see `check_lambdas`.

    Returns one ``{"lambdas", "loss", "accuracy"}`` per pair, in order; equal to
    ``interpolation_curve(arch, A, align(arch, B, perms), x, y)`` up to float
    rounding (padding and batching change the order of sums).
    """
    lam = check_lambdas(lambdas)
    missing = sorted({p.data for p in pairs} - set(data))
    if missing:
        raise ValueError(f"data has no evaluation (x, y) for {missing}; it holds {sorted(data)}")
    device_data = {}
    for key in dict.fromkeys(p.data for p in pairs):
        x, y = data[key]
        if len(x) != len(y) or len(x) == 0:
            raise ValueError(f"data {key!r}: x and y must hold the same, non-zero number of examples, "
                             f"got {len(x)} and {len(y)}")
        device_data[key] = (jnp.asarray(x, jnp.float32), jnp.asarray(y, jnp.int32))
    widths = _padded_widths([p.arch for p in pairs])
    results = []
    for p in pairs:
        check_params(p.arch, p.params_a)
        check_params(p.arch, p.params_b)
        x, y = device_data[p.data]
        if x.shape[1:] != p.arch.input_shape:
            raise ValueError(f"data {p.data!r}: input shape {x.shape[1:]} does not match the network's "
                             f"{p.arch.input_shape}")
        hidden = widths[(p.arch.family, p.arch.depth)]
        aligned = align(p.arch, p.params_b, p.perms)
        path = merge_path(pad_params(p.params_a, hidden), pad_params(aligned, hidden), lam)
        # Kept on the device until every pair is dispatched: the host prepares the next pair meanwhile.
        results.append(_path_metrics(p.arch.family, p.arch.padding, path, x, y,
                                     CLASSIFIER_ACTIVATIONS.index(p.arch.activation)))
    return [{"lambdas": lam, "loss": np.asarray(loss, np.float64), "accuracy": np.asarray(acc, np.float64)}
            for loss, acc in results]


def evaluate_pairs(pairs: Sequence[MergePair], data: Mapping[str, tuple], lambdas=DEFAULT_LAMBDAS
                   ) -> list[dict]:
    """`evaluate_pair` of every pair, in order, computed in batches (see `interpolation_curves`)."""
    return [pair_scores(c) for c in interpolation_curves(pairs, data, lambdas)]


def _is_single(perms: Mapping) -> bool:
    return not any(isinstance(v, Mapping) for v in perms.values())


def unit_match_accuracy(true_perms: Mapping, predicted_perms: Mapping) -> float:
    """Fraction of hidden units whose predicted position is the true one, pooled over layers and pairs.

    Both arguments are either one pair's ``{"P_i": array}`` or ``{pair_id: {"P_i": array}}``.
    A unit counts as matched when ``predicted["P_i"][j] == true["P_i"][j]``.
    """
    if _is_single(true_perms):
        true_perms, predicted_perms = {"pair": true_perms}, {"pair": predicted_perms}
    if not isinstance(predicted_perms, Mapping) or set(predicted_perms) != set(true_perms):
        missing = sorted(set(true_perms) - set(predicted_perms or {}))
        raise ValueError(f"predicted_perms must cover the same pairs as true_perms; missing {missing[:3]}")
    correct = total = 0
    for pair, true in true_perms.items():
        sizes = {name: len(p) for name, p in true.items()}
        check_permutations(sizes, predicted_perms[pair], where=f"pair {pair}")
        for name, p in true.items():
            correct += int(np.sum(np.asarray(predicted_perms[pair][name]) == np.asarray(p)))
            total += len(p)
    if total == 0:
        raise ValueError("true_perms holds no hidden units")
    return correct / total


def evaluation_data(zoo, dataset: str) -> tuple[np.ndarray, np.ndarray]:
    """The test split (x, y) of `dataset` as the zoo's networks were evaluated on it.

    Uses the zoo's input shape, its ``max_train`` / ``max_test`` and its
    ``input_scaling`` (manifest config; an imported zoo records how its source
    scaled pixels, e.g. the Small CNN Zoo's "[-1, 1]"; absent: "standardise").
    """
    cfg = zoo.manifest["config"]["zoo"]
    ds = load_dataset(dataset, tuple(cfg["input_shape"]), max_train=cfg.get("max_train"),
                      max_test=cfg.get("max_test"),
                      input_scaling=cfg.get("input_scaling", DEFAULT_INPUT_SCALING))
    return ds.x_test, ds.y_test

