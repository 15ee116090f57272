"""SIRENs and INR zoos: the architecture and its symmetries, the inits, the views, the configs and
presets, fitting, building (ids, resume, shards, merge) and the commands.

The build tests share one small INR zoo (`inr_zoo`: 30 SIRENs of 8x8 digits in two chunks), so
the fitting program compiles once for all of them.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import tomllib

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest
import tomli_w
from conftest import run_cli

from benchmark import neural_graph, views
from zoo_builder import build as build_module
from zoo_builder import inr
from zoo_builder.architecture import ArchSpec, apply, check_params, sine
from zoo_builder.build import build_zoo, merge_zoos
from zoo_builder.config import ConfigError, InrConfig, config_from_dict, load_config, load_preset, preset_path
from zoo_builder.datasets import DatasetError
from zoo_builder.permutation import apply_permutation, permutation_spec, random_permutations
from zoo_builder.storage import REQUIRED_INR_COLUMNS, load_zoo, read_manifest, verify_zoo

SIREN = ArchSpec("siren", (28, 28, 1), (32, 32), 1, "sine")
MINI_INR = {
    "zoo": {"name": "mini-inr", "kind": "inr", "seed": 0, "datasets": ["digits"], "input_shape": [8, 8, 1],
            "images_per_class": {"train": 2, "test": 1}},
    "siren": {"hidden": [16, 16], "omega0": 30.0, "init": "siren"},
    # A target some INRs reach before the last step: early stopping is exercised by the shared build.
    "fit": {"steps": 30, "learning_rate": 3e-3, "target_psnr": 30.0, "checkpoint_steps": [5, 30],
            "chunk_size": 16},
}


def mini_inr(**sections) -> InrConfig:
    """`MINI_INR` with keys of its tables replaced: ``mini_inr(fit={"steps": 10})``."""
    doc = copy.deepcopy(MINI_INR)
    for table, values in sections.items():
        doc[table].update(values)
    return config_from_dict(doc, source="tests:mini-inr")


def random_params(arch: ArchSpec, seed: int = 0):
    return inr.init_siren(arch, "siren", seed)


# --------------------------------------------------------------------------- architecture


def test_siren_spec_shapes_inputs_and_serialisation():
    assert SIREN.layer_shapes() == [((2, 32), (32,)), ((32, 32), (32,)), ((32, 1), (1,))]
    assert SIREN.input_dims == (2,) and SIREN.input_shape == (28, 28, 1)
    assert SIREN.num_params() == 2 * 32 + 32 + 32 * 32 + 32 + 32 + 1
    d = SIREN.to_dict()
    assert (d["omega0"], d["output_offset"]) == (30.0, 0.0)
    assert ArchSpec.from_dict(d) == SIREN
    shifted = dataclasses.replace(SIREN, output_offset=0.5)
    assert ArchSpec.from_dict(shifted.to_dict()) == shifted != SIREN
    mlp = ArchSpec("mlp", (8, 8, 1), (16,), 10, "relu")
    assert mlp.input_dims == (8, 8, 1)
    assert "omega0" not in mlp.to_dict() and "output_offset" not in mlp.to_dict()  # ids of MLPs stay put


@pytest.mark.parametrize("kwargs, match", [
    ({"activation": "relu"}, "a SIREN has activation 'sine'"),
    ({"family": "mlp", "num_classes": 10}, "only a SIREN has it"),
    ({"num_classes": 3}, "outputs its image's 1 channel"),
    ({"omega0": -1.0}, "omega0 must be positive"),
    ({"padding": "VALID"}, "padding applies to CNNs"),
])
def test_siren_spec_refuses_what_does_not_fit(kwargs, match):
    fields = {**dataclasses.asdict(SIREN), **kwargs}
    with pytest.raises(ValueError, match=match):
        ArchSpec(**fields)
    with pytest.raises(ValueError, match="omega0 and output_offset apply to SIRENs"):
        ArchSpec("mlp", (8, 8, 1), (16,), 10, "relu", omega0=10.0)


def test_sine_is_sin_to_float32_accuracy_and_so_is_its_derivative():
    x = np.linspace(-300, 300, 200_001, dtype=np.float32)
    assert np.abs(np.asarray(jax.jit(sine)(x)) - np.sin(x.astype(np.float64))).max() < 3e-7
    grad = np.asarray(jax.jit(jax.vmap(jax.grad(sine)))(x[::100]))
    assert np.abs(grad - np.cos(x[::100].astype(np.float64))).max() < 1e-6


def test_apply_maps_coordinates_to_intensities_differentiably():
    params = random_params(SIREN)
    coords = inr.coordinates(28, 28)
    out = np.asarray(apply(SIREN, params, coords))
    assert out.shape == (784, 1) and np.isfinite(out).all()
    # By hand: sin(omega0 * (x W + b)) twice, then the linear head.
    h = coords.astype(np.float64)
    for layer in params[:-1]:
        h = np.sin(30.0 * (h @ layer["kernel"] + layer["bias"]))
    np.testing.assert_allclose(out, h @ params[-1]["kernel"] + params[-1]["bias"], atol=2e-5)
    shifted = dataclasses.replace(SIREN, output_offset=0.5)
    np.testing.assert_allclose(np.asarray(apply(shifted, params, coords)), out + 0.5, atol=1e-6)
    # Differentiable in the coordinates: the gradient matches a central difference.
    point = jnp.array([0.3, -0.2])
    f = jax.jit(lambda p: apply(SIREN, params, p[None])[0, 0])
    grad = np.asarray(jax.jit(jax.grad(f))(point))
    eps = 1e-3
    numeric = [(f(point.at[i].add(eps)) - f(point.at[i].add(-eps))) / (2 * eps) for i in range(2)]
    np.testing.assert_allclose(grad, np.asarray(numeric), rtol=2e-2, atol=1e-3)
    with pytest.raises(ValueError, match=r"input shape \(28, 28, 1\) does not match the network's \(2,\)"):
        apply(SIREN, params, np.zeros((1, 28, 28, 1)))


def test_permuting_and_sign_flipping_hidden_units_keep_the_function():
    """The MLP permutation spec applies; sine is odd, so negating a unit's in-weights, bias and
    out-weights keeps the function, and negating only its in-weights and bias does not."""
    arch = dataclasses.replace(SIREN, output_offset=0.5)
    params = random_params(arch, seed=3)
    coords = inr.coordinates(28, 28)
    out = np.asarray(apply(arch, params, coords))
    spec = permutation_spec(arch)
    assert spec.sizes == {"P_0": 32, "P_1": 32}
    permuted = apply_permutation(spec, random_permutations(spec, np.random.default_rng(0)), params)
    np.testing.assert_allclose(np.asarray(apply(arch, permuted, coords)), out, atol=2e-5)
    flip = np.where(np.random.default_rng(1).random(32) < 0.5, -1.0, 1.0).astype(np.float32)
    flipped = copy.deepcopy(params)
    flipped[1]["kernel"] = params[1]["kernel"] * flip
    flipped[1]["bias"] = params[1]["bias"] * flip
    half = copy.deepcopy(flipped)
    flipped[2]["kernel"] = params[2]["kernel"] * flip[:, None]
    np.testing.assert_allclose(np.asarray(apply(arch, flipped, coords)), out, atol=2e-5)
    assert np.abs(np.asarray(apply(arch, half, coords)) - out).max() > 1e-2


def test_the_two_inits_draw_what_they_document():
    n_first, n_hidden = 2, 32
    siren = inr.init_siren(SIREN, "siren", 7)
    assert 0.9 / n_first < np.abs(siren[0]["kernel"]).max() <= 1 / n_first
    bound = math.sqrt(6 / n_hidden) / 30
    for layer in siren[1:]:
        assert 0.8 * bound < np.abs(layer["kernel"]).max() <= bound
    assert np.abs(siren[1]["bias"]).max() <= 1 / math.sqrt(n_hidden) and np.abs(siren[1]["bias"]).max() > 0
    dws = inr.init_siren(SIREN, "dwsnets", 7)
    first_bound = math.sqrt(6 / n_first) / 30  # the first layer like the others
    assert 0.8 * first_bound < np.abs(dws[0]["kernel"]).max() <= first_bound
    assert all(not layer["bias"].any() for layer in dws[:-1])
    assert np.abs(dws[-1]["kernel"]).max() <= 1 / math.sqrt(n_hidden)  # PyTorch's default linear head
    again = inr.init_siren(SIREN, "siren", 7)
    assert all(np.array_equal(a["kernel"], b["kernel"]) for a, b in zip(siren, again, strict=True))
    assert not np.array_equal(inr.init_siren(SIREN, "siren", 8)[1]["kernel"], siren[1]["kernel"])


def test_every_view_reads_a_siren():
    params = random_params(SIREN)
    check_params(SIREN, params)
    x, mask = views.flat([params])
    assert x.shape == (1, SIREN.num_params()) and mask.all()
    assert views.stats([params], [SIREN]).shape == (1, 17 * 3 + 1)
    m, _ = views.matrices([params])
    assert m.shape == (1, 3, 32, 32)
    graph = neural_graph.network_graph(params, SIREN)
    assert int(graph.n_node[0]) == 2 + 32 + 32 + 1
    assert int(graph.n_edge[0]) == 2 * 32 + 32 * 32 + 32
    assert graph.nodes["position"][:2].tolist() == [0, 1]  # the two coordinates keep their order
    spec = permutation_spec(SIREN)
    perms = random_permutations(spec, np.random.default_rng(2))
    again = neural_graph.network_graph(apply_permutation(spec, perms, params), SIREN)
    np.testing.assert_array_equal(np.sort(again.edges["weight"], 0), np.sort(graph.edges["weight"], 0))


# --------------------------------------------------------------------------- configs, presets, ids


@pytest.mark.parametrize("name", ["inr-tiny", "inr-small", "inr-paper"])
def test_inr_presets_load_and_round_trip_through_toml(name, tmp_path):
    cfg = load_preset(name)
    assert isinstance(cfg, InrConfig) and cfg.name == name and cfg.kind == "inr"
    assert cfg.arch().layer_shapes()[0][0] == (2, 32 if name != "inr-tiny" else 16)
    path = tmp_path / "again.toml"
    path.write_text(tomli_w.dumps(cfg.to_dict()))
    again = load_config(path)
    assert again.fingerprint() == cfg.fingerprint()
    assert dataclasses.replace(again, source=cfg.source) == cfg


def test_inr_paper_is_the_dwsnets_protocol():
    cfg = load_preset("inr-paper")
    assert cfg.datasets == ("tfds:mnist", "tfds:fashion_mnist")
    assert cfg.images_per_class == {"train": None, "test": None}
    fit = cfg.fit
    assert (fit.init, fit.steps, fit.learning_rate, fit.target_psnr) == ("dwsnets", 1000, 5e-4, 40)
    assert cfg.arch() == ArchSpec("siren", (28, 28, 1), (32, 32), 1, "sine", output_offset=0.5)


def test_inr_small_is_2000_balanced_real_mnist_digits():
    cfg = load_preset("inr-small")
    specs = inr.inr_specs(cfg, inr.load_inr_datasets(cfg))
    assert len(specs) >= 2000 and {s.dataset for s in specs} == {"mnist5k"}
    assert cfg.input_shape == (28, 28, 1)
    assert set(pd.Series([s.label for s in specs]).value_counts()) == {len(specs) // 10}
    assert len({s.network_id for s in specs}) == len(specs)


@pytest.mark.parametrize("table, key, value, match", [
    ("zoo", "kind", "gan", "zoo.kind: unknown kind 'gan'"),
    ("zoo", "datasets", ["mnist1d"], "zoo.datasets: mnist1d holds 1-D signals"),
    ("zoo", "datasets", ["nope"], "zoo.datasets: unknown dataset"),
    ("zoo", "images_per_class", {"val": 3}, "zoo.images_per_class: unknown split"),
    ("zoo", "images_per_class", {"train": 0}, "zoo.images_per_class.train: expected a positive integer"),
    ("siren", "init", "xavier", "siren.init: unknown init 'xavier'"),
    ("siren", "hidden", [], "siren.hidden: expected 1 to 4 widths"),
    ("fit", "checkpoint_steps", [40], "fit.checkpoint_steps: expected strictly increasing steps in 1..30"),
    ("fit", "learning_rate", 0, "fit.learning_rate: expected a positive number"),
    ("fit", "epochs", 3, r"fit: unknown key\(s\) \['epochs'\]"),
])
def test_bad_inr_config_names_the_field(table, key, value, match):
    with pytest.raises(ConfigError, match=f"^tests:mini-inr: {match}"):
        mini_inr(**{table: {key: value}})


def test_ids_depend_on_the_image_seed_and_fit_only():
    cfg = mini_inr()
    data = inr.load_inr_datasets(cfg)
    specs = inr.inr_specs(cfg, data)
    assert len(specs) == 30 and [s.index for s in specs] == list(range(30))
    assert [s.image_split for s in specs] == ["train"] * 20 + ["test"] * 10
    ids = {(s.image_split, s.image_index): s.network_id for s in specs}
    # More images: the INRs of the images already there keep their ids.
    more = inr.inr_specs(mini_inr(zoo={"images_per_class": {"train": 3, "test": 1}}), data)
    assert {(s.image_split, s.image_index): s.network_id for s in more}.items() >= ids.items()
    # Another fitting config, or another zoo seed: other ids; the name does not matter.
    changed = (mini_inr(fit={"learning_rate": 1e-3}), mini_inr(fit={"steps": 31}), mini_inr(zoo={"seed": 1}),
               mini_inr(siren={"omega0": 20.0}), mini_inr(siren={"init": "dwsnets"}),
               mini_inr(siren={"hidden": [16, 8]}), mini_inr(zoo={"input_shape": [8, 8, 3]}))
    for other in changed:
        assert not {s.network_id for s in inr.inr_specs(other, data)} & set(ids.values())
    assert [s.network_id for s in inr.inr_specs(mini_inr(zoo={"name": "other"}), data)] == list(ids.values())
    assert len({s.config_id for s in specs}) == 30
    with pytest.raises(DatasetError, match=r"test: class \d has \d+ images, fewer than the 100"):
        inr.inr_specs(mini_inr(zoo={"images_per_class": {"test": 100}}), data)


def test_targets_and_coordinates_line_up():
    coords = inr.coordinates(3, 4)
    assert coords.shape == (12, 2) and coords[0].tolist() == [-1, -1] and coords[-1].tolist() == [1, 1]
    assert coords[1].tolist() == [-1.0, pytest.approx(-1 / 3)]  # the column varies fastest
    images = np.linspace(-1, 1, 24, dtype=np.float32).reshape(2, 3, 4, 1)
    t = inr.image_targets(images)
    assert t.shape == (2, 12, 1) and t.min() == 0 and t.max() == 1
    assert t[0, 4, 0] == (images[0, 1, 0, 0] + 1) / 2


# --------------------------------------------------------------------------- fitting and building


@pytest.fixture(scope="module")
def inr_zoo(tmp_path_factory):
    path = tmp_path_factory.mktemp("inr") / "mini-inr"
    report = build_zoo(mini_inr(), path, progress=False)
    assert report.chunks_trained == 2 and report.num_networks == 30
    return path


def test_an_inr_zoo_records_each_image_and_its_psnr(inr_zoo):
    zoo = load_zoo(inr_zoo)
    assert zoo.kind == "inr" and read_manifest(inr_zoo)["format_version"] == 3
    table = zoo.table
    assert set(REQUIRED_INR_COLUMNS) <= set(table.columns) and "test_acc" not in table.columns
    assert sorted(table["epoch"].unique()) == [5, 30] and len(table) == 60
    final = zoo.final
    assert (final["status"] == "ok").all()
    # Early stopping on full batches: an INR that reached 30 dB stopped there, the others ran on.
    stopped = final["reached_target"]
    assert 0 < stopped.sum() < len(final)
    assert (final.loc[~stopped, "steps_taken"] == 30).all() and (final.loc[stopped, "steps_taken"] < 30).all()
    assert (final.loc[stopped, "psnr"] >= 30).all() and (final.loc[stopped, "psnr"] < 33).all()
    assert final["label"].value_counts().to_dict() == dict.fromkeys(range(10), 3)
    steps = table.pivot(index="network_id", columns="epoch", values="psnr")
    assert (steps[30] > steps[5] + 5).all()
    assert final["psnr"].median() > 28
    np.testing.assert_allclose(final["psnr"], -10 * np.log10(final["mse"]), rtol=1e-6)
    # The stored parameters reproduce the recorded PSNR against the image.
    for nid in final["network_id"][:3]:
        recon = inr.reconstruct(zoo.arch(nid), zoo.params(nid))
        mse = np.mean((recon - inr.image_of(zoo, nid)) ** 2)
        assert -10 * np.log10(mse) == pytest.approx(zoo.row(nid)["psnr"], abs=1e-3)


def test_inr_builds_resume_shard_and_merge_to_the_same_zoo(inr_zoo, tmp_path):
    cfg = mini_inr()

    def interrupt(chunk):
        raise KeyboardInterrupt(chunk.name)

    with pytest.raises(KeyboardInterrupt):
        build_zoo(cfg, tmp_path / "resumed", progress=False, on_chunk=interrupt)
    report = build_zoo(cfg, tmp_path / "resumed", progress=False)
    assert (report.chunks_trained, report.chunks_skipped) == (1, 1)
    for i in range(2):
        build_zoo(cfg, tmp_path / f"shard{i}", shard=(i, 2), progress=False)
    merge_zoos([tmp_path / "shard0", tmp_path / "shard1"], tmp_path / "merged")
    want = load_zoo(inr_zoo)
    for name in ("resumed", "merged"):
        got = load_zoo(tmp_path / name)
        assert got.weights_fingerprint == want.weights_fingerprint, name
        pd.testing.assert_frame_equal(got.table, want.table)
        assert verify_zoo(tmp_path / name) == []


def test_coordinate_batches_fit_and_stop_at_the_target_at_an_epochs_start():
    cfg = mini_inr(fit={"target_psnr": 15.0, "batch_size": 16})
    specs = inr.inr_specs(cfg, data := inr.load_inr_datasets(cfg))[:4]
    result = inr.InrTrainer(cfg.arch(), cfg.fit).train(
        inr.init_population(specs), inr.targets_of(specs, data), np.array([s.seed for s in specs]), [5, 30])
    first, last = result["checkpoints"][5][1], result["checkpoints"][30][1]
    assert (last["psnr"] > first["psnr"]).all()
    assert last["reached_target"].all() and (last["psnr"] >= 15.0).all()
    # 64 pixels in batches of 16: the whole image is checked every 4 steps, not in between.
    assert (last["steps_taken"] < 30).all() and (last["steps_taken"] % 4 == 0).all()


def test_inr_paper_builds_on_mock_tfds(tmp_path):
    tfds = pytest.importorskip("tensorflow_datasets")
    doc = tomllib.loads(preset_path("inr-paper").read_text())
    doc["fit"].update(steps=3, checkpoint_steps=[3], chunk_size=64)
    cfg = config_from_dict(doc, source="tests:inr-paper-mock")
    from zoo_builder import datasets

    datasets._load_base.cache_clear()
    try:
        with tfds.testing.mock_data(num_examples=6, policy=tfds.testing.MockPolicy.USE_CODE):
            report = build_zoo(cfg, tmp_path / "paper", progress=False)
    finally:
        datasets._load_base.cache_clear()
    final = load_zoo(tmp_path / "paper").final
    assert report.num_networks == 24  # 2 datasets x (6 train + 6 test images)
    assert final.groupby(["dataset", "image_split"]).size().to_dict() == {
        (d, s): 6 for d in cfg.datasets for s in ("train", "test")}
    assert (final["output_offset"] == 0.5).all() and (final["init"] == "dwsnets").all()
    assert (final["steps_taken"] == 3).all() and np.isfinite(final["psnr"]).all()


# --------------------------------------------------------------------------- commands


def test_zoo_info_shows_the_psnr_distribution(capsys, inr_zoo):
    code, out, _ = run_cli(capsys, "zoo", "info", inr_zoo, "--json")
    assert code == 0
    import json

    s = json.loads(out)
    psnr = load_zoo(inr_zoo).final["psnr"]
    assert s["kind"] == "inr" and s["num_networks"] == 30
    assert s["psnr"]["quantiles"][2] == pytest.approx(psnr.median(), abs=1e-4)
    assert set(s["psnr_by_step"]) == {"5", "30"} and sum(s["psnr_histogram"].values()) == 30
    code, out, _ = run_cli(capsys, "zoo", "info", inr_zoo)
    assert code == 0 and "PSNR (dB)" in out and "min/quartiles/max" in out


def test_show_inr_draws_a_png_and_tasks_do_not_crash(capsys, inr_zoo, tmp_path):
    nid = load_zoo(inr_zoo).final["network_id"][0]
    code, out, err = run_cli(capsys, "zoo", "show-inr", inr_zoo, nid, "--out", tmp_path / "inr.png",
                             "--step", 5)
    assert code == 0, err
    assert (tmp_path / "inr.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    code, _, err = run_cli(capsys, "zoo", "show-inr", inr_zoo, "0" * 16, "--out", tmp_path / "x.png")
    assert code == 1 and f"no network '{'0' * 16}'" in err
    code, out, err = run_cli(capsys, "tasks", inr_zoo)
    assert code == 0, err
    assert "inr-classification" in out and "retrieval" in out and "generalization" not in out


def test_gallery_draws_one_inr_per_label_with_its_image(inr_zoo, tmp_path):
    from zoobench.zoo_commands import draw_inr_gallery  # noqa: PLC0415 (the application's drawing)

    zoo = load_zoo(inr_zoo)
    ids = draw_inr_gallery(zoo, tmp_path / "gallery.png")
    assert (tmp_path / "gallery.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    final = zoo.final.set_index("network_id")
    assert sorted(final.loc[ids, "label"]) == sorted(final["label"].unique())
    for nid in ids:  # the lowest image index of its label
        same = final[final["label"] == final.loc[nid, "label"]]
        assert final.loc[nid, "image_index"] == same["image_index"].min()
    images = inr.images_of(zoo, ids)
    # Each image is the one its INR was fitted to: its reconstruction is nearer it than any other.
    errors = np.array([[np.mean((inr.reconstruct(zoo.arch(nid), zoo.params(nid)) - image) ** 2)
                        for image in images] for nid in ids])
    assert (errors.argmin(axis=1) == np.arange(len(ids))).all()


def test_a_build_of_another_kind_in_the_same_directory_is_refused(inr_zoo, tmp_path, monkeypatch):
    monkeypatch.setattr(build_module, "_build_inr", lambda *a, **k: pytest.fail("must not build"))
    with pytest.raises(Exception, match="holds a zoo of another config"):
        build_zoo(mini_inr(fit={"steps": 31}), inr_zoo, progress=False)
