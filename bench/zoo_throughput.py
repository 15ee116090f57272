"""Throughput of zoo training: the population trainer against one network at a time.

The same N small MLPs (default 512; depth 2, hidden widths drawn from 16..32 and
zero-padded to one 32-wide bucket, relu, adam with a per-network learning rate,
batch 32, no dropout or weight decay) are trained for the same number of epochs on
the full ``digits`` training split (1257 examples, 8x8x1) three ways:

(a) ``PopulationTrainer.train`` on the whole population (or chunks of ``--chunk``):
    ``jax.vmap`` over networks, one jitted ``fori_loop`` epoch per call;
(b) the same trainer code with a population of 1, called once per network;
(c) the usual research-script style: a flax.linen ``nn.Module`` MLP at its true
    widths, ``optax.adam``, a ``@jax.jit`` ``train_step(state, x, y)`` called from a
    Python loop over minibatches, numpy shuffling each epoch.

What is timed: only training. Initial parameters are drawn before the clock starts
(``init_population`` for (a)/(b), ``model.init`` and ``TrainState.create`` for (c)),
nothing is evaluated. Compilation is measured separately and excluded from every
rate: (a)/(b) run one warm-up epoch first and report the trainer's own compile timer;
(c) warms up each network's ``train_step`` on both batch shapes (full and last partial
batch; a new ``optax.adam`` closure and a new module recompile, as in a real script)
and reports that time as its compile time. (b) and (c) time the first k networks and
extrapolate the per-network rate to N (the table says so when k < N). (a) is timed
``--repeats`` times; the median is used.

Rates are network-epochs per second (networks x epochs / seconds). FLOPs are counted
analytically for the dense layers only: 2*in*out per sample forward and twice that
backward, i.e. 6*in*out per sample per layer. "useful" uses each network's true
widths and training-set size; "executed" uses the padded widths and the padded
steps (steps x batch) the trainer really computes. Both are divided by (a)'s time and
compared with two references measured in the same process: a jitted 1024x1024
float32 matmul and a batched matmul of the population's first-layer shape
(N, 32, 64) x (N, 64, 32), best of several runs each.

Finally the trainer is timed on Small-CNN-Zoo-style CNNs (3 conv layers of 16
channels, 3x3 stride 2, global average pooling, dense head; same data and optimizer)
for two projections, neither including compilation, evaluation or writing:
``small_cnn_zoo_projection``: measured per-network-epoch time at 8x8x1 x 30,000
networks x 86 epochs (the Small CNN Zoo's count and schedule); ``paper_projection``:
if ``presets/paper.toml`` exists, the CNN is measured at the preset's input shape and
the time per example is scaled to its networks x epochs x mean examples per epoch
(mean training-set size of its datasets x mean train_fraction; ``--quick`` reuses the
8x8 measurement instead), otherwise it equals the Small CNN Zoo projection. The
assumptions are spelled out in the JSON.

A readable table goes to stdout, then, as the last line, one JSON object with every
figure. Usage (from the repository root)::

    .venv/bin/python bench/zoo_throughput.py            # default: N=512, 3 epochs
    .venv/bin/python bench/zoo_throughput.py --quick    # smoke run, well under a minute
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import json
import math
import os
import platform
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout
from zoobench.runtime import use_every_cpu_core  # noqa: E402

use_every_cpu_core()  # as the zoobench command does: (a) shards its populations over them

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402
from flax import linen as nn  # noqa: E402
from flax.training import train_state  # noqa: E402

from zoo_builder import population as pop  # noqa: E402
from zoo_builder.config import config_from_dict, load_preset, preset_path, sample_networks  # noqa: E402
from zoo_builder.datasets import load_dataset  # noqa: E402

DATASET = "digits"
INPUT_SHAPE = (8, 8, 1)
BATCH = 32
MLP_DEPTH, MLP_WIDTHS, MLP_BUCKET = 2, (16, 32), 32
CNN_DEPTH, CNN_WIDTH = 3, 16
SMALL_CNN_ZOO = {"num_networks": 30_000, "epochs": 86}
TARGETS = {"ratio_a_over_c": 50.0, "ratio_a_over_b": 4.0, "fraction_of_matmul": 0.40}


@dataclasses.dataclass
class Setup:
    """One benchmark population: its networks, group and the trainer's inputs."""

    nets: list
    input_shape: tuple[int, int, int]
    key: pop.GroupKey
    arrays: pop.NetArrays
    data: pop.TrainingData
    n_train: int
    num_classes: int


