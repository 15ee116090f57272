"""The neural-graph view: exact graphs of hand-made networks, permutation = node relabelling, padding."""

from __future__ import annotations

import jax
import jraph
import numpy as np
import pytest
from nets import ARCHS, cnn, mlp, random_params

from benchmark.neural_graph import (
    Budget,
    batches,
    budget_for,
    hidden_node_ids,
    layer_nodes,
    network_graph,
    pad_batch,
    size_buckets,
)
from zoo_builder.architecture import ArchSpec
from zoo_builder.permutation import (
    apply_permutation,
    invert,
    permutation_spec,
    random_permutations,
)
from zoo_builder.storage import load_zoo

ARCH_IDS = [f"{a.family}-{'-'.join(map(str, a.hidden))}" for a in ARCHS]

# The MLP 2-3-2 of the hand-made tests.
TINY_MLP = mlp(3, input_shape=(1, 2, 1), num_classes=2)
TINY_PARAMS = [
    {"kernel": np.array([[1, 2, 3], [4, 5, 6]], np.float32), "bias": np.array([0.1, 0.2, 0.3], np.float32)},
    {"kernel": np.array([[7, 8], [9, 10], [11, 12]], np.float32), "bias": np.array([-1, -2], np.float32)},
]


def edge_lookup(graph: jraph.GraphsTuple) -> dict[tuple[int, int], np.ndarray]:
    """(sender, receiver) -> weight vector of the forward edges (each pair occurs once)."""
    fwd = graph.edges["reverse"] == 0
    pairs = list(zip(graph.senders[fwd].tolist(), graph.receivers[fwd].tolist(), strict=True))
    assert len(set(pairs)) == len(pairs)
    return dict(zip(pairs, graph.edges["weight"][fwd], strict=True))


# --------------------------------------------------------------------------- hand-made networks


def test_layer_nodes_and_hidden_node_ids():
    arch = mlp(3, 2, input_shape=(1, 2, 1), num_classes=2)
    nodes = layer_nodes(arch)
    assert [n.tolist() for n in nodes] == [[0, 1], [2, 3, 4], [5, 6], [7, 8]]
    ids = hidden_node_ids(arch)
    assert ids.keys() == permutation_spec(arch).sizes.keys() == {"P_0", "P_1"}
    assert ids["P_0"].tolist() == [2, 3, 4] and ids["P_1"].tolist() == [5, 6]
    # A CNN's input neurons are its input channels.
    assert [n.size for n in layer_nodes(cnn(4, 5))] == [2, 4, 5, 3]


def test_mlp_2_3_2_graph_exactly():
    g = network_graph(TINY_PARAMS, TINY_MLP)
    np.testing.assert_array_equal(g.nodes["features"], np.array(
        [[0, 0, 0], [0, 0, 0], [0.1, 1, 1], [0.2, 1, 1], [0.3, 1, 1], [-1, 2, 2], [-2, 2, 2]], np.float32))
    np.testing.assert_array_equal(g.nodes["position"], [0, 1, -1, -1, -1, 0, 1])
    np.testing.assert_array_equal(g.senders, [0, 0, 0, 1, 1, 1, 2, 2, 3, 3, 4, 4])
    np.testing.assert_array_equal(g.receivers, [2, 3, 4, 2, 3, 4, 5, 6, 5, 6, 5, 6])
    np.testing.assert_array_equal(g.edges["weight"], np.arange(1, 13, dtype=np.float32)[:, None])
    np.testing.assert_array_equal(g.edges["reverse"], np.zeros(12))
    assert g.n_node.tolist() == [7] and g.n_edge.tolist() == [12] and g.globals is None
    assert g.nodes["features"].dtype == g.edges["weight"].dtype == g.edges["reverse"].dtype == np.float32
    assert g.nodes["position"].dtype == g.senders.dtype == g.receivers.dtype == np.int32
    assert g.n_node.dtype == g.n_edge.dtype == np.int32


def test_reverse_edges_and_edge_dim():
    g = network_graph(TINY_PARAMS, TINY_MLP, edge_dim=9, reverse_edges=True)
    fwd = network_graph(TINY_PARAMS, TINY_MLP)
    assert g.n_edge.tolist() == [24] and g.edges["weight"].shape == (24, 9)
    np.testing.assert_array_equal(g.senders, np.concatenate([fwd.senders, fwd.receivers]))
    np.testing.assert_array_equal(g.receivers, np.concatenate([fwd.receivers, fwd.senders]))
    np.testing.assert_array_equal(g.edges["reverse"], [0] * 12 + [1] * 12)
    np.testing.assert_array_equal(g.edges["weight"][:, 0], np.tile(np.arange(1, 13), 2))
    assert (g.edges["weight"][:, 1:] == 0).all()


