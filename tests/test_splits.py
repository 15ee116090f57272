"""Splits: the rules (pure functions of a metadata table), the files, their checks and the twins."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import copy_zoo

from benchmark import splits
from benchmark.splits import (
    PARTS,
    SPLITS,
    SplitError,
    SplitUnavailable,
    assign_parts,
    checked_in_path,
    get_split,
    held_out_dataset,
    load_split,
    make_split,
    network_metadata,
    read_split,
    split_fingerprint,
    split_path,
    test_kinds,
    width_threshold,
    write_split,
)
from benchmark.twins import pick_twins, twin_id
from zoo_builder.config import load_preset, sample_networks
from zoo_builder.datasets import parse_dataset_name
from zoo_builder.storage import MANIFEST, WEIGHTS_DIR, load_zoo, weights_fingerprint, write_manifest
from zoo_builder.symmetry import KINDS, symmetry_kinds

DATASETS = {"digits": "digits", "digits@perm1": "digits", "mnist5k": "mnist5k", "mnist1d": "mnist1d"}


def synthetic_meta(num_configs: int = 300, replicates: int = 2, seed: int = 0) -> pd.DataFrame:
    """A network metadata table as `network_metadata` returns it, for a made-up zoo."""
    rng = np.random.default_rng(seed)
    rows = []
    for c in range(num_configs):
        dataset = list(DATASETS)[rng.integers(len(DATASETS))]
        family = ["mlp", "mlp", "cnn"][rng.integers(3)]
        width = int(rng.integers(4, 33))
        for r in range(replicates):
            index = c * replicates + r
            rows.append({"network_id": f"{index:016x}", "index": index, "config_id": f"c{c:015d}",
                         "dataset": dataset, "dataset_base": DATASETS[dataset], "family": family,
                         "max_width": width})
    return pd.DataFrame(rows)


def part_of(parts) -> dict[str, str]:
    return {nid: p for p in PARTS for nid in parts[p]}


def check_partition(meta: pd.DataFrame, parts) -> dict[str, str]:
    """Parts are disjoint, cover every network, and replicates share their part."""
    listed = [nid for p in PARTS for nid in parts[p]]
    assert len(listed) == len(set(listed)) == len(meta)
    assert set(listed) == set(meta["network_id"])
    where = part_of(parts)
    per_config = meta.assign(part=meta["network_id"].map(where)).groupby("config_id")["part"].nunique()
    assert (per_config == 1).all()
    return where


# --------------------------------------------------------------------------- rules (pure)


def test_id_split_is_a_stratified_70_10_20_partition_by_config():
    meta = synthetic_meta()
    parts, details = assign_parts(meta, "id")
    where = check_partition(meta, parts)
    share = {p: len(parts[p]) / len(meta) for p in PARTS}
    assert share == pytest.approx({"train": 0.7, "val": 0.1, "test": 0.2}, abs=0.01)
    # Every (dataset, family) stratum gets close to its share of every part.
    meta = meta.assign(part=meta["network_id"].map(where))
    for (_, _), group in meta.groupby(["dataset", "family"]):
        frac = group["part"].value_counts(normalize=True)
        assert abs(frac.get("test", 0) - 0.2) <= 0.06 and abs(frac.get("val", 0) - 0.1) <= 0.06
    assert details["group_by"] == "config_id" and details["stratify"] == ["dataset", "family"]


@pytest.mark.parametrize("split", SPLITS)
def test_parts_depend_on_ids_and_metadata_not_on_row_order(split):
    meta = synthetic_meta(seed=1)
    shuffled = meta.sample(frac=1.0, random_state=3)
    assert assign_parts(meta, split) == assign_parts(shuffled, split)
    assert assign_parts(meta, split) != assign_parts(synthetic_meta(seed=2), split)


def test_ood_width_tests_the_widest_networks():
    meta = synthetic_meta()
    parts, details = assign_parts(meta, "ood-width")
    where = check_partition(meta, parts)
    width = meta.set_index("network_id")["max_width"]
    test_widths = width[[i for i in width.index if where[i] == "test"]]
    rest_widths = width[[i for i in width.index if where[i] != "test"]]
    assert test_widths.min() > rest_widths.max()
    assert details["min_test_width"] == test_widths.min()
    assert details["max_trainval_width"] == rest_widths.max()
    assert len(parts["test"]) / len(meta) == pytest.approx(0.2, abs=0.05)
    assert len(parts["val"]) / len(rest_widths) == pytest.approx(1 / 8, abs=0.02)


def test_width_threshold_picks_the_test_share_closest_to_a_fifth():
    widths = pd.Series([4] * 50 + [8] * 30 + [16] * 15 + [32] * 5)
    assert width_threshold(widths) == 16  # 20% from 16 up; 32 gives 5%, 8 gives 50%
    with pytest.raises(SplitUnavailable, match="at least two max widths"):
        width_threshold(pd.Series([8, 8, 8]))


def test_ood_task_holds_out_one_dataset_unseen_in_train_and_val():
    meta = synthetic_meta()
    parts, details = assign_parts(meta, "ood-task")
    where = check_partition(meta, parts)
    held = details["held_out_dataset"]
    assert held == "mnist5k"  # the last in sorted order among datasets whose base is not shared
    ds = meta.set_index("network_id")["dataset"]
    assert {ds[i] for i in parts["test"]} == {held}
    assert held not in {ds[i] for i in ds.index if where[i] != "test"}


@pytest.mark.parametrize(("datasets", "held"), [
    (["digits", "digits@perm1", "mnist1d"], "mnist1d"),
    (["digits", "digits@perm1", "mnist5k", "mnist1d"], "mnist5k"),
    (["mnist1d", "digits", "mnist5k@perm1", "mnist5k", "mnist5k@perm2"], "mnist1d"),
    (["digits", "digits@perm1"], "digits@perm1"),  # every base shared: the last name
])
def test_held_out_dataset(datasets, held):
    meta = pd.DataFrame({"dataset": datasets, "dataset_base": [d.split("@")[0] for d in datasets]})
    assert held_out_dataset(meta) == held


def test_ood_task_needs_two_datasets():
    meta = synthetic_meta().assign(dataset="digits", dataset_base="digits")
    with pytest.raises(SplitUnavailable, match="at least two datasets"):
        assign_parts(meta, "ood-task")


def test_unknown_split_name_is_refused():
    with pytest.raises(ValueError) as e:
        assign_parts(synthetic_meta(10), "ood")
    assert str(e.value) == "split must be one of ['id', 'ood-width', 'ood-task', 'published'], got 'ood'"
    with pytest.raises(SplitUnavailable, match="'published' split is not made by a rule"):
        assign_parts(synthetic_meta(10), "published")


def test_pick_twins_takes_a_tenth_at_least_one_deterministically():
    ids = [f"{i:016x}" for i in range(45)]
    perm_only = dict.fromkeys(ids, ("permutation",))
    twins = pick_twins(ids, "material", perm_only)
    assert len(twins) == 5 and len(pick_twins(ids[:3], "material", perm_only)) == 1
    assert pick_twins([], "m", {}) == ()
    assert twins == pick_twins(list(reversed(ids)), "material", perm_only)
    assert {t.of for t in twins} <= set(ids) and not {t.id for t in twins} & set(ids)
    assert len({t.seed for t in twins}) == 5 and {t.kind for t in twins} == {"permutation"}
    assert pick_twins(ids, "other material", perm_only) != twins


def test_pick_twins_of_each_kind_among_the_networks_that_admit_it():
    ids = [f"{i:016x}" for i in range(60)]
    # 30 relu (scale), 20 tanh (sign), 10 gelu (permutation only)
    kinds_of = {i: ("permutation", "scale") if k < 30 else ("permutation", "sign") if k < 50
                else ("permutation",) for k, i in enumerate(ids)}
    twins = pick_twins(ids, "material", kinds_of)
    by_kind = {kind: [t for t in twins if t.kind == kind] for kind in KINDS}
    assert {k: len(v) for k, v in by_kind.items()} == {"permutation": 6, "scale": 3, "sign": 2}
    assert all(t.kind in kinds_of[t.of] for t in twins)
    assert len({t.id for t in twins}) == len(twins) == len({t.seed for t in twins})
    # Adding kinds leaves the permutation twins (ids, seeds) as they were.
    assert tuple(by_kind["permutation"]) == pick_twins(ids, "material", dict.fromkeys(ids, ("permutation",)))
    # A kind no network admits has no twins, not one of a network that lacks it.
    assert not [t for t in pick_twins(ids[50:], "material", kinds_of) if t.kind != "permutation"]


# --------------------------------------------------------------------------- files on a real zoo


@pytest.fixture
def zoo_dir(tmp_path, tiny_preset_zoo) -> Path:
    """A private copy of the tiny preset zoo, without split files (other tests' load_task calls
    may have written some next to the session zoo)."""
    zoo = copy_zoo(tiny_preset_zoo, tmp_path / "tiny")
    shutil.rmtree(zoo / "splits", ignore_errors=True)
    return zoo


def test_get_split_writes_a_deterministic_file_next_to_the_zoo(zoo_dir):
    zoo = load_zoo(zoo_dir)
    meta = network_metadata(zoo.table)
    for split in SPLITS:
        s = get_split(zoo, split)
        path = split_path(zoo_dir, split)
        assert s.path == path and path.is_file()
        check_partition(meta, s.parts)
        first = path.read_bytes()
        path.unlink()
        assert get_split(zoo_dir, split) == s and path.read_bytes() == first
        doc = json.loads(first)
        assert doc["format"] == "zoobench-split" and doc["format_version"] == 2 and doc["split"] == split
        assert doc["zoo"] == {"name": "tiny", "weights_fingerprint": zoo.weights_fingerprint}
        assert doc["fingerprint"] == split_fingerprint(doc) == s.fingerprint
        assert get_split(zoo, split).path == path  # read back, not recomputed


def test_id_split_of_the_tiny_preset_has_every_dataset_in_every_big_part(zoo_dir):
    zoo = load_zoo(zoo_dir)
    s = get_split(zoo, "id")
    dataset = zoo.final.set_index("network_id")["dataset"]
    for part in ("train", "test"):
        assert {dataset[i] for i in s.parts[part]} == set(dataset)
    assert len(s.parts["test"]) == pytest.approx(0.2 * 48, abs=2)
    assert len(s.parts["val"]) >= 2


def test_twins_of_a_split(zoo_dir):
    zoo = load_zoo(zoo_dir)
    for split in SPLITS:
        s = get_split(zoo, split)
        for kind in KINDS:
            eligible = [i for i in s.parts["test"] if kind in symmetry_kinds(zoo.arch(i))]
            mine = [t for t in s.twins if t.kind == kind]
            assert len(mine) == (max(1, int(np.floor(0.1 * len(eligible) + 0.5))) if eligible else 0)
            assert {t.of for t in mine} <= set(eligible)
        assert not {t.id for t in s.twins} & set(zoo.table["network_id"])
    # The tiny preset's id split has twins of every kind.
    assert {t.kind for t in get_split(zoo, "id").twins} == set(KINDS)


@pytest.mark.parametrize("split", SPLITS)
def test_checked_in_tiny_splits_match_what_get_split_computes(zoo_dir, split):
    """The shipped files cannot drift from the rules (weights fingerprints may differ by machine)."""
    shipped = read_split(checked_in_path("tiny", split))
    made = make_split(load_zoo(zoo_dir), split)
    for field in ("name", "zoo_name", "parts", "twins", "details"):
        assert getattr(shipped, field) == getattr(made, field), field


def preset_metadata(preset: str) -> pd.DataFrame:
    """What `network_metadata` reads from a preset's zoo, drawn from its config without training."""
    nets = sample_networks(load_preset(preset))
    return pd.DataFrame({
        "network_id": [n.network_id for n in nets], "index": [n.index for n in nets],
        "config_id": [n.config_id for n in nets], "dataset": [n.dataset for n in nets],
        "dataset_base": [parse_dataset_name(n.dataset)[0] for n in nets],
        "family": [n.arch.family for n in nets], "max_width": [max(n.arch.hidden) for n in nets]})


