"""Building a zoo: plan chunks, train each population, write it, resume, shard, merge.

A build is a deterministic list of chunks (networks of one `GroupKey`, sorted by
training-set size so a chunk wastes few masked steps). Each finished chunk is
written at once (weights, then its table part), so an interrupted build resumes
by skipping finished chunks. `--shard I/N` trains chunks ``j`` with ``j % N == I``;
`merge_zoos` joins the shards into the zoo a single build writes. An INR zoo
(`InrConfig`) is built the same way, its chunks fitted by `zoo_builder.inr`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.metadata
import json
import shutil
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import jax
import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from zoo_builder import inr, storage
from zoo_builder.config import InrConfig, NetworkConfig, ZooConfig, config_from_dict, sample_networks
from zoo_builder.datasets import Dataset, load_dataset
from zoo_builder.files import atomic_path, sha256_file, write_json
from zoo_builder.population import (
    GroupKey,
    PopulationTrainer,
    Timer,
    group_key,
    init_population,
    net_arrays,
    population_mesh,
    stack_datasets,
    train_size,
)

PARTS_DIR = "parts"
LIBRARIES = ("zoobench", "jax", "jaxlib", "flax", "optax", "numpy", "safetensors", "pyarrow")


@dataclasses.dataclass(frozen=True)
class Chunk:
    name: str
    key: GroupKey
    nets: tuple[NetworkConfig, ...]

    @property
    def group(self) -> str:
        return self.key.label()


@dataclasses.dataclass(frozen=True)
class InrChunk:
    """INRs fitted together: consecutive in index order, one architecture and fitting config."""

    name: str
    group: str
    nets: tuple[inr.InrSpec, ...]


def load_zoo_datasets(cfg: ZooConfig) -> dict[str, Dataset]:
    """Every dataset the config can draw, loaded at the zoo's input shape."""
    return {
        name: load_dataset(name, cfg.input_shape, max_train=cfg.max_train, max_test=cfg.max_test)
        for name in cfg.datasets.support()
    }


