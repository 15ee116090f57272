"""The array views of a network that methods consume: flat, statistics, matrices.

A network is its canonical parameter list (docs/parameters.md) plus its
`ArchSpec`. Each view turns a population into one dense numpy array so that a
method can batch over networks of different sizes:

* `flat`: every parameter in one vector, zero-padded (with a mask). Not
  invariant to hidden-unit permutations: a method sees a network and its
  permuted twin as different points.
* `stats`: StatNN features (per-layer weight and bias statistics). Invariant to
  hidden-unit permutations, which is why it is a strong baseline.
* `matrices`: each layer's weight matrix as one channel of a zero-padded image.

The neural-graph view lives in `benchmark.neural_graph`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from zoo_builder.architecture import ArchSpec, check_params

PERCENTILES = (0, 25, 50, 75, 100)
STAT_NAMES = ("mean", "var") + tuple(f"q{q}" for q in PERCENTILES)


# --------------------------------------------------------------------------- flat


def flat_vector(params) -> np.ndarray:
    """All parameters as one float32 vector (P,).

    Order: for each layer in forward order, ``kernel.ravel()`` (C order) then
    ``bias``.
    """
    parts = []
    for layer in params:
        parts.append(np.asarray(layer["kernel"], np.float32).ravel())
        parts.append(np.asarray(layer["bias"], np.float32).ravel())
    return np.concatenate(parts) if parts else np.zeros(0, np.float32)


def flat(params_list: Sequence, dim: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Flat vectors of a population, zero-padded to a common length.

    Args:
      params_list: canonical parameter lists.
      dim: the padded length; default the largest network's parameter count.

    Returns:
      ``(x, mask)``, both (n, dim): float32 parameters and bool (True where a
      network has a parameter).

    Raises:
      ValueError: naming the network if it has more than `dim` parameters.
    """
    vectors = [flat_vector(p) for p in params_list]
    largest = max((v.size for v in vectors), default=0)
    dim = largest if dim is None else int(dim)
    x = np.zeros((len(vectors), dim), np.float32)
    mask = np.zeros((len(vectors), dim), bool)
    for i, v in enumerate(vectors):
        if v.size > dim:
            raise ValueError(f"network {i} has {v.size} parameters, more than dim={dim}")
        x[i, : v.size] = v
        mask[i, : v.size] = True
    return x, mask


# --------------------------------------------------------------------------- statistics


def _moments(values: np.ndarray) -> np.ndarray:
    """Mean, population variance (ddof=0) and the `PERCENTILES` of `values`, in float64."""
    v = np.asarray(values, np.float64).ravel()
    return np.concatenate([[v.mean(), v.var()], np.percentile(v, PERCENTILES)])


def stats_feature_names(max_layers: int) -> list[str]:
    """Names of the `stats_features` columns, in order (see its docstring)."""
    names = [f"layer{l}/{param}/{stat}"
             for l in range(max_layers) for param in ("weight", "bias") for stat in STAT_NAMES]
    names += [f"layer{l}/{side}" for l in range(max_layers) for side in ("fan_in", "fan_out")]
    names += [f"layer{l}/present" for l in range(max_layers)]
    names.append("num_layers")
    return names


def stats_features(params, arch: ArchSpec, max_layers: int) -> np.ndarray:
    """StatNN features of one network (Unterthiner et al. 2020), float32 (17 * max_layers + 1,).

    Summary statistics of each layer's weights do not change when hidden units
    are permuted, so this view is permutation invariant by construction.

    Feature order (`stats_feature_names` gives the names), for ``L = max_layers``:

    1. for each layer ``l < L``: of its kernel, then of its bias: mean, variance
       (ddof=0), and the 0/25/50/75/100 percentiles (linear interpolation):
       ``layer{l}/{weight|bias}/{mean,var,q0,q25,q50,q75,q100}`` (14 L values);
    2. for each layer: ``fan_in, fan_out`` as unit widths (a conv kernel's
       ``c_in, c_out``, a dense kernel's ``in, out``) (2 L values);
    3. for each layer: ``present``, 1.0 if the network has that layer (L values);
    4. ``num_layers``, the network's layer count including the head (1 value).

    Layers beyond the network's own count are all zero (statistics, widths and
    presence flag).

    Raises:
      ValueError: if `params` does not fit `arch` or has more than `max_layers` layers.
    """
    check_params(arch, params)
    n = len(params)
    if n > max_layers:
        raise ValueError(f"{n} layers, more than max_layers={max_layers}")
    moments = np.zeros((max_layers, 2, len(STAT_NAMES)))
    widths = np.zeros((max_layers, 2))
    present = np.zeros(max_layers)
    for l, layer in enumerate(params):
        kernel = np.asarray(layer["kernel"])
        moments[l, 0] = _moments(kernel)
        moments[l, 1] = _moments(layer["bias"])
        widths[l] = kernel.shape[-2], kernel.shape[-1]
        present[l] = 1.0
    return np.concatenate([moments.ravel(), widths.ravel(), present, [n]]).astype(np.float32)