@pytest.mark.parametrize("preset", ["tiny", "small"])
def test_checked_in_splits_match_the_preset_configs(preset):
    """Split files depend on ids and config metadata only, so the preset configs alone reproduce them."""
    meta = preset_metadata(preset)
    for split in SPLITS:
        shipped = read_split(checked_in_path(preset, split))
        parts, details = assign_parts(meta, split)
        assert shipped.zoo_name == preset and shipped.name == split
        assert shipped.parts == parts and shipped.details == details
        kinds_of = {n.network_id: symmetry_kinds(n.arch) for n in sample_networks(load_preset(preset))}
        material = splits.seed_material(split, preset, parts)
        assert shipped.twins == pick_twins(parts["test"], material, kinds_of)


def test_a_matching_checked_in_file_is_used(zoo_dir, tmp_path, monkeypatch):
    zoo = load_zoo(zoo_dir)
    monkeypatch.setattr(splits, "_CHECKED_IN", tmp_path / "shipped")
    shipped = write_split(make_split(zoo, "id"), checked_in_path("tiny", "id"))
    assert get_split(zoo, "id").path == shipped.path
    assert not split_path(zoo_dir, "id").exists()


def test_a_checked_in_file_of_other_weights_is_ignored(zoo_dir, tmp_path, monkeypatch):
    zoo = load_zoo(zoo_dir)
    monkeypatch.setattr(splits, "_CHECKED_IN", tmp_path / "shipped")
    made = make_split(zoo, "id")
    other = dataclasses.replace(made, weights_fingerprint="0" * 64)
    doc = other.to_doc()
    other = dataclasses.replace(other, fingerprint=split_fingerprint(doc))
    write_split(other, checked_in_path("tiny", "id"))
    got = get_split(zoo, "id")
    assert got.path == split_path(zoo_dir, "id") and got.parts == made.parts and got.twins == made.twins
    assert got.weights_fingerprint == zoo.weights_fingerprint


