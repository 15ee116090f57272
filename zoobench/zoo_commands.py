"""The `zoobench zoo ...` and `zoobench tasks` commands: build, merge, inspect, verify and import zoos.

They live at the top because `zoo verify` and `tasks` read the benchmark's split
files and tasks as well as the zoo itself.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from benchmark.splits import (
    SPLITS_DIR,
    SplitError,
    SplitUnavailable,
    load_split,
    published_split,
    read_split,
    split_path,
    write_split,
)
from benchmark.tasks import tasks_summary
from zoo_builder.build import build_zoo, build_zoo_in_processes, merge_zoos
from zoo_builder.config import PRESETS, load_config, load_preset, preset_path
from zoo_builder.devices import Cluster, barrier, join_cluster
from zoo_builder.errors import UsageError
from zoo_builder.files import atomic_path, sha256_file
from zoo_builder.inr import image_of, images_of, reconstruct
from zoo_builder.smallcnnzoo import checkpoint_count, import_smallcnnzoo, parse_input_shape, read_row_order
from zoo_builder.storage import ZooError, load_zoo, verify_zoo
from zoobench.options import add_json_option, address, emit, non_negative_int, positive_int, shard

EXIT_OK, EXIT_ERROR = 0, 1


def _cluster(args):
    """The `Cluster` this build joins, or None for a single-process build."""
    given = (args.coordinator, args.num_processes, args.process_id)
    if not args.distributed and given == (None, None, None):
        return None
    if args.shard is not None:
        raise UsageError("--shard is for separate jobs merged later; a distributed build gives "
                         "process I of N shard I/N itself")
    return Cluster(*given, init_timeout_s=args.init_timeout)


def cmd_zoo_build(args) -> int:
    cluster = _cluster(args)
    cfg = load_config(args.config) if args.config else load_preset(args.preset)
    out = Path(args.out) if args.out else Path("zoos") / cfg.name
    if cluster is None:
        report = build_zoo(cfg, out, shard=args.shard, progress=not args.no_progress)
    else:
        process = join_cluster(cluster)  # before any JAX computation
        report = build_zoo_in_processes(
            cfg, out, process, lambda step, error: barrier(step, cluster.barrier_timeout_s, error),
            shards_dir=args.shards_dir, progress=not args.no_progress)
    doc = {
        "path": str(report.path),
        "num_networks": report.num_networks,
        "chunks_trained": report.chunks_trained,
        "chunks_skipped": report.chunks_skipped,
        "compile_s": round(report.compile_s, 2),
        "compile_wait_s": report.manifest["build"].get("compile_wait_s", 0.0),
        "run_s": round(report.run_s, 2),
        "wall_s": round(report.wall_s, 2),
        "weights_fingerprint": report.manifest["weights_fingerprint"],
    }
    text = (f"zoo {cfg.name}: {report.num_networks} networks in {report.path} "
            f"({report.chunks_trained} chunks trained, {report.chunks_skipped} reused; "
            f"compile {report.compile_s:.1f}s in the background, of which training waited "
            f"{report.manifest['build'].get('compile_wait_s', 0.0):.1f}s; run {report.run_s:.1f}s; "
            f"wall {report.wall_s:.1f}s)")
    emit(args, doc, text)
    return EXIT_OK


def cmd_zoo_merge(args) -> int:
    manifest = merge_zoos(args.shards, args.out)
    doc = {"path": args.out, "num_networks": manifest["num_networks"],
           "weights_fingerprint": manifest["weights_fingerprint"]}
    emit(args, doc, f"merged {len(args.shards)} shards into {args.out}: {manifest['num_networks']} networks")
    return EXIT_OK


def _counts(table, col) -> dict[str, int]:
    return {str(k): int(v) for k, v in table[col].value_counts().sort_index().items()}


def _dist(values) -> dict:
    """Mean and the 0/25/50/75/100 percentiles (min, quartiles, max)."""
    q = values.quantile([0.0, 0.25, 0.5, 0.75, 1.0]).round(4).tolist() if len(values) else []
    return {"mean": round(float(values.mean()), 4) if len(values) else None, "quantiles": q}


def zoo_summary(zoo) -> dict:
    """Counts and accuracy distributions of a zoo's final checkpoints (PSNR distributions for INRs)."""
    if zoo.kind == "inr":
        return inr_summary(zoo)
    final = zoo.final
    ok = final[final["status"] == "ok"]

    def counts(col):
        return _counts(final, col)

    dist = _dist

    arch = (final["family"] + "-d" + final["depth"].astype(str)).value_counts().sort_index()
    return {
        "path": str(zoo.root),
        "name": zoo.name,
        "num_networks": int(len(final)),
        "checkpoint_epochs": sorted(int(e) for e in zoo.table["epoch"].unique()),
        "weights_fingerprint": zoo.weights_fingerprint,
        "datasets": counts("dataset"),
        "optimizers": counts("optimizer"),
        "families": counts("family"),
        "architectures": {str(k): int(v) for k, v in arch.items()},
        "activations": counts("activation"),
        "diverged": int((final["status"] == "diverged").sum()),
        "test_acc": dist(ok["test_acc"]),
        "test_acc_by_dataset": {str(k): dist(g["test_acc"]) for k, g in ok.groupby("dataset")},
        "gen_gap": dist(ok["gen_gap"]),
        "build": zoo.manifest.get("build", {}),
    }


