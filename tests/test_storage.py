"""The zoo on disk: table, weights, manifest, integrity checks and the Zoo API."""

from __future__ import annotations

import hashlib
import json
import os
import stat
import struct
from pathlib import Path

import jax
import numpy as np
import optax
import pytest
from conftest import copy_zoo, flip_byte
from safetensors.numpy import load_file

from zoo_builder.architecture import ArchSpec, apply, check_params
from zoo_builder.config import sample_networks
from zoo_builder.datasets import load_dataset
from zoo_builder.files import write_json
from zoo_builder.storage import (
    FORMAT,
    FORMAT_VERSION,
    MANIFEST,
    MANIFEST_CHECKSUM,
    TABLE,
    WEIGHTS_DIR,
    ZooError,
    json_sha256,
    load_zoo,
    manifest_sha256,
    tensor_name,
    verify_zoo,
    weights_fingerprint,
    write_manifest,
)

_apply = jax.jit(apply, static_argnums=0)


def _files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def _weights_of(zoo, network_id: str) -> str:
    return str(zoo.row(network_id)["weights_file"])


# --------------------------------------------------------------------------- table


def test_table_has_one_row_per_network_checkpoint(tiny_zoo, tiny_config):
    zoo = load_zoo(tiny_zoo)
    table = zoo.table
    assert len(table) == 12 * len(tiny_config.checkpoint_epochs) == 24
    assert not table.duplicated(["network_id", "epoch"]).any()
    assert sorted(table["epoch"].unique()) == [1, 2]
    assert (table["final"] == (table["epoch"] == 2)).all()
    assert sorted(table["index"].unique()) == list(range(12))
    assert table.groupby("network_id")["index"].nunique().eq(1).all()
    assert list(table[["index", "epoch"]].itertuples(index=False)) == sorted(
        table[["index", "epoch"]].itertuples(index=False))  # sorted by network, then epoch
    assert len(zoo.final) == zoo.num_networks == 12
    assert set(table["status"]) <= {"ok", "diverged"}
    for col in ("train_acc", "test_acc"):
        assert table[col].between(0, 1).all()
    np.testing.assert_allclose(table["gen_gap"], table["train_acc"] - table["test_acc"])
    nets = {n.network_id: n for n in sample_networks(tiny_config)}
    for _, row in table.iterrows():
        net = nets[row["network_id"]]
        assert row["n_params"] == net.arch.num_params()
        assert row["max_width"] == max(net.arch.hidden) and row["depth"] == net.arch.depth
        assert row["dataset_base"] == "digits"
        assert 1 <= row["n_train"] <= 128
        assert row["n_train"] == max(1, round(net.train_fraction * 128))


def test_stored_metrics_match_the_stored_weights(tiny_zoo, tiny_config):
    """Recompute each checkpoint's test accuracy and loss from its weights with `apply`."""
    zoo = load_zoo(tiny_zoo)
    for _, row in zoo.table.iterrows():
        ds = load_dataset(row["dataset"], tiny_config.input_shape, max_train=128, max_test=64)
        logits = np.asarray(_apply(zoo.arch(row["network_id"]), zoo.params(row["network_id"], row["epoch"]),
                                   ds.x_test))
        acc = float(np.mean(logits.argmax(-1) == ds.y_test))
        loss = float(np.mean(optax.softmax_cross_entropy_with_integer_labels(logits, ds.y_test)))
        assert row["test_acc"] == pytest.approx(acc, abs=1e-6)
        assert row["test_loss"] == pytest.approx(loss, rel=1e-4)


# --------------------------------------------------------------------------- weights


def test_params_have_the_architecture_shapes(tiny_zoo):
    zoo = load_zoo(tiny_zoo)
    for _, row in zoo.table.iterrows():
        arch = zoo.arch(row["network_id"])
        params = zoo.params(row["network_id"], row["epoch"])
        check_params(arch, params)
        assert [(p["kernel"].shape, p["bias"].shape) for p in params] == arch.layer_shapes()
        assert all(p["kernel"].dtype == np.float32 for p in params)
        assert all(np.isfinite(p["kernel"]).all() for p in params)


def test_params_default_to_the_final_checkpoint_and_checkpoints_differ(tiny_zoo):
    zoo = load_zoo(tiny_zoo)
    nid = zoo.final["network_id"][0]
    final, default, first = zoo.params(nid, 2), zoo.params(nid), zoo.params(nid, 1)
    for a, b in zip(final, default, strict=True):
        np.testing.assert_array_equal(a["kernel"], b["kernel"])
    assert any(not np.array_equal(a["kernel"], c["kernel"]) for a, c in zip(final, first, strict=True))


