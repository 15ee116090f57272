"""Population training: many networks as one stacked pytree, one compile per bucket.

Networks that share a `GroupKey` (family, depth, padded width, optimizer, batch
size) are trained together: `jax.vmap` over networks, a loop over steps inside
one jitted epoch, per-network hyper-parameters as vmapped arrays through
`optax.inject_hyperparams`, per-network data order and dropout keys. Narrower
networks are zero-padded to the bucket width and their gradients masked, so the
padded units stay exactly zero and the function is the unpadded network's. The
activation is chosen per network with `lax.switch`, so it does not split buckets.
The population axis is sharded over all local devices with `NamedSharding`.

A network's randomness comes only from its own seed (never from its position in
a chunk), its initial weights are drawn at the family's maximal shape and then
cut, and its dropout masks are keyed by (example, unit) of the unpadded layer, so
bucketing does not change which network is trained nor its weights. Its training
subset and data order hash each example's index in its own dataset, so the
padding of the stacked datasets does not move them either.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import functools
import math
import threading
import time
from collections.abc import Callable, Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from zoo_builder.architecture import (
    ACTIVATIONS,
    CLASSIFIER_ACTIVATIONS,
    KERNEL_SIZE,
    WIDTH_RANGE,
    forward,
)
from zoo_builder.config import INITS, OPTIMIZERS, NetworkConfig
from zoo_builder.optimizers import MIXED, make_group_optimizer

EVAL_BLOCK = 512
# Executables (as futures) by group, population size and devices; see PopulationTrainer.executables.
_COMPILED: dict = {}
_COMPILE_LOCK = threading.Lock()


@functools.cache
def _compile_pool() -> concurrent.futures.ThreadPoolExecutor:
    return concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="zoobench-compile")


@dataclasses.dataclass(frozen=True, order=True)
class GroupKey:
    """The static part of a population: everything that changes compiled shapes."""

    family: str
    depth: int
    width: int
    optimizer: str
    batch_size: int

    def layer_shapes(self, input_shape, num_classes) -> list[tuple[tuple[int, ...], tuple[int]]]:
        h, w, c = input_shape
        fan_in = h * w * c if self.family == "mlp" else c
        shapes = []
        for _ in range(self.depth):
            k = (fan_in, self.width) if self.family == "mlp" else (
                KERNEL_SIZE, KERNEL_SIZE, fan_in, self.width)
            shapes.append((k, (self.width,)))
            fan_in = self.width
        shapes.append(((fan_in, num_classes), (num_classes,)))
        return shapes

    def label(self) -> str:
        return f"{self.family}-d{self.depth}-w{self.width}-{self.optimizer}-b{self.batch_size}"


def group_key(net: NetworkConfig, width_buckets: Sequence[int], mix_optimizers: bool = False) -> GroupKey:
    """The bucket a network trains in: its width rounded up to a bucket, and its optimizer
    (or `MIXED` when one program serves every optimizer, see `make_group_optimizer`)."""
    widest = max(net.arch.hidden)
    width = next(b for b in width_buckets if b >= widest)
    optimizer = MIXED if mix_optimizers else net.optimizer
    return GroupKey(net.arch.family, net.arch.depth, width, optimizer, net.batch_size)


class TrainingData(NamedTuple):
    """Every base dataset of a zoo, stacked and padded to common lengths."""

    x_train: jax.Array  # (D, n_max, H, W, C)
    y_train: jax.Array  # (D, n_max) int32, original labels
    n_train: jax.Array  # (D,)
    x_test: jax.Array  # (D, m_max, H, W, C)
    y_test: jax.Array  # (D, m_max)
    n_test: jax.Array  # (D,)


def stack_datasets(splits: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]) -> TrainingData:
    """Stack (x_train, y_train, x_test, y_test) of several datasets, zero-padded."""

    def pad(arrays):
        n = max(a.shape[0] for a in arrays)
        out = np.zeros((len(arrays), n, *arrays[0].shape[1:]), arrays[0].dtype)
        for i, a in enumerate(arrays):
            out[i, : a.shape[0]] = a
        return out

    xtr, ytr, xte, yte = zip(*splits, strict=True)
    return TrainingData(
        x_train=pad([np.asarray(x, np.float32) for x in xtr]),
        y_train=pad([np.asarray(y, np.int32) for y in ytr]),
        n_train=np.array([len(y) for y in ytr], np.int32),
        x_test=pad([np.asarray(x, np.float32) for x in xte]),
        y_test=pad([np.asarray(y, np.int32) for y in yte]),
        n_test=np.array([len(y) for y in yte], np.int32),
    )


class NetArrays(NamedTuple):
    """Per-network constants of a population, stacked on axis 0."""

    hidden: jax.Array  # (N, depth) true widths
    activation: jax.Array  # (N,) index into CLASSIFIER_ACTIVATIONS
    init: jax.Array  # (N,) index into INITS
    init_scale: jax.Array
    learning_rate: jax.Array
    weight_decay: jax.Array
    momentum: jax.Array
    dropout: jax.Array
    dataset: jax.Array  # (N,) index into the stacked TrainingData
    label_map: jax.Array  # (N, num_classes)
    n_train: jax.Array  # (N,) size of the network's training subset
    seed: jax.Array  # (N,) uint32
    optimizer: jax.Array  # (N,) index into OPTIMIZERS (used by MIXED groups)


# Shape (given depth and number of classes) and dtype of each per-network array.
NET_FIELDS: dict[str, tuple[Callable[[int, int], tuple[int, ...]], type]] = {
    "hidden": (lambda depth, classes: (depth,), np.int32),
    "activation": (lambda depth, classes: (), np.int32),
    "init": (lambda depth, classes: (), np.int32),
    "init_scale": (lambda depth, classes: (), np.float32),
    "learning_rate": (lambda depth, classes: (), np.float32),
    "weight_decay": (lambda depth, classes: (), np.float32),
    "momentum": (lambda depth, classes: (), np.float32),
    "dropout": (lambda depth, classes: (), np.float32),
    "dataset": (lambda depth, classes: (), np.int32),
    "label_map": (lambda depth, classes: (classes,), np.int32),
    "n_train": (lambda depth, classes: (), np.int32),
    "seed": (lambda depth, classes: (), np.uint32),
    "optimizer": (lambda depth, classes: (), np.int32),
}
assert tuple(NET_FIELDS) == NetArrays._fields


class PopState(NamedTuple):
    params: list
    opt_state: optax.OptState
    diverged: jax.Array  # (N,) bool
    diverged_epoch: jax.Array  # (N,) int32, 0 if never
    subset: jax.Array  # (N, n_max) int32: the training subset, indices into the network's dataset


def net_arrays(nets: Sequence[NetworkConfig], dataset_index: dict[str, int],
               label_maps: dict[str, np.ndarray], n_available: dict[str, int], depth: int) -> NetArrays:
    """Stack the per-network constants of `nets` (all of one group)."""
    raw = {
        "hidden": [n.arch.hidden for n in nets],
        "activation": [CLASSIFIER_ACTIVATIONS.index(n.arch.activation) for n in nets],
        "init": [INITS.index(n.init) for n in nets],
        "init_scale": [n.init_scale for n in nets],
        "learning_rate": [n.learning_rate for n in nets],
        "weight_decay": [n.weight_decay for n in nets],
        "momentum": [n.momentum for n in nets],
        "dropout": [n.dropout for n in nets],
        "dataset": [dataset_index[n.dataset] for n in nets],
        "label_map": [label_maps[n.dataset] for n in nets],
        "n_train": [train_size(n, n_available[n.dataset]) for n in nets],
        "seed": [n.seed for n in nets],
        "optimizer": [OPTIMIZERS.index(n.optimizer) for n in nets],
    }
    num_classes = len(raw["label_map"][0])
    return NetArrays(**{
        name: np.asarray(raw[name], dtype).reshape(len(nets), *shape(depth, num_classes))
        for name, (shape, dtype) in NET_FIELDS.items()
    })


def train_size(net: NetworkConfig, available: int) -> int:
    return max(1, int(round(net.train_fraction * available)))


# --------------------------------------------------------------------------- one network


def _masks(key: GroupKey, shapes, hidden: jax.Array) -> list[dict[str, jax.Array]]:
    """1 on a network's true units, 0 on padding, per parameter."""
    unit = [jnp.arange(key.width) < hidden[i] for i in range(key.depth)]
    masks = []
    for i, (kshape, bshape) in enumerate(shapes):
        out_m = unit[i] if i < key.depth else jnp.ones(bshape[0], bool)
        in_m = unit[i - 1] if i > 0 else jnp.ones(kshape[-2], bool)
        k = in_m[:, None] & out_m[None, :]
        if len(kshape) == 4:
            k = jnp.broadcast_to(k, kshape)
        masks.append({"kernel": k.astype(jnp.float32), "bias": out_m.astype(jnp.float32)})
    return masks