PSNR_BIN_DB = 5


def inr_summary(zoo) -> dict:
    """Counts of an INR zoo's images and the PSNR distribution of its INRs, at every checkpoint."""
    final = zoo.final
    ok = final[final["status"] == "ok"]
    table = zoo.table[zoo.table["status"] == "ok"]
    psnr = ok["psnr"]
    histogram = {}
    if len(psnr):
        for low in range(int(psnr.min() // PSNR_BIN_DB) * PSNR_BIN_DB, int(psnr.max()) + 1, PSNR_BIN_DB):
            inside = (psnr >= low) & (psnr < low + PSNR_BIN_DB)
            histogram[f"[{low}, {low + PSNR_BIN_DB})"] = int(inside.sum())
    return {
        "path": str(zoo.root),
        "name": zoo.name,
        "kind": "inr",
        "num_networks": int(len(final)),
        "checkpoint_steps": sorted(int(e) for e in zoo.table["epoch"].unique()),
        "weights_fingerprint": zoo.weights_fingerprint,
        "datasets": _counts(final, "dataset"),
        "image_splits": _counts(final, "image_split"),
        "labels": _counts(final, "label"),
        "architectures": _counts(final.assign(a="siren-" + final["hidden"]), "a"),
        "inits": _counts(final, "init"),
        "diverged": int((final["status"] == "diverged").sum()),
        # None where the zoo set no target PSNR (nothing to stop at)
        "reached_target": (int(final["reached_target"].sum())
                           if "target_psnr" in final and final["target_psnr"].notna().any() else None),
        "psnr": _dist(psnr),
        "psnr_histogram": histogram,
        "psnr_by_step": {str(int(step)): _dist(g["psnr"]) for step, g in table.groupby("epoch")},
        "psnr_by_dataset": {str(k): _dist(g["psnr"]) for k, g in ok.groupby("dataset")},
        "build": zoo.manifest.get("build", {}),
    }


def _inr_info_text(s: dict) -> str:
    stopped = "" if s["reached_target"] is None else f", {s['reached_target']} stopped at the target PSNR"
    lines = [f"zoo {s['name']} at {s['path']}: {s['num_networks']} INRs (one per image), checkpoints at "
             f"steps {s['checkpoint_steps']}, {s['diverged']} diverged{stopped}"]
    for title in ("datasets", "image_splits", "labels", "architectures", "inits"):
        counts = ", ".join(f"{k}: {v}" for k, v in s[title].items())
        lines.append(f"  {title.replace('_', ' '):<13} {counts}")
    lines.append(f"  PSNR (dB)     mean {s['psnr']['mean']}, min/quartiles/max {s['psnr']['quantiles']}")
    for step, d in s["psnr_by_step"].items():
        lines.append(f"    step {step:<9} mean {d['mean']}, min/quartiles/max {d['quantiles']}")
    for ds, d in s["psnr_by_dataset"].items():
        lines.append(f"    {ds:<14} mean {d['mean']}, min/quartiles/max {d['quantiles']}")
    lines.append("  PSNR histogram " + ", ".join(f"{k}: {v}" for k, v in s["psnr_histogram"].items()))
    lines.append(f"  weights fingerprint {s['weights_fingerprint']}")
    return "\n".join(lines)


def cmd_zoo_info(args) -> int:
    s = zoo_summary(load_zoo(args.zoo))
    if s.get("kind") == "inr":
        emit(args, s, _inr_info_text(s))
        return EXIT_OK
    lines = [f"zoo {s['name']} at {s['path']}: {s['num_networks']} networks, "
             f"checkpoints at epochs {s['checkpoint_epochs']}, {s['diverged']} diverged"]
    for title in ("datasets", "optimizers", "architectures", "activations"):
        lines.append(f"  {title:<13} " + ", ".join(f"{k}: {v}" for k, v in s[title].items()))
    lines.append(f"  test acc      mean {s['test_acc']['mean']}, quartiles {s['test_acc']['quantiles']}")
    for ds, d in s["test_acc_by_dataset"].items():
        lines.append(f"    {ds:<14} mean {d['mean']}, quartiles {d['quantiles']}")
    lines.append(f"  gen gap       mean {s['gen_gap']['mean']}, quartiles {s['gen_gap']['quantiles']}")
    lines.append(f"  weights fingerprint {s['weights_fingerprint']}")
    emit(args, s, "\n".join(lines))
    return EXIT_OK


def _show_picture(ax, picture) -> None:
    """An (H, W, C) image in [0, 1] on `ax`: gray for one channel, unsmoothed pixels."""
    picture = picture.clip(0.0, 1.0)
    gray = picture.shape[-1] == 1
    ax.imshow(picture[..., 0] if gray else picture, cmap="gray" if gray else None, vmin=0.0, vmax=1.0,
              interpolation="nearest")


def draw_inr(image, reconstruction, title: str, out: Path) -> None:
    """Write a PNG (or any format matplotlib knows by `out`'s suffix): the image beside its reconstruction."""
    import matplotlib  # noqa: PLC0415 (slow to import; only this command draws)

    matplotlib.use("Agg")  # no display
    import matplotlib.pyplot as plt  # noqa: PLC0415 (as above)

    fig, axes = plt.subplots(1, 2, figsize=(6, 3.4))
    for ax, picture, label in zip(axes, (image, reconstruction), ("image", "INR"), strict=True):
        _show_picture(ax, picture)
        ax.set_title(label)
        ax.axis("off")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format=out.suffix.lstrip(".").lower() or "png", dpi=100)
    plt.close(fig)


def draw_inr_gallery(zoo, out: Path) -> list[str]:
    """Write a PNG of one INR per label (that of the lowest image index): each image above the
    reconstruction its INR gives, with the INR's PSNR. Returns the INRs' ids, in label order."""
    import matplotlib  # noqa: PLC0415 (slow to import; only drawing needs it)

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415 (as above)

    final = zoo.final.sort_values(["label", "image_index", "network_id"])
    chosen = final.drop_duplicates("label")
    ids = list(chosen["network_id"])
    fig, axes = plt.subplots(2, len(ids), figsize=(1.3 * len(ids) + 0.6, 3.2), squeeze=False)
    images = images_of(zoo, ids)
    for col, (network_id, row, image) in enumerate(zip(ids, chosen.itertuples(), images, strict=True)):
        recon = reconstruct(zoo.arch(network_id), zoo.params(network_id))
        for ax, picture in zip(axes[:, col], (image, recon), strict=True):
            _show_picture(ax, picture)
            ax.set_xticks([])
            ax.set_yticks([])
        axes[0, col].set_title(f"label {int(row.label)}", fontsize=8)
        axes[1, col].set_xlabel(f"{float(row.psnr):.1f} dB", fontsize=8)
    axes[0, 0].set_ylabel("image", fontsize=8)
    axes[1, 0].set_ylabel("INR", fontsize=8)
    fig.suptitle(f"{zoo.name}: images and their INRs' reconstructions (PSNR)", fontsize=9)
    fig.tight_layout()
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
    return ids


def cmd_zoo_show_inr(args) -> int:
    zoo = load_zoo(args.zoo)
    if zoo.kind != "inr":
        raise UsageError(f"{zoo.root}: a zoo of kind {zoo.kind!r}; show-inr draws the INRs of an INR zoo")
    try:
        row = zoo.row(args.id, args.step)
    except KeyError as e:
        raise ZooError(e.args[0]) from None
    recon = reconstruct(zoo.arch(args.id), zoo.params(args.id, args.step))
    image = image_of(zoo, args.id)
    step = int(row["epoch"])
    title = (f"{args.id}: {row['dataset']} {row['image_split']} image {int(row['image_index'])}, "
             f"label {int(row['label'])}; step {step}, PSNR {float(row['psnr']):.1f} dB")
    out = Path(args.out)
    draw_inr(image, recon, title, out)
    doc = {"path": str(out), "network_id": args.id, "step": step, "psnr": float(row["psnr"]),
           "dataset": row["dataset"], "image_split": row["image_split"],
           "image_index": int(row["image_index"]), "label": int(row["label"])}
    emit(args, doc, f"wrote {out}: {title}")
    return EXIT_OK


def split_problems(root: Path, zoo_intact: bool) -> list[str]:
    """Problems of the split files in ZOO/splits/, each naming its file.

    Each file is checked as `load_task` would read it: format and fingerprint, and,
    when the zoo itself is intact, that it partitions exactly this zoo's networks.
    A file must also hold the split its name says, since `get_split` finds it by name.
    """

    zoo = load_zoo(root, verify=False) if zoo_intact else None  # verified just before
    problems = []
    for path in sorted((root / SPLITS_DIR).glob("*.json")):
        try:
            split = load_split(path, zoo) if zoo is not None else read_split(path)
        except SplitError as e:
            problems.append(str(e))
            continue
        if split.name != path.stem:
            problems.append(f"{path}: holds the {split.name!r} split, not {path.stem!r}")
    return problems


def cmd_zoo_verify(args) -> int:
    problems = verify_zoo(args.zoo)
    problems += split_problems(Path(args.zoo), zoo_intact=not problems)
    doc = {"path": args.zoo, "ok": not problems, "problems": problems}
    text = f"{args.zoo}: all files intact" if not problems else "\n".join(problems)
    emit(args, doc, text)
    return EXIT_OK if not problems else EXIT_ERROR


def cmd_zoo_preset(args) -> int:
    sys.stdout.write(preset_path(args.name).read_text(encoding="utf-8"))
    return EXIT_OK


def write_published_split(zoo_dir: Path, rows, split_file: Path) -> dict:
    """Write the `published` split of the imported zoo at `zoo_dir` from its row order; its part sizes.

    Here, not in the importer: zoo_builder makes zoos, benchmark makes splits.
    """
    try:
        split = published_split(zoo_dir, rows, {"file": split_file.name, "sha256": sha256_file(split_file)})
    except SplitUnavailable as e:
        raise SplitUnavailable(f"{split_file}: {e}") from None
    write_split(split, split_path(zoo_dir, split.name))
    return {**{p: len(ids) for p, ids in split.parts.items()},
            "outside_protocol_in_train": split.details["outside_protocol_in_train"]}


def cmd_zoo_import_smallcnnzoo(args) -> int:
    rows = None
    if args.split_file is not None:  # checked before anything is written
        rows = read_row_order(args.split_file, checkpoint_count(args.src))
    manifest = import_smallcnnzoo(args.src, args.out, dataset=args.dataset, input_shape=args.input_shape)
    doc = {"path": args.out, "name": manifest["name"], "num_networks": manifest["num_networks"],
           "checkpoints": manifest["source"]["checkpoints"],
           "input_shape": manifest["config"]["zoo"]["input_shape"],
           "weights_fingerprint": manifest["weights_fingerprint"]}
    text = (f"imported {args.src} into {args.out}: {doc['num_networks']} networks, "
            f"{doc['checkpoints']} checkpoints, input shape {tuple(doc['input_shape'])}")
    if rows is not None:
        try:
            doc["published_split"] = write_published_split(Path(args.out), rows, Path(args.split_file))
        except BaseException:
            shutil.rmtree(args.out, ignore_errors=True)  # the import made it: leave nothing half done
            raise
        s = doc["published_split"]
        text += (f"; split 'published': train {s['train']}, val {s['val']}, test {s['test']} "
                 f"({s['outside_protocol_in_train']} networks outside the protocol put in train)")
    emit(args, doc, text)
    return EXIT_OK


# --------------------------------------------------------------------------- task commands


def cmd_tasks(args) -> int:
    s = tasks_summary(args.zoo)
    lines = [f"tasks on zoo {s['name']} at {s['path']} (weights fingerprint {s['weights_fingerprint']})"]
    width = max(map(len, s["tasks"]), default=0) + 1
    for task, splits in s["tasks"].items():
        for split, d in splits.items():
            head = f"  {task:<{width}} {split:<10}"
            if "unavailable" in d:
                lines.append(f"{head} unavailable: {d['unavailable']}")
                continue
            kinds = ", ".join(f"{n} {k}" for k, n in d["twins_by_kind"].items())
            line = (f"{head} train {d['train']}, val {d['val']}, test {d['test']} "
                    f"+ {d['twins']} twins ({kinds})")
            if "pairs" in d:
                line += ", pairs " + "/".join(str(d["pairs"][p]) for p in ("train", "val", "test"))
            lines.append(line)
    emit(args, s, "\n".join(lines))
    return EXIT_OK


def _input_shape(value: str) -> tuple[int, int, int]:
    try:
        return parse_input_shape(value)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def add_commands(sub) -> None:
    """Add the `zoo` command group and `tasks` to the ``zoobench`` parser's subcommands."""
    zoo = sub.add_parser("zoo", help="build, inspect and verify zoos of trained networks")
    zsub = zoo.add_subparsers(dest="zoo_command", required=True)

    b = zsub.add_parser("build", help="train a zoo from a preset or a TOML config (resumable)")
    src = b.add_mutually_exclusive_group()
    src.add_argument("--preset", default="small", choices=list(PRESETS),
                     help="a config shipped with zoobench (default: small)")
    src.add_argument("--config", help="a zoo config TOML file (start from `zoobench zoo preset NAME`)")
    b.add_argument("--out", help="zoo directory (default: zoos/NAME)")
    b.add_argument("--shard", type=shard, help="build only slice I of N (for array jobs), e.g. 0/4")
    b.add_argument("--no-progress", action="store_true", help="no progress bar")
    d = b.add_argument_group(
        "multi-process build", "each process builds shard I/N of the zoo with its own devices, "
        "process 0 merges them into --out (see docs/scaling.md); any of these options turns it on")
    d.add_argument("--distributed", action="store_true",
                   help="join a jax.distributed build; options not given are auto-detected "
                        "(Slurm, Open MPI, JAX_COORDINATOR_ADDRESS)")
    d.add_argument("--coordinator", type=address, metavar="HOST:PORT",
                   help="address of process 0, which listens on PORT")
    d.add_argument("--num-processes", type=positive_int, metavar="N", help="number of processes")
    d.add_argument("--process-id", type=non_negative_int, metavar="I", help="this process, 0..N-1")
    d.add_argument("--init-timeout", type=positive_int, default=300, metavar="SECONDS",
                   help="give up joining after this long (default: 300)")
    d.add_argument("--shards-dir", metavar="DIR",
                   help="where process I writes DIR/shard-I-of-N, on a filesystem every process "
                        "sees (default: OUT.shards)")
    add_json_option(b)
    b.set_defaults(func=cmd_zoo_build)

    m = zsub.add_parser("merge", help="join the shards of a sharded build into one zoo")
    m.add_argument("shards", nargs="+", help="shard directories (each built with --shard I/N)")
    m.add_argument("--out", required=True, help="directory of the merged zoo")
    add_json_option(m)
    m.set_defaults(func=cmd_zoo_merge)

    i = zsub.add_parser("info", help="summarise a zoo: counts, accuracies (INRs: PSNRs), diverged networks")
    i.add_argument("zoo", help="zoo directory")
    add_json_option(i)
    i.set_defaults(func=cmd_zoo_info)

    s = zsub.add_parser("show-inr", help="draw an INR's reconstruction beside the image it was fitted to")
    s.add_argument("zoo", help="an INR zoo's directory")
    s.add_argument("id", help="the INR's network id")
    s.add_argument("--out", required=True, help="the picture to write, e.g. inr.png")
    s.add_argument("--step", type=positive_int, help="a checkpoint step (default: the final one)")
    add_json_option(s)
    s.set_defaults(func=cmd_zoo_show_inr)

    v = zsub.add_parser("verify", help="check every file of a zoo against its manifest's checksums, "
                        "and its split files against their fingerprints and the zoo")
    v.add_argument("zoo", help="zoo directory")
    add_json_option(v)
    v.set_defaults(func=cmd_zoo_verify)

    p = zsub.add_parser("preset", help="print a preset's TOML config, to copy and edit")
    p.add_argument("name", choices=list(PRESETS))
    p.set_defaults(func=cmd_zoo_preset)

    imp = zsub.add_parser("import-smallcnnzoo", help="convert a downloaded Small CNN Zoo directory "
                          "(Unterthiner et al. 2020) into a zoo")
    imp.add_argument("src", help="directory with weights.npy, layout.csv and metrics.csv[.gz], e.g. mnist/")
    imp.add_argument("--out", required=True, help="zoo directory to create (must not exist or be empty)")
    imp.add_argument("--dataset",
                     help="dataset name of every network (default: config.dataset, else SRC's name)")
    imp.add_argument("--input-shape", type=_input_shape, metavar="H,W,C",
                     help="input shape (default: 28x28 for mnist/fashion_mnist, 32x32 for "
                          "cifar10/svhn_cropped, else 28,28,1 or 32,32,3 from the first kernel's channels)")
    imp.add_argument("--split-file", metavar="FILE",
                     help="the published split protocol's row order (one row of weights.npy a line, as "
                          "NFN and Neural Graphs use): written as split 'published' (docs/tasks.md)")
    add_json_option(imp)
    imp.set_defaults(func=cmd_zoo_import_smallcnnzoo)

    t = sub.add_parser("tasks", help="list the benchmark tasks and splits of a zoo with their sizes")
    t.add_argument("zoo", help="zoo directory (missing split files are written to ZOO/splits/)")
    add_json_option(t)
    t.set_defaults(func=cmd_tasks)