def test_padded_units_are_exactly_zero(tiny_zoo):
    zoo = load_zoo(tiny_zoo)
    padded_seen = 0
    for rel in sorted(set(zoo.table["weights_file"])):
        tensors = load_file(tiny_zoo / rel)
        for _, row in zoo.table[zoo.table["weights_file"] == rel].iterrows():
            hidden = [int(w) for w in row["hidden"].split("-")]
            r, e = int(row["weights_row"]), int(row["epoch"])
            for i in range(len(hidden) + 1):
                kernel = tensors[tensor_name(e, i, "kernel")][r]
                bias = tensors[tensor_name(e, i, "bias")][r]
                out = hidden[i] if i < len(hidden) else kernel.shape[-1]
                inp = hidden[i - 1] if i > 0 else kernel.shape[-2]
                assert not kernel[..., out:].any() and not bias[out:].any()
                assert not kernel[..., inp:, :].any()
                assert kernel[..., :inp, :out].any()  # the real block is there
                padded_seen += (out < kernel.shape[-1]) + (inp < kernel.shape[-2])
    assert padded_seen > 0  # some networks are narrower than the bucket: the test checked something


def test_weights_metadata_lists_the_networks_in_row_order(tiny_zoo):
    from safetensors import safe_open

    zoo = load_zoo(tiny_zoo)
    for rel, rows in zoo.table.groupby("weights_file"):
        with safe_open(str(tiny_zoo / rel), framework="numpy") as f:
            meta = json.loads(f.metadata()["zoobench"])
            keys = set(f.keys())
        assert meta["group"] == rows["group"].iloc[0] == Path(rel).stem[: -len("-000")]
        ids = meta["network_ids"]
        for _, row in rows.iterrows():
            assert ids[int(row["weights_row"])] == row["network_id"]
        assert len(ids) == rows["network_id"].nunique()
        assert keys == {tensor_name(e, i, p) for e in (1, 2) for i in range(3) for p in ("kernel", "bias")}


# --------------------------------------------------------------------------- manifest and formats


def test_manifest_lists_the_sha256_of_every_file(tiny_zoo):
    manifest = json.loads((tiny_zoo / MANIFEST).read_text())
    assert (manifest["format"], manifest["format_version"]) == (FORMAT, FORMAT_VERSION)
    # Split files are written next to the zoo when a task is first loaded (by whichever test did):
    # they carry their own fingerprint and are not the manifest's.
    files = [f for f in _files(tiny_zoo) if not f.startswith("splits/")]
    assert set(manifest["files"]) == set(files) - {MANIFEST}
    assert TABLE in manifest["files"] and len(manifest["files"]) == 3
    for rel, digest in manifest["files"].items():
        assert digest == hashlib.sha256((tiny_zoo / rel).read_bytes()).hexdigest()
    assert set(manifest["datasets"]) == {"digits", "digits@perm1"}
    assert manifest["datasets"]["digits"]["n_train"] == 128 and manifest["datasets"]["digits"]["n_test"] == 64
    expected = load_dataset("digits@perm1", (8, 8, 1), max_train=128, max_test=64).fingerprint
    assert manifest["datasets"]["digits@perm1"]["fingerprint"] == expected


def test_nothing_is_pickled(tiny_zoo, tiny_preset_zoo):
    for root in (tiny_zoo, tiny_preset_zoo):
        for rel in _files(root):
            data = (root / rel).read_bytes()
            assert not data.startswith(b"\x80"), rel  # pickle protocol 2+
            assert Path(rel).suffix in {".json", ".parquet", ".safetensors"}, rel
            if rel.endswith(".parquet"):
                assert data[:4] == data[-4:] == b"PAR1"
            elif rel.endswith(".safetensors"):
                (header_len,) = struct.unpack("<Q", data[:8])
                header = json.loads(data[8 : 8 + header_len])
                assert all(v["dtype"] == "F32" for k, v in header.items() if k != "__metadata__")
            else:
                json.loads(data)


def test_files_get_ordinary_permissions(tiny_zoo):
    """Atomic writes go through mkstemp (mode 0600); the final files get 0666 & ~umask."""
    umask = os.umask(0)
    os.umask(umask)
    for rel in _files(tiny_zoo):
        assert stat.S_IMODE((tiny_zoo / rel).stat().st_mode) == 0o666 & ~umask, rel


# --------------------------------------------------------------------------- Zoo API


