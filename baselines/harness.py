"""Shared training harness for graph baselines: fit on train, select on val, predict test.

* Graphs are grouped into a few size buckets over all parts of a task
  (`benchmark.neural_graph.size_buckets`), one padding `Budget` each: the jitted
  steps compile once per bucket, and batches are padded to their bucket's
  size rather than to the largest graphs.
* Data parallel without pmap: each device's share of a batch is padded on its own
  to one per-device budget and the shares are stacked on a leading device axis,
  sharded with `NamedSharding(mesh, P("data"))`; inside the jitted step a vmap runs
  the model per share and the loss is averaged over every real graph of all
  shares, so gradients are the same as on one device (up to float rounding).
* Model selection / early stopping reads the validation part only, never test.
* Deterministic given `seed` (parameter init and the shuffling of batches).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import jraph
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P
from tqdm.auto import tqdm

from baselines.ng_gnn import ModelConfig, NeuralGraphNet
from benchmark import submission as benchmark_submission
from benchmark.metrics import accuracy, kendall_tau
from benchmark.neural_graph import Budget, SizeBuckets, pad_batch, size_buckets
from benchmark.tasks import TASK_KINDS
from zoo_builder.architecture import ArchSpec, neuron_activations

# Python-side trace counters: incremented only when jax traces (compiles) a step.
TRACES = {"train": 0, "eval": 0}


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings.

    Attributes:
      batch_size: graphs per step (over all devices).
      epochs: maximum epochs; patience: epochs without a better val metric before stopping.
      learning_rate, weight_decay: optax.adamw.
      num_devices: devices to shard the batch over (default all local devices).
      reverse_edges: give the view reversed edges so messages flow both ways.
      num_buckets: graph-size buckets (one padding budget and one compilation each).
      scale_inputs: divide weights and biases by their layer's train std (`InputScale`).
      progress: show a tqdm bar.
    """

    batch_size: int = 8
    epochs: int = 30
    patience: int = 10
    learning_rate: float = 1e-3
    weight_decay: float = 1e-4
    num_devices: int | None = None
    reverse_edges: bool = True
    num_buckets: int = 3
    scale_inputs: bool = True
    progress: bool = True


@dataclasses.dataclass(frozen=True, eq=False)
class Trained:
    """What `fit` returns as its params: weights plus what `predict` needs to use them."""

    model_config: ModelConfig
    train_config: TrainConfig
    variables: Any
    buckets: SizeBuckets
    classes: dict
    scale: dict  # regression: target -> (mean, std) of train targets, for loss weights
    input_scale: InputScale | None = None
    # The jitted eval step of `fit`, reused by `outputs` so predicting compiles nothing new.
    evaluate: Any = dataclasses.field(default=None, compare=False, repr=False)


class State(NamedTuple):
    params: Any
    opt_state: Any


# --------------------------------------------------------------------------- configs


def model_config_for(task, **overrides) -> ModelConfig:
    """The heads a task needs: regression per target, logits per class target, or an embedding."""
    kind = TASK_KINDS[task.name]
    if kind == "regression":
        outputs = tuple((t, 1) for t in task.targets)
    elif kind in ("classification", "retrieval"):  # retrieval: a cosine classifier over the target's classes
        outputs = tuple((t, len(task.classes[t])) for t in task.targets)
    else:
        raise ValueError(f"ng-gnn does not handle the {task.name!r} task")
    return ModelConfig(kind=kind, outputs=outputs, **overrides)


# --------------------------------------------------------------------------- input pipeline


