"""The four benchmark tasks over a zoo, as train/val/test parts a method can read.

`load_task(name, zoo, split)` joins a zoo, one of its fixed splits
(`benchmark.splits`) and the task's targets. Method-facing parts never carry
test targets; the test part mixes the test networks with their symmetry twins
(`benchmark.twins`) under opaque ids. Only the scorer calls `test_targets`,
which returns the test targets, which id is whose twin and the synthetic
merging pairs' true permutations. docs/tasks.md is the contract.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import NamedTuple

import numpy as np
import pandas as pd

from benchmark import neural_graph, views
from benchmark.splits import SPLIT_NAMES, SPLITS, Split, SplitUnavailable, as_zoo, get_split, split_path
from benchmark.twins import (
    Twin,
    aligning_permutations,
    derive_hex,
    derive_seed,
    noisy_permuted_copy,
    twin_params,
)
from zoo_builder.architecture import ArchSpec
from zoo_builder.errors import Unavailable, UsageError
from zoo_builder.storage import Zoo

TASKS = ("generalization", "classification", "retrieval", "merging")
TASK_SPLITS = {
    "generalization": SPLITS,
    "classification": ("id", "ood-width"),
    "retrieval": ("id", "ood-width"),
    "merging": ("id", "ood-width"),
}
# Splits a task also accepts where the zoo holds their file (`benchmark.splits.FILE_SPLITS`): the
# published protocol of an imported zoo is a generalization protocol.
TASK_FILE_SPLITS = {"generalization": ("published",)}
TARGETS = {
    "generalization": ("test_acc", "gen_gap"),
    "classification": ("dataset", "optimizer"),
    "retrieval": ("dataset",),
    "merging": (),
}
VIEWS = ("flat", "stats", "matrices", "neural_graph")
# The tasks over trained classifiers (accuracies, datasets, optimizers, merging); an INR zoo has none.
CLASSIFIER_TASKS = ("generalization", "classification", "retrieval", "merging")


class TaskUnavailable(Unavailable):
    """The task cannot be built on this zoo; the message names the zoo and says why (`reason`)."""


class Pair(NamedTuple):
    """Two networks to align: B's units are to be permuted onto A's."""

    pair_id: str
    id_a: str
    id_b: str


class _Source:
    """Loads the parameters and architecture of any network a part holds.

    Twins and synthetic B networks are materialised on demand from their
    original; which original that is stays in here (scorer knowledge).
    """

    def __init__(self, zoo: Zoo, originals, twins: Mapping[str, Twin],
                 synthetic: Mapping[str, tuple[str, int]]):
        self._zoo = zoo
        self._originals = frozenset(originals)
        self._twins = dict(twins)
        self._synthetic = dict(synthetic)

    def _original(self, network_id: str, part: str) -> str:
        if network_id in self._originals:
            return network_id
        if network_id in self._twins:
            return self._twins[network_id].of
        if network_id in self._synthetic:
            return self._synthetic[network_id][0]
        raise KeyError(f"network {network_id!r} is not in the {part} part")

    def arch(self, network_id: str, part: str) -> ArchSpec:
        return self._zoo.arch(self._original(network_id, part))

    def params(self, network_id: str, epoch: int | None, part: str):
        original = self._original(network_id, part)
        params = self._zoo.params(original, epoch)
        if network_id in self._twins:
            return twin_params(self._zoo.arch(original), params, self._twins[network_id])
        if network_id in self._synthetic:
            return noisy_permuted_copy(self._zoo.arch(original), params, self._synthetic[network_id][1])[0]
        return params


@dataclasses.dataclass(frozen=True, eq=False)
class TaskPart:
    """One part (train, val or test) of a task: its items, their targets and views.

    Attributes:
      name: "train", "val" or "test".
      ids: network id of every item. The test part mixes the test networks with
        their symmetry twins (opaque ids), shuffled deterministically.
      epochs: checkpoint epoch of every item (all final unless ``all_checkpoints``).
      targets: target name -> array aligned with `ids`; None for the test part.
      pairs: merging only: (pair_id, id_a, id_b) replicate pairs.
      synthetic_pairs: merging only: (pair_id, id_a, id_b) where B is a permuted,
        slightly noisy copy of A under a fresh id (`params(id_b)` materialises it).
      synthetic_permutations: merging, train and val only: pair_id -> the
        permutations that align B to A; None for the test part.
      view_defaults: view options shared by the whole task, so that every part's
        arrays line up (explicit options override them).
    """

    name: str
    ids: tuple[str, ...]
    epochs: np.ndarray
    targets: dict[str, np.ndarray] | None
    pairs: tuple[Pair, ...] = ()
    synthetic_pairs: tuple[Pair, ...] = ()
    synthetic_permutations: dict[str, dict[str, np.ndarray]] | None = None
    view_defaults: Mapping[str, Mapping] = dataclasses.field(default_factory=dict, repr=False)
    _source: _Source | None = dataclasses.field(default=None, repr=False)
    _cache: dict = dataclasses.field(default_factory=dict, repr=False)

    def __len__(self) -> int:
        return len(self.ids)

    def arch(self, network_id: str) -> ArchSpec:
        return self._source.arch(network_id, self.name)

    def params(self, network_id: str, epoch: int | None = None):
        """Canonical parameters of a network of this part (default: final checkpoint)."""
        return self._source.params(network_id, epoch, self.name)

    def networks(self) -> list[tuple[list, ArchSpec]]:
        """(params, arch) of every item, in `ids` order (twins materialised); cached."""
        if "networks" not in self._cache:
            self._cache["networks"] = [(self.params(i, int(e)), self.arch(i))
                                       for i, e in zip(self.ids, self.epochs, strict=True)]
        return self._cache["networks"]

    def view(self, kind: str, **options):
        """A view of every item, computed once per (kind, options).

        "flat" -> (X, mask), "stats" -> (n, F), "matrices" -> (X, mask) from
        `benchmark.views`; "neural_graph" -> list of `jraph.GraphsTuple` from
        `benchmark.neural_graph.network_graph`. See their docstrings for options.
        """
        if kind not in VIEWS:
            raise ValueError(f"kind must be one of {list(VIEWS)}, got {kind!r}")
        options = {**self.view_defaults.get(kind, {}), **options}
        key = (kind, repr(sorted(options.items())))
        if key not in self._cache:
            self._cache[key] = _compute_view(kind, self.networks(), options)
        return self._cache[key]

    def clear_cache(self) -> None:
        """Forget the cached networks and views (recomputed on demand): a long job that visits many
        tasks keeps memory bounded by calling it when it is done with a part."""
        self._cache.clear()


def _compute_view(kind: str, networks, options: dict):
    # Imported here: the views pull in jraph, which tasks do not otherwise need.

    params = [p for p, _ in networks]
    if kind == "flat":
        return views.flat(params, **options)
    if kind == "stats":
        return views.stats(params, [a for _, a in networks], **options)
    if kind == "matrices":
        return views.matrices(params, **options)
    return [neural_graph.network_graph(p, a, **options) for p, a in networks]


def view_defaults(archs: Sequence[ArchSpec]) -> dict[str, dict]:
    """View options that fit every network of a task: the same array shapes in every part."""
    shapes = [k for a in archs for k, _ in a.layer_shapes()]
    return {
        "flat": {"dim": max(a.num_params() for a in archs)},
        "stats": {"max_layers": max(a.num_layers for a in archs)},
        "matrices": {"grid": (max(int(np.prod(k[:-1])) for k in shapes), max(k[-1] for k in shapes)),
                     "max_layers": max(a.num_layers for a in archs)},
        "neural_graph": {"edge_dim": max(int(np.prod(k[:-2])) if len(k) > 2 else 1 for k in shapes)},
    }


@dataclasses.dataclass(frozen=True, eq=False)
class Task:
    """A task on one split of one zoo.

    Attributes:
      name, split: one of `TASKS`, one of `task_splits(name)`.
      zoo: the zoo the networks come from.
      train, val, test: the parts.
      targets: target names (the keys of the parts' `targets`).
      classes: classification and retrieval: target -> sorted class names; a
        target's values are indices into it.
      split_fingerprint: the split file's fingerprint (what a submission names).
      all_checkpoints: generalization: every checkpoint is an item, not only each
        network's final one (what a submission's metadata must say).
    """

    name: str
    split: str
    zoo: Zoo
    train: TaskPart
    val: TaskPart
    test: TaskPart
    targets: tuple[str, ...]
    classes: Mapping[str, tuple[str, ...]]
    split_fingerprint: str
    all_checkpoints: bool = False
    _answers: Callable[[], dict] = dataclasses.field(default=None, repr=False)

    @property
    def parts(self) -> tuple[TaskPart, TaskPart, TaskPart]:
        return self.train, self.val, self.test


def test_targets(task: Task) -> dict:
    """Scorer-only: what a method must never see. Only the scorer calls this.

    Returns a dict with
      ``ids``, ``epochs``: the test items of the original networks (twins left
        out), in test-part order;
      ``targets``: target name -> array aligned with ``ids``;
      ``clusters``: the ``config_id`` of each item's network, aligned with
        ``ids``: replicates of one config, and the checkpoints of one network,
        are one cluster, which the scorer's bootstrap resamples as a whole;
      ``twins``: twin id -> original id; ``twin_kinds``: twin id -> the symmetry kind
        that made it (`zoo_builder.symmetry.KINDS`);
      ``pairs``: the test pairs; ``pair_clusters``: aligned with ``pairs``, the
        config_id of each pair's A network (B is a replicate of A: the same one);
      ``synthetic_permutations``: synthetic test pair_id -> the permutations
        that align B to A; ``synthetic_clusters``: pair_id -> the config_id of
        its A network (merging, else both empty).
    """
    if not isinstance(task, Task):
        raise TypeError(f"task must be a Task from load_task, got {type(task).__name__}")
    return task._answers()


test_targets.__test__ = False  # not a pytest test, though its name starts with "test_"


# --------------------------------------------------------------------------- checks


def shape_leaks(meta: pd.DataFrame, targets: Sequence[str]) -> list[str]:
    """Why the weight shapes alone would give a classification target away; empty if they do not.

    Over the networks a task uses (columns `family`, `depth` and the targets),
    for every target: it needs two or more classes; every class must hold every
    architecture family of the task; and no architecture (family, depth) may
    occur in a single class, since its shapes would then name that class.
    """
    problems = []
    families = sorted(set(meta["family"]))
    archs = meta["family"].astype(str) + "-d" + meta["depth"].astype(str)
    for target in targets:
        classes = sorted(set(meta[target]))
        if len(classes) < 2:
            problems.append(f"target {target!r} has a single class {classes}: nothing to classify")
            continue
        for c in classes:
            missing = sorted(set(families) - set(meta.loc[meta[target] == c, "family"]))
            if missing:
                problems.append(f"class {c!r} of target {target!r} has no {'/'.join(missing)} networks "
                                f"(every class must hold every family: {families})")
        for arch, values in meta[target].groupby(archs, sort=True):
            only = sorted(set(values))
            if len(only) == 1:
                problems.append(f"class {only[0]!r} of target {target!r} is the only one with {arch} "
                                "networks, so their shapes give the class away")
    return problems


def check_shapes_uninformative(meta: pd.DataFrame, targets: Sequence[str], zoo=None) -> None:
    """Raise `TaskUnavailable` listing every problem `shape_leaks` finds (naming the directory `zoo`)."""
    problems = shape_leaks(meta, targets)
    if problems:
        raise TaskUnavailable("classification refused: weight shapes alone would answer it: "
                              + "; ".join(problems), zoo)


# --------------------------------------------------------------------------- building


def task_splits(name: str) -> tuple[str, ...]:
    """Every split task `name` accepts: its rule splits, then those only a zoo's file holds."""
    return TASK_SPLITS[name] + TASK_FILE_SPLITS.get(name, ())