def test_cnn_edges_carry_kernel_slices():
    arch = cnn(2, 3, input_shape=(4, 4, 1), num_classes=2)
    params = random_params(arch)
    g = network_graph(params, arch)
    inputs, h1, h2, outputs = layer_nodes(arch)
    assert g.n_node.tolist() == [1 + 2 + 3 + 2] and g.n_edge.tolist() == [1 * 2 + 2 * 3 + 3 * 2]
    assert g.edges["weight"].shape == (14, 9)
    edges = edge_lookup(g)
    for j in range(2):
        np.testing.assert_array_equal(edges[(0, int(h1[j]))], params[0]["kernel"][:, :, 0, j].ravel())
    for i in range(2):
        for j in range(3):
            np.testing.assert_array_equal(edges[(int(h1[i]), int(h2[j]))],
                                          params[1]["kernel"][:, :, i, j].ravel())
    for i in range(3):
        for j in range(2):
            np.testing.assert_array_equal(edges[(int(h2[i]), int(outputs[j]))],
                                          [params[2]["kernel"][i, j]] + [0] * 8)
    features = g.nodes["features"]
    np.testing.assert_array_equal(features[h2, 0], params[1]["bias"])
    np.testing.assert_array_equal(features[:, 1], [0, 1, 1, 2, 2, 2, 3, 3])
    np.testing.assert_array_equal(features[:, 2], [0, 1, 1, 1, 1, 1, 2, 2])
    np.testing.assert_array_equal(g.nodes["position"], [0, -1, -1, -1, -1, -1, 0, 1])


def test_network_graph_rejects_bad_inputs():
    arch = cnn(4, 5)
    with pytest.raises(ValueError, match="layer 0 has 9 values per edge, more than edge_dim=1"):
        network_graph(random_params(arch), arch, edge_dim=1)
    with pytest.raises(ValueError, match=r"layer 1: expected kernel \(3, 3, 4, 5\)"):
        network_graph(random_params(cnn(4, 6)), arch)


# --------------------------------------------------------------------------- permutations


def node_mapping(arch: ArchSpec, perms: dict[str, np.ndarray]) -> np.ndarray:
    """Node id in the permuted network's graph -> node id in the original's graph.

    Unit j of hidden layer i of the permuted network is unit ``perms[P_i][j]`` of
    the original; input and output nodes map to themselves.
    """
    mapping = np.concatenate(layer_nodes(arch))
    for name, ids in hidden_node_ids(arch).items():
        mapping[ids] = ids[perms[name]]
    return mapping


def isomorphic_under(mapping: np.ndarray, g: jraph.GraphsTuple, h: jraph.GraphsTuple) -> bool:
    """Whether `mapping` (node of g -> node of h) is an isomorphism preserving every feature."""
    n = int(g.n_node[0])
    if int(h.n_node[0]) != n or not np.array_equal(np.sort(mapping), np.arange(n)):
        return False
    if not (np.array_equal(g.nodes["features"], h.nodes["features"][mapping])
            and np.array_equal(g.nodes["position"], h.nodes["position"][mapping])):
        return False

    def edge_table(senders, receivers, graph):
        # (sender, receiver, reverse) identifies an edge; sort by it to compare multisets.
        order = np.lexsort((graph.edges["reverse"], receivers, senders))
        keys = np.stack([senders, receivers, graph.edges["reverse"]], axis=1)[order]
        return keys, graph.edges["weight"][order]

    g_keys, g_weights = edge_table(mapping[g.senders], mapping[g.receivers], g)
    h_keys, h_weights = edge_table(h.senders, h.receivers, h)
    return (g_keys.shape == h_keys.shape and np.array_equal(g_keys, h_keys)
            and np.array_equal(g_weights, h_weights))


