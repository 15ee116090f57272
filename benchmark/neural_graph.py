"""The neural-graph view: a network as a graph with one node per neuron and one edge per weight.

Permuting a network's hidden units only relabels the hidden nodes of its graph
(Kofinas et al. 2024, "Graph neural networks for learning equivariant
representations of neural networks"), so a graph network reading this view is
permutation equivariant by construction.

* Nodes, in layer order: input neurons (an MLP's H*W*C flattened inputs, a CNN's
  C input channels, a SIREN's 2 coordinates), the units (channels) of each hidden
  layer, the output classes (a SIREN's output channels). ``nodes = {"features", "position"}``:

  - ``features`` (n_node, 3) float32: [bias (0 for inputs), layer index (0 for
    inputs, 1..depth for hidden layers, depth + 1 for outputs), node type
    (0 input, 1 hidden, 2 output)];
  - ``position`` (n_node,) int32: the neuron's index within its layer for input
    and output neurons, whose order means something; -1 for hidden neurons,
    whose order does not.

* Edges: from every neuron of layer l to every neuron of layer l + 1, in kernel
  order (sender-major). ``edges = {"weight", "reverse"}``:

  - ``weight`` (n_edge, edge_dim) float32: a dense weight ``kernel[i, j]`` as one
    value, a 3x3 conv kernel slice ``kernel[:, :, i, j].ravel()`` (row-major,
    9 values), zero-padded at the end to ``edge_dim``;
  - ``reverse`` (n_edge,) float32: 1.0 on the reversed copies that
    ``reverse_edges=True`` appends after the forward edges, else 0.0.

* ``globals`` is None; ``n_node`` and ``n_edge`` are int32 arrays of shape (1,).

Batches are padded to a fixed `Budget` so that a jitted model compiles once.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence

import jraph
import numpy as np

from zoo_builder.architecture import ArchSpec, check_params
from zoo_builder.permutation import perm_name

INPUT, HIDDEN, OUTPUT = 0, 1, 2
# Budgets are rounded up to a multiple of this, so that populations of similar
# sizes share compiled shapes; a multiple wastes less than a power of two.
BUDGET_MULTIPLE = 64


# --------------------------------------------------------------------------- nodes


def layer_widths(arch: ArchSpec) -> list[int]:
    """Number of neurons of each neuron layer: [inputs, hidden_1, ..., hidden_d, outputs]."""
    # A CNN's input neurons are its channels; an MLP's and a SIREN's, the entries of one input.
    n_in = arch.input_shape[2] if arch.family == "cnn" else int(np.prod(arch.input_dims))
    return [n_in, *arch.hidden, arch.num_classes]


def layer_nodes(arch: ArchSpec) -> list[np.ndarray]:
    """Node ids (int32) of each neuron layer in unit order: [inputs, hidden_1, ..., hidden_d, outputs]."""
    widths = layer_widths(arch)
    starts = np.cumsum([0, *widths[:-1]])
    return [np.arange(s, s + w, dtype=np.int32) for s, w in zip(starts, widths, strict=True)]


def hidden_node_ids(arch: ArchSpec) -> dict[str, np.ndarray]:
    """Permutation name ``P_i`` -> node ids of hidden layer i, in unit order.

    Unit ``j`` of hidden layer ``i`` is node ``hidden_node_ids(arch)[perm_name(i)][j]``,
    so a permutation of the spec maps directly onto nodes.
    """
    return {perm_name(i): ids for i, ids in enumerate(layer_nodes(arch)[1:-1])}


def default_edge_dim(arch: ArchSpec) -> int:
    """Values per edge of `arch`'s largest kernel: 9 (3x3) for a CNN, 1 for an MLP."""
    return max(int(np.prod(k[:-2])) for k, _ in arch.layer_shapes())


def _node_features(params, arch: ArchSpec) -> tuple[np.ndarray, np.ndarray]:
    widths = layer_widths(arch)
    depth = arch.depth
    bias = np.concatenate([np.zeros(widths[0], np.float32)]
                          + [np.asarray(layer["bias"], np.float32) for layer in params])
    layer = np.repeat(np.arange(depth + 2), widths)
    kind = np.repeat([INPUT] + [HIDDEN] * depth + [OUTPUT], widths)
    features = np.stack([bias, layer, kind], axis=1).astype(np.float32)
    position = np.concatenate([np.arange(widths[0]), np.full(sum(arch.hidden), -1),
                               np.arange(widths[-1])]).astype(np.int32)
    return features, position


# --------------------------------------------------------------------------- edges


def edge_vectors(kernel) -> np.ndarray:
    """One row per weight edge (i, j), sender-major: (c_in * c_out, kh * kw) float32.

    Row ``i * c_out + j`` is ``kernel[i, j]`` for a dense kernel and
    ``kernel[:, :, i, j].ravel()`` for an HWIO conv kernel.
    """
    kernel = np.asarray(kernel, np.float32)
    c_in, c_out = kernel.shape[-2:]
    taps = np.moveaxis(kernel.reshape(-1, c_in, c_out), 0, -1)  # (c_in, c_out, kh * kw)
    return taps.reshape(c_in * c_out, -1)