def _check_arguments(name: str, split: str, all_checkpoints: bool) -> None:
    if name not in TASKS:
        raise UsageError(f"name must be one of {list(TASKS)}, got {name!r}")
    if split not in SPLIT_NAMES:
        raise UsageError(f"split must be one of {list(SPLIT_NAMES)}, got {split!r}")
    if split not in task_splits(name):
        raise UsageError(f"split {split!r} does not apply to the {name} task; "
                         f"expected one of {list(task_splits(name))}")
    if all_checkpoints and name != "generalization":
        raise UsageError("all_checkpoints=True applies to the generalization task only")


def _pairs(ids: Sequence[str], final: pd.DataFrame, material: str) -> tuple[Pair, ...]:
    """Every two replicates (one config_id) among `ids`, in zoo index order."""
    rows = final[final["network_id"].isin(set(ids))].sort_values("index")
    pairs = []
    for _, group in rows.groupby("config_id", sort=False):
        for a, b in itertools.combinations(group["network_id"], 2):
            pairs.append(Pair(derive_hex(material, "pair", a, b)[:16], a, b))
    return tuple(pairs)


def _synthetic(pairs: Sequence[Pair], material: str) -> dict[str, tuple[str, str, int]]:
    """One synthetic pair per distinct A network: pair id -> (A, B's fresh id, seed)."""
    out = {}
    for a in dict.fromkeys(p.id_a for p in pairs):
        out[derive_hex(material, a, "synthetic-pair")[:16]] = (
            a, derive_hex(material, a, "synthetic")[:16], derive_seed(material, a, "synthetic-seed"))
    return out


