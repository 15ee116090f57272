"""ng-gnn throughput on a zoo's neural graphs: training and inference graphs/s, compilations per epoch.

Loads the ``generalization`` task (split ``id``) of a zoo (default ``zoos/small``,
built by ``make reproduce``), then with `baselines.harness` as `fit` uses it (size
buckets, input scaling, data parallel over every local device):

* trains for ``--epochs`` epochs (the first one includes compilation) and reports
  graphs/s of the later epochs and how many times the train step was compiled in
  each epoch — one per size bucket the batches fall in, never one per batch;
* predicts the train part ``--repeats`` times with the eval step (compiled once
  per bucket before timing) and reports graphs/s.

Prints a table and, as its last line, one JSON object.

    python bench/gnn_throughput.py [--zoo zoos/small] [--batch-size 16] [--hidden 32] [--layers 2]
        [--layer factorised|edge-mlp] [--epochs 3]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from zoobench.runtime import use_every_cpu_core  # noqa: E402

use_every_cpu_core()

import jax  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402
from jax.sharding import NamedSharding  # noqa: E402
from jax.sharding import PartitionSpec as P  # noqa: E402

from baselines import harness  # noqa: E402
from baselines.ng_gnn import LAYERS, NeuralGraphNet  # noqa: E402
from benchmark.neural_graph import size_buckets  # noqa: E402
from benchmark.tasks import load_task  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--zoo", default="zoos/small")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--hidden", type=int, default=32)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--layer", default="factorised", choices=LAYERS,
                    help="message-passing layer (edge-mlp: the layer before the factorised one)")
    ap.add_argument("--buckets", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    if not (Path(args.zoo) / "manifest.json").is_file():
        sys.exit(f"{args.zoo}: no zoo there; build it first (make reproduce)")

    task = load_task("generalization", args.zoo, "id")
    cfg = harness.TrainConfig(batch_size=args.batch_size, num_buckets=args.buckets, progress=False)
    model_cfg = harness.model_config_for(task, hidden=args.hidden, num_layers=args.layers, layer=args.layer)
    mesh = harness.mesh_for(None)
    n_dev = mesh.devices.size
    t = time.perf_counter()
    graphs = harness.graphs_of(task.train, cfg)
    scale = harness.InputScale.fit(graphs)
    graphs = [scale(g) for g in graphs]
    view_s = time.perf_counter() - t
    buckets = size_buckets(graphs, harness.per_device(args.batch_size, n_dev), args.buckets)
    assignment = buckets.assign(graphs)
    targets = harness.part_targets(model_cfg, task.train)
    model = NeuralGraphNet(model_cfg)
    tx = optax.adamw(1e-3)
    first = harness.stacked_batch(graphs[:1], {}, 1, buckets.budgets[assignment[0]])[0]
    params = model.init(jax.random.PRNGKey(0), jax.tree.map(lambda x: x[0], first))
    state = jax.device_put(harness.State(params, tx.init(params)), NamedSharding(mesh, P()))
    scale_t = {n: (float(np.mean(v)), float(np.std(v)) + 1e-3) for n, v in targets.items()}
    train, evaluate = harness.make_steps(model, tx, scale_t, mesh)
    rng = np.random.default_rng(0)

    epochs = []
    for epoch in range(args.epochs):
        before = harness.TRACES["train"]
        n_batches, t = 0, time.perf_counter()
        for _, batch in harness.batch_iter(graphs, targets, rng.permutation(len(graphs)), cfg, n_dev,
                                           buckets, assignment):
            state, loss = train(state, *batch)  # no host sync per step, as in harness.run_epochs
            n_batches += 1
        jax.block_until_ready(loss)
        dt = time.perf_counter() - t
        epochs.append({"epoch": epoch, "seconds": round(dt, 2), "graphs_per_s": round(len(graphs) / dt, 1),
                       "batches": n_batches, "compilations": harness.TRACES["train"] - before})

    harness.run_eval(evaluate, state.params, graphs, cfg, n_dev, buckets, assignment)  # compile
    t = time.perf_counter()
    for _ in range(args.repeats):
        harness.run_eval(evaluate, state.params, graphs, cfg, n_dev, buckets, assignment)
    infer = args.repeats * len(graphs) / (time.perf_counter() - t)

    steady = epochs[1:] or epochs
    real_edges = sum(int(g.n_edge[0]) for g in graphs)
    padded_edges = sum(buckets.budgets[a].n_edge for a in assignment) / harness.per_device(args.batch_size,
                                                                                          n_dev)
    result = {
        "zoo": args.zoo, "graphs": len(graphs), "devices": [str(d) for d in jax.local_devices()],
        "batch_size": args.batch_size, "hidden": args.hidden, "layers": args.layers, "layer": args.layer,
        "buckets": len(buckets.budgets), "budgets": [b.__dict__ for b in buckets.budgets],
        "padded_edges_per_real_edge": round(padded_edges / real_edges, 2), "view_s": round(view_s, 2),
        "epochs": epochs, "train_graphs_per_s": round(float(np.mean([e["graphs_per_s"] for e in steady])), 1),
        "inference_graphs_per_s": round(infer, 1),
        "compilations_per_epoch": [e["compilations"] for e in epochs],
    }
    print(f"{len(graphs)} graphs, {len(buckets.budgets)} size buckets, {n_dev} device(s), "
          f"padding {result['padded_edges_per_real_edge']}x real edges")
    for e in epochs:
        print(f"epoch {e['epoch']}: {e['seconds']:.1f} s, {e['graphs_per_s']:.0f} graphs/s, "
              f"{e['batches']} batches, {e['compilations']} compilations")
    print(f"train {result['train_graphs_per_s']:.0f} graphs/s (epochs after the first), "
          f"inference {result['inference_graphs_per_s']:.0f} graphs/s")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