def _max_shape(family: str, kshape: tuple[int, ...], layer: int, depth: int) -> tuple[int, ...]:
    """The family's largest possible kernel at this position (see module docstring)."""
    widest = WIDTH_RANGE[family][1]
    in_dim = kshape[-2] if layer == 0 else widest
    out_dim = kshape[-1] if layer == depth else widest
    return (*kshape[:-2], in_dim, out_dim)


def _init_scale(init: str, fan_in: float, fan_out: float) -> float:
    return {
        "he_normal": math.sqrt(2.0 / fan_in),
        "glorot_normal": math.sqrt(2.0 / (fan_in + fan_out)),
        "lecun_normal": math.sqrt(1.0 / fan_in),
        "glorot_uniform": math.sqrt(6.0 / (fan_in + fan_out)),
    }[init]


def init_params(key: GroupKey, shapes, net: NetworkConfig) -> list[dict[str, np.ndarray]]:
    """Initial parameters of one network, zero-padded to the bucket's shapes.

    Drawn with numpy on the host from the network's own seed, at the family's
    maximal shape and then cut: no compilation, and the values do not depend on
    the bucket. Biases start at zero.
    """
    rng = np.random.default_rng([net.seed, 1])
    widths = (*net.arch.hidden, shapes[-1][0][-1])
    params = []
    for i, (kshape, bshape) in enumerate(shapes):
        receptive = math.prod(kshape[:-2])
        fan_in = receptive * (kshape[-2] if i == 0 else widths[i - 1])
        fan_out = receptive * widths[i]
        full = _max_shape(key.family, kshape, i, key.depth)
        if net.init == "glorot_uniform":
            w = rng.uniform(-1.0, 1.0, full).astype(np.float32)
        else:
            w = rng.standard_normal(full, dtype=np.float32)
        w *= _init_scale(net.init, fan_in, fan_out) * net.init_scale
        kernel = np.zeros(kshape, np.float32)
        true_in = kshape[-2] if i == 0 else widths[i - 1]
        kernel[..., :true_in, : widths[i]] = w[..., :true_in, : widths[i]]
        params.append({"kernel": kernel, "bias": np.zeros(bshape, np.float32)})
    return params