@dataclasses.dataclass(frozen=True)
class InputScale:
    """Per-layer scales of edge weights and biases, from the train graphs only.

    A first layer of 784 inputs has weights ~30x smaller than a last layer;
    dividing by each layer's train-set standard deviation puts every layer's
    weights on one scale. The statistics pool all units of a layer, so the
    scaling is invariant to hidden-unit permutations.
    """

    weight: tuple[float, ...]  # by layer index of the edge's later neuron
    bias: tuple[float, ...]  # by layer index of the neuron
    probe: tuple[float, ...] = ()  # probe features, by layer index of the neuron (none: empty)

    @staticmethod
    def _layers(graph: jraph.GraphsTuple) -> tuple[np.ndarray, np.ndarray]:
        layer = graph.nodes["features"][:, 1].astype(np.int64)
        return layer, np.maximum(layer[graph.senders], layer[graph.receivers])

    @classmethod
    def fit(cls, graphs: Sequence[jraph.GraphsTuple]) -> InputScale:
        pairs = [cls._layers(g) for g in graphs]
        depth = 1 + max(int(node.max()) for node, _ in pairs)
        both = list(zip(graphs, pairs, strict=True))
        w = [np.concatenate([g.edges["weight"][e == d].ravel() for g, (_, e) in both]) for d in range(depth)]
        b = [np.concatenate([g.nodes["features"][n == d, 0] for g, (n, _) in both]) for d in range(depth)]
        std = lambda v: float(np.std(v)) if v.size and np.std(v) > 1e-8 else 1.0  # noqa: E731
        probe = ()
        if "probe" in graphs[0].nodes:
            probe = tuple(std(np.concatenate([g.nodes["probe"][n == d].ravel() for g, (n, _) in both]))
                          for d in range(depth))
        return cls(tuple(std(v) for v in w), tuple(std(v) for v in b), probe)

    def __call__(self, graph: jraph.GraphsTuple) -> jraph.GraphsTuple:
        node, edge = self._layers(graph)
        w, b = np.array(self.weight + (1.0,)), np.array(self.bias + (1.0,))  # deeper than train: unscaled
        feats = graph.nodes["features"].copy()
        feats[:, 0] /= b[np.minimum(node, len(b) - 1)]
        weight = graph.edges["weight"] / w[np.minimum(edge, len(w) - 1)][:, None]
        nodes = {**graph.nodes, "features": feats}
        if self.probe:
            p = np.array(self.probe + (1.0,))
            scale = p[np.minimum(node, len(p) - 1)][:, None]
            nodes["probe"] = (graph.nodes["probe"] / scale).astype(np.float32)
        return graph._replace(nodes=nodes,
                              edges={**graph.edges, "weight": weight.astype(np.float32)})



def mesh_for(num_devices: int | None) -> Mesh:
    devices = jax.local_devices()
    return Mesh(np.array(devices[: num_devices or len(devices)]), ("data",))


def per_device(batch_size: int, n_dev: int) -> int:
    return max(1, math.ceil(batch_size / n_dev))


def graphs_of(part, cfg: TrainConfig, num_probes: int = 0) -> list[jraph.GraphsTuple]:
    graphs = part.view("neural_graph", reverse_edges=cfg.reverse_edges)
    return with_probe_features(graphs, part.networks(), num_probes) if num_probes else graphs


PROBE_SEED = 0


def probe_inputs(arch: ArchSpec, num: int, seed: int = PROBE_SEED) -> np.ndarray:
    """`num` fixed probe inputs for `arch`: coordinates U(-1, 1) for an INR, N(0, 1) images for a
    classifier (its inputs are standardised). The same for every network of one input shape."""
    rng = np.random.default_rng([seed, num, *arch.input_dims])
    if len(arch.input_dims) == 1:
        return rng.uniform(-1.0, 1.0, (num, *arch.input_dims)).astype(np.float32)
    return rng.standard_normal((num, *arch.input_dims)).astype(np.float32)