@pytest.mark.parametrize("reverse_edges", [False, True])
@pytest.mark.parametrize("arch", ARCHS, ids=ARCH_IDS)
def test_permuting_a_network_relabels_its_hidden_nodes_only(arch, reverse_edges):
    params = random_params(arch)
    spec = permutation_spec(arch)
    perms = random_permutations(spec, np.random.default_rng(1))
    assert any((invert(perms)[k] != perms[k]).any() for k in perms)  # not an involution: controls bite
    twin = apply_permutation(spec, perms, params)
    g = network_graph(twin, arch, reverse_edges=reverse_edges)
    h = network_graph(params, arch, reverse_edges=reverse_edges)
    assert not np.array_equal(g.nodes["features"], h.nodes["features"])  # the arrays did change
    mapping = node_mapping(arch, perms)
    assert isomorphic_under(mapping, g, h)
    ends = np.concatenate([layer_nodes(arch)[0], layer_nodes(arch)[-1]])
    np.testing.assert_array_equal(mapping[ends], ends)
    np.testing.assert_array_equal(g.nodes["features"][ends], h.nodes["features"][ends])
    np.testing.assert_array_equal(g.nodes["position"][ends], h.nodes["position"][ends])
    # Negative controls: the identity, the inverse permutation, and another network.
    assert not isomorphic_under(np.arange(len(mapping)), g, h)
    assert not isomorphic_under(node_mapping(arch, invert(perms)), g, h)
    other = [dict(layer) for layer in params]
    other[-1] = {"kernel": params[-1]["kernel"] + 1e-3, "bias": params[-1]["bias"]}
    assert not isomorphic_under(mapping, g, network_graph(other, arch, reverse_edges=reverse_edges))


# --------------------------------------------------------------------------- budgets and batches


def mixed_graphs() -> list[jraph.GraphsTuple]:
    archs = ARCHS + [TINY_MLP]
    return [network_graph(random_params(a, seed=i), a, edge_dim=9, reverse_edges=True)
            for i, a in enumerate(archs)]


def test_budget_for_fits_the_largest_batch_rounded_to_64():
    graphs = mixed_graphs()
    budget = budget_for(graphs, 3)
    nodes = sorted(int(g.n_node[0]) for g in graphs)
    edges = sorted(int(g.n_edge[0]) for g in graphs)
    assert budget.n_graph == 4
    for got, counts in ((budget.n_node, nodes), (budget.n_edge, edges)):
        need = sum(counts[-3:]) + 1
        assert got % 64 == 0 and need <= got < need + 64
    tiny = network_graph(TINY_PARAMS, TINY_MLP)
    assert budget_for([tiny] * 5, 2) == Budget(n_node=64, n_edge=64, n_graph=3)
    with pytest.raises(ValueError, match="batch_size must be positive"):
        budget_for(graphs, 0)


def test_batches_have_identical_shapes_and_mask_the_real_graphs():
    graphs = mixed_graphs()
    out = list(batches(graphs, 3))
    assert len(out) == 3  # 7 graphs: 3 + 3 + 1
    shapes = [jax.tree.map(np.shape, b) for b in out]
    assert all(s == shapes[0] for s in shapes)
    budget = budget_for(graphs, 3)
    assert out[0].n_node.shape == (budget.n_graph,) and out[0].senders.shape == (budget.n_edge,)
    assert out[0].nodes["features"].shape == (budget.n_node, 3)
    for k, (start, b) in enumerate(zip(range(0, 7, 3), out, strict=True)):
        real = graphs[start:start + 3]
        expected = [True] * len(real) + [False] * (4 - len(real))
        np.testing.assert_array_equal(jraph.get_graph_padding_mask(b), expected)
        assert int(jraph.get_node_padding_mask(b).sum()) == sum(int(g.n_node[0]) for g in real), k
        assert int(jraph.get_edge_padding_mask(b).sum()) == sum(int(g.n_edge[0]) for g in real), k
        assert b.senders.dtype == b.n_node.dtype == np.int32
    # The first graph of a batch is stored unchanged at its start.
    first = graphs[3]
    n, e = int(first.n_node[0]), int(first.n_edge[0])
    np.testing.assert_array_equal(out[1].nodes["features"][:n], first.nodes["features"])
    np.testing.assert_array_equal(out[1].edges["weight"][:e], first.edges["weight"])
    np.testing.assert_array_equal(out[1].senders[:e], first.senders)


def test_size_buckets_fit_every_graph_and_pad_less_than_one_budget():
    graphs = mixed_graphs() * 3
    one = budget_for(graphs, 2)
    buckets = size_buckets(graphs, 2, num_buckets=3)
    assert 1 < len(buckets.budgets) <= 3
    lim = np.array(buckets.limits)
    assert (np.diff(lim, axis=0) >= 0).all()  # limits increase in nodes and edges
    assignment = buckets.assign(graphs)
    assert (assignment >= 0).all()
    for b, budget in enumerate(buckets.budgets):
        members = [g for g, a in zip(graphs, assignment, strict=True) if a == b]
        assert members, "every bucket holds some graph it was made from"
        biggest = sorted(members, key=lambda g: -int(g.n_edge[0]))[:2]
        pad_batch(biggest, budget)  # the two largest of a bucket fit its budget
        assert budget.n_edge <= one.n_edge and budget.n_graph == 3
    padded = sum(buckets.budgets[a].n_edge for a in assignment)
    assert padded < len(graphs) * one.n_edge
    # A graph bigger than every limit goes nowhere; one bucket reproduces the single budget's sizes.
    assert size_buckets(graphs[:1], 2).assign(graphs).min() == -1
    single = size_buckets(graphs, 2, num_buckets=1)
    assert single.budgets[0].n_edge >= one.n_edge and len(single.budgets) == 1
    with pytest.raises(ValueError, match="positive"):
        size_buckets(graphs, 2, num_buckets=0)