def stats(params_list: Sequence, archs: Sequence[ArchSpec], max_layers: int | None = None) -> np.ndarray:
    """`stats_features` of a population, (n, 17 * max_layers + 1) float32.

    `max_layers` defaults to the most layers any network of the population has;
    pass it explicitly so that features of different populations line up.
    """
    if len(params_list) != len(archs):
        raise ValueError(f"got {len(params_list)} parameter lists but {len(archs)} archs")
    if max_layers is None:
        max_layers = max((len(p) for p in params_list), default=0)
    rows = []
    for i, (params, arch) in enumerate(zip(params_list, archs, strict=True)):
        try:
            rows.append(stats_features(params, arch, max_layers))
        except ValueError as e:
            raise ValueError(f"network {i}: {e}") from e
    return np.stack(rows) if rows else np.zeros((0, len(stats_feature_names(max_layers))), np.float32)


# --------------------------------------------------------------------------- matrices


def weight_matrix(kernel) -> np.ndarray:
    """A layer's kernel as a 2-D float32 matrix (rows: inputs, columns: output units).

    A dense kernel (in, out) is returned as is. An HWIO conv kernel
    (kh, kw, c_in, c_out) is reshaped in C order to (kh * kw * c_in, c_out): row
    ``(h * kw + w) * c_in + i`` holds tap (h, w) of input channel i, so the input
    channel varies fastest.
    """
    kernel = np.asarray(kernel, np.float32)
    if kernel.ndim < 2:
        raise ValueError(f"a kernel has at least 2 axes, got shape {kernel.shape}")
    return kernel.reshape(-1, kernel.shape[-1])


def matrices(
    params_list: Sequence,
    grid: tuple[int, int] | None = None,
    max_layers: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Each network's weight matrices stacked as channels of a zero-padded image.

    Args:
      params_list: canonical parameter lists.
      grid: (R, C) every weight matrix is padded to (top-left aligned); default
        the largest row and column counts in the population.
      max_layers: number of channels L; default the most layers of any network.

    Returns:
      ``(x, mask)``, both (n, L, R, C): float32 weights (biases are not included)
      and bool (True where a network has a weight).

    Raises:
      ValueError: naming the network and layer that does not fit the grid or
      `max_layers`.
    """
    mats = [[weight_matrix(layer["kernel"]) for layer in params] for params in params_list]
    if max_layers is None:
        max_layers = max((len(m) for m in mats), default=0)
    if grid is None:
        grid = (max((w.shape[0] for m in mats for w in m), default=0),
                max((w.shape[1] for m in mats for w in m), default=0))
    rows, cols = grid
    x = np.zeros((len(mats), max_layers, rows, cols), np.float32)
    mask = np.zeros(x.shape, bool)
    for i, layers in enumerate(mats):
        if len(layers) > max_layers:
            raise ValueError(f"network {i} has {len(layers)} layers, more than max_layers={max_layers}")
        for l, w in enumerate(layers):
            if w.shape[0] > rows or w.shape[1] > cols:
                raise ValueError(
                    f"network {i}, layer {l}: weight matrix {w.shape} does not fit the grid {tuple(grid)}")
            x[i, l, : w.shape[0], : w.shape[1]] = w
            mask[i, l, : w.shape[0], : w.shape[1]] = True
    return x, mask
