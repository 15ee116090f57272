"""No code from data: loading a zoo, a split or a submission never unpickles.

A pickle whose loading would create a marker file is planted in each place a user
can hand in a file; each loader must refuse it (naming the file) and the marker
must never appear. This is the one place that covers every entry point; related
tests elsewhere:

* tests/test_storage.py::test_nothing_is_pickled (what zoobench writes holds no pickle);
* tests/test_leaderboard.py::test_planted_pickles_refused_and_never_loaded (a pickle as
  s.pkl/s.json/s.npz, and an object member of an .npz) and ::test_cli_score_and_show_json;
* tests/test_smallcnnzoo.py::test_pickled_weights_refused (weights.npy as an object .npy array).

Here: the zoo manifest, table and weights (also with the manifest's checksums
rewritten to match the pickle, so the parsers themselves are exercised, and with
verification off), `zoobench zoo info`/`verify`, split files, zoo config TOML,
submissions under any name through `zoobench leaderboard score`, and the Small CNN
Zoo importer's weights.npy (a raw pickle), layout.csv and metrics.csv(.gz).
"""

from __future__ import annotations

import gzip
import json
import pickle
import sqlite3
from pathlib import Path

import pytest
from conftest import copy_zoo

PROTOCOLS = [0, 2, pickle.HIGHEST_PROTOCOL]  # 0 is ASCII: it does not start with the 0x80 magic


class _Trap:
    """Unpickling this creates a file: proof that a loader unpickled."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def plant(path: Path, marker: Path, protocol: int) -> bytes:
    payload = pickle.dumps({"format": "zoobench", "data": _Trap(marker)}, protocol=protocol)
    path.write_bytes(payload)
    return payload


def test_the_trap_works(tmp_path):
    for protocol in PROTOCOLS:
        marker = tmp_path / f"m{protocol}"
        pickle.loads(plant(tmp_path / f"p{protocol}", marker, protocol))["data"].close()
        assert marker.exists()


# --------------------------------------------------------------------------- zoo files


def _weights_file(zoo_dir: Path) -> str:
    manifest = json.loads((zoo_dir / "manifest.json").read_text())
    return sorted(f for f in manifest["files"] if f.endswith(".safetensors"))[0]


def _rehash(zoo_dir: Path, rel: str) -> None:
    """Make the manifest's checksum of `rel`, and so its weights fingerprint, match its (planted) content."""
    from zoo_builder.files import sha256_file
    from zoo_builder.storage import weights_fingerprint, write_manifest

    mpath = zoo_dir / "manifest.json"
    manifest = json.loads(mpath.read_text())
    manifest["files"][rel] = sha256_file(zoo_dir / rel)
    manifest["weights_fingerprint"] = weights_fingerprint(manifest["files"])
    write_manifest(zoo_dir, manifest)


def _zoo_cli_fails(zoo_dir: Path, rel: str, capsys, cmds) -> None:
    from zoobench.cli import main

    for cmd in cmds:
        capsys.readouterr()
        assert main(["zoo", cmd, str(zoo_dir)]) != 0, cmd
        err = capsys.readouterr()
        assert rel in err.out + err.err, (cmd, err)


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize(("target", "rehash"), [
    ("manifest.json", False),  # the manifest holds the checksums: nothing to rehash
    ("networks.parquet", False), ("networks.parquet", True), ("weights", False), ("weights", True),
])
def test_pickled_zoo_files_refused(tiny_zoo, tmp_path, capsys, target, rehash, protocol):
    from zoo_builder.storage import ZooError, load_zoo, verify_zoo

    zoo_dir = copy_zoo(tiny_zoo, tmp_path / "zoo")
    rel = _weights_file(zoo_dir) if target == "weights" else target
    marker = tmp_path / "unpickled"
    plant(zoo_dir / rel, marker, protocol)
    if rehash:
        _rehash(zoo_dir, rel)

    problems = verify_zoo(zoo_dir)
    if rehash:
        assert problems == []  # the checksums match: only the parsers can refuse it now
    else:
        assert problems and all(rel in p for p in problems), problems

    for verify in (True, False):
        if target == "weights":
            zoo = load_zoo(zoo_dir, verify=verify)
            row = zoo.table[zoo.table["weights_file"] == rel].iloc[0]
            with pytest.raises(ZooError, match=rel.replace(".", r"\.")):
                zoo.params(row["network_id"], int(row["epoch"]))
        else:
            with pytest.raises(ZooError, match=rel.replace(".", r"\.")):
                load_zoo(zoo_dir, verify=verify)
    # `zoo verify` checks checksums only: with rehashed checksums it rightly finds nothing.
    # `zoo info` reads the table, not the weights.
    cmds = ("info",) * (target != "weights") + ("verify",) * (not rehash)
    _zoo_cli_fails(zoo_dir, rel, capsys, cmds)
    assert not marker.exists()