def with_probe_features(graphs: Sequence[jraph.GraphsTuple], networks, num: int) -> list[jraph.GraphsTuple]:
    """`graphs` with node features ``probe``: each neuron's value on `num` fixed probe inputs.

    Row i of a graph's (n_node, num) ``probe`` is node i's value (`neuron_activations`,
    nodes in the neural graph's layer order) on `probe_inputs`, so it permutes with the
    hidden units, as the rest of the node features do. Networks of one architecture run
    in one vmapped call.
    """
    out = list(graphs)
    groups: dict[ArchSpec, list[int]] = {}
    for i, (_, arch) in enumerate(networks):
        groups.setdefault(arch, []).append(i)
    for arch, idx in groups.items():
        x = probe_inputs(arch, num)
        stacked = jax.tree.map(lambda *a: np.stack(a), *[networks[i][0] for i in idx])
        values = _activations_fn(arch)(stacked, x)
        table = np.asarray(jnp.concatenate([v.transpose(0, 2, 1) for v in values], axis=1), np.float32)
        for row, i in enumerate(idx):
            out[i] = out[i]._replace(nodes={**out[i].nodes, "probe": table[row]})
    return out


_ACTIVATIONS_FNS: dict = {}


def _activations_fn(arch: ArchSpec):
    if arch not in _ACTIVATIONS_FNS:
        per_network = lambda p, x: neuron_activations(arch, p, x)  # noqa: E731
        _ACTIVATIONS_FNS[arch] = jax.jit(jax.vmap(per_network, in_axes=(0, None)))
    return _ACTIVATIONS_FNS[arch]


def stacked_batch(graphs: Sequence[jraph.GraphsTuple], targets: dict[str, np.ndarray], n_dev: int,
                  budget: Budget) -> tuple[jraph.GraphsTuple, dict[str, np.ndarray], np.ndarray]:
    """Split `graphs` into `n_dev` shares, pad each to `budget`, stack on a leading device axis.

    Returns (graph, targets, mask): targets (n_dev, n_graph, ...) and mask
    (n_dev, n_graph) are aligned with the padded graph slots; mask is 1 on real graphs.
    An empty share holds a copy of graph 0 with mask 0.
    """
    k = budget.n_graph - 1
    shares, tshares, masks = [], [], []
    for d in range(n_dev):
        idx = list(range(d * k, min((d + 1) * k, len(graphs))))
        real = len(idx)
        idx = idx or [0]
        shares.append(pad_batch([graphs[i] for i in idx], budget))
        mask = np.zeros(budget.n_graph, np.float32)
        mask[:real] = 1.0
        masks.append(mask)
        tshares.append({name: np.concatenate([v[idx], np.zeros((budget.n_graph - len(idx),) + v.shape[1:],
                                                                 v.dtype)])
                        for name, v in targets.items()})
    graph = jax.tree.map(lambda *xs: np.stack(xs), *shares)
    tgt = {name: np.stack([t[name] for t in tshares]) for name in targets}
    return graph, tgt, np.stack(masks)


def bucket_batches(order: np.ndarray, assignment: np.ndarray, batch_size: int) -> list[np.ndarray]:
    """`order` cut into batches of at most `batch_size` items of one bucket each.

    Within a bucket items keep their order in `order`; the batches are sorted by
    where their first item stands in `order`, so a shuffled `order` also
    shuffles which bucket comes next (deterministically).
    """
    order = np.asarray(order, np.int64)
    position = {int(i): p for p, i in enumerate(order)}
    out = []
    for b in np.unique(assignment[order]):
        idx = order[assignment[order] == b]
        out += [idx[s:s + batch_size] for s in range(0, len(idx), batch_size)]
    return sorted(out, key=lambda idx: position[int(idx[0])])


def batch_iter(graphs, targets, order, cfg: TrainConfig, n_dev: int, buckets: SizeBuckets,
               assignment: np.ndarray):
    """(index, (graph, targets, mask)) per batch of `order`, padded to its bucket's budget."""
    for idx in bucket_batches(order, assignment, cfg.batch_size):
        budget = buckets.budgets[assignment[idx[0]]]
        yield idx, stacked_batch([graphs[i] for i in idx], {k: v[idx] for k, v in targets.items()}, n_dev,
                                 budget)


