"""ng-gnn: a message-passing network over the neural graph (one node per neuron, one edge per weight).

Hidden neurons carry no identity of their own (no position embedding), and every
operation is a per-node / per-edge map or a segment reduction, so permuting a
network's hidden units permutes the node embeddings and leaves graph outputs
unchanged. Input and output neurons get a learned embedding of their position:
their order means something, and the model is deliberately sensitive to it.

Layout (Kofinas et al. 2024, "Graph neural networks for learning equivariant
representations of neural networks", in the style of jraph's models.py):

* node init: Dense([bias, layer index, one-hot node type]) + position embedding
  (inputs and outputs only); an edge's features are [weight vector, reverse flag];
* `config.num_layers` message-passing layers, by default `FactorisedMessagePassing`:
  messages gelu(A h_sender + B h_receiver + C w) on the raw edge features w,
  aggregated by sum, mean and max separately for forward and reverse edges (so
  the direction of flow is not lost), the message MLP's second layer once per
  node, then a residual node update and a layer norm over one node's features
  (never across the batch). `layer="edge-mlp"` selects the layer before it
  (`MessagePassing`: an edge embedding, MLP([h_sender, h_receiver, e]) per edge,
  residual edge updates);
* readout: mean and max over the real nodes of each graph, then an MLP;
* heads (`config.kind`): "regression": one output per target, `test_acc` through a
  sigmoid (an accuracy is in [0, 1]) and `gen_gap` through a tanh (a difference of
  two accuracies is in [-1, 1] and may be negative), after the train targets' offset
  and gain (`harness.head_affine`, as every other method's heads); "classification": logits per
  target; "retrieval": an L2-normalised embedding, followed by a cosine classifier
  on the dataset labels that trains it.
"""

from __future__ import annotations

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp
import jraph

from benchmark.neural_graph import INPUT, OUTPUT