def test_editing_the_zoo_fingerprint_of_a_split_file_is_caught(zoo_dir):
    zoo = load_zoo(zoo_dir)
    path = get_split(zoo, "id").path
    doc = json.loads(path.read_text())
    doc["zoo"]["weights_fingerprint"] = "f" * 64
    path.write_text(json.dumps(doc))
    with pytest.raises(SplitError) as e:
        get_split(zoo, "id")
    assert str(path) in str(e.value) and "f" * 64 in str(e.value) and zoo.weights_fingerprint in str(e.value)


def test_a_split_of_another_zoo_is_refused(zoo_dir, tmp_path):
    path = get_split(load_zoo(zoo_dir), "ood-task").path
    other_dir = copy_zoo(zoo_dir, tmp_path / "other")
    manifest = json.loads((other_dir / MANIFEST).read_text())
    # A rebuilt zoo: other weights (only their checksums are read here), so another fingerprint.
    manifest["files"][min(k for k in manifest["files"] if k.startswith(WEIGHTS_DIR))] = "a" * 64
    manifest["weights_fingerprint"] = other = weights_fingerprint(manifest["files"])
    write_manifest(other_dir, manifest)
    with pytest.raises(SplitError) as e:
        load_split(path, other_dir)
    assert str(path) in str(e.value) and other in str(e.value)
    assert load_zoo(zoo_dir).weights_fingerprint in str(e.value)
    # The copied zoo came with the first zoo's split file next to it: refused too.
    with pytest.raises(SplitError, match="weights fingerprint"):
        get_split(other_dir, "ood-task")
    split_path(other_dir, "ood-task").unlink()
    assert get_split(other_dir, "ood-task").weights_fingerprint == other