def test_batches_follow_order_and_share_a_given_budget():
    graphs = mixed_graphs()
    budget = budget_for(graphs, 2)
    (b,) = batches(graphs, 2, budget=budget, order=[6, 0])
    assert b.n_node[:2].tolist() == [graphs[6].n_node[0], graphs[0].n_node[0]]
    assert b.nodes["features"].shape == (budget.n_node, 3)
    with pytest.raises(ValueError, match="outside"):
        batches(graphs, 2, order=[7])


def test_over_budget_raises():
    graphs = mixed_graphs()
    n_node = sum(int(g.n_node[0]) for g in graphs[:2])
    n_edge = sum(int(g.n_edge[0]) for g in graphs[:2])
    pad_batch(graphs[:2], Budget(n_node + 1, n_edge, 3))  # exactly enough
    over = (Budget(n_node, n_edge, 3), Budget(n_node + 1, n_edge - 1, 3), Budget(n_node + 1, n_edge, 2))
    for budget in over:
        with pytest.raises(ValueError, match="does not fit"):
            pad_batch(graphs[:2], budget)
    too_small = budget_for(graphs, 1)
    with pytest.raises(ValueError, match="does not fit"):
        list(batches(graphs, 2, budget=too_small))


def test_a_jitted_model_compiles_once_per_budget():
    graphs = mixed_graphs()
    traces = []

    @jax.jit
    def incoming(g: jraph.GraphsTuple) -> jax.Array:
        traces.append(1)
        w = g.edges["weight"].sum(axis=1)
        return jax.ops.segment_sum(w, g.receivers, num_segments=g.nodes["features"].shape[0]).sum()

    for start, b in zip(range(0, len(graphs), 3), batches(graphs, 3), strict=True):
        # Padding edges carry zero weight, so the total is that of the real edges.
        real = sum(float(np.sum(g.edges["weight"])) for g in graphs[start:start + 3])
        assert float(incoming(b)) == pytest.approx(real, rel=1e-5)
    assert len(traces) == 1


# --------------------------------------------------------------------------- trained networks


def zoo_networks(path):
    zoo = load_zoo(path)
    ids = zoo.final["network_id"].tolist()
    return [(zoo.arch(i), zoo.params(i)) for i in ids]


def test_graphs_of_every_network_of_the_tiny_zoo(tiny_zoo):
    networks = zoo_networks(tiny_zoo)
    assert len(networks) == 12
    graphs = []
    for arch, params in networks:
        g = network_graph(params, arch)
        h, w, c = arch.input_shape
        assert g.n_node.tolist() == [h * w * c + sum(arch.hidden) + arch.num_classes]
        assert g.n_edge.tolist() == [sum(layer["kernel"].size for layer in params)]
        # Sender-major edges are the kernels in C order.
        np.testing.assert_array_equal(g.edges["weight"][:, 0],
                                      np.concatenate([layer["kernel"].ravel() for layer in params]))
        graphs.append(g)
    shapes = [jax.tree.map(np.shape, b) for b in batches(graphs, 5)]
    assert len(shapes) == 3 and all(s == shapes[0] for s in shapes)


def test_graphs_of_the_cnns_of_the_tiny_preset_zoo(tiny_preset_zoo):
    networks = [(a, p) for a, p in zoo_networks(tiny_preset_zoo) if a.family == "cnn"]
    assert networks
    for arch, params in networks:
        g = network_graph(params, arch)
        widths = [arch.input_shape[-1], *arch.hidden, arch.num_classes]
        assert g.n_node.tolist() == [sum(widths)]
        assert g.n_edge.tolist() == [sum(a * b for a, b in zip(widths[:-1], widths[1:], strict=True))]
        n_conv = sum(a * b for a, b in zip(widths[:-2], widths[1:-1], strict=True))
        values = np.concatenate([g.edges["weight"][:n_conv].ravel(), g.edges["weight"][n_conv:, 0]])
        kernels = np.concatenate([layer["kernel"].ravel() for layer in params])
        np.testing.assert_array_equal(np.sort(values), np.sort(kernels))
        assert (g.edges["weight"][n_conv:, 1:] == 0).all()
