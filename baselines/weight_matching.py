"""Merging baselines: `naive` (identity permutations) and `weight-matching` (Git Re-Basin).

Weight matching (Ainsworth et al. 2023, "Git Re-Basin", algorithm 1) aligns B to
A by coordinate descent over the hidden layers' permutations: for one
permutation ``P_i`` with the others fixed, the alignment
``sum over every tensor axis P_i acts on of <W_A, P_i W_B>`` is linear in
``P_i`` and is maximised exactly by `scipy.optimize.linear_sum_assignment`; the
layers are visited in a random order (seeded) until no permutation changes.
Which axes a permutation acts on is read from
`zoo_builder.permutation.permutation_spec`, so it works for every architecture
(MLP and HWIO conv kernels alike).
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment

from zoo_builder.permutation import PermutationSpec, identity_permutations, permutation_spec

MERGING_METHODS = ("naive", "weight-matching")


def _permuted(spec: PermutationSpec, perms: dict, params, layer: int, key: str, skip_axis: int) -> np.ndarray:
    """Tensor (layer, key) of `params` with every permutation applied except the one on `skip_axis`."""
    value = np.asarray(params[layer][key], np.float64)
    for axis, name in enumerate(spec.axes_to_perm[(layer, key)]):
        if name is not None and axis != skip_axis:
            value = value.take(perms[name], axis=axis)
    return value


def weight_matching(spec: PermutationSpec, params_a, params_b, max_iter: int = 100,
                    seed: int = 0) -> dict[str, np.ndarray]:
    """{"P_i": perm}: perm[j] = the unit of B placed at position j (aligned to A's unit j)."""
    perms = identity_permutations(spec)
    names = list(spec.sizes)
    rng = np.random.default_rng(seed)
    for _ in range(max_iter):
        changed = False
        for p in rng.permutation(names):
            n = spec.sizes[p]
            cost = np.zeros((n, n))
            for layer, key, axis in spec.perm_to_axes[p]:
                w_a = np.moveaxis(np.asarray(params_a[layer][key], np.float64), axis, 0).reshape(n, -1)
                w_b = np.moveaxis(_permuted(spec, perms, params_b, layer, key, axis), axis, 0).reshape(n, -1)
                cost += w_a @ w_b.T
            rows, cols = linear_sum_assignment(cost, maximize=True)
            new = cols[np.argsort(rows)]
            if cost[np.arange(n), new].sum() > cost[np.arange(n), perms[p]].sum() + 1e-12:
                perms[p], changed = new, True
        if not changed:
            break
    return {name: np.asarray(v, np.int64) for name, v in perms.items()}


def predict_pairs(part, method: str = "weight-matching", seed: int = 0) -> dict:
    """{pair_id: {"P_i": [ints]}} for a merging part's real and synthetic pairs."""
    if method not in MERGING_METHODS:
        raise ValueError(f"method must be one of {MERGING_METHODS}, got {method!r}")
    out = {}
    for pair_id, a, b in (*part.pairs, *part.synthetic_pairs):
        spec = permutation_spec(part.arch(a))
        if method == "naive":
            perms = identity_permutations(spec)
        else:
            perms = weight_matching(spec, part.params(a), part.params(b), seed=seed)
        out[pair_id] = {name: [int(x) for x in p] for name, p in perms.items()}
    return out