# --------------------------------------------------------------------------- split files


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_pickled_split_file_refused(tiny_preset_zoo, tmp_path, protocol):
    from benchmark.splits import SplitError, get_split, load_split, read_split
    from benchmark.tasks import load_task

    zoo_dir = copy_zoo(tiny_preset_zoo, tmp_path / "zoo")
    marker = tmp_path / "unpickled"
    split_file = zoo_dir / "splits" / "id.json"
    split_file.parent.mkdir(exist_ok=True)
    plant(split_file, marker, protocol)
    for load in (lambda: read_split(split_file), lambda: load_split(split_file, zoo_dir),
                 lambda: get_split(zoo_dir, "id"), lambda: load_task("generalization", zoo_dir, "id")):
        with pytest.raises(SplitError, match=r"id\.json"):
            load()
    assert not marker.exists()


# --------------------------------------------------------------------------- zoo config TOML


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_pickled_config_refused(tmp_path, capsys, protocol):
    from zoo_builder.config import ConfigError, load_config
    from zoobench.cli import main

    marker = tmp_path / "unpickled"
    path = tmp_path / "zoo.toml"
    plant(path, marker, protocol)
    with pytest.raises(ConfigError, match=r"zoo\.toml"):
        load_config(path)
    assert main(["zoo", "build", "--config", str(path), "--out", str(tmp_path / "out")]) != 0
    assert "zoo.toml" in capsys.readouterr().err
    assert not (tmp_path / "out" / "manifest.json").exists()
    assert not marker.exists()


# --------------------------------------------------------------------------- submissions


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("name", ["s.json", "s.npz", "submission", "s.pkl"])
def test_pickled_submission_refused_and_not_stored(tiny_preset_zoo, tmp_path, name, protocol):
    from benchmark.submission import SubmissionError, read_submission, validate_submission
    from zoobench.cli import main

    marker = tmp_path / "unpickled"
    path = tmp_path / name
    plant(path, marker, protocol)
    for check in (lambda: read_submission(path), lambda: validate_submission(path, tiny_preset_zoo)):
        with pytest.raises(SubmissionError) as e:
            check()
        assert str(e.value).startswith(str(path)) and e.value.problems
    db = tmp_path / "lb.sqlite"
    assert main(["leaderboard", "score", str(path), "--zoo", str(tiny_preset_zoo), "--db", str(db),
                 "--resamples", "20"]) != 0
    conn = sqlite3.connect(db)
    try:
        assert conn.execute("SELECT COUNT(*) FROM submissions").fetchone()[0] == 0
    finally:
        conn.close()
    assert not marker.exists()


# --------------------------------------------------------------------------- Small CNN Zoo importer


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("target", ["weights.npy", "layout.csv", "metrics.csv.gz", "metrics.csv"])
def test_pickled_smallcnnzoo_sources_refused(tmp_path, target, protocol):
    from test_smallcnnzoo import make_source

    from zoo_builder.smallcnnzoo import SourceError, import_smallcnnzoo

    metrics_name = "metrics.csv" if target == "metrics.csv" else "metrics.csv.gz"
    src = make_source(tmp_path / "src", metrics_name=metrics_name).path
    marker = tmp_path / "unpickled"
    payload = plant(src / target, marker, protocol)
    if target.endswith(".gz"):
        (src / target).write_bytes(gzip.compress(payload))
    out = tmp_path / "zoo"
    with pytest.raises(SourceError, match=target.replace(".", r"\.")):
        import_smallcnnzoo(src, out)
    assert not (out / "manifest.json").exists()
    assert not marker.exists()