# --------------------------------------------------------------------------- losses


def per_graph_loss(cfg: ModelConfig, out: dict, targets: dict, scale: dict) -> jnp.ndarray:
    """(..., n_graph) loss: scaled MSE per regression target, cross-entropy per class target."""
    total = 0.0
    for name, _ in cfg.outputs:
        if cfg.kind == "regression":
            std = scale[name][1]
            total = total + ((out[name][..., 0] - targets[name]) / std) ** 2
        else:
            total = total + optax.softmax_cross_entropy_with_integer_labels(
                out[name], targets[name].astype(jnp.int32))
    return total


def scale_arrays(scale: dict) -> dict:
    """`scale` as float32 arrays, passed to the jitted step rather than baked into it as constants,
    so every split of a task (same shapes, other train statistics) runs one compiled program."""
    return {name: tuple(np.float32(v) for v in pair) for name, pair in scale.items()}


def target_scale(cfg, y_train: dict[str, np.ndarray]) -> dict[str, tuple[float, float]]:
    """Regression: (mean, std + 1e-3) of each target over the train part (the loss weights and
    `head_affine`); other kinds: empty."""
    if cfg.kind != "regression":
        return {}
    return {n: (float(np.mean(v)), float(np.std(v)) + 1e-3) for n, v in y_train.items()}


def head_affine(scale: dict) -> dict[str, tuple[np.float32, np.float32]]:
    """Pre-activation offset and gain per regression head, from the train targets' (mean, std) `scale`.

    test_acc goes through a sigmoid, gen_gap through a tanh: the offset is the inverse
    squash of the train mean, the gain the train std over the squash's slope there, so a
    fresh model predicts about the train mean with the train spread. Like `scale_arrays`,
    an argument of the compiled steps, not a constant in them.
    """
    affine = {}
    for name, (mean, std) in scale.items():
        if name == "test_acc":
            m = float(np.clip(mean, 1e-3, 1 - 1e-3))
            offset, slope = float(np.log(m / (1 - m))), m * (1 - m)
        else:
            m = float(np.clip(mean, -0.999, 0.999))
            offset, slope = float(np.arctanh(m)), 1 - m * m
        affine[name] = (np.float32(offset), np.float32(std / slope))
    return affine


@functools.cache
def adamw(learning_rate: float, weight_decay: float, flatten: bool = False) -> optax.GradientTransformation:
    """optax.adamw (over one flattened vector when `flatten`), one object per setting: the
    compiled steps are kept by optimizer (`jitted_steps`), so equal settings must give one."""
    tx = optax.adamw(learning_rate, weight_decay=weight_decay)
    return optax.flatten(tx) if flatten else tx


NO_UPDATE = optax.identity()  # the optimizer of steps made only to evaluate
# Compiled (train, evaluate) pairs by (method key, model config, optimizer, mesh, counter), most
# recent last: every split and seed of a task has the same shapes and config, so a main job's
# runs of one method on one task share one pair instead of tracing and compiling their own.
# Bounded: each program holds its own code mappings (a full test run with 64 kept passed 1 MiB of
# /proc/self/maps); one task and split of the main job makes about 10 (probe one per network group).
COMPILED: OrderedDict = OrderedDict()
COMPILED_LIMIT = 24