def init_population(key: GroupKey, input_shape, num_classes, nets: Sequence[NetworkConfig]):
    """Initial parameters of a population, stacked on axis 0 (numpy)."""
    shapes = key.layer_shapes(input_shape, num_classes)
    per_net = [init_params(key, shapes, n) for n in nets]
    return jax.tree.map(lambda *leaves: np.stack(leaves), *per_net)


def _fmix32(x: jax.Array) -> jax.Array:
    """MurmurHash3's 32-bit finaliser: a cheap, well-mixed bijection on uint32."""
    x = x ^ (x >> 16)
    x = x * jnp.uint32(0x85EBCA6B)
    x = x ^ (x >> 13)
    x = x * jnp.uint32(0xC2B2AE35)
    return x ^ (x >> 16)


def _stream(seed: jax.Array, *counters) -> jax.Array:
    """A uint32 stream id from a network's seed and counters (purpose, epoch, step, layer)."""
    h = _fmix32(jnp.asarray(seed, jnp.uint32) ^ jnp.uint32(0x9E3779B9))
    for c in counters:
        h = _fmix32(h ^ (jnp.asarray(c, jnp.uint32) * jnp.uint32(0x85EBCA77) + jnp.uint32(0x165667B1)))
    return h


def _hashed_uniform(stream: jax.Array, counter: jax.Array) -> jax.Array:
    """Uniform [0, 1) floats, counter-based: hash(stream, counter), elementwise.

    Used for data order and dropout inside the training loop instead of
    `jax.random`, whose threefry rounds doubled the epoch's compile time on CPU.
    """
    bits = _fmix32(counter * jnp.uint32(0x9E3779B1) + stream)
    return (bits >> 8).astype(jnp.float32) * jnp.float32(2.0**-24)