def network_graph(params, arch: ArchSpec, *, edge_dim: int | None = None,
                  reverse_edges: bool = False) -> jraph.GraphsTuple:
    """The neural graph of one network (see the module docstring for the layout).

    Args:
      params: canonical parameter list of `arch` (numpy or jax arrays).
      arch: the network's architecture.
      edge_dim: length of every edge's weight vector; default `default_edge_dim`.
        Pass 9 when batching MLPs with CNNs so that shapes agree.
      reverse_edges: also add every edge reversed (flag ``reverse`` = 1.0), so
        that messages flow backwards too.

    Raises:
      ValueError: if `params` does not fit `arch`, or a kernel has more values
        per edge than `edge_dim`.
    """
    check_params(arch, params)
    edge_dim = default_edge_dim(arch) if edge_dim is None else int(edge_dim)
    nodes = layer_nodes(arch)
    senders, receivers, weights = [], [], []
    for l, layer in enumerate(params):
        vectors = edge_vectors(layer["kernel"])
        if vectors.shape[1] > edge_dim:
            raise ValueError(
                f"layer {l} has {vectors.shape[1]} values per edge, more than edge_dim={edge_dim}")
        weights.append(np.pad(vectors, ((0, 0), (0, edge_dim - vectors.shape[1]))))
        senders.append(np.repeat(nodes[l], len(nodes[l + 1])))
        receivers.append(np.tile(nodes[l + 1], len(nodes[l])))
    senders, receivers, weights = (np.concatenate(a) for a in (senders, receivers, weights))
    reverse = np.zeros(len(senders), np.float32)
    if reverse_edges:
        senders, receivers = np.concatenate([senders, receivers]), np.concatenate([receivers, senders])
        weights = np.concatenate([weights, weights])
        reverse = np.concatenate([reverse, np.ones_like(reverse)])
    features, position = _node_features(params, arch)
    return jraph.GraphsTuple(
        nodes={"features": features, "position": position},
        edges={"weight": weights.astype(np.float32), "reverse": reverse},
        senders=senders.astype(np.int32),
        receivers=receivers.astype(np.int32),
        n_node=np.array([len(position)], np.int32),
        n_edge=np.array([len(senders)], np.int32),
        globals=None,
    )


# --------------------------------------------------------------------------- padded batches


@dataclasses.dataclass(frozen=True)
class Budget:
    """Fixed sizes every padded batch has: total nodes, edges and graphs (padding included)."""

    n_node: int
    n_edge: int
    n_graph: int

    def __post_init__(self):
        if self.n_node < 1 or self.n_edge < 0 or self.n_graph < 2:
            raise ValueError(f"a budget needs n_node >= 1, n_edge >= 0, n_graph >= 2; got {self}")