@dataclasses.dataclass
class Result:
    """Timing of one way of training: `timed` networks for `epochs`, in `run_s` seconds."""

    name: str
    timed: int
    epochs: int
    run_s: float
    compile_s: float
    final_loss: float

    @property
    def rate(self) -> float:
        return self.timed * self.epochs / self.run_s


# --------------------------------------------------------------------------- populations


def zoo_config(n: int, epochs: int, family: str, depth: int, width, bucket: int,
               input_shape=INPUT_SHAPE):
    """A one-group zoo config: `n` networks of one family/depth, adam, batch 32, digits."""
    doc = {
        "zoo": {"name": f"bench-{family}", "seed": 0, "num_networks": n,
                "input_shape": list(input_shape), "num_classes": 10, "datasets": DATASET,
                "epochs": epochs},
        "training": {"width_buckets": [bucket], "chunk_size": n},
        "family": [{"kind": family, "depth": depth, "width": width, "activation": "relu"}],
        "hyper": {"optimizer": "adam", "learning_rate": {"adam": {"log_uniform": [1e-3, 1e-2]}},
                  "weight_decay": 0.0, "dropout": 0.0, "batch_size": BATCH,
                  "train_fraction": 1.0, "init": "he_normal", "init_scale": 1.0},
    }
    return config_from_dict(doc, source="<bench>")


def make_setup(cfg) -> Setup:
    """Sample the config's networks and stack what the trainer needs, as `build_zoo` does."""
    ds = load_dataset(DATASET, cfg.input_shape)
    nets = sample_networks(cfg)
    keys = {pop.group_key(net, cfg.width_buckets) for net in nets}
    assert len(keys) == 1, f"expected one group, got {sorted(keys)}"
    key = keys.pop()
    base_y = np.argsort(ds.label_map)
    data = pop.stack_datasets([(ds.x_train, base_y[ds.y_train], ds.x_test, base_y[ds.y_test])])
    n_train = len(ds.y_train)
    arrays = pop.net_arrays(nets, {DATASET: 0}, {DATASET: ds.label_map}, {DATASET: n_train}, key.depth)
    return Setup(nets, tuple(cfg.input_shape), key, arrays, data, n_train, ds.num_classes)


def prepare(s: Setup, start: int, stop: int) -> tuple[pop.NetArrays, object]:
    """Networks start..stop as (NetArrays, initial parameters); parameters are None if
    `PopulationTrainer.train` draws them itself (older signature without `params`)."""
    arrays = jax.tree.map(lambda a: a[start:stop], s.arrays)
    if "params" not in inspect.signature(pop.PopulationTrainer.train).parameters:
        return arrays, None
    return arrays, pop.init_population(s.key, s.input_shape, s.num_classes, s.nets[start:stop])


def train_call(trainer, s: Setup, arrays, params, epochs: int) -> dict:
    """One `PopulationTrainer.train` call without evaluation checkpoints."""
    if params is None:
        return trainer.train(s.key, arrays, epochs, ())
    return trainer.train(s.key, arrays, params, epochs, ())


def chunks(n: int, size: int) -> list[tuple[int, int]]:
    return [(i, min(i + size, n)) for i in range(0, n, size)]


# --------------------------------------------------------------------------- (a) and (b)