def _uniform(stream: jax.Array, shape: tuple[int, ...]) -> jax.Array:
    """Uniform [0, 1) floats of `shape`, keyed by each element's flat index."""
    return _hashed_uniform(stream, jnp.arange(math.prod(shape), dtype=jnp.uint32).reshape(shape))


def _unit_uniform(stream: jax.Array, shape: tuple[int, ...], width: jax.Array) -> jax.Array:
    """Uniform [0, 1) floats for activations `shape` whose last axis holds `width` real units.

    Keyed by (position, unit) as the flat index in the *unpadded* layer
    (``position * width + unit``), so the zero-padding a bucket adds after the
    real units does not shift their stream: a network draws the same dropout
    masks in every bucket. Padding units get arbitrary values: their outgoing weights stay zero.
    """
    position = jnp.arange(math.prod(shape[:-1]), dtype=jnp.uint32).reshape(*shape[:-1], 1)
    unit = jnp.arange(shape[-1], dtype=jnp.uint32)
    return _hashed_uniform(stream, position * jnp.asarray(width, jnp.uint32) + unit)


def _activation(index: jax.Array) -> Callable[[jax.Array], jax.Array]:
    # Not the sine: under vmap every branch is computed, and no classifier uses it.
    fns = [ACTIVATIONS[name] for name in CLASSIFIER_ACTIVATIONS]
    return lambda z: jax.lax.switch(index, fns, z)


def _logits(key: GroupKey, params, net: NetArrays, x, dropout_stream=None):
    dropout = None
    if dropout_stream is not None:
        keep = 1.0 - net.dropout

        def dropout(i, h):
            m = _unit_uniform(_stream(dropout_stream, i), h.shape, net.hidden[i]) < keep
            return jnp.where(m, h / keep, 0.0)

    return forward(key.family, params, x, _activation(net.activation), dropout)


def _loss(key, params, net, x, y, weight, dropout_stream):
    logits = _logits(key, params, net, x, dropout_stream)
    ce = optax.softmax_cross_entropy_with_integer_labels(logits, y)
    return jnp.sum(ce * weight) / jnp.maximum(jnp.sum(weight), 1.0)


def _subset(net: NetArrays, n_available: jax.Array, n_max: int) -> jax.Array:
    """The network's training subset: indices into its dataset, the first n_train valid."""
    u = _uniform(_stream(net.seed, 2), (n_max,))
    return jnp.argsort(jnp.where(jnp.arange(n_max) < n_available, u, 2.0))