def test_zoo_api(tiny_zoo, tiny_config):
    zoo = load_zoo(tiny_zoo)
    assert zoo.name == "mini" and zoo.num_networks == 12
    assert repr(zoo) == f"Zoo({str(tiny_zoo)!r}, networks=12)"
    net = sample_networks(tiny_config)[5]
    assert zoo.arch(net.network_id) == net.arch
    assert isinstance(zoo.arch(net.network_id), ArchSpec)
    row = zoo.row(net.network_id)
    assert (row["index"], row["epoch"]) == (5, 2)
    assert zoo.row(net.network_id, 1)["epoch"] == 1
    with pytest.raises(KeyError, match="no network 'nope' at its final checkpoint"):
        zoo.row("nope")
    with pytest.raises(KeyError, match="at epoch 3"):
        zoo.params(net.network_id, 3)
    unverified = load_zoo(tiny_zoo, verify=False)
    for a, b in zip(unverified.params(net.network_id), zoo.params(net.network_id), strict=True):
        np.testing.assert_array_equal(a["kernel"], b["kernel"])


# --------------------------------------------------------------------------- corruption


@pytest.fixture
def zoo_copy(tiny_zoo, tmp_path) -> Path:
    return copy_zoo(tiny_zoo, tmp_path / "zoo")


def _damage(path: Path, how: str) -> None:
    if how == "flip a byte":
        flip_byte(path)
    elif how == "truncate":
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    else:
        path.unlink()


@pytest.mark.parametrize("how", ["flip a byte", "truncate", "delete"])
def test_damaged_weights_are_reported_by_name(zoo_copy, how):
    zoo = load_zoo(zoo_copy)
    bad_rel = sorted(set(zoo.table["weights_file"]))[1]
    _damage(zoo_copy / bad_rel, how)
    problems = verify_zoo(zoo_copy)
    assert len(problems) == 1
    expected = "missing" if how == "delete" else "checksum mismatch"
    assert problems[0].startswith(f"{zoo_copy / bad_rel}: {expected}")

    zoo = load_zoo(zoo_copy)  # the table is intact: loading works
    bad = zoo.final[zoo.final["weights_file"] == bad_rel]["network_id"].iloc[0]
    good = zoo.final[zoo.final["weights_file"] != bad_rel]["network_id"].iloc[0]
    with pytest.raises(ZooError, match=Path(bad_rel).name):
        zoo.params(bad)
    zoo.params(good)  # other weight files still load


def test_truncated_weights_are_caught_even_without_verification(zoo_copy):
    zoo = load_zoo(zoo_copy, verify=False)
    nid = zoo.final["network_id"].iloc[0]
    rel = _weights_of(zoo, nid)
    _damage(zoo_copy / rel, "truncate")
    with pytest.raises(ZooError, match=f"{Path(rel).name}: not a readable safetensors file"):
        zoo.params(nid)


@pytest.mark.parametrize("how", ["flip a byte", "truncate", "delete"])
def test_damaged_table_is_reported_by_name(zoo_copy, how):
    _damage(zoo_copy / TABLE, how)
    problems = verify_zoo(zoo_copy)
    assert len(problems) == 1 and f"{TABLE}: " in problems[0]
    with pytest.raises(ZooError, match=TABLE):
        load_zoo(zoo_copy)


def test_unreadable_table_without_verification_names_the_file(zoo_copy):
    (zoo_copy / TABLE).write_bytes(b"not parquet at all")
    with pytest.raises(ZooError, match=f"{TABLE}: not a readable Parquet table"):
        load_zoo(zoo_copy, verify=False)


