"""Merging with ng-gnn: align network B to A by matching their hidden nodes' embeddings.

ng-gnn's node embeddings are equivariant to hidden permutations, so a unit of B
and the unit of A it corresponds to get (nearly) the same embedding; per hidden
layer, the Hungarian algorithm on cosine similarity recovers the permutation.
Works with any parameters of the model (trained on another task or freshly
initialised): equivariance, not training, is what makes the matching sound.
"""

from __future__ import annotations

import functools

import jax
import numpy as np
from scipy.optimize import linear_sum_assignment

from baselines.ng_gnn import ModelConfig, NeuralGraphNet, edge_dim_of
from benchmark.neural_graph import (
    budget_for,
    hidden_node_ids,
    network_graph,
    pad_batch,
    size_buckets,
)
from zoo_builder.architecture import ArchSpec


@functools.cache
def _embed_fn(config: ModelConfig):
    """One jitted embedding function per config: compiles once per padded budget."""
    model = NeuralGraphNet(config)
    method = NeuralGraphNet.node_embeddings
    return jax.jit(lambda variables, graph: model.apply(variables, graph, method=method))


def node_embeddings(model: NeuralGraphNet, variables, params, arch: ArchSpec, edge_dim: int | None = None):
    """(n_node, hidden) node embeddings of one network (node ids as in `network_graph`)."""
    g = network_graph(params, arch, edge_dim=edge_dim, reverse_edges=True)
    h = _embed_fn(model.config)(variables, pad_batch([g], budget_for([g], 1)))
    return np.asarray(h)[: int(g.n_node[0])]


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def match_embeddings(h_a: np.ndarray, h_b: np.ndarray, arch: ArchSpec) -> dict[str, np.ndarray]:
    """Per hidden layer, the Hungarian matching of B's node embeddings to A's on cosine similarity."""
    perms = {}
    for name, ids in hidden_node_ids(arch).items():
        similarity = _unit(h_a[ids]) @ _unit(h_b[ids]).T
        rows, cols = linear_sum_assignment(-similarity)
        perms[name] = cols[np.argsort(rows)].astype(np.int64)
    return perms


def match_permutations(model: NeuralGraphNet, variables, params_a, params_b, arch: ArchSpec,
                       edge_dim: int | None = None) -> dict[str, np.ndarray]:
    """{"P_i": perm} with perm[j] = the unit of B placed at position j (aligned to A's unit j)."""
    return match_embeddings(node_embeddings(model, variables, params_a, arch, edge_dim),
                            node_embeddings(model, variables, params_b, arch, edge_dim), arch)


def default_model(hidden: int = 32, num_layers: int = 3, seed: int = 0, edge_dim: int = 9):
    """A freshly initialised ng-gnn (model, variables) for matching when none was trained."""
    model = NeuralGraphNet(ModelConfig(kind="classification", outputs=(("unused", 1),), hidden=hidden,
                                       num_layers=num_layers))
    arch = ArchSpec("mlp", (1, 1, 1), (2,), 2, "relu")
    params = [{"kernel": np.zeros((1, 2), np.float32), "bias": np.zeros(2, np.float32)},
              {"kernel": np.zeros((2, 2), np.float32), "bias": np.zeros(2, np.float32)}]
    g = network_graph(params, arch, edge_dim=edge_dim, reverse_edges=True)
    return model, model.init(jax.random.PRNGKey(seed), pad_batch([g], budget_for([g], 1)))


def batched_node_embeddings(model: NeuralGraphNet, variables, graphs, batch_size: int = 16,
                            num_buckets: int = 3) -> list[np.ndarray]:
    """(n_node_i, hidden) node embeddings of every graph, batched in size buckets (one compilation each)."""
    buckets = size_buckets(graphs, batch_size, num_buckets)
    assignment = buckets.assign(graphs)
    embed = _embed_fn(model.config)
    out: list[np.ndarray | None] = [None] * len(graphs)
    for b, budget in enumerate(buckets.budgets):
        members = np.flatnonzero(assignment == b)
        for s in range(0, len(members), batch_size):
            idx = members[s:s + batch_size]
            h = np.asarray(embed(variables, pad_batch([graphs[i] for i in idx], budget)))
            starts = np.concatenate([[0], np.cumsum([int(graphs[i].n_node[0]) for i in idx])])
            for k, i in enumerate(idx):
                out[i] = h[starts[k]:starts[k + 1]]
    return out


def predict_pairs(model: NeuralGraphNet, variables, part, edge_dim: int | None = None) -> dict:
    """{pair_id: {"P_i": [ints]}} for a merging part's real and synthetic pairs."""
    pairs = (*part.pairs, *part.synthetic_pairs)
    ids = sorted({i for _, a, b in pairs for i in (a, b)})
    if edge_dim is None:
        edge_dim = edge_dim_of(variables)
    graphs = [network_graph(part.params(i), part.arch(i), edge_dim=edge_dim, reverse_edges=True) for i in ids]
    embeddings = dict(zip(ids, batched_node_embeddings(model, variables, graphs), strict=True))
    out = {}
    for pair_id, a, b in pairs:
        perms = match_embeddings(embeddings[a], embeddings[b], part.arch(a))
        out[pair_id] = {name: [int(x) for x in p] for name, p in perms.items()}
    return out