def _items(ids: Sequence[str], epochs_of: Mapping[str, Sequence[int]]):
    """(network id, epoch) items: every checkpoint `epochs_of` lists for each network."""
    return [(i, e) for i in ids for e in epochs_of[i]]


def _item_epochs(zoo: Zoo, final: pd.DataFrame, all_checkpoints: bool,
                include_diverged: bool) -> dict[str, list[int]]:
    """Network id -> the checkpoint epochs that are its items, for the networks of `final`.

    A network's final checkpoint is its own last one (its `final` row), not the zoo
    config's `epochs`: an imported run that crashed or stalled ends early. With
    `all_checkpoints`, every stored checkpoint, less those flagged diverged (an
    imported NaN row, stored as zeros) unless `include_diverged`.
    """
    if not all_checkpoints:
        return {nid: [int(e)] for nid, e in zip(final["network_id"], final["epoch"], strict=True)}
    rows = zoo.table[zoo.table["network_id"].isin(set(final["network_id"]))]
    if not include_diverged:
        rows = rows[rows["status"] != "diverged"]
    return {nid: sorted(int(e) for e in group) for nid, group in rows.groupby("network_id")["epoch"]}


def _target_arrays(rows: pd.DataFrame, items, targets: Sequence[str],
                   classes: Mapping) -> dict[str, np.ndarray]:
    """Target name -> values of `items` (table rows indexed by network id and epoch); classes as indices."""
    index = pd.MultiIndex.from_tuples(items, names=["network_id", "epoch"])
    out = {}
    for t in targets:
        values = rows.loc[index, t].to_numpy() if items else np.zeros(0)
        if t in classes:
            lookup = {c: k for k, c in enumerate(classes[t])}
            out[t] = np.array([lookup[str(v)] for v in values], np.int64)
        else:
            out[t] = np.asarray(values, np.float64)
    return out