def jitted_steps(forward, cfg, tx, scale: dict, mesh: Mesh, traces: dict, key: tuple):
    """Jitted ``train(state, inputs, targets, mask)`` and ``evaluate(params, inputs)``, batch-sharded.

    Shared by every neural method: `forward(params, inputs, affine)` gives the heads' outputs
    (`affine`: `head_affine`, for the methods whose heads read it), `cfg` (``kind``,
    ``outputs``) the loss, `traces` counts compilations. The loss is the mean over the real
    items (mask 1) of `per_graph_loss`. The per-task constants (`scale`, `head_affine`) are
    arguments of the compiled programs, which are kept in `COMPILED` by `key` (what, with
    `cfg`, determines `forward`) and reused by later calls with equal settings.
    """
    consts = {"scale": scale_arrays(scale), "affine": head_affine(scale) if cfg.kind == "regression" else {}}
    cache_key = (key, cfg, tx, mesh, id(traces))
    if cache_key not in COMPILED:
        COMPILED[cache_key] = _compile_steps(forward, cfg, tx, mesh, traces)
        while len(COMPILED) > COMPILED_LIMIT:
            COMPILED.popitem(last=False)
    COMPILED.move_to_end(cache_key)
    jitted, evaluate = COMPILED[cache_key]
    return ((lambda state, inputs, targets, mask: jitted(state, consts, inputs, targets, mask)),
            (lambda params, inputs: evaluate(params, consts, inputs)))


def _compile_steps(forward, cfg, tx, mesh: Mesh, traces: dict):
    data = NamedSharding(mesh, P("data"))
    repl = NamedSharding(mesh, P())

    def loss_fn(params, consts, inputs, targets, mask):
        out = forward(params, inputs, consts["affine"])
        loss = per_graph_loss(cfg, out, targets, consts["scale"])
        return jnp.sum(loss * mask) / jnp.maximum(jnp.sum(mask), 1.0)

    def train_step(state: State, consts, inputs, targets, mask):
        traces["train"] += 1
        loss, grads = jax.value_and_grad(loss_fn)(state.params, consts, inputs, targets, mask)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        return State(optax.apply_updates(state.params, updates), opt_state), loss

    def eval_step(params, consts, inputs):
        traces["eval"] += 1
        return forward(params, inputs, consts["affine"])

    jitted = jax.jit(train_step, in_shardings=(repl, repl, data, data, data), out_shardings=(repl, repl),
                     donate_argnums=0)
    return jitted, jax.jit(eval_step, in_shardings=(repl, repl, data), out_shardings=data)


def make_steps(model: NeuralGraphNet, tx, scale: dict, mesh: Mesh):
    """ng-gnn's jitted train and eval steps over device-stacked batches (one model apply per share)."""
    forward = lambda params, graph, affine: jax.vmap(lambda g: model.apply(params, g, affine))(graph)  # noqa: E731
    return jitted_steps(forward, model.config, tx, scale, mesh, TRACES, key=("ng-gnn",))


def run_eval(evaluate, params, graphs, cfg: TrainConfig, n_dev: int, buckets: SizeBuckets,
             assignment: np.ndarray) -> dict[str, np.ndarray]:
    """Model outputs for every graph, in order (padding slots dropped)."""
    outs: dict[str, np.ndarray] = {}
    every = np.arange(len(graphs))
    for idx, (graph, _, mask) in batch_iter(graphs, {}, every, cfg, n_dev, buckets, assignment):
        out = jax.device_get(evaluate(params, graph))
        keep = mask.astype(bool)  # real graphs come first in each device's share, in `idx` order
        for name, v in out.items():
            if name not in outs:
                outs[name] = np.zeros((len(graphs),) + v.shape[2:], v.dtype)
            outs[name][idx] = v[keep]
    return outs


# --------------------------------------------------------------------------- metrics


def val_metric(cfg: ModelConfig, out: dict, targets: dict) -> float:
    """Higher is better: mean Kendall τ (regression) or mean accuracy (classification, retrieval)."""
    values = []
    for name, _ in cfg.outputs:
        if cfg.kind == "regression":
            values.append(kendall_tau(targets[name], out[name][:, 0]))
        else:
            values.append(accuracy(targets[name], np.argmax(out[name], -1)))
    return float(np.mean(values))


# --------------------------------------------------------------------------- fit / predict


def part_targets(cfg: ModelConfig, part) -> dict[str, np.ndarray]:
    dtype = np.float32 if cfg.kind == "regression" else np.int32
    return {name: np.asarray(part.targets[name], dtype) for name, _ in cfg.outputs}