MANIFEST_DAMAGE = {
    "truncated": (lambda text: text[: len(text) // 2], "not valid JSON"),
    "not UTF-8": (lambda text: "\udcff" + text, "not valid JSON"),
    "not an object": (lambda text: "[1, 2]", "not a zoobench zoo manifest"),
    "other format": (lambda text: text.replace(f'"{FORMAT}"', '"something-else"'),
                     "not a zoobench zoo manifest"),
    "newer version": (lambda text: text.replace(f'"format_version": {FORMAT_VERSION}',
                                                f'"format_version": {FORMAT_VERSION + 1}'), "format version"),
    "no checksums": (lambda text: json.dumps({**json.loads(text), "files": {}}), "has no file checksums"),
    "escaping path": (lambda text: json.dumps({**json.loads(text), "files": {
        **json.loads(text)["files"], "../outside.txt": "0" * 64}}), "points outside the zoo"),
}


@pytest.mark.parametrize("case", list(MANIFEST_DAMAGE))
def test_damaged_manifest_is_reported_by_name(zoo_copy, case):
    mutate, problem = MANIFEST_DAMAGE[case]
    path = zoo_copy / MANIFEST
    text = path.read_text()
    new = mutate(text)
    assert new != text
    path.write_bytes(new.encode("utf-8", errors="surrogateescape"))  # \udcff -> byte 0xff
    problems = verify_zoo(zoo_copy)
    assert len(problems) == 1 and f"{MANIFEST}: " in problems[0] and problem in problems[0]
    with pytest.raises(ZooError, match=f"{MANIFEST}: .*{problem}"):
        load_zoo(zoo_copy)


def test_a_version_1_zoo_is_read_as_before(zoo_copy, tiny_zoo):
    """Version 2 added `padding` and `input_scaling`; a version-1 zoo has neither: SAME, standardised."""
    path = zoo_copy / MANIFEST
    manifest = json.loads(path.read_text())
    assert manifest["format_version"] == FORMAT_VERSION == 3
    write_manifest(zoo_copy, {**manifest, "format_version": 1})
    old, new = load_zoo(zoo_copy), load_zoo(tiny_zoo)
    assert "padding" not in old.table.columns and "input_scaling" not in old.manifest["config"]["zoo"]
    for nid in old.final["network_id"]:
        assert old.arch(nid) == new.arch(nid) and old.arch(nid).padding == "SAME"


def test_a_tampered_checksum_is_reported(zoo_copy):
    manifest = json.loads((zoo_copy / MANIFEST).read_text())
    rel = sorted(k for k in manifest["files"] if k.startswith(WEIGHTS_DIR))[0]
    manifest["files"][rel] = "0" * 64
    (zoo_copy / MANIFEST).write_text(json.dumps(manifest))
    # The weights fingerprint hashes the checksums, so the manifest no longer agrees with itself.
    problem = ("the weight files' checksums do not hash to weights_fingerprint; "
               "the file is corrupted or edited")
    assert verify_zoo(zoo_copy) == [f"{zoo_copy / MANIFEST}: {problem}"]
    with pytest.raises(ZooError, match=problem):
        load_zoo(zoo_copy)
    # With the fingerprint alone rehashed, the manifest's own checksum no longer agrees.
    manifest["weights_fingerprint"] = weights_fingerprint(manifest["files"])
    (zoo_copy / MANIFEST).write_text(json.dumps(manifest))
    assert verify_zoo(zoo_copy)[0].startswith(f"{zoo_copy / MANIFEST}: its content does not hash to")
    # Tampered all together, the manifest is consistent again: the file's own checksum gives it away.
    write_manifest(zoo_copy, manifest)
    assert verify_zoo(zoo_copy) == [f"{zoo_copy / rel}: checksum mismatch (corrupted or modified)"]


def _flip_bit_in(key: str, offset: int):
    """Flip the lowest bit of the character `offset` places into the value of top-level `key`."""
    def mutate(text: str) -> str:
        i = text.index(f'\n  "{key}": ') + len(f'\n  "{key}": ') + offset
        return text[:i] + chr(ord(text[i]) ^ 1) + text[i + 1:]
    return mutate


@pytest.mark.parametrize(("mutate", "problem"), [
    (_flip_bit_in("weights_fingerprint", 5), "do not hash to weights_fingerprint"),
    (_flip_bit_in("config_fingerprint", 5), "config does not hash to config_fingerprint"),
    (lambda text: text.replace('"num_classes": 10', '"num_classes": 11'), "config does not hash"),
    (lambda text: text.replace('"epochs": 2', '"epochs": 3'), "config does not hash"),
])
def test_a_flipped_identity_in_the_manifest_is_reported(zoo_copy, mutate, problem):
    """The config and weights fingerprint are what splits, submissions and loaders trust."""
    path = zoo_copy / MANIFEST
    text = path.read_text()
    assert mutate(text) != text
    path.write_text(mutate(text))
    problems = verify_zoo(zoo_copy)
    assert len(problems) == 1 and problems[0].startswith(f"{path}: ") and problem in problems[0]
    with pytest.raises(ZooError, match=problem):
        load_zoo(zoo_copy)


# Fields no fingerprint covers, and an offset into each value whose low bit flips into valid JSON.
UNCOVERED_FIELDS = {"datasets": 34, "library_versions": 16, "build": 16, "name": 1, "num_networks": 1}


@pytest.mark.parametrize(("key", "offset"), list(UNCOVERED_FIELDS.items()))
def test_a_flipped_field_of_the_manifest_is_caught_by_its_own_checksum(zoo_copy, key, offset):
    """Only `manifest_sha256` covers these: a bit flipped in one must not go unnoticed."""
    path = zoo_copy / MANIFEST
    text = path.read_text()
    new = _flip_bit_in(key, offset)(text)
    before, after = json.loads(text), json.loads(new)
    assert {k for k in before if before[k] != after[k]} == {key}
    path.write_text(new)
    problem = "its content does not hash to manifest_sha256"
    problems = verify_zoo(zoo_copy)
    assert len(problems) == 1 and problems[0].startswith(f"{path}: {problem}"), problems
    with pytest.raises(ZooError, match=f"{MANIFEST}: {problem}"):
        load_zoo(zoo_copy)


def test_a_flipped_manifest_checksum_is_reported(zoo_copy):
    path = zoo_copy / MANIFEST
    path.write_text(_flip_bit_in("manifest_sha256", 5)(path.read_text()))
    with pytest.raises(ZooError, match=f"{MANIFEST}: its content does not hash to manifest_sha256"):
        load_zoo(zoo_copy)


def test_the_manifest_checksum_covers_every_other_field(tiny_zoo):
    manifest = json.loads((tiny_zoo / MANIFEST).read_text())
    rest = {k: v for k, v in manifest.items() if k != MANIFEST_CHECKSUM}
    assert manifest[MANIFEST_CHECKSUM] == manifest_sha256(manifest) == json_sha256(rest)
    assert set(rest) >= {"name", "datasets", "num_networks", "shard", "library_versions", "build"}


def test_a_manifest_written_before_its_checksum_is_read_as_before(zoo_copy, tiny_zoo):
    """Zoos written before `manifest_sha256` existed have none: they load and verify unchanged."""
    manifest = json.loads((zoo_copy / MANIFEST).read_text())
    del manifest[MANIFEST_CHECKSUM]
    write_json(zoo_copy / MANIFEST, manifest)
    assert verify_zoo(zoo_copy) == []
    old, new = load_zoo(zoo_copy), load_zoo(tiny_zoo)
    assert MANIFEST_CHECKSUM not in old.manifest and old.weights_fingerprint == new.weights_fingerprint
    nid = old.final["network_id"].iloc[0]
    for a, b in zip(old.params(nid), new.params(nid), strict=True):
        np.testing.assert_array_equal(a["kernel"], b["kernel"])


def test_an_oversized_manifest_is_refused_before_it_is_read(zoo_copy):
    from zoo_builder.storage import MAX_MANIFEST_BYTES

    path = zoo_copy / MANIFEST
    with open(path, "r+b") as f:
        f.truncate(MAX_MANIFEST_BYTES + 10)  # sparse
    assert verify_zoo(zoo_copy) == [
        f"{path}: zoo manifest is {MAX_MANIFEST_BYTES + 10} bytes, over the {MAX_MANIFEST_BYTES}-byte limit"]


def test_missing_zoo_is_reported(tmp_path):
    problems = verify_zoo(tmp_path / "nothing")
    assert len(problems) == 1 and f"{MANIFEST}: missing" in problems[0]
    with pytest.raises(ZooError, match=f"{MANIFEST}: missing"):
        load_zoo(tmp_path / "nothing")


def test_merge_refuses_a_shard_whose_dataset_records_differ(tiny_config, tiny_zoo, tmp_path):
    """The merged manifest takes the first shard's dataset records: the others must agree."""
    from zoo_builder.build import build_zoo, merge_zoos

    shards = [build_zoo(tiny_config, tmp_path / f"shard{i}", shard=(i, 2), progress=False).path
              for i in range(2)]
    path = shards[1] / MANIFEST
    text = path.read_text()
    path.write_text(_flip_bit_in("datasets", 34)(text))
    with pytest.raises(ZooError, match=f"{path}: its content does not hash to manifest_sha256"):
        merge_zoos(shards, tmp_path / "merged")
    # A shard whose manifest is intact but records other data (say, another dataset version).
    manifest = json.loads(text)
    manifest["datasets"]["digits"]["n_test"] += 1
    write_manifest(shards[1], manifest)
    assert verify_zoo(shards[1]) == []
    with pytest.raises(ZooError, match=f"{path}: its dataset records differ from those of {shards[0]}"):
        merge_zoos(shards, tmp_path / "merged")
    assert not (tmp_path / "merged" / MANIFEST).exists()