def load_task(name: str, zoo: Zoo | str, split: str = "id", *, all_checkpoints: bool = False,
              include_diverged: bool = False) -> Task:
    """Build task `name` on `split` of `zoo` (a Zoo or a zoo directory).

    Args:
      name: one of `TASKS`.
      zoo: the zoo, or its directory.
      split: one of `task_splits(name)` ("ood-task" and, on a zoo imported with its
        split file, "published" are for generalization only).
      all_checkpoints: generalization only: every checkpoint of a network is an
        item (all in the network's part), not just the final one.
      include_diverged: keep networks whose training diverged (left out by default).

    Raises:
      zoo_builder.errors.UsageError (a ValueError): naming a bad task name, split or option.
      TaskUnavailable: the task cannot be built on this zoo, which it names (e.g.
        classification where shapes give the class away, merging without replicates).
      benchmark.splits.SplitError: the zoo's split file is corrupted or not its own.
    """
    _check_arguments(name, split, all_checkpoints)
    zoo = as_zoo(zoo)
    if name in CLASSIFIER_TASKS and zoo.kind != "classifier":
        raise TaskUnavailable(f"task {name!r} needs a zoo of trained classifiers; this zoo is of kind "
                              f"{zoo.kind!r}", zoo.root)
    the_split: Split = get_split(zoo, split)
    material = the_split.seed_material
    final = zoo.final
    if not include_diverged:
        final = final[final["status"] != "diverged"]
    if final.empty:
        raise TaskUnavailable("every network diverged; nothing to build the task on", zoo.root)
    position = dict(zip(final["network_id"], final["index"], strict=True))
    config_of = dict(zip(final["network_id"], final["config_id"].astype(str), strict=True))
    part_ids = {p: sorted((i for i in ids if i in position), key=position.__getitem__)
                for p, ids in the_split.parts.items()}
    targets = TARGETS[name]
    classes = {}
    if name == "classification":
        check_shapes_uninformative(final, targets, zoo.root)
    if name in ("classification", "retrieval"):
        classes = {t: tuple(sorted(set(final[t].astype(str)))) for t in targets}
    twins = {t.id: t for t in the_split.twins if t.of in position}
    rows = zoo.table.set_index(["network_id", "epoch"])
    epochs_of = _item_epochs(zoo, final, all_checkpoints, include_diverged)
    defaults = view_defaults([zoo.arch(i) for i in sorted(position)])
    built, answers = {}, {}
    for part in ("train", "val", "test"):
        pairs = _pairs(part_ids[part], final, material) if name == "merging" else ()
        if name == "merging" and not pairs:
            raise TaskUnavailable(
                "merging needs replicate pairs (networks sharing a config_id; zoo config `replicates` >= 2), "
                f"and the {part} part of split {split!r} has none", zoo.root)
        synthetic = _synthetic(pairs, material)
        true_perms = {pid: aligning_permutations(zoo.arch(a), seed)
                      for pid, (a, _, seed) in synthetic.items()}
        own = _items(part_ids[part], epochs_of)
        part_twins = twins if part == "test" else {}
        all_items = own + [(t, e) for t in sorted(part_twins)
                           for _, e in _items([part_twins[t].of], epochs_of)]
        if part == "test":
            all_items.sort(key=lambda it: derive_hex(material, name, it[0], str(it[1])))
            originals = [it for it in all_items if it[0] not in part_twins]
            answers = {
                "ids": tuple(i for i, _ in originals),
                "epochs": np.array([e for _, e in originals], np.int64),
                "targets": _target_arrays(rows, originals, targets, classes),
                "clusters": np.array([config_of[i] for i, _ in originals], dtype=str),
                "twins": {t: tw.of for t, tw in part_twins.items()},
                "twin_kinds": {t: tw.kind for t, tw in part_twins.items()},
                "pairs": pairs,
                "pair_clusters": np.array([config_of[p.id_a] for p in pairs], dtype=str),
                "synthetic_permutations": true_perms,
                "synthetic_clusters": {pid: config_of[a] for pid, (a, _, _) in synthetic.items()},
            }
        built[part] = TaskPart(
            name=part,
            ids=tuple(i for i, _ in all_items),
            epochs=np.array([e for _, e in all_items], np.int64),
            targets=None if part == "test" else _target_arrays(rows, own, targets, classes),
            pairs=pairs,
            synthetic_pairs=tuple(Pair(pid, a, b) for pid, (a, b, _) in synthetic.items()),
            synthetic_permutations=true_perms if name == "merging" and part != "test" else None,
            view_defaults=defaults,
            _source=_Source(zoo, part_ids[part], part_twins,
                            {b: (a, seed) for a, b, seed in synthetic.values()}),
        )
    return Task(
        name=name, split=split, zoo=zoo, train=built["train"], val=built["val"], test=built["test"],
        targets=targets, classes=classes, split_fingerprint=the_split.fingerprint,
        all_checkpoints=all_checkpoints, _answers=lambda: answers,
    )


