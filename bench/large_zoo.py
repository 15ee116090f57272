"""Loading a large zoo: `zoobench zoo info` and `load_task` on 30,000 networks.

Writes a synthetic zoo in the zoobench format (no training): the ``tiny`` preset's
config with ``--n`` networks (default 30,000), its networks sampled with
`sample_networks` and grouped into chunks with `plan_chunks` exactly as a build
does, random float32 weights of each group's padded shapes, random metrics, and the
table, weight files and manifest written as `build._finalize` writes them. Then, each
in a fresh subprocess (so imports and caches are paid as a user pays them), it times
and measures the peak RSS (``resource.getrusage(RUSAGE_CHILDREN).ru_maxrss``) of:

* ``zoobench zoo info ZOO``;
* ``load_task("generalization", ZOO)`` the first time (it computes and writes the split)
  and again (the split file exists), each also reading one view of the test part
  (``stats``: per-layer statistics of every test network);

and prints a table and a final JSON line. Targets: under 2 GB peak and 10 s each.

    python bench/large_zoo.py [--n 30000] [--out DIR] [--keep]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import types
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from zoo_builder import build, storage  # noqa: E402
from zoo_builder.config import load_preset, sample_networks  # noqa: E402
from zoo_builder.population import train_size  # noqa: E402

MEM_TARGET_MB, TIME_TARGET_S = 2048, 10.0


def fake_datasets(cfg) -> dict:
    """What `_rows` and `_finalize` read of each dataset: base, fingerprint, sizes."""
    out = {}
    for name in cfg.datasets.support():
        out[name] = types.SimpleNamespace(base=name.split("@")[0], fingerprint=f"synthetic-{name}",
                                          y_train=np.zeros(cfg.max_train or 512),
                                          y_test=np.zeros(cfg.max_test or 256))
    return out


def write_zoo(root: Path, n: int, chunk_size: int, seed: int = 0) -> dict:
    cfg = dataclasses.replace(load_preset("tiny"), name="large", num_networks=n, chunk_size=chunk_size)
    nets = sample_networks(cfg)
    datasets = fake_datasets(cfg)
    n_available = {k: len(d.y_train) for k, d in datasets.items()}
    chunks = build.plan_chunks(cfg, nets, n_available)
    rng = np.random.default_rng(seed)
    epochs = list(cfg.checkpoint_epochs)
    parts = []
    for chunk in chunks:
        m = len(chunk.nets)
        shapes = chunk.key.layer_shapes(cfg.input_shape, cfg.num_classes)
        checkpoints = {}
        for e in epochs:
            params = [{"kernel": rng.normal(0, 0.1, (m, *k)).astype(np.float32),
                       "bias": rng.normal(0, 0.1, (m, *b)).astype(np.float32)} for k, b in shapes]
            train_acc = rng.uniform(0.1, 1.0, m)
            metrics = {"train_acc": train_acc, "test_acc": train_acc - rng.uniform(0, 0.1, m),
                       "train_loss": rng.uniform(0.1, 2, m), "test_loss": rng.uniform(0.1, 2, m)}
            checkpoints[e] = (params, metrics)
        result = {"checkpoints": checkpoints, "diverged": np.zeros(m, bool),
                  "diverged_epoch": np.zeros(m, int)}
        rel = f"{storage.WEIGHTS_DIR}/{chunk.name}.safetensors"
        table = build._rows(chunk, result, n_available, datasets, rel)
        tensors = {storage.tensor_name(e, i, p): v
                   for e, (params, _) in checkpoints.items() for i, layer in enumerate(params)
                   for p, v in layer.items()}
        meta = {"zoobench": json.dumps({"group": chunk.key.label(),
                                        "network_ids": [x.network_id for x in chunk.nets]}, sort_keys=True)}
        storage.write_weights(root / rel, tensors, meta)
        parts.append(table)
    assert all(train_size(x, n_available[x.dataset]) > 0 for x in nets)
    info = {"synthetic": True, "generator": "bench/large_zoo.py", "seed": seed}
    return build._finalize(root, cfg, datasets, pd.concat(parts, ignore_index=True), None, info)


CHILD = r"""
import json, sys, time
t0 = time.perf_counter()
from benchmark import load_task
task = load_task("generalization", sys.argv[1])
t1 = time.perf_counter()
x = task.test.view("stats")
t2 = time.perf_counter()
print(json.dumps({"load_s": t1 - t0, "view_s": t2 - t1, "n_train": len(task.train.ids),
                  "n_test": len(task.test.ids), "view_shape": list(getattr(x, "shape", ()))}))