def bench_population(s: Setup, epochs: int, chunk: int, repeats: int) -> tuple[Result, list]:
    """(a): the whole population in chunks; returns the result and every repeat's seconds."""
    trainer = pop.PopulationTrainer(s.input_shape, s.num_classes, s.data)
    bounds = chunks(len(s.nets), chunk)
    inputs = [prepare(s, a, b) for a, b in bounds]
    by_size = {b - a: inp for (a, b), inp in zip(bounds, inputs, strict=True)}
    for arrays, params in by_size.values():  # one warm-up epoch per chunk size compiles all
        train_call(trainer, s, arrays, params, 1)
    times, losses = [], []
    for _ in range(repeats):
        t = time.perf_counter()
        out = [train_call(trainer, s, arrays, params, epochs) for arrays, params in inputs]
        times.append(time.perf_counter() - t)
        losses = np.concatenate([o["train_loss"][:, -1] for o in out])
    result = Result(f"(a) population trainer, chunks of {chunk}", len(s.nets), epochs,
                    statistics.median(times), trainer.timer.compile_s, float(np.mean(losses)))
    return result, times


def bench_population_of_one(s: Setup, epochs: int, k: int) -> Result:
    """(b): the same trainer, one network per call (on one device), first `k` networks."""
    trainer = pop.PopulationTrainer(s.input_shape, s.num_classes, s.data,
                                    pop.population_mesh(jax.devices()[:1]))
    inputs = [prepare(s, i, i + 1) for i in range(k)]
    train_call(trainer, s, *inputs[0], 1)  # warm-up: compiles the population-of-1 programs
    losses = []
    t = time.perf_counter()
    for arrays, params in inputs:
        losses.append(train_call(trainer, s, arrays, params, epochs)["train_loss"][0, -1])
    run_s = time.perf_counter() - t
    return Result("(b) trainer, population of 1", k, epochs, run_s, trainer.timer.compile_s,
                  float(np.mean(losses)))


# --------------------------------------------------------------------------- (c) flax


class FlaxMLP(nn.Module):
    """The MLP of a research script: flatten, Dense+relu per hidden layer, Dense head."""

    hidden: tuple[int, ...]
    num_classes: int

    @nn.compact
    def __call__(self, x):
        x = x.reshape((x.shape[0], -1))
        for width in self.hidden:
            x = nn.relu(nn.Dense(width)(x))
        return nn.Dense(self.num_classes)(x)


@jax.jit
def flax_train_step(state: train_state.TrainState, x, y):
    def loss_fn(params):
        logits = state.apply_fn({"params": params}, x)
        return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

    loss, grads = jax.value_and_grad(loss_fn)(state.params)
    return state.apply_gradients(grads=grads), loss


def flax_state(net, x_example) -> train_state.TrainState:
    model = FlaxMLP(net.arch.hidden, net.arch.num_classes)
    params = model.init(jax.random.PRNGKey(net.seed), x_example)["params"]
    return train_state.TrainState.create(apply_fn=model.apply, params=params,
                                         tx=optax.adam(net.learning_rate))


def flax_warm_up(state, x, y) -> float:
    """Compile `flax_train_step` for this network's full and last partial batch shapes."""
    t = time.perf_counter()
    for size in sorted({BATCH, len(y) % BATCH or BATCH}):
        jax.block_until_ready(flax_train_step(state, x[:size], y[:size]))
    return time.perf_counter() - t


def flax_train(state, x, y, epochs: int, seed: int) -> tuple[train_state.TrainState, float]:
    """Train one network the usual way; returns the state and its last epoch's mean loss."""
    rng = np.random.default_rng(seed)
    epoch_loss = float("nan")
    for _ in range(epochs):
        perm = rng.permutation(len(y))
        losses = []
        for i in range(0, len(y), BATCH):
            idx = perm[i:i + BATCH]
            state, loss = flax_train_step(state, x[idx], y[idx])
            losses.append(loss)
        epoch_loss = float(np.mean(jax.device_get(losses)))
    return jax.block_until_ready(state), epoch_loss


def bench_flax(s: Setup, epochs: int, k: int) -> Result:
    """(c): flax.linen + optax, Python loop over minibatches, first `k` networks."""
    ds = load_dataset(DATASET, INPUT_SHAPE)
    x, y = np.asarray(ds.x_train), np.asarray(ds.y_train)
    compile_s, run_s, losses = 0.0, 0.0, []
    for net in s.nets[:k]:
        state = flax_state(net, x[:1])
        compile_s += flax_warm_up(state, x, y)
        t = time.perf_counter()
        _, loss = flax_train(state, x, y, epochs, net.seed)
        run_s += time.perf_counter() - t
        losses.append(loss)
    return Result("(c) flax + optax, python loop", k, epochs, run_s, compile_s, float(np.mean(losses)))