def tasks_summary(zoo: Zoo | str) -> dict:
    """Every task and split on `zoo`: part sizes, twins and pairs, or why it is unavailable.

    Writes the zoo's split files if they are missing (as `load_task` does). A file-only
    split (`published`) is listed where the zoo has its file.
    """
    zoo = as_zoo(zoo)
    out: dict[str, dict] = {}
    for name in TASKS:
        out[name] = {}
        held = tuple(s for s in TASK_FILE_SPLITS.get(name, ()) if split_path(zoo.root, s).is_file())
        for split in TASK_SPLITS[name] + held:
            try:
                task = load_task(name, zoo, split)
            except (TaskUnavailable, SplitUnavailable) as e:  # the zoo is named once, above them all
                out[name][split] = {"unavailable": e.reason}
                continue
            answers = task._answers()
            entry = {"train": len(task.train), "val": len(task.val), "test": len(answers["ids"]),
                     "twins": len(answers["twins"]),
                     "twins_by_kind": dict(sorted(Counter(answers["twin_kinds"].values()).items())),
                     "split_fingerprint": task.split_fingerprint}
            if name == "merging":
                entry["pairs"] = {p.name: len(p.pairs) for p in task.parts}
                entry["synthetic_pairs"] = {p.name: len(p.synthetic_pairs) for p in task.parts}
            out[name][split] = entry
    return {"path": str(zoo.root), "name": zoo.name, "weights_fingerprint": zoo.weights_fingerprint,
            "tasks": out}