"""


def measure(cmd: list[str]) -> dict:
    """Wall time and peak RSS of a fresh child process (it must be the only child reaped so far)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    t0 = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO,
                       env={**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONPATH": str(REPO)})
    wall = time.perf_counter() - t0
    peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    if p.returncode != 0:
        raise SystemExit(f"{cmd} failed ({p.returncode}):\n{p.stderr[-3000:]}")
    # ru_maxrss of RUSAGE_CHILDREN is the max over reaped children: run the biggest last, or in a
    # new interpreter per measurement (done below), for exact per-command figures.
    return {"wall_s": round(wall, 2), "peak_rss_mb": round(max(peak_kb, before) / 1024, 1),
            "stdout": p.stdout.strip().splitlines()[-1] if p.stdout.strip() else ""}


def isolated(cmd: list[str]) -> dict:
    """`measure` in its own parent process, so RUSAGE_CHILDREN covers this one command only."""
    code = (f"import json, sys; sys.path.insert(0, {str(REPO / 'bench')!r}); import large_zoo; "
            f"print(json.dumps(large_zoo.measure({cmd!r})))")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    if p.returncode != 0:
        raise SystemExit(p.stderr[-3000:])
    return json.loads(p.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=30_000, help="number of networks (default 30000)")
    ap.add_argument("--chunk", type=int, default=2048, help="networks per weights file (default 2048)")
    ap.add_argument("--out", help="zoo directory (default: a temporary one, deleted unless --keep)")
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args()
    root = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="large-zoo-")) / "zoo"
    if root.exists():
        shutil.rmtree(root)
    t0 = time.perf_counter()
    manifest = write_zoo(root, args.n, args.chunk)
    write_s = time.perf_counter() - t0
    size_mb = sum(p.stat().st_size for p in root.rglob("*") if p.is_file()) / 2**20
    zoobench = [sys.executable, "-m", "zoobench.cli"]
    runs = {
        "zoo info": isolated([*zoobench, "zoo", "info", str(root)]),
        "load_task generalization (first: makes split)": isolated([sys.executable, "-c", CHILD, str(root)]),
        "load_task generalization (split on disk)": isolated([sys.executable, "-c", CHILD, str(root)]),
    }
    print(f"zoo: {manifest['num_networks']} networks, {len(manifest['files']) - 1} weight files, "
          f"{size_mb:.0f} MB, written in {write_s:.1f} s at {root}")
    print(f"{'command':<48} {'process s':>9} {'load s':>7} {'view s':>7} {'peak RSS MB':>12}  "
          f"load within targets ({TIME_TARGET_S:.0f} s, {MEM_TARGET_MB} MB)")
    for name, r in runs.items():
        inner = json.loads(r["stdout"]) if r["stdout"].startswith("{") else {}
        r.update(inner)
        # The load time: in-process load_task time where measured, else the whole process (zoo info).
        load = inner.get("load_s", r["wall_s"])
        view = f"{inner['view_s']:>7.2f}" if "view_s" in inner else f"{'-':>7}"
        ok = load < TIME_TARGET_S and r["peak_rss_mb"] < MEM_TARGET_MB
        print(f"{name:<48} {r['wall_s']:>9.2f} {load:>7.2f} {view} {r['peak_rss_mb']:>12.1f}  "
              f"{'yes' if ok else 'NO'}")
    print(json.dumps({"networks": manifest["num_networks"], "zoo_mb": round(size_mb, 1),
                      "write_s": round(write_s, 1), "runs": runs}))
    if not args.keep and not args.out:
        shutil.rmtree(root.parent)


if __name__ == "__main__":
    main()