# --------------------------------------------------------------------------- flops and references


def dense_train_flops(dims) -> int:
    """Training FLOPs per sample of a dense stack: 6 * in * out per layer."""
    return sum(6 * a * b for a, b in zip(dims[:-1], dims[1:], strict=True))


def population_flops(s: Setup, epochs: int, chunk: int, num_devices: int) -> tuple[float, float]:
    """(useful, executed) FLOPs of (a): true widths x true samples; padded ones."""
    d_in = int(np.prod(s.input_shape))
    useful = sum(dense_train_flops((d_in, *net.arch.hidden, s.num_classes)) for net in s.nets)
    useful *= s.n_train * epochs
    padded_samples = -(-s.n_train // BATCH) * BATCH
    padded = dense_train_flops((d_in, *[s.key.width] * s.key.depth, s.num_classes))
    executed_nets = sum(-(-(b - a) // num_devices) * num_devices for a, b in chunks(len(s.nets), chunk))
    return float(useful), float(executed_nets * padded * padded_samples * epochs)


def best_seconds(fn, *args, reps: int) -> float:
    jax.block_until_ready(fn(*args))
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - t)
    return min(times)


def matmul_gflops(size: int = 1024, reps: int = 10) -> float:
    a = jax.random.normal(jax.random.PRNGKey(0), (size, size), jnp.float32)
    return 2 * size**3 / best_seconds(jax.jit(jnp.matmul), a, a, reps=reps) / 1e9


def batched_matmul_gflops(n: int, b: int, d_in: int, d_out: int, reps: int = 20) -> float:
    x = jax.random.normal(jax.random.PRNGKey(1), (n, b, d_in), jnp.float32)
    w = jax.random.normal(jax.random.PRNGKey(2), (n, d_in, d_out), jnp.float32)
    return 2 * n * b * d_in * d_out / best_seconds(jax.jit(jnp.matmul), x, w, reps=reps) / 1e9


# --------------------------------------------------------------------------- paper projection


def bench_cnn(n: int, input_shape) -> tuple[Result, Setup]:
    """The population trainer on `n` Small-CNN-Zoo CNNs (3 x 16 channels): one timed epoch."""
    s = make_setup(zoo_config(n, 1, "cnn", CNN_DEPTH, CNN_WIDTH, CNN_WIDTH, input_shape))
    result, _ = bench_population(s, 1, n, 1)
    return result, s


def dist_mean(d) -> float:
    """Mean of a numeric config `Distribution`."""
    if d.kind == "const":
        return float(d.values[0])
    if d.kind == "choice":
        return float(np.mean(d.values))
    lo, hi = d.values
    if d.kind == "log_uniform" and hi > lo:
        return (hi - lo) / math.log(hi / lo)
    return (lo + hi) / 2


def projection(cnn: Result, cnn_n_train: int, examples_per_epoch: float, networks: int, epochs: int,
               source: str, assumptions: str) -> dict:
    """Measured seconds per training example and network, scaled to `networks` x `epochs`."""
    per_example = cnn.run_s / (cnn.timed * cnn.epochs * cnn_n_train)
    per_net_epoch = per_example * examples_per_epoch
    projected = per_net_epoch * networks * epochs
    return {"source": source, "num_networks": networks, "epochs": epochs,
            "examples_per_network_epoch": examples_per_epoch,
            "measured_population": cnn.timed, "measured_net_epochs_per_s": cnn.rate,
            "per_network_epoch_s": per_net_epoch, "projected_s": projected,
            "projected_h": projected / 3600, "assumptions": assumptions}


def small_cnn_zoo_projection(cnn: Result, n_train: int, run_epochs: int) -> dict:
    """30,000 CNNs at 8x8 x 86 epochs (also given at the run's epochs)."""
    networks, epochs = SMALL_CNN_ZOO["num_networks"], SMALL_CNN_ZOO["epochs"]
    out = projection(
        cnn, n_train, n_train, networks, epochs, "small-cnn-zoo",
        f"{networks} CNNs of {CNN_DEPTH} conv layers x {CNN_WIDTH} channels (3x3, stride 2) + GAP + "
        f"dense head, as in the Small CNN Zoo (Unterthiner et al. 2020), at 8x8x1 input, trained "
        f"{epochs} epochs (that zoo's schedule) on {n_train} examples per epoch (digits), adam, batch "
        f"{BATCH}, by PopulationTrainer in populations of {cnn.timed} on this machine; time linear in "
        f"examples (x{60000 / n_train:.0f} for a 60k-example epoch); excludes compilation, evaluation, "
        "checkpoint writing")
    out["projected_s_at_run_epochs"] = out["per_network_epoch_s"] * networks * run_epochs
    return out


def load_paper_preset():
    try:
        return load_preset("paper") if preset_path("paper").is_file() else None
    except Exception as e:  # a broken preset must not break the benchmark
        print(f"note: paper preset unusable ({e})", file=sys.stderr)
        return None


def mean_examples_per_epoch(cfg) -> tuple[float, list[str]]:
    """Expected training examples per network-epoch of `cfg`; skipped (tfds) datasets listed."""
    sizes, skipped = [], []
    for name in cfg.datasets.support() if cfg.datasets.kind == "choice" else cfg.datasets.values[:1]:
        if name.startswith("tfds:"):
            skipped.append(name)
            continue
        ds = load_dataset(name, cfg.input_shape, max_train=cfg.max_train, max_test=cfg.max_test)
        sizes.append(len(ds.y_train))
    return float(np.mean(sizes)) * dist_mean(cfg.train_fraction), skipped


def paper_preset_projection(cfg, population: int) -> dict:
    """The paper preset: a 3 x 16-channel CNN group measured at the preset's input shape."""
    cnn, s = bench_cnn(population, tuple(cfg.input_shape))
    examples, skipped = mean_examples_per_epoch(cfg)
    assumptions = (
        f"all {cfg.num_networks} networks cost what a CNN of {CNN_DEPTH} conv layers x {CNN_WIDTH} "
        f"channels at the preset's {tuple(cfg.input_shape)} input does with adam, batch {BATCH} "
        f"(the preset mixes depths {list(cfg.families[0].depth.support())}, widths padded to buckets "
        f"{list(cfg.width_buckets)}, batch sizes {list(cfg.batch_size.support())}, five optimizers), "
        f"measured on a population of {cnn.timed} on this machine (the preset uses chunks of "
        f"{cfg.chunk_size}); time linear in examples: {examples:.0f} per network-epoch = mean "
        f"training-set size of its datasets x mean train_fraction"
        + (f" (skipped, not available offline: {skipped})" if skipped else "")
        + "; excludes compilation, evaluation at checkpoints and writing")
    return projection(cnn, s.n_train, examples, cfg.num_networks, cfg.epochs, "preset:paper", assumptions)


def quick_paper_projection(cfg, cnn8: Result, n_train: int) -> dict:
    """--quick: the paper preset's counts with the 8x8 measurement (no 28x28 compile, no data loading)."""
    return projection(
        cnn8, n_train, n_train, cfg.num_networks, cfg.epochs, "preset:paper",
        f"--quick smoke figure only: the 8x8 CNN measurement and {n_train} examples per epoch, not "
        f"the preset's {tuple(cfg.input_shape)} inputs and datasets; run without --quick for the projection")


# --------------------------------------------------------------------------- report


def device_info() -> dict:
    devices = jax.devices()
    return {"platform": devices[0].platform, "device_kind": devices[0].device_kind,
            "num_devices": len(devices), "cpu_count": os.cpu_count(),
            "loadavg_1m": round(os.getloadavg()[0], 2), "python": platform.python_version()}


def print_table(results: list[Result], figures: dict) -> None:
    f, a, n = figures, results[0], figures["n"]
    print(f"\n{'method':<38}{'timed nets':>11}{'compile s':>11}{'run s':>9}"
          f"{'net-epochs/s':>14}{'(a)/x':>8}{'final loss':>12}")
    for r in results:
        timed = f"{r.timed}" + ("" if r.timed == n else "*")
        print(f"{r.name:<38}{timed:>11}{r.compile_s:>11.2f}{r.run_s:>9.2f}{r.rate:>14.1f}"
              f"{a.rate / r.rate:>8.1f}{r.final_loss:>12.3f}")
    if any(r.timed != n for r in results):
        print(f"  * timed on the first k networks; the per-network rate is extrapolated to N={n}")
    print(f"  (a) run s is the median of {len(f['run_s']['a_repeats'])}: "
          + ", ".join(f"{t:.2f}" for t in f["run_s"]["a_repeats"]))
    print(f"\n(a) achieved {f['gflops_useful']:.2f} GFLOP/s useful (true widths and samples), "
          f"{f['gflops_executed']:.2f} GFLOP/s executed (padded; best repeat "
          f"{f['gflops_executed_best_repeat']:.2f})")
    print(f"reference: 1024x1024 f32 matmul {f['matmul_gflops']:.1f} GFLOP/s; batched matmul "
          f"{f['batched_matmul_shape']} {f['batched_matmul_gflops']:.1f} GFLOP/s")
    print(f"executed / matmul {f['fraction_of_matmul']:.1%}; executed / batched matmul "
          f"{f['fraction_of_batched_matmul']:.1%}; useful / matmul {f['fraction_useful_of_matmul']:.1%}")
    for key in ("small_cnn_zoo_projection", "paper_projection"):
        p = f[key]
        print(f"{key}: CNN {CNN_DEPTH}x{CNN_WIDTH}ch {p['measured_net_epochs_per_s']:.1f} net-epochs/s "
              f"(population {p['measured_population']}), "
              f"{p['examples_per_network_epoch']:.0f} examples/epoch "
              f"-> {p['source']} {p['num_networks']} nets x {p['epochs']} epochs = "
              f"{p['projected_h']:.1f} h on this machine")
    for name, target in TARGETS.items():
        verdict = "met" if f["targets_met"][name] else "NOT met"
        print(f"target {name} >= {target:g}: {f[name]:.2f} -> {verdict}")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=512, help="networks in the population (default 512)")
    p.add_argument("--epochs", type=int, default=3, help="epochs for every method (default 3)")
    p.add_argument("--chunk", type=int, default=None, help="population size of (a) (default: N)")
    p.add_argument("--k-single", type=int, default=512, help="networks timed for (b) (default 512)")
    p.add_argument("--k-flax", type=int, default=32, help="networks timed for (c) (default 32)")
    p.add_argument("--repeats", type=int, default=3, help="timed repeats of (a); median used")
    p.add_argument("--cnn-n", type=int, default=256, help="8x8 CNN population for the projections")
    p.add_argument("--paper-cnn-n", type=int, default=32,
                   help="CNN population at the paper preset's input shape (default 32)")
    p.add_argument("--quick", action="store_true", help="smoke run: N=32, 1 epoch, few networks")
    p.add_argument("--devices", action="store_true",
                   help="print the JAX devices (informational; populations use all local devices)")
    args = p.parse_args(argv)
    if args.quick:
        args.n, args.epochs, args.k_single, args.k_flax = 32, 1, 4, 2
        args.repeats, args.cnn_n, args.paper_cnn_n = 1, 16, 4
    args.chunk = min(args.chunk or args.n, args.n)
    args.k_single, args.k_flax = min(args.k_single, args.n), min(args.k_flax, args.n)
    return args


def flop_figures(s: Setup, a: Result, best_s: float, chunk: int, num_devices: int) -> dict:
    """(a)'s GFLOP/s (median repeat; executed also for the best repeat) and the references."""
    useful, executed = population_flops(s, a.epochs, chunk, num_devices)
    d_in = int(np.prod(s.input_shape))
    mm, bmm = matmul_gflops(), batched_matmul_gflops(chunk, BATCH, d_in, s.key.width)
    gf_useful, gf_executed = useful / a.run_s / 1e9, executed / a.run_s / 1e9
    return {"gflops_useful": gf_useful, "gflops_executed": gf_executed,
            "gflops_executed_best_repeat": executed / best_s / 1e9,
            "matmul_gflops": mm, "batched_matmul_gflops": bmm,
            "batched_matmul_shape": f"({chunk},{BATCH},{d_in})x({chunk},{d_in},{s.key.width})",
            "fraction_of_matmul": gf_executed / mm, "fraction_of_batched_matmul": gf_executed / bmm,
            "fraction_useful_of_matmul": gf_useful / mm}


def projections(args, run_epochs: int) -> dict:
    cnn, s = bench_cnn(args.cnn_n, INPUT_SHAPE)
    small = small_cnn_zoo_projection(cnn, s.n_train, run_epochs)
    cfg = load_paper_preset()
    if cfg is None:
        paper = small
    elif args.quick:
        paper = quick_paper_projection(cfg, cnn, s.n_train)
    else:
        paper = paper_preset_projection(cfg, args.paper_cnn_n)
    return {"small_cnn_zoo_projection": small, "paper_projection": paper,
            "compile_s_cnn": cnn.compile_s}


def main(argv=None) -> dict:
    args = parse_args(argv)
    t_start = time.perf_counter()
    info = device_info()
    if args.devices:
        print("devices:", ", ".join(str(d) for d in jax.devices()), info)
    mlp = make_setup(zoo_config(args.n, args.epochs, "mlp", MLP_DEPTH,
                                {"int_uniform": list(MLP_WIDTHS)}, MLP_BUCKET))
    print(f"zoo throughput: {args.n} MLPs {INPUT_SHAPE} -> {MLP_DEPTH} hidden of "
          f"{MLP_WIDTHS[0]}..{MLP_WIDTHS[1]} "
          f"(bucket {mlp.key.width}) -> 10, relu, adam, batch {BATCH}, {DATASET} ({mlp.n_train} train), "
          f"{args.epochs} epochs; {info['device_kind']} x{info['num_devices']}, {info['cpu_count']} cores, "
          f"jax {jax.__version__}")
    a, a_times = bench_population(mlp, args.epochs, args.chunk, args.repeats)
    b = bench_population_of_one(mlp, args.epochs, args.k_single)
    c = bench_flax(mlp, args.epochs, args.k_flax)
    figures = {
        "n": args.n, "epochs": args.epochs, "chunk": args.chunk, "quick": args.quick,
        "rate_a": a.rate, "rate_b": b.rate, "rate_c": c.rate,
        "k_b": b.timed, "k_c": c.timed,
        "rates_extrapolated": {"b": b.timed < args.n, "c": c.timed < args.n},
        "ratio_a_over_c": a.rate / c.rate, "ratio_a_over_b": a.rate / b.rate,
        "compile_s": {"a": a.compile_s, "b": b.compile_s, "c": c.compile_s},
        "run_s": {"a": a.run_s, "a_repeats": a_times, "b": b.run_s, "c": c.run_s},
        "final_train_loss": {"a": a.final_loss, "b": b.final_loss, "c": c.final_loss},
        **flop_figures(mlp, a, min(a_times), args.chunk, info["num_devices"]),
    }
    proj = projections(args, args.epochs)
    figures["compile_s"]["cnn"] = proj.pop("compile_s_cnn")
    figures.update(proj)
    figures["paper_projected_s"] = proj["paper_projection"]["projected_s"]
    figures.update({"targets": TARGETS,
                    "targets_met": {k: bool(figures[k] >= v) for k, v in TARGETS.items()},
                    "device": info, "device_kind": info["device_kind"], "jax_version": jax.__version__,
                    "loadavg_1m_end": round(os.getloadavg()[0], 2), "wall_s": time.perf_counter() - t_start})
    print_table([a, b, c], figures)
    print(f"wall time {figures['wall_s']:.0f} s")
    print(json.dumps(figures, sort_keys=True))
    return figures


if __name__ == "__main__":
    main()