def run_epochs(state, train_step, batches, n_train: int, validate, train_cfg, seed: int, desc: str):
    """The epoch loop every method shares: shuffle, train, keep the best epoch on validation.

    Args:
      state: initial training state (with `.params`).
      train_step: ``(state, *batch) -> (state, loss)``; a batch's last element is its mask.
      batches: ``order -> iterable of batches`` over the training items in that order.
      n_train: number of training items.
      validate: ``params -> metric`` on the validation part (higher is better).
      train_cfg: epochs, patience, progress.
    Returns (best params, history of {epoch, train_loss, val_metric}).
    """
    rng = np.random.default_rng(seed)
    best, best_metric, since, history = jax.device_get(state.params), -np.inf, 0, []
    bar = tqdm(range(train_cfg.epochs), disable=not train_cfg.progress, desc=desc)
    for epoch in bar:
        losses, weights = [], []
        for batch in batches(rng.permutation(n_train)):
            state, loss = train_step(state, *batch)
            # Kept on the device: reading it here would wait for every step (no host sync per step).
            losses.append(loss)
            weights.append(float(batch[-1].sum()))
        metric = validate(state.params)
        train_loss = float(np.dot(np.asarray(jax.device_get(losses)), weights) / sum(weights))
        history.append({"epoch": epoch, "train_loss": train_loss, "val_metric": metric})
        bar.set_postfix(epoch=epoch, val=f"{metric:.3f}", loss=f"{train_loss:.4f}")
        if metric > best_metric:
            best, best_metric, since = jax.device_get(state.params), metric, 0
        else:
            since += 1
            if since >= train_cfg.patience:
                break
    bar.close()
    return best, history


def fit(model_cfg: ModelConfig, train_cfg: TrainConfig, task, seed: int = 0) -> tuple[Trained, list[dict]]:
    """Train ng-gnn on `task.train`, keeping the parameters with the best validation metric.

    Returns (trained, history): history has one dict per epoch (train_loss,
    val_metric). Only `task.train` and `task.val` targets are read.
    """
    mesh = mesh_for(train_cfg.num_devices)
    n_dev = mesh.devices.size
    parts = {p.name: graphs_of(p, train_cfg, model_cfg.probe_features) for p in task.parts}
    input_scale = InputScale.fit(parts["train"]) if train_cfg.scale_inputs else None
    if input_scale is not None:
        parts = {name: [input_scale(g) for g in gs] for name, gs in parts.items()}
    # Buckets from the distinct graph sizes: every split of a zoo partitions the same networks, so
    # every split (and task) gets the same budgets and shares compiled programs (compile cache).
    distinct = {(int(g.n_node[0]), int(g.n_edge[0])): g for gs in parts.values() for g in gs}
    buckets = size_buckets(list(distinct.values()), per_device(train_cfg.batch_size, n_dev),
                           train_cfg.num_buckets)
    assigned = {name: buckets.assign(gs) for name, gs in parts.items()}
    y_train, y_val = part_targets(model_cfg, task.train), part_targets(model_cfg, task.val)
    scale = target_scale(model_cfg, y_train)
    model = NeuralGraphNet(model_cfg)
    tx = adamw(train_cfg.learning_rate, train_cfg.weight_decay)
    first = stacked_batch(parts["train"][:1], {}, 1, buckets.budgets[assigned["train"][0]])[0]
    params = model.init(jax.random.PRNGKey(seed), jax.tree.map(lambda x: x[0], first))
    # Placed replicated up front, so the first step sees the sharding every later step sees (one trace).
    state = jax.device_put(State(params, tx.init(params)), NamedSharding(mesh, P()))
    train, evaluate = make_steps(model, tx, scale, mesh)
    train_batches = lambda order: (b for _, b in batch_iter(  # noqa: E731
        parts["train"], y_train, order, train_cfg, n_dev, buckets, assigned["train"]))
    validate = lambda p: val_metric(model_cfg, run_eval(  # noqa: E731
        evaluate, p, parts["val"], train_cfg, n_dev, buckets, assigned["val"]), y_val)
    best, history = run_epochs(state, train, train_batches, len(parts["train"]), validate, train_cfg, seed,
                               desc="ng-gnn")
    trained = Trained(model_cfg, train_cfg, best, buckets, dict(task.classes), scale, input_scale, evaluate)
    return trained, history