def make_train_epoch(key: GroupKey, input_shape, num_classes):
    """``epoch(state, net, data, epoch, num_steps) -> (state, mean_loss)`` for one network."""
    shapes = key.layer_shapes(input_shape, num_classes)
    opt = make_group_optimizer(key.optimizer)
    B = key.batch_size

    def epoch_fn(state: PopState, net: NetArrays, data: TrainingData, epoch, num_steps):
        n_max = data.x_train.shape[1]
        u = _uniform(_stream(net.seed, 3, epoch), (n_max,))
        order = jnp.argsort(jnp.where(jnp.arange(n_max) < net.n_train, u, 2.0))
        padded = -(-n_max // B) * B
        sample_idx = jnp.pad(state.subset[order], (0, padded - n_max))
        masks = _masks(key, shapes, net.hidden)
        own_steps = -(-net.n_train // B)

        def step(s, carry):
            params, opt_state, diverged, div_epoch, loss_sum = carry
            pos = jax.lax.dynamic_slice(sample_idx, (s * B,), (B,))
            weight = ((s * B + jnp.arange(B)) < net.n_train).astype(jnp.float32)
            # Index the shared table directly: slicing out the network's dataset first would
            # copy a whole dataset per network per epoch.
            x, y = data.x_train[net.dataset, pos], net.label_map[data.y_train[net.dataset, pos]]
            loss, grads = jax.value_and_grad(_loss, argnums=1)(
                key, params, net, x, y, weight, _stream(net.seed, 4, epoch, s))
            grads = jax.tree.map(jnp.multiply, grads, masks)
            updates, new_opt = opt.update(grads, opt_state, params, net)
            new_params = optax.apply_updates(params, updates)
            finite = jnp.isfinite(loss) & jnp.isfinite(optax.tree.norm(new_params))
            active = (s < own_steps) & ~diverged
            take = active & finite
            params = jax.tree.map(lambda a, b: jnp.where(take, a, b), new_params, params)
            opt_state = jax.tree.map(lambda a, b: jnp.where(take, a, b), new_opt, opt_state)
            newly = active & ~finite
            div_epoch = jnp.where(newly, epoch, div_epoch)
            loss_sum = loss_sum + jnp.where(take, loss, 0.0)
            return params, opt_state, diverged | newly, div_epoch, loss_sum

        carry = (state.params, state.opt_state, state.diverged,
                 state.diverged_epoch, jnp.float32(0.0))
        params, opt_state, diverged, div_epoch, loss_sum = jax.lax.fori_loop(
            0, num_steps, step, carry)
        return PopState(params, opt_state, diverged, div_epoch, state.subset), loss_sum / own_steps

    return epoch_fn


def make_init(key: GroupKey):
    """``init(params, net, data) -> PopState`` for one network: optimizer state, flags, subset."""
    opt = make_group_optimizer(key.optimizer)

    def init_fn(params, net: NetArrays, data: TrainingData) -> PopState:
        subset = _subset(net, data.n_train[net.dataset], data.x_train.shape[1]).astype(jnp.int32)
        return PopState(params, opt.init(params, net), jnp.bool_(False), jnp.int32(0), subset)

    return init_fn


def make_evaluate(key: GroupKey):
    """``evaluate(state, net, data, train_blocks, test_blocks) -> metrics`` for one network."""

    def block_metrics(params, net, x, y, weight):
        logits = _logits(key, params, net, x)
        ce = optax.softmax_cross_entropy_with_integer_labels(logits, y)
        correct = (jnp.argmax(logits, -1) == y).astype(jnp.float32)
        # A diverged network may give non-finite logits: count its loss as inf, not NaN.
        ce = jnp.where(jnp.isfinite(ce), ce, jnp.inf)
        return jnp.sum(jnp.where(weight > 0, ce, 0.0)), jnp.sum(correct * weight)

    def over_blocks(params, net, x_table, y_table, indices, n, num_blocks):
        size = indices.shape[0]
        padded = -(-size // EVAL_BLOCK) * EVAL_BLOCK
        indices = jnp.pad(indices, (0, padded - size))

        def body(b, acc):
            pos = jax.lax.dynamic_slice(indices, (b * EVAL_BLOCK,), (EVAL_BLOCK,))
            weight = ((b * EVAL_BLOCK + jnp.arange(EVAL_BLOCK)) < n).astype(jnp.float32)
            x, y = x_table[net.dataset, pos], net.label_map[y_table[net.dataset, pos]]
            loss, correct = block_metrics(params, net, x, y, weight)
            return acc[0] + loss, acc[1] + correct

        loss, correct = jax.lax.fori_loop(0, num_blocks, body, (jnp.float32(0), jnp.float32(0)))
        n = jnp.maximum(n, 1).astype(jnp.float32)
        return loss / n, correct / n

    def evaluate(state: PopState, net: NetArrays, data: TrainingData, train_blocks, test_blocks):
        train_loss, train_acc = over_blocks(
            state.params, net, data.x_train, data.y_train, state.subset, net.n_train, train_blocks)
        m_max = data.x_test.shape[1]
        test_loss, test_acc = over_blocks(
            state.params, net, data.x_test, data.y_test, jnp.arange(m_max), data.n_test[net.dataset],
            test_blocks)
        return {"train_loss": train_loss, "train_acc": train_acc,
                "test_loss": test_loss, "test_acc": test_acc}

    return evaluate


# --------------------------------------------------------------------------- populations


def population_mesh(devices=None) -> Mesh:
    """A mesh over `devices`, default this process's own devices.

    Local, not `jax.devices()`: after `jax.distributed.initialize` that lists every
    process's devices, and a population sharded over them would need every process
    to run the same program; each process trains its own chunks instead.
    """
    return Mesh(np.array(devices if devices is not None else jax.local_devices()), ("pop",))


@dataclasses.dataclass
class Timer:
    compile_s: float = 0.0  # spent compiling (partly in the background, overlapping training)
    compile_wait_s: float = 0.0  # training waited for compilation
    run_s: float = 0.0



def timed_run(timer: Timer, compiled, *args):
    """Run a compiled program to completion, adding its time to ``timer.run_s`` (both trainers)."""
    t = time.perf_counter()
    out = jax.block_until_ready(compiled(*args))
    timer.run_s += time.perf_counter() - t
    return out

class PopulationTrainer:
    """Trains chunks of one or more groups, compiling each (group, size) once.

    Args:
      input_shape, num_classes: of every network in the zoo.
      data: the zoo's stacked datasets (moved to the devices once, replicated).
      mesh: devices to shard the population axis over.
    """

    def __init__(self, input_shape, num_classes, data: TrainingData, mesh: Mesh | None = None):
        self.input_shape, self.num_classes = tuple(input_shape), num_classes
        self.mesh = mesh or population_mesh()
        self.pop_sharding = NamedSharding(self.mesh, PartitionSpec("pop"))
        self.replicated = NamedSharding(self.mesh, PartitionSpec())
        self.data = jax.device_put(data, self.replicated)
        self.timer = Timer()

    @property
    def num_devices(self) -> int:
        return self.mesh.devices.size

    def _abstract(self, key: GroupKey, n_pad: int):
        """Shape-only initial params and per-network arrays of a population of `n_pad` networks."""

        def pop(shape, dtype):
            return jax.ShapeDtypeStruct((n_pad, *shape), dtype, sharding=self.pop_sharding)

        params = [{"kernel": pop(k, jnp.float32), "bias": pop(b, jnp.float32)}
                  for k, b in key.layer_shapes(self.input_shape, self.num_classes)]
        nets = NetArrays(**{name: pop(shape(key.depth, self.num_classes), dtype)
                            for name, (shape, dtype) in NET_FIELDS.items()})
        return params, nets

    def _build_executables(self, key: GroupKey, n_pad: int):
        t = time.perf_counter()
        cfg = (key, self.input_shape, self.num_classes)
        init_fn = jax.vmap(make_init(key), in_axes=(0, 0, None))
        epoch_fn = jax.vmap(make_train_epoch(*cfg), in_axes=(0, 0, None, None, None))
        eval_fn = jax.vmap(make_evaluate(key), in_axes=(0, 0, None, None, None))
        params, nets = self._abstract(key, n_pad)
        state = jax.tree.map(
            lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=self.pop_sharding),
            jax.eval_shape(init_fn, params, nets, self.data))
        scalar = jax.ShapeDtypeStruct((), jnp.int32)

        def compile_(fn, *args):
            # Every output has the population axis first: keep it sharded like the inputs
            # (left to itself, XLA may replicate constant leaves such as optimizer counts).
            return jax.jit(fn, out_shardings=self.pop_sharding).lower(*args).compile()

        executables = (
            compile_(init_fn, params, nets, self.data),
            compile_(epoch_fn, state, nets, self.data, scalar, scalar),
            compile_(eval_fn, state, nets, self.data, scalar, scalar),
        )
        with _COMPILE_LOCK:
            self.timer.compile_s += time.perf_counter() - t
        return executables

    def executables(self, key: GroupKey, n: int, wait: bool = True):
        """The (init, epoch, eval) executables for `n` networks of group `key`.

        Compiled once per process in a background thread, so a build can compile the
        next chunk's programs while the current chunk trains (`wait=False` only starts it).
        """
        n_pad = -(-n // self.num_devices) * self.num_devices
        data_shapes = str(jax.tree.map(lambda a: a.shape, self.data))
        cache_key = (key, n_pad, self.input_shape, self.num_classes, data_shapes,
                     tuple(d.id for d in self.mesh.devices.flat))
        with _COMPILE_LOCK:
            future = _COMPILED.get(cache_key)
            if future is None:
                future = _compile_pool().submit(self._build_executables, key, n_pad)
                _COMPILED[cache_key] = future
        if not wait:
            return None
        t = time.perf_counter()
        result = future.result()
        self.timer.compile_wait_s += time.perf_counter() - t
        return result

    def _run(self, compiled, *args):
        return timed_run(self.timer, compiled, *args)

    def train(self, key: GroupKey, nets: NetArrays, params, epochs: int, checkpoint_epochs: Sequence[int],
              on_epoch: Callable[[int], None] | None = None) -> dict:
        """Train the population `nets` of group `key` from initial `params` (see `init_population`).

        Returns ``{"checkpoints": {epoch: (params, metrics)}, "diverged", "diverged_epoch",
        "train_loss"}`` as numpy arrays with the population axis first (padding removed).
        """
        n = nets.seed.shape[0]
        n_pad = -(-n // self.num_devices) * self.num_devices

        def pad(a):  # padding networks repeat the first one; their results are dropped
            return np.concatenate([a, np.repeat(a[:1], n_pad - n, 0)])

        nets_np = jax.tree.map(pad, nets)
        nets_dev = jax.device_put(nets_np, self.pop_sharding)
        params_dev = jax.device_put(jax.tree.map(pad, params), self.pop_sharding)
        init_c, epoch_c, eval_c = self.executables(key, n)
        state = self._run(init_c, params_dev, nets_dev, self.data)
        n_max_train = int(np.max(nets_np.n_train))
        num_steps = np.int32(-(-n_max_train // key.batch_size))
        train_blocks = np.int32(-(-n_max_train // EVAL_BLOCK))
        test_blocks = np.int32(-(-int(np.max(np.asarray(self.data.n_test))) // EVAL_BLOCK))
        checkpoints, losses = {}, []
        for epoch in range(1, epochs + 1):
            state, loss = self._run(epoch_c, state, nets_dev, self.data, np.int32(epoch), num_steps)
            losses.append(np.asarray(loss)[:n])
            if epoch in checkpoint_epochs:
                metrics = self._run(eval_c, state, nets_dev, self.data, train_blocks,
                                    test_blocks)
                checkpoints[epoch] = (
                    jax.tree.map(lambda a: np.asarray(a)[:n], state.params),
                    {k: np.asarray(v)[:n] for k, v in metrics.items()},
                )
            if on_epoch is not None:
                on_epoch(epoch)
        return {
            "checkpoints": checkpoints,
            "diverged": np.asarray(state.diverged)[:n],
            "diverged_epoch": np.asarray(state.diverged_epoch)[:n],
            "train_loss": np.stack(losses, 1),
        }
