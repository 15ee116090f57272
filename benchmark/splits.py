"""Fixed train/val/test splits of a zoo's networks, stored as fingerprinted files.

A split assigns every network (all its checkpoints) to one part. It depends only
on network ids and on table columns that come from the zoo config (`config_id`,
`dataset`, `dataset_base`, `family`, `max_width`), never on weights or training
results, so the same zoo config gives the same split on every machine. The file
also records the zoo's weights fingerprint, so a split is never applied to other
networks by mistake, and the test part's symmetry twins (`benchmark.twins`).

Where a split comes from (`get_split`): ``ZOO_DIR/splits/<split>.json``; else the
file checked into this package for a built-in preset, when its zoo name and
weights fingerprint match; else it is computed and written next to the zoo.
The `published` split is the exception: it is a source's own protocol
(`published_split`, from the row order file the Small CNN Zoo's users share),
written when the zoo is imported, never computed. docs/tasks.md describes the
rules and the file format.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import random
import warnings
from collections.abc import Mapping
from fractions import Fraction
from pathlib import Path

import pandas as pd

from benchmark.twins import Twin, derive_hex, pick_twins, twin_id, twin_seed
from zoo_builder.errors import DomainError, Unavailable, UsageError
from zoo_builder.files import read_bounded, write_json
from zoo_builder.storage import Zoo, load_zoo
from zoo_builder.symmetry import KINDS, symmetry_kinds

FORMAT = "zoobench-split"
# 2: twins of every symmetry kind, each with its "kind". A version-1 file (permutation twins only)
# is read and upgraded in place: its parts are kept, its twins re-derived (`get_split`).
FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)
SPLITS = ("id", "ood-width", "ood-task")  # made by rule from any zoo
# Splits only a file next to the zoo holds, written from its source's own protocol when imported.
FILE_SPLITS = ("published",)
SPLIT_NAMES = SPLITS + FILE_SPLITS
PARTS = ("train", "val", "test")
SPLITS_DIR = "splits"
# Mixed into every hash that orders networks; changing it changes every split.
SPLIT_SEED = "zoobench-split-v1"
ID_FRACTIONS = {"train": Fraction(7, 10), "val": Fraction(1, 10), "test": Fraction(2, 10)}
OOD_TEST_FRACTION = 0.2
# Of the networks left after taking out the OOD test part.
OOD_FRACTIONS = {"train": Fraction(7, 8), "val": Fraction(1, 8)}
STRATA = ("dataset", "family")
# Ties between parts go to the rarer part first, so small zoos still get a test part.
_TIE_ORDER = {"test": 2, "val": 1, "train": 0}
_METADATA = ("network_id", "index", "config_id", "dataset", "dataset_base", "family", "max_width")
_CHECKED_IN = Path(__file__).resolve().parent / "splits_data"
# A split of 30,000 networks (16-hex ids, 5% twins) is ~0.9 MB: room for ~2M networks.
MAX_SPLIT_BYTES = 64 << 20
# The published protocol (NFN, Zhou et al. 2023; Neural Graphs, Kofinas et al. 2024, NFNZooDataset):
# the test part is the second half of the shuffled final checkpoints; train and val are
# 80/20 of the first half, shuffled by Python's random.Random(0).
PUBLISHED_TEST_FRACTION = 0.5
PUBLISHED_TRAIN_FRACTION = 0.8
PUBLISHED_SEED = 0


class SplitError(DomainError, ValueError):
    """A split file is corrupted, edited or belongs to another zoo; the message names the file."""


class SplitUnavailable(Unavailable):
    """The split cannot be made on this zoo (e.g. ood-task on a zoo with a single dataset)."""


@dataclasses.dataclass(frozen=True)
class Split:
    """One split of one zoo.

    Attributes:
      name: one of `SPLIT_NAMES`.
      zoo_name, weights_fingerprint: the zoo it was made for.
      parts: "train", "val", "test" -> sorted network ids.
      twins: the test part's symmetry twins (scorer-only: which id is whose twin).
      details: how the rule was applied (threshold width, held-out dataset, ...).
      fingerprint: sha256 of the file's canonical content (see `split_fingerprint`).
      path: the file it was read from or written to, if any.
      format_version: of the file it was read from; older than `FORMAT_VERSION` only until
        `get_split` upgrades it.
    """

    name: str
    zoo_name: str
    weights_fingerprint: str
    parts: Mapping[str, tuple[str, ...]]
    twins: tuple[Twin, ...]
    details: Mapping
    fingerprint: str
    path: Path | None = dataclasses.field(default=None, compare=False)
    format_version: int = dataclasses.field(default=FORMAT_VERSION, compare=False)

    @property
    def seed_material(self) -> str:
        return seed_material(self.name, self.zoo_name, self.parts)

    def part_of(self) -> dict[str, str]:
        """Network id -> the part it belongs to."""
        return {nid: part for part in PARTS for nid in self.parts[part]}

    def to_doc(self) -> dict:
        if self.format_version != FORMAT_VERSION:
            raise ValueError(f"{self.path}: a format version {self.format_version} split; upgrade it "
                             f"(get_split) before writing it as version {FORMAT_VERSION}")
        doc = _doc_without_fingerprint(self.name, self.zoo_name, self.weights_fingerprint, self.parts,
                                       self.twins, self.details)
        doc["fingerprint"] = self.fingerprint
        return doc


# --------------------------------------------------------------------------- the rules


def network_metadata(table: pd.DataFrame) -> pd.DataFrame:
    """One row per network with the config-derived columns a split may read, by index."""
    missing = [c for c in _METADATA if c not in table.columns]
    if missing:
        raise ValueError(f"table is missing the column(s) {missing}; expected a zoobench zoo table")
    meta = table.drop_duplicates("network_id")[list(_METADATA)]
    return meta.sort_values("index").reset_index(drop=True)


def _groups(meta: pd.DataFrame, split: str) -> pd.DataFrame:
    """One row per config_id group: its stratum, size, widest network and hash order key."""
    first = meta.groupby("config_id", sort=True).agg(
        dataset=("dataset", "first"), family=("family", "first"), size=("network_id", "size"),
        max_width=("max_width", "max"))
    first["stratum"] = first[list(STRATA)].astype(str).agg("|".join, axis=1)
    first["order"] = [derive_hex(SPLIT_SEED, split, cid) for cid in first.index]
    return first


def balanced_assignment(groups: pd.DataFrame, fractions: Mapping[str, Fraction]) -> dict[str, str]:
    """Group -> part, stratified: groups sorted by (stratum, hash), then dealt greedily.

    Each group goes to the part furthest below its target share of the networks
    assigned so far (exact fractions, ties to the rarer part). Strata are
    contiguous in the order, so every stratum gets close to its share of every part,
    and so does the whole zoo.
    """
    counts = dict.fromkeys(fractions, 0)
    total = 0
    out = {}
    for gid, row in groups.sort_values(["stratum", "order"]).iterrows():
        total += int(row["size"])
        part = max(fractions, key=lambda p: (fractions[p] * total - counts[p], _TIE_ORDER[p]))
        counts[part] += int(row["size"])
        out[gid] = part
    return out


def width_threshold(widths: pd.Series, fraction: float = OOD_TEST_FRACTION) -> int:
    """The max width from which networks are test: the test share closest to `fraction`.

    Candidates leave at least one network for train/val; ties go to the smaller test part.
    """
    values = sorted(set(int(w) for w in widths))
    if len(values) < 2:
        raise SplitUnavailable(
            f"ood-width needs networks of at least two max widths; this zoo has only {values}")
    share = {t: float((widths >= t).mean()) for t in values[1:]}
    return min(share, key=lambda t: (abs(share[t] - fraction), share[t]))


def held_out_dataset(meta: pd.DataFrame) -> str:
    """The ood-task test dataset: the last in sorted order whose input base no other dataset shares.

    So neither its inputs nor its labels were seen in training. If every base is
    shared (e.g. only ``digits`` and ``digits@perm1``), the last dataset in sorted order.
    """
    bases = meta.drop_duplicates("dataset").set_index("dataset")["dataset_base"]
    if len(bases) < 2:
        raise SplitUnavailable(
            "ood-task needs networks trained on at least two datasets; "
            f"this zoo has only {list(bases.index)}")
    shared = bases.map(bases.value_counts())
    unique = sorted(bases.index[shared == 1])
    return unique[-1] if unique else sorted(bases.index)[-1]


def assign_parts(meta: pd.DataFrame, split: str) -> tuple[dict[str, tuple[str, ...]], dict]:
    """The parts of `split` over a network metadata table (`network_metadata`): a pure function.

    Returns (part -> sorted ids, details). Replicates (one config_id) always share a part.
    """
    check_split_name(split)
    if split in FILE_SPLITS:
        raise SplitUnavailable(f"the {split!r} split is not made by a rule; it comes from a file written "
                               "when the zoo was imported (docs/tasks.md)")
    groups = _groups(meta, split)
    if split == "id":
        assignment = balanced_assignment(groups, ID_FRACTIONS)
        details = {"fractions": {p: str(f) for p, f in ID_FRACTIONS.items()}}
    else:
        if split == "ood-width":
            threshold = width_threshold(meta["max_width"])
            is_test = groups["max_width"] >= threshold
            details = {"min_test_width": threshold,
                       "max_trainval_width": int(groups.loc[~is_test, "max_width"].max())}
        else:
            held_out = held_out_dataset(meta)
            is_test = groups["dataset"] == held_out
            details = {"held_out_dataset": held_out}
        assignment = balanced_assignment(groups[~is_test], OOD_FRACTIONS)
        assignment.update(dict.fromkeys(groups.index[is_test], "test"))
        details["fractions"] = {p: str(f) for p, f in OOD_FRACTIONS.items()}
    details.update(stratify=list(STRATA), group_by="config_id")
    parts = {p: [] for p in PARTS}
    for nid, cid in zip(meta["network_id"], meta["config_id"], strict=True):
        parts[assignment[cid]].append(str(nid))
    return {p: tuple(sorted(ids)) for p, ids in parts.items()}, details


def seed_material(split: str, zoo_name: str, parts: Mapping[str, tuple[str, ...]]) -> str:
    """A digest of the assignment alone (not the weights): what twin ids and seeds hash."""
    doc = {"seed": SPLIT_SEED, "split": split, "zoo": zoo_name, "parts": {p: list(parts[p]) for p in PARTS}}
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()


def _doc_without_fingerprint(name, zoo_name, weights_fingerprint, parts, twins, details) -> dict:
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "split": name,
        "zoo": {"name": zoo_name, "weights_fingerprint": weights_fingerprint},
        "details": dict(details),
        "parts": {p: list(parts[p]) for p in PARTS},
        "twins": [{"id": t.id, "of": t.of, "seed": t.seed, "kind": t.kind} for t in twins],
    }


def split_fingerprint(doc: Mapping) -> str:
    """sha256 of the canonical JSON (sorted keys, no spaces) of every key but "fingerprint"."""
    content = {k: v for k, v in doc.items() if k != "fingerprint"}
    return hashlib.sha256(json.dumps(content, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def split_with_twins(split: str, zoo_name: str, weights_fingerprint: str,
                     parts: Mapping[str, tuple[str, ...]], details: Mapping,
                     kinds_of: Mapping[str, tuple[str, ...]]) -> Split:
    """The `Split` with these parts; its twins (`kinds_of`: test id -> the symmetry kinds its architecture
    admits) and fingerprint derive from them. A pure function."""
    twins = pick_twins(parts["test"], seed_material(split, zoo_name, parts), kinds_of)
    doc = _doc_without_fingerprint(split, zoo_name, weights_fingerprint, parts, twins, details)
    return Split(split, zoo_name, weights_fingerprint, parts, twins, details, split_fingerprint(doc))


def test_kinds(zoo: Zoo, parts: Mapping[str, tuple[str, ...]]) -> dict[str, tuple[str, ...]]:
    """Test network id -> the symmetry kinds of its architecture (read from the table, not the weights)."""
    return {i: symmetry_kinds(zoo.arch(i)) for i in parts["test"]}


test_kinds.__test__ = False  # not a pytest test, though its name starts with "test_"


def split_of_parts(zoo: Zoo, split: str, parts: Mapping[str, tuple[str, ...]], details: Mapping) -> Split:
    """The `Split` of `zoo` with these parts: its test twins and fingerprint derive from them."""
    return split_with_twins(split, zoo.name, zoo.weights_fingerprint, parts, details, test_kinds(zoo, parts))


def make_split(zoo: Zoo | str | Path, split: str) -> Split:
    """Compute `split` of `zoo` from its ids and metadata (nothing is read from or written to disk)."""
    zoo = as_zoo(zoo)
    try:
        parts, details = assign_parts(network_metadata(zoo.table), split)
    except SplitUnavailable as e:
        raise SplitUnavailable(e.reason, zoo.root) from None
    return split_of_parts(zoo, split, parts, details)


def published_parts(table: pd.DataFrame, rows, last_step: int) -> tuple[dict[str, tuple[str, ...]], dict]:
    """The parts of the published split protocol over an imported zoo's `table`: a pure function.

    Args:
      table: the zoo's table; `source_row` is each checkpoint's row in the source's
        weights.npy and metrics file (`zoo_builder.smallcnnzoo`).
      rows: the shuffle, as source rows (`zoo_builder.smallcnnzoo.read_row_order`).
      last_step: the step the protocol keeps (86 in the published zoos: config.zoo.epochs).

    Like the published code: of the listed rows, those at `last_step`, in file order,
    are the networks; the second half is test; the first half, shuffled by
    ``random.Random(0)``, gives train (its first 80%) and val (the rest). A network
    with no listed row at `last_step` (a run that crashed before it, or a row the file
    leaves out) is outside the protocol; it goes to train, and `details` counts it.
    Returns (part -> sorted ids, details).
    """
    at = table.set_index("source_row")[["network_id", "epoch"]]
    listed = at.loc[[r for r in rows if r in at.index]]
    ordered = list(listed.loc[listed["epoch"] == last_step, "network_id"])
    split_point = int(PUBLISHED_TEST_FRACTION * len(ordered))
    trainval = list(range(split_point))
    random.Random(PUBLISHED_SEED).shuffle(trainval)
    val_point = int(PUBLISHED_TRAIN_FRACTION * len(trainval))
    parts = {"train": [ordered[i] for i in trainval[:val_point]],
             "val": [ordered[i] for i in trainval[val_point:]],
             "test": ordered[split_point:]}
    outside = sorted(set(table["network_id"]) - set(ordered))
    parts["train"] += outside
    details = {"protocol": "published", "last_step": int(last_step), "rows_listed": len(rows),
               "networks_in_protocol": len(ordered), "outside_protocol_in_train": len(outside),
               "test_fraction": PUBLISHED_TEST_FRACTION, "train_fraction_of_rest": PUBLISHED_TRAIN_FRACTION,
               "shuffle_seed": PUBLISHED_SEED}
    return {p: tuple(sorted(ids)) for p, ids in parts.items()}, details


def published_split(zoo: Zoo | str | Path, rows, source: Mapping) -> Split:
    """The `published` split of an imported `zoo` from its row order (see `published_parts`).

    `source` (e.g. the row file's name and sha256) is recorded in the split's details.
    """
    zoo = as_zoo(zoo)
    if "source_row" not in zoo.table.columns:
        raise SplitUnavailable("has no source_row column; the published split is for zoos imported from "
                               "a published source (zoobench zoo import-smallcnnzoo)", zoo.root)
    parts, details = published_parts(zoo.table, rows, int(zoo.manifest["config"]["zoo"]["epochs"]))
    if not parts["test"] or not parts["train"]:
        raise SplitUnavailable(f"the row order lists {details['networks_in_protocol']} network(s) at step "
                               f"{details['last_step']}: too few for a train and a test part", zoo.root)
    return split_of_parts(zoo, "published", parts, {**details, "source": dict(source)})


# --------------------------------------------------------------------------- files


def check_split_name(split: str) -> None:
    if split not in SPLIT_NAMES:
        raise UsageError(f"split must be one of {list(SPLIT_NAMES)}, got {split!r}")


def as_zoo(zoo: Zoo | str | Path) -> Zoo:
    if isinstance(zoo, Zoo):
        return zoo
    if isinstance(zoo, str | Path):
        return load_zoo(zoo)
    raise TypeError(f"zoo must be a Zoo or a zoo directory path, got {type(zoo).__name__}")


def split_path(zoo_root: str | Path, split: str) -> Path:
    """Where a zoo's own copy of `split` lives: ``ZOO_DIR/splits/<split>.json``."""
    check_split_name(split)
    return Path(zoo_root) / SPLITS_DIR / f"{split}.json"


def checked_in_path(zoo_name: str, split: str) -> Path:
    """The file shipped with zoobench for a built-in preset (it may not exist)."""
    check_split_name(split)
    return _CHECKED_IN / zoo_name / f"{split}.json"


def write_split(split: Split, path: str | Path) -> Split:
    """Write `split` atomically to `path`; returns it with `path` set."""
    write_json(Path(path), split.to_doc())
    return dataclasses.replace(split, path=Path(path))


def _expect(cond: bool, path: Path, problem: str) -> None:
    if not cond:
        raise SplitError(f"{path}: {problem}")


def _id_list(value, path: Path, where: str) -> tuple[str, ...]:
    _expect(isinstance(value, list) and all(isinstance(v, str) for v in value), path,
            f"{where}: expected a list of network id strings")
    return tuple(value)


def read_split(path: str | Path, weights_fingerprint: str | None = None) -> Split:
    """Read and check a split file on its own: size, format, structure, fingerprint, twins.

    With `weights_fingerprint`, a file made for another zoo is refused first (its
    message says so and names both fingerprints).
    """
    path = Path(path)
    try:
        doc = json.loads(read_bounded(path, MAX_SPLIT_BYTES, "split").decode("utf-8"))
    except FileNotFoundError:
        raise SplitError(f"{path}: no such split file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise SplitError(f"{path}: not a readable JSON split file ({e}); the file is corrupted") from e
    except ValueError as e:  # from read_bounded: not a regular file, or over the limit
        raise SplitError(str(e)) from None
    _expect(isinstance(doc, dict) and doc.get("format") == FORMAT, path,
            f"not a zoobench split file (expected format {FORMAT!r})")
    version = doc.get("format_version")
    _expect(version in READABLE_VERSIONS, path,
            f"format version {version!r}; this zoobench reads {list(READABLE_VERSIONS)}")
    zoo = doc.get("zoo")
    _expect(isinstance(zoo, dict) and isinstance(zoo.get("name"), str)
            and isinstance(zoo.get("weights_fingerprint"), str), path,
            "zoo: expected {name, weights_fingerprint} strings")
    if weights_fingerprint is not None and zoo["weights_fingerprint"] != weights_fingerprint:
        raise SplitError(
            f"{path}: made for the zoo with weights fingerprint {zoo['weights_fingerprint']}, but this "
            f"zoo's weights fingerprint is {weights_fingerprint}; the split belongs to other networks "
            "(a rebuilt or different zoo): delete the file to make a new split")
    _expect(doc.get("split") in SPLIT_NAMES, path,
            f"split: expected one of {list(SPLIT_NAMES)}, got {doc.get('split')!r}")
    _expect(isinstance(doc.get("fingerprint"), str), path, "fingerprint: missing")
    _expect(split_fingerprint(doc) == doc["fingerprint"], path,
            "fingerprint mismatch: the file was edited or corrupted (its content no longer hashes to "
            "its recorded fingerprint)")
    parts_doc = doc.get("parts")
    _expect(isinstance(parts_doc, dict) and set(parts_doc) == set(PARTS), path,
            f"parts: expected exactly {list(PARTS)}")
    parts = {p: _id_list(parts_doc[p], path, f"parts.{p}") for p in PARTS}
    seen: dict[str, str] = {}
    for p in PARTS:
        for nid in parts[p]:
            _expect(nid not in seen, path, f"network {nid} is in both {seen.get(nid)} and {p}")
            seen[nid] = p
    _expect(isinstance(doc.get("details"), dict), path, "details: expected an object")
    twins_doc = doc.get("twins")
    _expect(isinstance(twins_doc, list), path, "twins: expected a list")
    material = seed_material(doc["split"], zoo["name"], parts)
    twins = []
    keys = {"id", "of", "seed"} | ({"kind"} if version >= 2 else set())
    for t in twins_doc:
        _expect(isinstance(t, dict) and set(t) == keys, path,
                f"twin {t!r}: expected {', '.join(sorted(keys))}")
        kind = t.get("kind", "permutation")
        _expect(kind in KINDS, path, f"twin {t['id']!r}: kind {kind!r}; expected one of {list(KINDS)}")
        _expect(t["of"] in parts["test"], path,
                f"twin {t['id']!r}: its original {t['of']!r} is not a test network")
        derived = (twin_id(material, t["of"], kind), twin_seed(material, t["of"], kind))
        _expect((t["id"], t["seed"]) == derived, path,
                f"twin {t['id']!r}: id or seed do not derive from the split (edited?)")
        twins.append(Twin(t["id"], t["of"], t["seed"], kind))
    return dataclasses.replace(
        Split(doc["split"], zoo["name"], zoo["weights_fingerprint"], parts, tuple(twins), doc["details"],
              doc["fingerprint"], path), format_version=version)


def check_against_zoo(split: Split, zoo: Zoo) -> None:
    """Refuse a split that does not partition exactly this zoo's networks; names the file."""
    where = split.path or f"split {split.name!r}"
    if split.weights_fingerprint != zoo.weights_fingerprint:
        raise SplitError(
            f"{where}: made for the zoo with weights fingerprint {split.weights_fingerprint}, but "
            f"{zoo.root} has {zoo.weights_fingerprint}")
    if split.zoo_name != zoo.name:
        raise SplitError(f"{where}: made for zoo {split.zoo_name!r}, not {zoo.name!r}")
    ids = set(zoo.table["network_id"])
    listed = set(split.part_of())
    unknown, missing = sorted(listed - ids), sorted(ids - listed)
    if unknown:
        raise SplitError(
            f"{where}: {len(unknown)} unknown network id(s), not in {zoo.root} (e.g. {unknown[0]})")
    if missing:
        raise SplitError(f"{where}: {len(missing)} of the zoo's networks are in no part (e.g. {missing[0]})")
    clash = sorted({t.id for t in split.twins} & ids)
    if clash:
        raise SplitError(f"{where}: twin id {clash[0]} is also a network id of the zoo")
    for t in split.twins:
        arch = zoo.arch(t.of)
        admits = symmetry_kinds(arch)
        if t.kind not in admits:
            raise SplitError(f"{where}: twin {t.id} is a {t.kind} twin of {t.of}, whose architecture "
                             f"({arch.family}, activation {arch.activation!r}) admits only {list(admits)}")


def load_split(path: str | Path, zoo: Zoo | str | Path) -> Split:
    """Read the split file at `path` and check that it belongs to `zoo`."""
    zoo = as_zoo(zoo)
    split = read_split(path, weights_fingerprint=zoo.weights_fingerprint)
    check_against_zoo(split, zoo)
    return split


def _holding(found: Split, split: str) -> Split:
    """`found`, if it is the split `split`: files are found by name, so a misnamed copy is refused."""
    if found.name != split:
        raise SplitError(f"{found.path}: holds the {found.name!r} split, not {split!r} (a file saved under "
                         f"the wrong name): delete it to make the {split!r} split")
    return found


def get_split(zoo: Zoo | str | Path, split: str) -> Split:
    """The zoo's `split`: its own file, else the checked-in one for this exact zoo, else a new one.

    A file next to the zoo that does not match it, or that holds another split
    than its name says, is an error. A checked-in file
    whose weights fingerprint differs (a preset built on another machine) is
    ignored: the split is recomputed, which gives the same parts and twins since
    they depend only on ids and config metadata, and written next to the zoo.
    """
    check_split_name(split)
    zoo = as_zoo(zoo)
    local = split_path(zoo.root, split)
    if local.exists():
        found = _holding(load_split(local, zoo), split)
        if found.format_version == FORMAT_VERSION:
            return found
        # The parts are kept (a published split cannot be remade); the twins follow the new rules.
        return _written(split_of_parts(zoo, split, found.parts, found.details), local,
                        f"upgraded from format version {found.format_version}")
    if split in FILE_SPLITS:
        raise SplitUnavailable(
            f"{zoo.root}: has no {split!r} split ({local}); it is written when the zoo is imported with "
            "its source's split file (zoobench zoo import-smallcnnzoo SRC --out ZOO --split-file FILE)")
    shipped = checked_in_path(zoo.name, split)
    if shipped.is_file():
        candidate = _holding(read_split(shipped), split)
        if candidate.weights_fingerprint == zoo.weights_fingerprint and candidate.zoo_name == zoo.name:
            check_against_zoo(candidate, zoo)
            return candidate
    return _written(make_split(zoo, split), local, "made")


def _written(split: Split, path: Path, what: str) -> Split:
    """`split` written to `path`, or (with a warning naming both) kept in memory where it cannot be."""
    try:
        return write_split(split, path)
    except OSError as e:
        warnings.warn(f"could not write split {split.name!r} ({what}) to {path} ({e}); using it from memory",
                      stacklevel=3)
        return split