def _rewrite(path: Path, edit, redo: str) -> None:
    """Edit a split file; redo "twins" and/or "fingerprint" so that only the intended check can fail."""
    doc = json.loads(path.read_text())
    edit(doc)
    if "twins" in redo:
        material = splits.seed_material(doc["split"], doc["zoo"]["name"], doc["parts"])
        kinds_of = test_kinds(load_zoo(path.parents[1]), doc["parts"])
        doc["twins"] = [{"id": t.id, "of": t.of, "seed": t.seed, "kind": t.kind}
                        for t in pick_twins(doc["parts"]["test"], material, kinds_of)]
    if "fingerprint" in redo:
        doc["fingerprint"] = split_fingerprint(doc)
    path.write_text(json.dumps(doc))


def _move_first_train_id_to_test(doc):
    doc["parts"]["test"].append(doc["parts"]["train"].pop(0))


def _add_unknown_id(doc):
    doc["parts"]["val"].append("0123456789abcdef")


def _drop_a_network(doc):
    doc["parts"]["train"].pop()


def _twin_of_a_train_network(doc):
    doc["twins"][0]["of"] = doc["parts"]["train"][0]


def _change_a_twin_seed(doc):
    doc["twins"][0]["seed"] += 1


def _change_a_twin_kind(doc):
    doc["twins"][0]["kind"] = "sign" if doc["twins"][0]["kind"] != "sign" else "scale"