KINDS = ("regression", "classification", "retrieval")
LAYERS = ("factorised", "edge-mlp")
VALUE_ENCODINGS = ("linear", "fourier")


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Hyperparameters of ng-gnn.

    Attributes:
      kind: "regression", "classification" or "retrieval" (which heads).
      outputs: head name -> output size: one per regression target (size 1), the
        number of classes per classification target, or {"dataset": n} for retrieval.
      hidden: width of node and edge embeddings.
      num_layers: message-passing layers (2-4).
      embed_dim: retrieval embedding length.
      max_inputs, max_outputs: sizes of the position embedding tables (positions
        past them share the last entry).
      layer: "factorised" (`FactorisedMessagePassing`: per edge only O(hidden · edge
        features) work, no edge state) or "edge-mlp" (`MessagePassing`: a two-layer
        MLP per edge and residual edge updates; the layer before the factorised one).
      layer_norm: a LayerNorm after each residual update (off: ablation).
      value_encoding: how a weight or bias value enters: "linear" (a Dense of the raw
        value) or "fourier" (random Fourier features [cos 2πBv, sin 2πBv], B ~ N(0,
        fourier_scale²), fixed, then a Dense: the Neural Graphs code's `sin_emb`, which
        lets a small network tell apart values that differ little, as INRs' do).
      fourier_features, fourier_scale: columns of B and its standard deviation.
      probe_features: neuron values at this many fixed probe inputs, as extra node
        features (`harness.with_probe_features`): the Neural Graphs paper's probe
        features, whose probes are learned there and fixed here. 0: weights only.
      value_width: "fourier" only: an edge's encoded width (a Dense of its features, once
        per edge, that every message-passing layer then reads).
    """

    kind: str = "regression"
    outputs: tuple[tuple[str, int], ...] = (("test_acc", 1), ("gen_gap", 1))
    hidden: int = 32
    num_layers: int = 2
    embed_dim: int = 16
    max_inputs: int = 1024
    max_outputs: int = 128
    layer: str = "factorised"
    layer_norm: bool = True
    value_encoding: str = "linear"
    fourier_features: int = 64
    fourier_scale: float = 3.0
    value_width: int = 16
    probe_features: int = 0

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {self.kind!r}")
        if self.layer not in LAYERS:
            raise ValueError(f"layer must be one of {LAYERS}, got {self.layer!r}")
        if self.value_encoding not in VALUE_ENCODINGS:
            raise ValueError(f"value_encoding must be one of {VALUE_ENCODINGS}, got {self.value_encoding!r}")
        if not 1 <= self.num_layers <= 8:
            raise ValueError(f"num_layers must be in [1, 8], got {self.num_layers}")


# --------------------------------------------------------------------------- segment helpers


def node_graph_index(graph: jraph.GraphsTuple) -> jnp.ndarray:
    """Graph index of every node (padding nodes belong to the padding graph)."""
    n_graph = graph.n_node.shape[0]
    return jnp.repeat(jnp.arange(n_graph), graph.n_node, total_repeat_length=graph.nodes["position"].shape[0])


def segment_counts(segments: jnp.ndarray, num_segments: int) -> jnp.ndarray:
    """(num_segments, 1) number of items per segment."""
    return jax.ops.segment_sum(jnp.ones((segments.shape[0], 1), jnp.float32), segments, num_segments)


def direction_slots(receivers: jnp.ndarray, reverse: jnp.ndarray, num_nodes: int) -> jnp.ndarray:
    """Aggregation segment of each edge: its receiver, offset by `num_nodes` for reverse edges, so
    forward and reverse messages aggregate separately."""
    return receivers + num_nodes * reverse.astype(receivers.dtype)


def maybe_layer_norm(on: bool):
    """A LayerNorm over the feature axis, or the identity (the ablation without it)."""
    return nn.LayerNorm() if on else (lambda x: x)


def aggregate(values: jnp.ndarray, segments: jnp.ndarray, num_segments: int,
              count: jnp.ndarray | None = None) -> jnp.ndarray:
    """[sum, mean, max] of `values` per segment; empty segments give 0 (not -inf).

    `count` (from `segment_counts`) can be passed when the segments repeat across layers.
    """
    total = jax.ops.segment_sum(values, segments, num_segments)
    if count is None:
        count = segment_counts(segments, num_segments)
    biggest = jax.ops.segment_max(values, segments, num_segments)
    biggest = jnp.where(count > 0, biggest, 0.0)
    return jnp.concatenate([total, total / jnp.maximum(count, 1.0), biggest], axis=-1)


class MLP(nn.Module):
    """Dense-gelu-Dense."""

    width: int
    out: int

    @nn.compact
    def __call__(self, x):
        return nn.Dense(self.out)(nn.gelu(nn.Dense(self.width)(x)))


class EdgeMLP(nn.Module):
    """MLP([h_sender, h_receiver, e]) per edge, its first layer factorised over nodes.

    ``Dense([h_s, h_r, e]) = A h_s + B h_r + C e``: the node terms are computed once
    per node and gathered, so per edge only ``C e`` and the second layer remain,
    about half the multiply-adds of the concatenated form (same function class).
    """

    width: int
    out: int

    @nn.compact
    def __call__(self, h, e, senders, receivers):
        node = nn.Dense(2 * self.width, use_bias=False)(h)
        x = node[senders, : self.width] + node[receivers, self.width:] + nn.Dense(self.width)(e)
        return nn.Dense(self.out)(nn.gelu(x))


class MessagePassing(nn.Module):
    """One layer: edge-conditioned messages, 6 aggregations, residual node and edge updates.

    `update_edges` is off for the last layer, whose edge features nothing reads.
    """

    hidden: int
    update_edges: bool = True
    layer_norm: bool = True

    @nn.compact
    def __call__(self, h, e, senders, receivers, reverse):
        n = h.shape[0]
        messages = EdgeMLP(self.hidden, self.hidden)(h, e, senders, receivers)
        slots = direction_slots(receivers, reverse, n)
        agg = aggregate(messages, slots, 2 * n)
        agg = jnp.concatenate([agg[:n], agg[n:]], axis=-1)
        d = self.hidden
        h = maybe_layer_norm(self.layer_norm)(h + MLP(d, d)(jnp.concatenate([h, agg], -1)))
        if self.update_edges:
            e = maybe_layer_norm(self.layer_norm)(e + EdgeMLP(d, d)(h, e, senders, receivers))
        return h, e


class FactorisedMessagePassing(nn.Module):
    """One layer whose per-edge work is O(hidden · k), not O(hidden²).

    Messages ``m = gelu(A h_s + B h_r + C w)`` read the raw edge features ``w``
    (k ≤ 10: a weight or a 3×3 kernel slice, and the reverse flag) in every layer
    instead of a hidden-wide edge state, so no d×d map runs per edge. They are
    aggregated by sum, mean and max separately for forward and reverse edges; the
    message MLP's second linear layer then runs once per node on the aggregates
    (it commutes with sum and mean; after max it is another, equally invariant,
    function). Then a residual node update, as in `MessagePassing`.
    """

    hidden: int
    layer_norm: bool = True

    @nn.compact
    def __call__(self, h, w, senders, receivers, slots, count):
        n, d = h.shape[0], self.hidden
        node = nn.Dense(2 * d, use_bias=False)(h)
        messages = nn.gelu(node[senders, :d] + node[receivers, d:] + nn.Dense(d, name="edge_in")(w))
        agg = aggregate(messages, slots, 2 * n, count)
        agg = nn.Dense(d)(jnp.concatenate([agg[:n], agg[n:]], axis=-1))
        h = h + MLP(d, d)(jnp.concatenate([h, agg], -1))
        return maybe_layer_norm(self.layer_norm)(h)


def fourier_features(values: jnp.ndarray, num: int, scale: float) -> jnp.ndarray:
    """[cos 2πvB, sin 2πvB] of (..., k) values, B a fixed (k, num) draw of N(0, scale²).

    B comes from a constant key, so it is the same in every model and every call
    (random Fourier features, Tancik et al. 2020; the `rff` GaussianEncoding the Neural
    Graphs code uses). Not a parameter: nothing trains it.
    """
    b = scale * jax.random.normal(jax.random.PRNGKey(0), (values.shape[-1], num))
    angle = 2 * jnp.pi * values @ b
    return jnp.concatenate([jnp.cos(angle), jnp.sin(angle)], -1)


def edge_dim_of(variables) -> int:
    """The edge width (values per weight, the reverse flag not counted) a model was initialised for."""
    params = variables["params"]
    edge_in = params["edge_in"] if "edge_in" in params else params["layers_0"]["edge_in"]
    return int(edge_in["kernel"].shape[0]) - 1


class NeuralGraphNet(nn.Module):
    """ng-gnn on a padded batch of neural graphs (`benchmark.neural_graph.pad_batch`).

    `__call__` returns head name -> (n_graph, size) outputs (padding graphs
    included: mask them out); `node_embeddings` the final (n_node, hidden) node
    embeddings, equivariant to hidden-unit permutations.
    """

    config: ModelConfig

    def setup(self):
        cfg = self.config
        self.node_in = nn.Dense(cfg.hidden)
        self.input_pos = nn.Embed(cfg.max_inputs, cfg.hidden)
        self.output_pos = nn.Embed(cfg.max_outputs, cfg.hidden)
        if cfg.value_encoding == "fourier":
            self.edge_value = nn.Dense(cfg.value_width)
        if cfg.layer == "factorised":
            self.layers = [FactorisedMessagePassing(cfg.hidden, cfg.layer_norm)
                           for _ in range(cfg.num_layers)]
        else:
            self.edge_in = nn.Dense(cfg.hidden)
            self.layers = [MessagePassing(cfg.hidden, update_edges=i < cfg.num_layers - 1,
                                          layer_norm=cfg.layer_norm) for i in range(cfg.num_layers)]
        self.readout = MLP(cfg.hidden, cfg.hidden)
        if cfg.kind == "retrieval":
            self.embed = nn.Dense(cfg.embed_dim)
            self.scale = self.param("scale", lambda _: jnp.array(10.0))
        self.heads = {name: nn.Dense(size, name=f"head_{name}") for name, size in cfg.outputs}

    def node_embeddings(self, graph: jraph.GraphsTuple) -> jnp.ndarray:
        cfg = self.config
        feats, pos = graph.nodes["features"], graph.nodes["position"]
        kind = feats[:, 2].astype(jnp.int32)
        value, weight = feats[:, :1], graph.edges["weight"]
        if cfg.value_encoding == "fourier":
            value = fourier_features(value, cfg.fourier_features, cfg.fourier_scale)
            encoded = fourier_features(weight, cfg.fourier_features, cfg.fourier_scale)
            weight = nn.gelu(self.edge_value(encoded))
        x = jnp.concatenate([value, feats[:, 1:2], jax.nn.one_hot(kind, 3)], -1)
        if cfg.probe_features:
            x = jnp.concatenate([x, graph.nodes["probe"]], -1)
        h = self.node_in(x)
        p = jnp.maximum(pos, 0)
        h = h + jnp.where((kind == INPUT)[:, None], self.input_pos(jnp.minimum(p, cfg.max_inputs - 1)), 0)
        h = h + jnp.where((kind == OUTPUT)[:, None], self.output_pos(jnp.minimum(p, cfg.max_outputs - 1)), 0)
        # Hidden neurons get no position embedding: that is the permutation invariance.
        w = jnp.concatenate([weight, graph.edges["reverse"][:, None]], -1)
        if cfg.layer == "edge-mlp":
            e = self.edge_in(w)
            for layer in self.layers:
                h, e = layer(h, e, graph.senders, graph.receivers, graph.edges["reverse"])
            return h
        n = h.shape[0]
        slots = direction_slots(graph.receivers, graph.edges["reverse"], n)
        count = segment_counts(slots, 2 * n)  # the same in every layer
        for layer in self.layers:
            h = layer(h, w, graph.senders, graph.receivers, slots, count)
        return h

    def graph_embeddings(self, graph: jraph.GraphsTuple) -> jnp.ndarray:
        """(n_graph, hidden): mean and max over each graph's nodes, through an MLP."""
        h = self.node_embeddings(graph)
        n_graph = graph.n_node.shape[0]
        index = node_graph_index(graph)
        agg = aggregate(h, index, n_graph)[:, h.shape[-1]:]  # [mean, max]
        return self.readout(agg)

    def __call__(self, graph: jraph.GraphsTuple, affine=None) -> dict[str, jnp.ndarray]:
        """The heads' outputs; `affine` as `classic.heads` (regression: `harness.head_affine`)."""
        g = self.graph_embeddings(graph)
        if self.config.kind == "retrieval":
            z = self.embed(nn.gelu(g))
            z = z / jnp.maximum(jnp.linalg.norm(z, axis=-1, keepdims=True), 1e-6)
            out = {name: self.scale * head(z) for name, head in self.heads.items()}
            out["embedding"] = z
            return out
        out = {name: head(nn.gelu(g)) for name, head in self.heads.items()}
        for name, (offset, gain) in (affine or {}).items():
            out[name] = offset + gain * out[name]
        if self.config.kind == "regression":
            out = {name: jax.nn.sigmoid(v) if name == "test_acc" else jnp.tanh(v) for name, v in out.items()}
        return out