def plan_chunks(cfg: ZooConfig, nets: Sequence[NetworkConfig], n_available: dict[str, int]) -> list[Chunk]:
    """Split the networks into chunks: one group key each, at most `chunk_size` networks."""
    groups: dict[GroupKey, list[NetworkConfig]] = {}
    for net in nets:
        groups.setdefault(group_key(net, cfg.width_buckets, cfg.mix_optimizers), []).append(net)
    chunks = []
    for key in sorted(groups):
        members = sorted(groups[key], key=lambda n: (train_size(n, n_available[n.dataset]), n.index))
        n_chunks = -(-len(members) // cfg.chunk_size)
        for j, part in enumerate(np.array_split(np.arange(len(members)), n_chunks)):
            chunks.append(Chunk(f"{key.label()}-{j:03d}", key, tuple(members[i] for i in part)))
    return chunks


def _rows(chunk: Chunk, result: dict, n_available: dict[str, int], datasets: dict[str, Dataset],
          weights_file: str) -> pd.DataFrame:
    rows = []
    epochs = chunk.nets[0].epochs
    for r, net in enumerate(chunk.nets):
        div_epoch = int(result["diverged_epoch"][r])
        for epoch, (_, m) in sorted(result["checkpoints"].items()):
            diverged = bool(result["diverged"][r]) and div_epoch <= epoch
            train_acc, test_acc = float(m["train_acc"][r]), float(m["test_acc"][r])
            rows.append({
                "network_id": net.network_id,
                "index": net.index,
                "config_id": net.config_id,
                "epoch": epoch,
                "final": epoch == epochs,
                "family": net.arch.family,
                "depth": net.arch.depth,
                "hidden": "-".join(map(str, net.arch.hidden)),
                "max_width": max(net.arch.hidden),
                "activation": net.arch.activation,
                "n_params": net.arch.num_params(),
                "dataset": net.dataset,
                "dataset_base": datasets[net.dataset].base,
                "optimizer": net.optimizer,
                "learning_rate": net.learning_rate,
                "weight_decay": net.weight_decay,
                "momentum": net.momentum,
                "init": net.init,
                "init_scale": net.init_scale,
                "dropout": net.dropout,
                "batch_size": net.batch_size,
                "train_fraction": net.train_fraction,
                "n_train": train_size(net, n_available[net.dataset]),
                "epochs": epochs,
                "seed": net.seed,
                "train_acc": train_acc,
                "train_loss": float(m["train_loss"][r]),
                "test_acc": test_acc,
                "test_loss": float(m["test_loss"][r]),
                "gen_gap": train_acc - test_acc,
                "status": "diverged" if diverged else "ok",
                "diverged_epoch": div_epoch if diverged else 0,
                "group": chunk.key.label(),
                "weights_file": weights_file,
                "weights_row": r,
            })
    return pd.DataFrame(rows)


def _chunk_done(root: Path, chunk: Chunk) -> bool:
    """A chunk is done when its table part exists and records its weights' checksum."""
    part = root / PARTS_DIR / f"{chunk.name}.parquet"
    weights = root / storage.WEIGHTS_DIR / f"{chunk.name}.safetensors"
    sha_file = root / PARTS_DIR / f"{chunk.name}.sha256"
    if not (part.is_file() and weights.is_file() and sha_file.is_file()):
        return False
    return sha_file.read_text().strip() == sha256_file(weights)


def _write_chunk(root: Path, chunk: Chunk | InrChunk, result: dict, table: pd.DataFrame) -> None:
    tensors = {}
    for epoch, (params, _) in result["checkpoints"].items():
        for i, layer in enumerate(params):
            for param, value in layer.items():
                tensors[storage.tensor_name(epoch, i, param)] = np.asarray(value, np.float32)
    weights = root / storage.WEIGHTS_DIR / f"{chunk.name}.safetensors"
    # One metadata key: safetensors writes its metadata map in no fixed order.
    meta = {"zoobench": json.dumps({"group": chunk.group,
                                    "network_ids": [n.network_id for n in chunk.nets]}, sort_keys=True)}
    storage.write_weights(weights, tensors, meta)
    storage.write_table(root / PARTS_DIR / f"{chunk.name}.parquet", table)
    # Written last: its presence with a matching checksum marks the chunk finished.
    with atomic_path(root / PARTS_DIR / f"{chunk.name}.sha256") as tmp:
        tmp.write_text(sha256_file(weights) + "\n")


def library_versions() -> dict[str, str]:
    """Versions of the libraries that wrote a zoo, for its manifest."""
    out = {}
    for lib in LIBRARIES:
        try:
            out[lib] = importlib.metadata.version(lib)
        except importlib.metadata.PackageNotFoundError:
            out[lib] = "not installed"
    return out


def zoo_files(root: Path) -> dict[str, str]:
    """sha256 of a zoo's weight files and table, keyed by relative path: the manifest's `files`."""
    files = {}
    for path in sorted((root / storage.WEIGHTS_DIR).glob("*.safetensors")):
        files[f"{storage.WEIGHTS_DIR}/{path.name}"] = sha256_file(path)
    files[storage.TABLE] = sha256_file(root / storage.TABLE)
    return files


def dataset_records(datasets: dict[str, Dataset]) -> dict[str, dict]:
    """The manifest's record of each dataset a zoo was trained on."""
    return {name: {"base": ds.base, "fingerprint": ds.fingerprint,
                   "n_train": int(len(ds.y_train)), "n_test": int(len(ds.y_test))}
            for name, ds in datasets.items()}


def _finalize(root: Path, cfg: ZooConfig | InrConfig, datasets: dict[str, dict], table: pd.DataFrame,
              shard: tuple[int, int] | None, build_info: dict) -> dict:
    table = table.sort_values(["index", "epoch"]).reset_index(drop=True)
    storage.write_table(root / storage.TABLE, table)
    files = zoo_files(root)
    manifest = {
        "format": storage.FORMAT,
        "format_version": storage.FORMAT_VERSION,
        "name": cfg.name,
        "config": cfg.to_dict(),
        "config_fingerprint": cfg.fingerprint(),
        "datasets": datasets,
        "num_networks": int(table["network_id"].nunique()),
        "shard": None if shard is None else {"index": shard[0], "count": shard[1]},
        "files": files,
        "weights_fingerprint": storage.weights_fingerprint(files),
        "library_versions": library_versions(),
        "build": build_info,
    }
    manifest = storage.write_manifest(root, manifest)
    shutil.rmtree(root / PARTS_DIR, ignore_errors=True)
    return manifest


def _check_target(root: Path, cfg: ZooConfig | InrConfig, shard) -> None:
    """Refuse to resume into a directory built from another config or shard."""
    stamp = root / PARTS_DIR / "config.json"
    want = {"config_fingerprint": cfg.fingerprint(), "shard": list(shard) if shard else None}
    if stamp.is_file():
        have = json.loads(stamp.read_text())
        if have != want:
            raise storage.ZooError(
                f"{stamp}: this unfinished build was started with another config or shard "
                f"({have}); use another --out or delete it")
    else:
        write_json(stamp, want)


@dataclasses.dataclass
class BuildReport:
    path: Path
    num_networks: int
    chunks_trained: int
    chunks_skipped: int
    compile_s: float
    run_s: float
    wall_s: float
    manifest: dict


def build_zoo(cfg: ZooConfig | InrConfig, out: str | Path, shard: tuple[int, int] | None = None,
              progress: bool = True, devices=None,
              on_chunk: Callable[[Chunk], None] | None = None) -> BuildReport:
    """Build (or resume, or reuse) the zoo of `cfg` in directory `out`.

    Args:
      cfg: the zoo config (of classifiers, or of INRs).
      out: target directory; finished chunks already there are kept.
      shard: (I, N) to build only chunks j with j % N == I.
      progress: show a progress bar (networks/s and ETA) on stderr.
      devices: JAX devices to shard populations over (default: all local devices).
      on_chunk: called after each chunk is written (tests use it to interrupt a build).
    """
    t0 = time.perf_counter()
    root = Path(out)
    if shard is not None and not (0 <= shard[0] < shard[1]):
        raise ValueError(f"shard must be I/N with 0 <= I < N, got {shard[0]}/{shard[1]}")
    if (root / storage.MANIFEST).is_file():
        manifest = storage.read_manifest(root)
        same_shard = manifest.get("shard") == (None if shard is None else
                                               {"index": shard[0], "count": shard[1]})
        if manifest.get("config_fingerprint") == cfg.fingerprint() and same_shard:
            problems = storage.verify_files(root, manifest)
            if problems:
                raise storage.ZooError("; ".join(problems))
            return BuildReport(root, manifest["num_networks"], 0, 0, 0.0, 0.0,
                               time.perf_counter() - t0, manifest)
        raise storage.ZooError(
            f"{root / storage.MANIFEST}: {root} holds a zoo of another config or shard; "
            "choose another --out")
    root.mkdir(parents=True, exist_ok=True)
    _check_target(root, cfg, shard)
    _remove_leftovers(root)
    if isinstance(cfg, InrConfig):
        return _build_inr(cfg, root, shard, progress, devices, on_chunk, t0)

    nets = sample_networks(cfg)
    datasets = load_zoo_datasets(cfg)
    n_available = {name: len(ds.y_train) for name, ds in datasets.items()}
    chunks = plan_chunks(cfg, nets, n_available)
    if shard is not None:
        chunks = [c for j, c in enumerate(chunks) if j % shard[1] == shard[0]]

    bases = sorted({ds.base for ds in datasets.values()})
    base_data = {ds.base: ds for ds in datasets.values()}
    data = stack_datasets([(base_data[b].x_train, _base_labels(base_data[b]), base_data[b].x_test,
                            _base_labels(base_data[b], test=True)) for b in bases])
    dataset_index = {name: bases.index(ds.base) for name, ds in datasets.items()}
    label_maps = {name: ds.label_map for name, ds in datasets.items()}

    todo = [c for c in chunks if not _chunk_done(root, c)]
    trainer = (PopulationTrainer(cfg.input_shape, cfg.num_classes, data, population_mesh(devices))
               if todo else None)
    total = sum(len(c.nets) for c in chunks)
    done = total - sum(len(c.nets) for c in todo)
    bar = tqdm(total=total, initial=done, unit="net", desc=f"zoo {cfg.name}", disable=not progress,
               dynamic_ncols=True, smoothing=0.1)
    for chunk in todo:  # compile every chunk's programs in the background, in training order
        trainer.executables(chunk.key, len(chunk.nets), wait=False)
    for chunk in todo:
        arrays = net_arrays(chunk.nets, dataset_index, label_maps, n_available, chunk.key.depth)
        step = len(chunk.nets) / cfg.epochs
        bar.set_postfix_str(chunk.key.label())
        params = init_population(chunk.key, cfg.input_shape, cfg.num_classes, chunk.nets)
        result = trainer.train(chunk.key, arrays, params, cfg.epochs, cfg.checkpoint_epochs,
                               on_epoch=lambda _e, s=step: bar.update(s))
        rel = f"{storage.WEIGHTS_DIR}/{chunk.name}.safetensors"
        _write_chunk(root, chunk, result, _rows(chunk, result, n_available, datasets, rel))
        if on_chunk is not None:
            on_chunk(chunk)
    bar.close()

    return _finish_build(root, cfg, chunks, todo, trainer, datasets, shard, devices, t0)


def _finish_build(root: Path, cfg: ZooConfig | InrConfig, chunks, todo, trainer, datasets: dict[str, Dataset],
                  shard, devices, t0: float) -> BuildReport:
    """Join every chunk's table part and write the manifest: the end of any build."""
    required = storage.required_columns(cfg.to_dict())
    parts = [storage.read_table(root / PARTS_DIR / f"{c.name}.parquet", required) for c in chunks]
    table = pd.concat(parts, ignore_index=True) if parts else _rows_empty()
    timer = trainer.timer if trainer else Timer()
    build_info = {"devices": [str(d) for d in (devices or jax.local_devices())],
                  "compile_s": round(timer.compile_s, 3), "compile_wait_s": round(timer.compile_wait_s, 3),
                  "run_s": round(timer.run_s, 3),
                  "wall_s": round(time.perf_counter() - t0, 3), "chunks": len(chunks)}
    manifest = _finalize(root, cfg, dataset_records(datasets), table, shard, build_info)
    return BuildReport(root, manifest["num_networks"], len(todo), len(chunks) - len(todo),
                       timer.compile_s, timer.run_s, time.perf_counter() - t0, manifest)


def plan_inr_chunks(cfg: InrConfig, specs: Sequence[inr.InrSpec]) -> list[InrChunk]:
    """Consecutive INRs in chunks of at most `chunk_size`, as equal in size as can be (one compilation)."""
    arch = cfg.arch()
    group = f"siren-d{arch.depth}-w{max(arch.hidden)}"
    n_chunks = max(1, -(-len(specs) // cfg.chunk_size))
    return [InrChunk(f"{group}-{j:04d}", group, tuple(specs[i] for i in part))
            for j, part in enumerate(np.array_split(np.arange(len(specs)), n_chunks)) if len(part)]


def _inr_rows(chunk: InrChunk, result: dict, datasets: dict[str, Dataset], weights_file: str) -> pd.DataFrame:
    rows = []
    arch = chunk.nets[0].arch
    fit = chunk.nets[0].fit
    num_pixels = arch.input_shape[0] * arch.input_shape[1]
    for r, spec in enumerate(chunk.nets):
        div_step = int(result["diverged_step"][r])
        for step, (_, m) in sorted(result["checkpoints"].items()):
            diverged = bool(result["diverged"][r]) and div_step <= step
            rows.append({
                "network_id": spec.network_id,
                "index": spec.index,
                "config_id": spec.config_id,
                "epoch": step,
                "final": step == fit.steps,
                "family": arch.family,
                "depth": arch.depth,
                "hidden": "-".join(map(str, arch.hidden)),
                "max_width": max(arch.hidden),
                "activation": arch.activation,
                "n_params": arch.num_params(),
                "omega0": arch.omega0,
                "output_offset": arch.output_offset,
                "init": fit.init,
                "dataset": spec.dataset,
                "dataset_base": datasets[spec.dataset].base,
                "image_split": spec.image_split,
                "image_index": spec.image_index,
                "label": spec.label,
                "optimizer": "adam",
                "learning_rate": fit.learning_rate,
                "batch_size": min(fit.batch_size or num_pixels, num_pixels),
                "target_psnr": np.nan if fit.target_psnr is None else fit.target_psnr,
                "epochs": fit.steps,
                "seed": spec.seed,
                "mse": float(m["mse"][r]),
                "psnr": float(m["psnr"][r]),
                "steps_taken": int(m["steps_taken"][r]),
                "reached_target": bool(m["reached_target"][r]),
                "status": "diverged" if diverged else "ok",
                "diverged_epoch": div_step if diverged else 0,
                "group": chunk.group,
                "weights_file": weights_file,
                "weights_row": r,
            })
    return pd.DataFrame(rows)


def _build_inr(cfg: InrConfig, root: Path, shard, progress: bool, devices, on_chunk,
               t0: float) -> BuildReport:
    """`build_zoo` of an INR zoo, from the checks on `root` on: fit the chunks not done, then finalise."""
    datasets = inr.load_inr_datasets(cfg)
    specs = inr.inr_specs(cfg, datasets)
    chunks = plan_inr_chunks(cfg, specs)
    if shard is not None:
        chunks = [c for j, c in enumerate(chunks) if j % shard[1] == shard[0]]
    todo = [c for c in chunks if not _chunk_done(root, c)]
    trainer = inr.InrTrainer(cfg.arch(), cfg.fit, population_mesh(devices)) if todo else None
    pad_to = max((len(c.nets) for c in chunks), default=0)
    total = sum(len(c.nets) for c in chunks)
    bar = tqdm(total=total, initial=total - sum(len(c.nets) for c in todo), unit="inr",
               desc=f"zoo {cfg.name}", disable=not progress, dynamic_ncols=True, smoothing=0.1)
    for chunk in todo:
        per_step = len(chunk.nets) / cfg.fit.steps
        result = trainer.train(inr.init_population(chunk.nets), inr.targets_of(chunk.nets, datasets),
                               np.array([s.seed for s in chunk.nets]), cfg.checkpoint_steps, pad_to=pad_to,
                               on_steps=lambda k, p=per_step: bar.update(k * p))
        rel = f"{storage.WEIGHTS_DIR}/{chunk.name}.safetensors"
        _write_chunk(root, chunk, result, _inr_rows(chunk, result, datasets, rel))
        if on_chunk is not None:
            on_chunk(chunk)
    bar.close()
    return _finish_build(root, cfg, chunks, todo, trainer, datasets, shard, devices, t0)


def _remove_leftovers(root: Path) -> None:
    """Delete the temporary files of writers that died (files.atomic_path names them .NAME.*.tmp)."""
    for folder in (root, root / storage.WEIGHTS_DIR, root / PARTS_DIR):
        for leftover in folder.glob(".*.tmp"):
            leftover.unlink(missing_ok=True)


def _rows_empty() -> pd.DataFrame:
    return pd.DataFrame({"network_id": pd.Series(dtype=str), "index": pd.Series(dtype=int),
                         "epoch": pd.Series(dtype=int)})


def _base_labels(ds: Dataset, test: bool = False) -> np.ndarray:
    """The base dataset's original labels (undo the label map; networks apply their own)."""
    y = ds.y_test if test else ds.y_train
    return np.argsort(ds.label_map)[y]


def merge_zoos(paths: Sequence[str | Path], out: str | Path) -> dict:
    """Join the shards of one sharded build into the zoo a single build writes."""
    manifests = [storage.read_manifest(Path(p)) for p in paths]
    first = manifests[0]
    for p, m in zip(paths, manifests, strict=True):
        if m["config_fingerprint"] != first["config_fingerprint"]:
            raise storage.ZooError(f"{Path(p) / storage.MANIFEST}: built from another config than {paths[0]}")
        if m.get("shard") is None:
            raise storage.ZooError(f"{Path(p) / storage.MANIFEST}: not a shard (built without --shard)")
        if m.get("datasets") != first.get("datasets"):  # the merged manifest takes the first's records
            raise storage.ZooError(f"{Path(p) / storage.MANIFEST}: its dataset records differ from those of "
                                   f"{paths[0]} (other data, or a corrupted manifest)")
        problems = storage.verify_files(Path(p), m)
        if problems:
            raise storage.ZooError("; ".join(problems))
    count = first["shard"]["count"]
    indices = sorted(m["shard"]["index"] for m in manifests)
    if indices != list(range(count)) or any(m["shard"]["count"] != count for m in manifests):
        raise storage.ZooError(f"need each of the {count} shards exactly once, got shard indices {indices}")
    root = Path(out)
    if (root / storage.MANIFEST).exists():
        raise storage.ZooError(f"{root / storage.MANIFEST}: already exists; choose another --out")
    (root / storage.WEIGHTS_DIR).mkdir(parents=True, exist_ok=True)
    tables = []
    for p in paths:
        for f in sorted((Path(p) / storage.WEIGHTS_DIR).glob("*.safetensors")):
            with atomic_path(root / storage.WEIGHTS_DIR / f.name) as tmp:
                shutil.copyfile(f, tmp)
        tables.append(storage.read_table(Path(p) / storage.TABLE, storage.required_columns(first["config"])))
    cfg = config_from_dict(first["config"], source=str(Path(paths[0]) / storage.MANIFEST))
    build_info = {"merged_from": [str(p) for p in paths],
                  "shards": [m["build"] for m in manifests]}
    return _finalize(root, cfg, first["datasets"], pd.concat(tables, ignore_index=True), None,
                     build_info)


def process_shard_dir(out: str | Path, process: tuple[int, int],
                      shards_dir: str | Path | None = None) -> Path:
    """Where process I of N writes its shard: SHARDS_DIR/shard-I-of-N (default SHARDS_DIR: OUT.shards)."""
    base = Path(shards_dir) if shards_dir is not None else Path(f"{Path(out)}.shards")
    return base / f"shard-{process[0]}-of-{process[1]}"


def build_zoo_in_processes(cfg: ZooConfig, out: str | Path, process: tuple[int, int],
                           barrier: Callable[[str, str | None], None], shards_dir: str | Path | None = None,
                           progress: bool = True) -> BuildReport:
    """One process's part of a multi-process build: its shard, then process 0 merges.

    Process I of N builds shard I/N (resumable, like any shard) with its own devices,
    waits at `barrier` until every shard is written, and process 0 merges them into
    `out` and deletes the shards. Every process then returns the merged zoo's
    report, so all directories must be on a filesystem every process sees. The
    merged zoo is the one a single-process build writes (merging is exact).

    Args:
      cfg, out, progress: as for `build_zoo`.
      process: (I, N), this process's index and the number of processes.
      barrier: `barrier(step, None)` blocks until every process reached `step` and raises
        if one failed; `barrier(step, message)` reports this process's failure instead.
      shards_dir: parent of the per-process shard directories (default OUT.shards).
    """
    t0 = time.perf_counter()
    root = Path(out)
    if (root / storage.MANIFEST).is_file():  # finished before: verify and reuse, or refuse
        return build_zoo(cfg, root, progress=False)
    i, n = process
    shards = [process_shard_dir(root, (j, n), shards_dir) for j in range(n)]
    shard = _then_wait(barrier, "shards-written",
                       lambda: build_zoo(cfg, shards[i], shard=process, progress=progress))
    _then_wait(barrier, "zoo-merged", lambda: _merge_and_clean(shards, root) if i == 0 else None)
    manifest = storage.read_manifest(root)
    return BuildReport(root, manifest["num_networks"], shard.chunks_trained, shard.chunks_skipped,
                       shard.compile_s, shard.run_s, time.perf_counter() - t0, manifest)


def _then_wait(barrier: Callable[[str, str | None], None], step: str, work: Callable):
    """Do `work`, then wait for every process at `step`; a failure is reported there, not waited for."""
    try:
        result = work()
    except BaseException as e:  # Ctrl-C too: the others must not wait for this process
        barrier(step, f"{type(e).__name__}: {e}" if str(e) else type(e).__name__)
        raise
    barrier(step, None)
    return result


def _merge_and_clean(shards: list[Path], root: Path) -> None:
    merge_zoos(shards, root)
    for path in shards:
        shutil.rmtree(path, ignore_errors=True)
    with contextlib.suppress(OSError):  # only if empty: SHARDS_DIR may hold other things
        shards[0].parent.rmdir()