def _unknown_twin_kind(doc):
    doc["twins"][0]["kind"] = "rotation"


@pytest.mark.parametrize(("edit", "redo", "message"), [
    (_move_first_train_id_to_test, "", "fingerprint mismatch"),
    (_move_first_train_id_to_test, "fingerprint", "do not derive from the split"),
    (_add_unknown_id, "twins fingerprint", "1 unknown network id"),
    (_drop_a_network, "twins fingerprint", "1 of the zoo's networks are in no part"),
    (_twin_of_a_train_network, "fingerprint", "is not a test network"),
    (_change_a_twin_seed, "fingerprint", "do not derive from the split"),
    (_change_a_twin_kind, "fingerprint", "do not derive from the split"),
    (_unknown_twin_kind, "fingerprint", "kind 'rotation'; expected one of"),
])
def test_an_edited_split_file_is_caught(zoo_dir, edit, redo, message):
    zoo = load_zoo(zoo_dir)
    path = get_split(zoo, "id").path
    _rewrite(path, edit, redo)
    with pytest.raises(SplitError, match=message) as e:
        get_split(zoo, "id")
    assert str(e.value).startswith(f"{path}: ")


def test_a_twin_of_a_kind_its_architecture_lacks_is_refused(zoo_dir):
    zoo = load_zoo(zoo_dir)
    path = get_split(zoo, "id").path
    doc = json.loads(path.read_text())
    material = splits.seed_material("id", "tiny", doc["parts"])
    gelu = next(i for i in doc["parts"]["test"] if zoo.arch(i).activation in ("gelu", "sigmoid"))
    doc["twins"].append({"id": twin_id(material, gelu, "scale"), "of": gelu, "kind": "scale",
                         "seed": splits.twin_seed(material, gelu, "scale")})
    doc["fingerprint"] = split_fingerprint(doc)
    path.write_text(json.dumps(doc))
    with pytest.raises(SplitError, match=f"is a scale twin of {gelu}, whose architecture .* admits only "
                                         r"\['permutation'\]"):
        get_split(zoo, "id")