def outputs(trained: Trained, part) -> dict[str, np.ndarray]:
    """Raw model outputs for every item of `part`, in `part.ids` order."""
    mesh = mesh_for(trained.train_config.num_devices)
    n_dev = mesh.devices.size
    graphs = graphs_of(part, trained.train_config, trained.model_config.probe_features)
    if trained.input_scale is not None:
        graphs = [trained.input_scale(g) for g in graphs]
    buckets = trained.buckets
    assignment = buckets.assign(graphs)
    if (assignment < 0).any():
        # Graphs larger than any the buckets were made for (e.g. another zoo): one more bucket.
        extra = size_buckets([g for g, a in zip(graphs, assignment, strict=True) if a < 0],
                             buckets.budgets[0].n_graph - 1, 1)
        buckets = SizeBuckets(buckets.limits + extra.limits, buckets.budgets + extra.budgets)
        assignment = np.where(assignment < 0, len(buckets.limits) - 1, assignment)
    evaluate = trained.evaluate
    if evaluate is None:
        _, evaluate = make_steps(NeuralGraphNet(trained.model_config), NO_UPDATE, trained.scale, mesh)
    return run_eval(evaluate, trained.variables, graphs, trained.train_config, n_dev, buckets, assignment)


def item_keys(part) -> list[str]:
    """Prediction keys: item ids, or ``id@epoch`` when a network has several items (all_checkpoints)."""
    if len(set(part.ids)) == len(part.ids):
        return list(part.ids)
    return [f"{i}@{int(e)}" for i, e in zip(part.ids, part.epochs, strict=True)]


def predict(trained: Trained, part) -> dict:
    """Predictions in the leaderboard's format, keyed by `item_keys(part)`.

    generalization {id: {target: float}}, classification {id: {target: class
    name}}, retrieval {id: [embedding floats]}.
    """
    return format_predictions(trained.model_config, trained.classes, outputs(trained, part), part)


def format_predictions(cfg, classes: dict, out: dict[str, np.ndarray], part) -> dict:
    """Raw outputs (head name -> (n, size) arrays, in `part.ids` order) in the leaderboard's format.

    Shared by every method of `baselines` (`cfg` needs only `kind` and `outputs`).
    """
    preds = {}
    for i, item in enumerate(item_keys(part)):
        if cfg.kind == "regression":
            preds[item] = {name: float(out[name][i, 0]) for name, _ in cfg.outputs}
        elif cfg.kind == "classification":
            preds[item] = {name: classes[name][int(np.argmax(out[name][i]))]
                           for name, _ in cfg.outputs}
        else:
            preds[item] = [float(x) for x in out["embedding"][i]]
    return preds


def write_submission(trained: Trained, task, path, *, method: str = "ng-gnn", version: str = "0",
                     description: str = ""):
    """Predict `task.test` and write a submission (`benchmark.submission`, validated against the task)."""
    return benchmark_submission.write_submission(
        path, task=task, method=method, version=version, description=description,
        predictions=predict(trained, task.test))


def node_embeddings(trained: Trained, graph: jraph.GraphsTuple) -> np.ndarray:
    """Final node embeddings of one padded batch (`pad_batch`), for merging by matching."""
    model = NeuralGraphNet(trained.model_config)
    return np.asarray(model.apply(trained.variables, graph, method=NeuralGraphNet.node_embeddings))
