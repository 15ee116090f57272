"""The `zoobench` command line, called in-process through `cli.main` (cheap) where possible."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import tomli_w
from conftest import MINI_DOC, REPO_ROOT, copy_zoo, flip_byte, mini_doc
from conftest import run_cli as run

from zoo_builder.config import load_config, load_preset
from zoo_builder.storage import MANIFEST, TABLE, load_zoo, verify_zoo


def write_config(path: Path, doc: dict) -> Path:
    path.write_text(tomli_w.dumps(doc))
    return path


# --------------------------------------------------------------------------- help and usage


@pytest.mark.parametrize("argv", [[], ["zoo"], ["zoo", "build"], ["zoo", "merge"], ["zoo", "info"],
                                  ["zoo", "verify"], ["zoo", "preset"]])
def test_help(capsys, argv):
    code, out, _ = run(capsys, *argv, "--help")
    assert code == 0
    assert out.startswith(f"usage: zoobench {' '.join(argv)}".rstrip())
    if argv[-1:] == ["build"]:
        assert "--config" in out and "--shard" in out and "--json" in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([], "the following arguments are required"),
        (["zoo", "build", "--shard", "2/2"], "expected 0 <= I < N, got '2/2'"),
        (["zoo", "build", "--shard", "x"], "expected I/N such as 0/4, got 'x'"),
        (["zoo", "build", "--preset", "tiny", "--config", "a.toml"], "not allowed with argument"),
        (["zoo", "preset", "huge"], "invalid choice: 'huge'"),
        (["zoo", "merge", "a", "b"], "--out"),
    ],
)
def test_usage_errors_exit_2(capsys, argv, message):
    code, out, err = run(capsys, *argv)
    assert code == 2 and out == ""
    assert message in err


# --------------------------------------------------------------------------- presets


@pytest.mark.parametrize("name", ["tiny", "small"])
def test_preset_prints_toml_that_load_config_accepts(capsys, tmp_path, name):
    code, out, _ = run(capsys, "zoo", "preset", name)
    assert code == 0
    path = tmp_path / f"{name}.toml"
    path.write_text(out)
    assert load_config(path).fingerprint() == load_preset(name).fingerprint()


# --------------------------------------------------------------------------- info


def test_info_json_is_one_document_with_the_counts(capsys, tiny_zoo):
    code, out, err = run(capsys, "zoo", "info", tiny_zoo, "--json")
    assert code == 0
    doc = json.loads(out)  # the whole of stdout
    zoo = load_zoo(tiny_zoo)
    final = zoo.final
    assert doc["name"] == "mini" and doc["path"] == str(tiny_zoo)
    assert doc["num_networks"] == 12
    assert doc["checkpoint_epochs"] == [1, 2]
    assert doc["weights_fingerprint"] == zoo.weights_fingerprint
    assert doc["datasets"] == final["dataset"].value_counts().to_dict()
    assert doc["optimizers"] == final["optimizer"].value_counts().to_dict()
    assert sum(doc["optimizers"].values()) == 12 and set(doc["optimizers"]) == {"sgd", "adam"}
    assert doc["families"] == {"mlp": 12} and doc["architectures"] == {"mlp-d2": 12}
    assert doc["activations"] == final["activation"].value_counts().to_dict()
    assert doc["diverged"] == 0
    assert doc["test_acc"]["mean"] == pytest.approx(final["test_acc"].mean(), abs=1e-4)
    q = doc["test_acc"]["quantiles"]
    assert q[0] == pytest.approx(final["test_acc"].min(), abs=1e-4) and q == sorted(q) and len(q) == 5
    assert set(doc["test_acc_by_dataset"]) == set(final["dataset"])
    assert doc["build"]["chunks"] == 2


def test_info_text(capsys, tiny_zoo):
    code, out, _ = run(capsys, "zoo", "info", tiny_zoo)
    assert code == 0
    assert out.startswith(f"zoo mini at {tiny_zoo}: 12 networks, checkpoints at epochs [1, 2], 0 diverged")
    assert load_zoo(tiny_zoo).weights_fingerprint in out


def test_info_of_the_tiny_preset(capsys, tiny_preset_zoo):
    code, out, _ = run(capsys, "zoo", "info", tiny_preset_zoo, "--json")
    assert code == 0
    doc = json.loads(out)
    assert doc["num_networks"] == 48 and doc["diverged"] == 0
    assert set(doc["families"]) == {"mlp", "cnn"} and sum(doc["families"].values()) == 48
    assert sum(doc["architectures"].values()) == 48
    assert set(doc["test_acc_by_dataset"]) == {"digits", "digits@perm1", "mnist5k"}
    assert doc["checkpoint_epochs"] == [5, 10]


def test_info_of_a_non_zoo_names_the_manifest(capsys, tmp_path):
    code, out, err = run(capsys, "zoo", "info", tmp_path, "--json")
    assert code == 1
    assert f"{tmp_path / MANIFEST}: missing" in json.loads(out)["error"]
    assert err.startswith("zoobench: error: ") and MANIFEST in err


def test_info_in_a_fresh_process_prints_only_json(tiny_zoo):
    """Nothing else (JAX or library warnings) reaches stdout of the real entry point."""
    proc = subprocess.run([sys.executable, "-m", "zoobench.cli", "zoo", "info", str(tiny_zoo), "--json"],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["num_networks"] == 12


# --------------------------------------------------------------------------- verify


def test_verify_intact(capsys, tiny_zoo):
    code, out, _ = run(capsys, "zoo", "verify", tiny_zoo, "--json")
    assert code == 0
    assert json.loads(out) == {"path": str(tiny_zoo), "ok": True, "problems": []}
    code, out, _ = run(capsys, "zoo", "verify", tiny_zoo)
    assert code == 0 and out.strip() == f"{tiny_zoo}: all files intact"


@pytest.mark.parametrize("target", ["weights", TABLE])
def test_verify_reports_a_corrupted_file_by_name(capsys, tiny_zoo, tmp_path, target):
    zoo = copy_zoo(tiny_zoo, tmp_path / "zoo")
    path = sorted((zoo / "weights").iterdir())[0] if target == "weights" else zoo / TABLE
    flip_byte(path)
    code, out, _ = run(capsys, "zoo", "verify", zoo)
    assert code == 1
    assert out.strip() == f"{path}: checksum mismatch (corrupted or modified)"
    code, out, _ = run(capsys, "zoo", "verify", zoo, "--json")
    doc = json.loads(out)
    assert code == 1 and doc["ok"] is False and doc["problems"] == verify_zoo(zoo)
    assert len(doc["problems"]) == 1 and path.name in doc["problems"][0]


def test_verify_reports_a_truncated_file_and_a_broken_manifest(capsys, tiny_zoo, tmp_path):
    zoo = copy_zoo(tiny_zoo, tmp_path / "zoo")
    weights = sorted((zoo / "weights").iterdir())[1]
    weights.write_bytes(weights.read_bytes()[:100])
    code, out, _ = run(capsys, "zoo", "verify", zoo)
    assert code == 1 and weights.name in out
    (zoo / MANIFEST).write_text("{ not json")
    code, out, _ = run(capsys, "zoo", "verify", zoo, "--json")
    assert code == 1
    (problem,) = json.loads(out)["problems"]
    assert problem.startswith(f"{zoo / MANIFEST}: not valid JSON")


# --------------------------------------------------------------------------- build and merge


def test_build_with_a_bad_config_names_the_file(capsys, tmp_path):
    doc = mini_doc()
    doc["hyper"]["optimizer"] = {"choice": ["sgd", "lion"]}
    bad = write_config(tmp_path / "bad.toml", doc)
    code, out, err = run(capsys, "zoo", "build", "--config", bad, "--out", tmp_path / "zoo")
    assert code == 1 and out == ""
    assert err.startswith(f"zoobench: error: {bad}: hyper.optimizer: unknown value 'lion'")
    assert not (tmp_path / "zoo").exists()
    code, out, err = run(capsys, "zoo", "build", "--config", bad, "--out", tmp_path / "zoo", "--json")
    assert code == 1 and str(bad) in json.loads(out)["error"]


def test_build_with_malformed_or_missing_toml_names_the_file(capsys, tmp_path):
    broken = tmp_path / "broken.toml"
    broken.write_text("[zoo\nname = 1\n")
    code, _, err = run(capsys, "zoo", "build", "--config", broken, "--out", tmp_path / "zoo")
    assert code == 1 and f"{broken}: not valid TOML" in err
    code, _, err = run(capsys, "zoo", "build", "--config", tmp_path / "missing.toml")
    assert code == 1 and f"{tmp_path / 'missing.toml'}: cannot read config" in err


def test_build_json_resume_and_reuse(capsys, tiny_zoo, tmp_path):
    config = write_config(tmp_path / "mini.toml", MINI_DOC)
    out_dir = tmp_path / "zoo"
    code, out, err = run(capsys, "zoo", "build", "--config", config, "--out", out_dir, "--json")
    assert code == 0, err
    doc = json.loads(out)  # stdout is JSON even with the progress bar on (it goes to stderr)
    assert doc["path"] == str(out_dir) and doc["num_networks"] == 12
    assert (doc["chunks_trained"], doc["chunks_skipped"]) == (2, 0)
    assert doc["weights_fingerprint"] == load_zoo(tiny_zoo).weights_fingerprint
    code, out, _ = run(capsys, "zoo", "build", "--config", config, "--out", out_dir, "--no-progress")
    assert code == 0
    assert out.startswith(f"zoo mini: 12 networks in {out_dir} (0 chunks trained, 0 reused")


def test_build_default_out_is_zoos_name(capsys, tiny_zoo, tmp_path, monkeypatch):
    config = write_config(tmp_path / "mini.toml", MINI_DOC)
    monkeypatch.chdir(tmp_path)
    code, out, err = run(capsys, "zoo", "build", "--config", config, "--json", "--no-progress")
    assert code == 0, err
    assert json.loads(out)["path"] == str(Path("zoos") / "mini")
    assert verify_zoo(tmp_path / "zoos" / "mini") == []


def test_build_into_a_zoo_of_another_config_fails_cleanly(capsys, tiny_zoo, tmp_path):
    config = write_config(tmp_path / "other.toml", mini_doc(name="other"))
    zoo = copy_zoo(tiny_zoo, tmp_path / "zoo")
    code, out, err = run(capsys, "zoo", "build", "--config", config, "--out", zoo, "--json")
    assert code == 1 and "another config" in json.loads(out)["error"]
    assert verify_zoo(zoo) == []


def test_sharded_build_and_merge(capsys, tiny_zoo, tmp_path):
    config = write_config(tmp_path / "mini.toml", MINI_DOC)
    shards = []
    for i in range(2):
        shard = tmp_path / f"shard{i}"
        code, out, err = run(capsys, "zoo", "build", "--config", config, "--out", shard, "--shard", f"{i}/2",
                             "--json", "--no-progress")
        assert code == 0, err
        assert json.loads(out)["chunks_trained"] == 1
        shards.append(shard)
    code, out, err = run(capsys, "zoo", "merge", shards[0], "--out", tmp_path / "merged", "--json")
    assert code == 1 and "need each of the 2 shards exactly once" in json.loads(out)["error"]
    code, out, err = run(capsys, "zoo", "merge", *shards, "--out", tmp_path / "merged", "--json")
    assert code == 0, err
    doc = json.loads(out)
    assert doc["num_networks"] == 12
    assert doc["weights_fingerprint"] == load_zoo(tiny_zoo).weights_fingerprint
    code, out, _ = run(capsys, "zoo", "merge", *shards, "--out", tmp_path / "merged")
    assert code == 1 and out == ""