def test_a_version_1_split_file_is_upgraded_keeping_its_parts(zoo_dir):
    """Version 1 held permutation twins only: its parts stay, its twins are re-derived, the file rewritten."""
    zoo = load_zoo(zoo_dir)
    current = get_split(zoo, "id")
    doc = json.loads(current.path.read_text())
    doc["format_version"] = 1
    doc["parts"]["train"], doc["parts"]["val"] = doc["parts"]["val"], doc["parts"]["train"]  # not the rule's
    material = splits.seed_material("id", "tiny", doc["parts"])
    doc["twins"] = [{"id": t.id, "of": t.of, "seed": t.seed} for t in pick_twins(
        doc["parts"]["test"], material, dict.fromkeys(doc["parts"]["test"], ("permutation",)))]
    doc["fingerprint"] = split_fingerprint(doc)
    current.path.write_text(json.dumps(doc))
    old = read_split(current.path)
    assert old.format_version == 1 and {t.kind for t in old.twins} == {"permutation"}
    with pytest.raises(ValueError, match="upgrade it"):
        write_split(old, zoo_dir / "copy.json")
    upgraded = get_split(zoo, "id")
    assert upgraded.parts == old.parts != current.parts and upgraded.format_version == 2
    assert {t for t in upgraded.twins if t.kind == "permutation"} == set(old.twins)
    assert {t.kind for t in upgraded.twins} == set(KINDS)
    assert json.loads(current.path.read_text())["format_version"] == 2
    assert get_split(zoo, "id") == upgraded


@pytest.mark.parametrize("content", [b"{not json", b"", b"\xff\xfe", b"[]", b'{"format": "zoobench-zoo"}'])
def test_a_corrupted_split_file_is_caught(zoo_dir, content):
    zoo = load_zoo(zoo_dir)
    path = get_split(zoo, "ood-width").path
    path.write_bytes(content)
    with pytest.raises(SplitError) as e:
        get_split(zoo, "ood-width")
    assert str(e.value).startswith(f"{path}: ")


def test_truncated_split_file_is_caught(zoo_dir):
    zoo = load_zoo(zoo_dir)
    path = get_split(zoo, "id").path
    path.write_bytes(path.read_bytes()[:-40])
    with pytest.raises(SplitError, match="not a readable JSON split file"):
        get_split(zoo, "id")


def test_oversized_split_file_is_refused_before_it_is_read(zoo_dir):
    zoo = load_zoo(zoo_dir)
    path = get_split(zoo, "id").path
    with open(path, "r+b") as f:
        f.truncate(splits.MAX_SPLIT_BYTES + 10)  # sparse: no disk, and read whole it would take 64 MiB
    with pytest.raises(SplitError) as e:
        get_split(zoo, "id")
    limit = splits.MAX_SPLIT_BYTES
    assert str(e.value) == f"{path}: split is {limit + 10} bytes, over the {limit}-byte limit"


@pytest.mark.skipif(not Path("/dev/zero").exists(), reason="needs /dev/zero")
def test_a_split_path_that_is_not_a_regular_file_is_refused(zoo_dir):
    with pytest.raises(SplitError, match="^/dev/zero: not a regular file; expected a split file"):
        read_split("/dev/zero")
    split_path(zoo_dir, "id").parent.mkdir(parents=True, exist_ok=True)
    split_path(zoo_dir, "id").symlink_to("/dev/zero")
    with pytest.raises(SplitError, match=r"id\.json: not a regular file"):
        get_split(load_zoo(zoo_dir), "id")


# --------------------------------------------------------------------------- damaged split files
# Issue #7: one flipped byte or a truncation of any split file is reported by `zoobench zoo
# verify` and on load, naming the file; nothing is silently used. (Dropping only the final
# newline leaves the same JSON document, so it is read as the same split.)