def _round_up(n: int, multiple: int = BUDGET_MULTIPLE) -> int:
    return -(-n // multiple) * multiple


def _size(graph: jraph.GraphsTuple) -> tuple[int, int, int]:
    return int(np.sum(graph.n_node)), int(np.sum(graph.n_edge)), int(np.shape(graph.n_node)[0])


def budget_for(graphs: Sequence[jraph.GraphsTuple], batch_size: int) -> Budget:
    """A budget that any `batch_size` of `graphs` fits.

    Nodes: the sum of the `batch_size` largest node counts, plus one (jraph's
    padding graph needs at least one node), rounded up to a multiple of
    `BUDGET_MULTIPLE` (64); edges likewise; graphs: ``batch_size + 1`` (the
    padding graph).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    if not graphs:
        raise ValueError("budget_for needs at least one graph")
    sizes = np.array([_size(g)[:2] for g in graphs])
    largest = -np.sort(-sizes, axis=0)[:batch_size].sum(axis=0)
    return Budget(n_node=_round_up(int(largest[0]) + 1), n_edge=_round_up(int(largest[1]) + 1),
                  n_graph=batch_size + 1)


@dataclasses.dataclass(frozen=True)
class SizeBuckets:
    """Graphs grouped by size, one padding `Budget` per group.

    One budget for every batch pads each batch to the largest graphs (about 3x
    the real edges on the `small` zoo); a few buckets of similar sizes cut the
    padding while keeping the number of compilations at one per bucket.

    Attributes:
      limits: per bucket, the largest (n_node, n_edge) of one graph it takes;
        increasing, so a graph goes to the first bucket it fits.
      budgets: per bucket, a budget that any `batch_size` graphs within its limits fit.
    """

    limits: tuple[tuple[int, int], ...]
    budgets: tuple[Budget, ...]

    def assign(self, graphs: Sequence[jraph.GraphsTuple]) -> np.ndarray:
        """Bucket index of every graph: the first whose limits it fits, -1 if none."""
        sizes = np.array([_size(g)[:2] for g in graphs]).reshape(-1, 2)
        limits = np.array(self.limits)
        fits = np.all(sizes[:, None, :] <= limits[None, :, :], axis=-1)
        return np.where(fits.any(1), np.argmax(fits, axis=1), -1)


def _split_points(values: np.ndarray, counts: np.ndarray, num_buckets: int) -> list[int]:
    """End indices into sorted unique `values` minimising sum over buckets of count * largest value."""
    cum = np.concatenate([[0], np.cumsum(counts)])
    m = len(values)
    cost = np.full((num_buckets + 1, m + 1), np.inf)
    arg = np.zeros((num_buckets + 1, m + 1), np.int64)
    cost[0, 0] = 0.0
    for b in range(1, num_buckets + 1):
        for j in range(1, m + 1):
            # The last bucket holds unique values i..j-1, so its cost is (cum[j] - cum[i]) * values[j-1].
            total = cost[b - 1, :j] + (cum[j] - cum[:j]) * float(values[j - 1])
            arg[b, j] = int(np.argmin(total))
            cost[b, j] = total[arg[b, j]]
    ends, j = [], m
    for b in range(num_buckets, 0, -1):
        ends.append(j)
        j = arg[b, j]
    return sorted({e for e in ends if e > 0})


def size_buckets(graphs: Sequence[jraph.GraphsTuple], batch_size: int, num_buckets: int = 3) -> SizeBuckets:
    """At most `num_buckets` buckets of `graphs` by edge count, chosen to minimise padded edges.

    Every graph of `graphs` fits some bucket; a bucket's budget takes `batch_size`
    graphs of its largest node and edge counts (rounded up like `budget_for`).
    """
    if batch_size < 1 or num_buckets < 1:
        raise ValueError(f"batch_size and num_buckets must be positive, got {batch_size}, {num_buckets}")
    if not graphs:
        raise ValueError("size_buckets needs at least one graph")
    sizes = np.array([_size(g)[:2] for g in graphs])
    values, counts = np.unique(sizes[:, 1], return_counts=True)
    limits, budgets, start, max_node = [], [], 0, 0
    for end in _split_points(values, counts, min(num_buckets, len(values))):
        members = (sizes[:, 1] >= values[start]) & (sizes[:, 1] <= values[end - 1])
        max_node = max(max_node, int(sizes[members, 0].max()))  # increasing, so `assign` is monotone
        max_edge = int(values[end - 1])
        limits.append((max_node, max_edge))
        budgets.append(Budget(n_node=_round_up(batch_size * max_node + 1),
                              n_edge=_round_up(batch_size * max_edge + 1), n_graph=batch_size + 1))
        start = end
    return SizeBuckets(tuple(limits), tuple(budgets))


def pad_batch(graphs: Sequence[jraph.GraphsTuple], budget: Budget) -> jraph.GraphsTuple:
    """Batch `graphs` and pad them to exactly `budget` (numpy arrays).

    The real graphs come first; `jraph.get_graph_padding_mask` and
    `jraph.get_node_padding_mask` tell them from the padding.

    Raises:
      ValueError: if the graphs do not fit the budget (saying which count is over).
    """
    if not graphs:
        raise ValueError("pad_batch needs at least one graph")
    n_node, n_edge, n_graph = np.sum([_size(g) for g in graphs], axis=0)
    if n_node + 1 > budget.n_node or n_edge > budget.n_edge or n_graph + 1 > budget.n_graph:
        raise ValueError(
            f"batch of {n_graph} graphs with {n_node} nodes and {n_edge} edges does not fit {budget} "
            "(padding needs one spare node and one spare graph)")
    padded = jraph.pad_with_graphs(jraph.batch_np(list(graphs)), budget.n_node, budget.n_edge,
                                   budget.n_graph)
    # jraph's offsets promote indices to int64; keep the documented int32.
    return padded._replace(senders=padded.senders.astype(np.int32),
                           receivers=padded.receivers.astype(np.int32),
                           n_node=padded.n_node.astype(np.int32), n_edge=padded.n_edge.astype(np.int32))


def batches(graphs: Sequence[jraph.GraphsTuple], batch_size: int, budget: Budget | None = None,
            order: Sequence[int] | None = None) -> Iterator[jraph.GraphsTuple]:
    """Padded batches of `batch_size` graphs (the last may hold fewer), all of one shape.

    Args:
      graphs: neural graphs.
      batch_size: graphs per batch.
      budget: sizes to pad to; default `budget_for(graphs, batch_size)`. Share one
        budget between train and test batches to compile once.
      order: indices into `graphs` in the order to batch them (e.g. a shuffled
        permutation, or a subset); default all graphs in order.

    Raises:
      ValueError: at the call (not at the first batch) for a bad `batch_size`
        or `order`; while iterating, if a batch is over the budget.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    order = np.arange(len(graphs)) if order is None else np.asarray(order, dtype=np.int64).ravel()
    if order.size and (order.min() < 0 or order.max() >= len(graphs)):
        raise ValueError(
            f"order has indices outside [0, {len(graphs)}): min {order.min()}, max {order.max()}")
    budget = budget_for(graphs, batch_size) if budget is None else budget
    return (pad_batch([graphs[i] for i in order[s:s + batch_size]], budget)
            for s in range(0, len(order), batch_size))