SPLIT_DAMAGE = {
    "flip the first byte": lambda data: _flipped(data, 0),
    "flip the middle byte": lambda data: _flipped(data, len(data) // 2),
    "flip the last byte": lambda data: _flipped(data, len(data) - 1),
    "flip one bit of a fingerprint digit":
        lambda data: _flipped(data, data.index(b'"fingerprint": "') + 20, 0x01),
    "truncate to nothing": lambda data: b"",
    "truncate to half": lambda data: data[: len(data) // 2],
    "truncate the closing brace": lambda data: data[:-2],
}


def _flipped(data: bytes, offset: int, mask: int = 0xFF) -> bytes:
    return data[:offset] + bytes([data[offset] ^ mask]) + data[offset + 1:]


def _verify(capsys, zoo_dir: Path) -> tuple[int, list[str]]:
    from zoobench.cli import main

    capsys.readouterr()
    code = main(["zoo", "verify", str(zoo_dir), "--json"])
    return code, json.loads(capsys.readouterr().out)["problems"]


def _task_on(split: str) -> str:
    return "generalization" if split == "ood-task" else "classification"


@pytest.mark.parametrize("how", list(SPLIT_DAMAGE))
@pytest.mark.parametrize("split", SPLITS)
def test_a_damaged_split_file_is_named_on_load_and_by_verify(zoo_dir, capsys, split, how):
    from benchmark.tasks import load_task

    zoo = load_zoo(zoo_dir)
    for s in SPLITS:
        get_split(zoo, s)
    assert _verify(capsys, zoo_dir) == (0, [])
    path = split_path(zoo_dir, split)
    damaged = SPLIT_DAMAGE[how](path.read_bytes())
    assert damaged != path.read_bytes()
    path.write_bytes(damaged)

    with pytest.raises(SplitError) as e:
        load_task(_task_on(split), zoo_dir, split)
    assert str(e.value).startswith(f"{path}: ")
    code, problems = _verify(capsys, zoo_dir)
    assert code == 1 and len(problems) == 1 and problems[0].startswith(f"{path}: ")


@pytest.mark.parametrize("how", ["flip the middle byte", "truncate to half"])
@pytest.mark.parametrize("split", SPLITS)
def test_a_damaged_checked_in_split_file_is_named_on_load(zoo_dir, tmp_path, monkeypatch, split, how):
    """The split files shipped for the presets: damaged, they are refused, not skipped."""
    from benchmark.tasks import load_task

    monkeypatch.setattr(splits, "_CHECKED_IN", tmp_path / "shipped")
    zoo = load_zoo(zoo_dir)
    shipped = write_split(make_split(zoo, split), checked_in_path("tiny", split)).path
    assert load_task(_task_on(split), zoo_dir, split).split_fingerprint == read_split(shipped).fingerprint
    shipped.write_bytes(SPLIT_DAMAGE[how](shipped.read_bytes()))
    with pytest.raises(SplitError) as e:
        load_task(_task_on(split), zoo_dir, split)
    assert str(e.value).startswith(f"{shipped}: ")
    assert not split_path(zoo_dir, split).exists()


def test_verify_checks_the_splits_against_the_zoo(zoo_dir, capsys):
    zoo = load_zoo(zoo_dir)
    path = get_split(zoo, "id").path
    _rewrite(path, _add_unknown_id, "twins fingerprint")  # a well-formed file of other networks
    code, problems = _verify(capsys, zoo_dir)
    assert code == 1
    assert problems == [f"{path}: 1 unknown network id(s), not in {zoo_dir} (e.g. 0123456789abcdef)"]


def test_verify_reports_a_split_file_under_another_split_name(zoo_dir, capsys):
    zoo = load_zoo(zoo_dir)
    source = get_split(zoo, "id").path
    swapped = split_path(zoo_dir, "ood-width")
    shutil.copyfile(source, swapped)
    code, problems = _verify(capsys, zoo_dir)
    assert code == 1 and problems == [f"{swapped}: holds the 'id' split, not 'ood-width'"]


def test_a_split_file_under_another_split_name_is_refused_on_load(zoo_dir):
    zoo = load_zoo(zoo_dir)
    shutil.copyfile(get_split(zoo, "id").path, split_path(zoo_dir, "ood-width"))
    with pytest.raises(SplitError, match=r"ood-width\.json: holds the 'id' split, not 'ood-width'"):
        get_split(zoo, "ood-width")


def test_verify_still_checks_splits_of_a_damaged_zoo(zoo_dir, capsys):
    zoo = load_zoo(zoo_dir)
    path = get_split(zoo, "id").path
    path.write_bytes(path.read_bytes()[:10])
    (zoo_dir / MANIFEST).write_text("{")
    code, problems = _verify(capsys, zoo_dir)
    assert code == 1 and len(problems) == 2
    assert problems[0].startswith(f"{zoo_dir / MANIFEST}: ") and problems[1].startswith(f"{path}: ")
