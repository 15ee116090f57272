"""Zoo configs: validation errors, presets, round trips, sampling and network identity."""

from __future__ import annotations

import dataclasses
import math
import os
from pathlib import Path

import numpy as np
import pytest
import tomli_w
from conftest import MINI_DOC, mini_config, mini_doc

from zoo_builder.architecture import ArchSpec
from zoo_builder.config import (
    PRESETS,
    ConfigError,
    Distribution,
    NetworkConfig,
    config_from_dict,
    load_config,
    load_preset,
    preset_path,
    sample_network,
    sample_networks,
)
from zoo_builder.files import read_bounded

# --------------------------------------------------------------------------- errors


def _set(path: str, value):
    """A mutation of a config document: set the value at a dotted path (family[0].width)."""

    def mutate(doc):
        *parents, last = path.split(".")
        node = doc
        for part in parents:
            if part.startswith("family["):
                node = node["family"][int(part[7:-1])]
            else:
                node = node[part]
        node[last] = value

    return mutate


def _delete(path: str):
    def mutate(doc):
        *parents, last = path.split(".")
        node = doc
        for part in parents:
            node = node[part]
        del node[last]

    return mutate


BAD_CONFIGS = {
    # case: (mutation, field named in the message, problem in the message)
    "unknown optimizer": (_set("hyper.optimizer", {"choice": ["sgd", "lion"]}), "hyper.optimizer", "'lion'"),
    "negative width": (_set("family[0].width", -4), "family[0].width", "below the minimum"),
    "width 0": (_set("family[0].width", {"choice": [8, 0]}), "family[0].width", "value 0 is below"),
    "width above bucket": (_set("family[0].width", {"choice": [8, 32]}), "family[0].width",
                           "exceeds the largest width bucket 16"),
    "depth out of range": (_set("family[0].depth", 9), "family[0].depth", "above the maximum"),
    "checkpoint beyond training": (_set("zoo.checkpoint_epochs", [1, 5]), "zoo.checkpoint_epochs",
                                   "epoch 5 is outside training (1..2)"),
    "checkpoint epoch 0": (_set("zoo.checkpoint_epochs", [0, 2]), "zoo.checkpoint_epochs", "epoch 0"),
    "checkpoints unsorted": (_set("zoo.checkpoint_epochs", [2, 1]), "zoo.checkpoint_epochs",
                             "strictly increasing"),
    "unknown dataset": (_set("zoo.datasets", {"choice": ["digits", "digitz"]}), "zoo.datasets",
                        "unknown dataset 'digitz'"),
    "bad dataset suffix": (_set("zoo.datasets", "digits@perm0"), "zoo.datasets", "'@perm0'"),
    "typo in hyper": (_set("hyper.weight_decy", 0.1), "hyper", "unknown key(s) ['weight_decy']"),
    "typo in zoo": (_set("zoo.num_network", 3), "zoo", "unknown key(s) ['num_network']"),
    "typo in family": (_set("family[0].activaton", "relu"), "family[0]", "unknown key(s) ['activaton']"),
    "typo in training": (_set("training.chunk_sise", 3), "training", "unknown key(s) ['chunk_sise']"),
    "unknown top-level table": (_set("hyperr", {}), "top level", "unknown key(s) ['hyperr']"),
    "bad distribution": (_set("hyper.init_scale", {"normal": [0, 1]}), "hyper.init_scale",
                         "unknown distribution 'normal'"),
    "two distributions": (_set("hyper.init_scale", {"uniform": [0.5, 1], "choice": [1]}),
                          "hyper.init_scale", "expected one of choice"),
    "uniform with three bounds": (_set("hyper.dropout", {"uniform": [0.0, 0.1, 0.2]}), "hyper.dropout",
                                  "needs [low, high]"),
    "empty range": (_set("hyper.init_scale", {"uniform": [1.5, 0.5]}), "hyper.init_scale",
                    "range [1.5, 0.5] is empty"),
    "log_uniform from 0": (_set("hyper.weight_decay", {"log_uniform": [0.0, 1e-3]}), "hyper.weight_decay",
                           "positive bounds"),
    "empty choice": (_set("hyper.dropout", {"choice": []}), "hyper.dropout", "non-empty list"),
    "string with a range": (_set("family[0].activation", {"log_uniform": ["relu", "tanh"]}),
                            "family[0].activation", "string values need"),
    "integer with a float range": (_set("family[0].depth", {"uniform": [1, 3]}), "family[0].depth",
                                   "integer values need"),
    "string for a float": (_set("hyper.dropout", "none"), "hyper.dropout", "expected float values"),
    "learning rate missing": (_delete("hyper.learning_rate.adam"), "hyper.learning_rate.adam", "missing"),
    "learning rate too large": (_set("hyper.learning_rate.sgd", 100.0), "hyper.learning_rate.sgd",
                                "above the maximum"),
    "unknown activation": (_set("family[0].activation", "swish"), "family[0].activation", "'swish'"),
    "unknown init": (_set("hyper.init", "orthogonal"), "hyper.init", "'orthogonal'"),
    "unknown family": (_set("family[0].kind", "rnn"), "family[0].kind", "unknown family 'rnn'"),
    "no family": (_set("family", []), "family", "at least one [[family]]"),
    "family weight 0": (_set("family[0].weight", 0), "family[0].weight", "positive number"),
    "epochs 0": (_set("zoo.epochs", 0), "zoo.epochs", ">= 1"),
    "epochs a bool": (_set("zoo.epochs", True), "zoo.epochs", "expected an integer"),
    "epochs missing": (_delete("zoo.epochs"), "zoo.epochs", "missing"),
    "num_networks 0": (_set("zoo.num_networks", 0), "zoo.num_networks", ">= 1"),
    "name empty": (_set("zoo.name", ""), "zoo.name", "non-empty string"),
    "input shape 2-D": (_set("zoo.input_shape", [8, 8]), "zoo.input_shape", "[H, W, C]"),
    "width buckets unsorted": (_set("training.width_buckets", [32, 16]), "training.width_buckets",
                               "increasing positive integers"),
    "chunk size 0": (_set("training.chunk_size", 0), "training.chunk_size", ">= 1"),
    "zoo not a table": (_set("zoo", 3), "zoo", "expected a table"),
}


@pytest.mark.parametrize("case", list(BAD_CONFIGS))
def test_bad_config_raises_config_error_naming_the_field(case):
    mutate, field, problem = BAD_CONFIGS[case]
    doc = mini_doc()
    mutate(doc)
    with pytest.raises(ConfigError) as err:
        config_from_dict(doc, source="my.toml")
    message = str(err.value)
    assert message.startswith("my.toml: ")
    assert f"{field}:" in message
    assert problem in message


def test_the_unmodified_document_is_valid():
    """The base of the cases above is valid, so each case fails for its own mutation."""
    cfg = config_from_dict(mini_doc(), source="my.toml")
    assert cfg.num_networks == 12 and cfg.source == "my.toml"


def test_malformed_toml_names_the_file(tmp_path):
    path = tmp_path / "broken.toml"
    path.write_text('[zoo]\nname = "x\nseed = 0\n')
    with pytest.raises(ConfigError, match=r"broken\.toml: not valid TOML"):
        load_config(path)


def test_non_utf8_file_names_the_file(tmp_path):
    path = tmp_path / "latin1.toml"
    path.write_bytes(b'[zoo]\nname = "caf\xe9"\n')
    with pytest.raises(ConfigError, match=r"latin1\.toml: not valid TOML"):
        load_config(path)


def test_missing_config_file_names_the_file(tmp_path):
    path = tmp_path / "nope.toml"
    with pytest.raises(ConfigError, match=r"nope\.toml: cannot read config"):
        load_config(path)


def test_field_errors_from_a_file_name_the_file(tmp_path):
    doc = mini_doc()
    doc["hyper"]["optimizer"] = "lion"
    path = tmp_path / "bad.toml"
    path.write_text(tomli_w.dumps(doc))
    with pytest.raises(ConfigError, match=r"bad\.toml: hyper\.optimizer: unknown value 'lion'"):
        load_config(path)


def test_oversized_config_is_refused(tmp_path, monkeypatch):
    from zoo_builder import config

    path = tmp_path / "big.toml"
    path.write_text(tomli_w.dumps(mini_doc()))
    monkeypatch.setattr(config, "MAX_CONFIG_BYTES", 100)
    with pytest.raises(ConfigError, match=r"big\.toml: config is \d+ bytes, over the 100-byte limit"):
        load_config(path)


def test_a_config_over_the_limit_is_refused_before_it_is_read(tmp_path):
    from zoo_builder.config import MAX_CONFIG_BYTES as limit

    path = tmp_path / "huge.toml"
    with open(path, "wb") as f:
        f.truncate(limit + 10)  # sparse: its size is known without reading it
    with pytest.raises(ConfigError) as e:
        load_config(path)
    assert str(e.value) == f"{path}: config is {limit + 10} bytes, over the {limit}-byte limit"


@pytest.mark.skipif(not Path("/dev/zero").exists(), reason="needs /dev/zero")
def test_a_device_is_not_read_as_a_config(tmp_path):
    """/dev/zero reports size 0 and never ends: an unbounded read would exhaust memory."""
    with pytest.raises(ConfigError, match="^/dev/zero: not a regular file; expected a config file"):
        load_config("/dev/zero")
    link = tmp_path / "zero.toml"
    link.symlink_to("/dev/zero")
    with pytest.raises(ConfigError, match=r"zero\.toml: not a regular file"):
        load_config(link)


def test_a_fifo_is_refused_without_waiting_for_a_writer(tmp_path):
    path = tmp_path / "pipe.toml"
    os.mkfifo(path)
    with pytest.raises(ConfigError, match=r"pipe\.toml: not a regular file"):
        load_config(path)


@pytest.mark.skipif(not Path("/proc/self/status").is_file(), reason="needs Linux /proc")
def test_read_bounded_stops_at_the_limit_whatever_size_the_file_reports():
    """/proc files are regular but report size 0: the read itself is what is bounded.

    /proc/self/status, a few KB whatever the process holds (/proc/self/maps grows with every
    compiled program and passed 1 MiB in a full test run)."""
    path = Path("/proc/self/status")
    assert path.stat().st_size == 0 and len(path.read_bytes()) > 20
    with pytest.raises(ValueError, match=r"^/proc/self/status: config is over the 20-byte limit"):
        read_bounded(path, 20, "config")
    assert len(read_bounded(path, 1 << 20, "config")) > 20


def test_unknown_preset():
    with pytest.raises(ConfigError, match="unknown preset 'huge'"):
        load_preset("huge")


# --------------------------------------------------------------------------- presets, round trips


@pytest.mark.parametrize("name", ["tiny", "small"])
def test_presets_load(name):
    cfg = load_preset(name)
    assert cfg.name == name and cfg.source == f"preset:{name}"
    assert preset_path(name).is_file() and name in PRESETS
    nets = sample_networks(cfg)
    assert len(nets) == cfg.num_networks
    assert len({n.network_id for n in nets}) == cfg.num_networks


def test_tiny_preset_is_small_and_varied():
    cfg = load_preset("tiny")
    assert cfg.num_networks < 100
    nets = sample_networks(cfg)
    assert {n.arch.family for n in nets} == {"mlp", "cnn"}
    assert {n.optimizer for n in nets} == set(cfg.optimizer.values)
    assert {n.dataset for n in nets} == set(cfg.datasets.values)


def test_small_preset_meets_its_description():
    cfg = load_preset("small")
    nets = sample_networks(cfg)
    assert len(nets) >= 2000
    assert len({n.dataset for n in nets}) >= 4
    assert {n.optimizer for n in nets} == {"sgd", "momentum", "adam", "adamw", "rmsprop"}
    assert {n.arch.family for n in nets} == {"mlp", "cnn"}


@pytest.mark.parametrize("name", ["tiny", "small"])
def test_to_dict_round_trips_through_toml(name, tmp_path):
    cfg = load_preset(name)
    path = tmp_path / "again.toml"
    path.write_text(tomli_w.dumps(cfg.to_dict()))
    again = load_config(path)
    assert again.fingerprint() == cfg.fingerprint()
    assert dataclasses.replace(again, source=cfg.source) == cfg
    assert [n.network_id for n in sample_networks(again)] == [n.network_id for n in sample_networks(cfg)]


def test_fingerprint_ignores_the_source_and_sees_every_field():
    cfg = mini_config()
    assert config_from_dict(mini_doc(), source="elsewhere.toml").fingerprint() == cfg.fingerprint()
    assert mini_config(name="other").fingerprint() != cfg.fingerprint()
    assert mini_config(epochs=3, checkpoint_epochs=[3]).fingerprint() != cfg.fingerprint()
    doc = mini_doc()
    doc["hyper"]["dropout"] = {"choice": [0.0, 0.2]}
    assert config_from_dict(doc).fingerprint() != cfg.fingerprint()


def test_defaults_and_normalisation():
    doc = mini_doc(checkpoint_epochs=[1])
    for key in ("weight_decay", "init", "init_scale", "dropout", "train_fraction"):
        del doc["hyper"][key]
    del doc["family"][0]["activation"]
    cfg = config_from_dict(doc)
    assert cfg.checkpoint_epochs == (1, 2)  # the final epoch is always kept
    assert cfg.weight_decay == Distribution("const", (0.0,))
    assert cfg.init == Distribution("const", ("he_normal",))
    assert cfg.families[0].activation == Distribution("const", ("relu",))
    assert cfg.train_fraction == Distribution("const", (1.0,))
    assert cfg.datasets == Distribution("choice", ("digits", "digits@perm1"))
    del doc["zoo"]["checkpoint_epochs"]
    assert config_from_dict(doc).checkpoint_epochs == (2,)


# --------------------------------------------------------------------------- sampling


def test_distribution_sampling_stays_in_the_support():
    rng = np.random.default_rng(0)
    draws = {kind: [Distribution(kind, values).sample(rng) for _ in range(2000)]
             for kind, values in [("uniform", (0.5, 1.5)), ("log_uniform", (1e-4, 1e-1)),
                                  ("int_uniform", (4, 6)), ("choice", ("a", "b", "c"))]}
    assert all(0.5 <= v <= 1.5 for v in draws["uniform"])
    logs = np.log10(draws["log_uniform"])
    assert logs.min() >= -4 and logs.max() <= -1
    assert abs(np.median(logs) - (-2.5)) < 0.1  # uniform in log space
    assert sorted(set(draws["int_uniform"])) == [4, 5, 6]  # both ends included
    assert all(type(v) is int for v in draws["int_uniform"])
    assert sorted(set(draws["choice"])) == ["a", "b", "c"]
    assert Distribution("const", (3,)).sample(rng) == 3


def test_sampled_networks_respect_the_config():
    doc = mini_doc(num_networks=300)
    doc["family"].append({"kind": "cnn", "weight": 3.0, "depth": {"int_uniform": [2, 3]},
                          "width": {"int_uniform": [4, 6]}, "activation": "tanh"})
    cfg = config_from_dict(doc)
    nets = sample_networks(cfg)
    assert [n.index for n in nets] == list(range(300))
    cnn = [n for n in nets if n.arch.family == "cnn"]
    mlp = [n for n in nets if n.arch.family == "mlp"]
    assert 0.65 < len(cnn) / len(nets) < 0.85  # family weights 1 : 3
    assert {n.arch.depth for n in cnn} == {2, 3} and {n.arch.depth for n in mlp} == {2}
    assert {w for n in cnn for w in n.arch.hidden} == {4, 5, 6}
    assert {w for n in mlp for w in n.arch.hidden} == {8, 12, 16}
    assert {n.arch.activation for n in cnn} == {"tanh"}
    for n in nets:
        assert n.arch.input_shape == (8, 8, 1) and n.arch.num_classes == 10
        lo, hi = {"sgd": (0.03, 0.3), "adam": (1e-3, 3e-2)}[n.optimizer]
        assert lo <= n.learning_rate <= hi
        assert 0.5 <= n.train_fraction <= 1.0 and 0.5 <= n.init_scale <= 1.5
        assert n.dropout in (0.0, 0.1) and n.batch_size == 32
        assert (n.epochs, n.max_train, n.max_test) == (2, 128, 64)
        assert 0 <= n.seed < 2**31 - 1
    assert len({n.seed for n in nets}) == len(nets)


# --------------------------------------------------------------------------- identity


def test_network_ids_are_stable_and_unique():
    first = sample_networks(mini_config())
    again = sample_networks(config_from_dict(mini_doc(), source="other.toml"))
    assert first == again
    ids = [n.network_id for n in first]
    assert ids == [n.network_id for n in again]
    assert len(set(ids)) == len(ids)
    assert all(len(i) == 16 and int(i, 16) >= 0 for i in ids)


def test_ids_do_not_depend_on_the_zoo_name_but_on_its_seed():
    base = [n.network_id for n in sample_networks(mini_config())]
    assert [n.network_id for n in sample_networks(mini_config(name="renamed"))] == base
    assert not set(base) & {n.network_id for n in sample_networks(mini_config(seed=1))}


def test_more_networks_keep_the_first_ones():
    """Network i comes from its own generator: growing a zoo keeps its prefix."""
    small = sample_networks(mini_config())
    big = sample_networks(mini_config(num_networks=40))
    assert big[:12] == small
    assert [n.network_id for n in big[:12]] == [n.network_id for n in small]
    assert sample_network(mini_config(num_networks=40), 30) == big[30]


def test_replicates_share_their_config_and_differ_in_seed():
    nets = sample_networks(mini_config(replicates=3))
    for k in range(0, 12, 3):
        group = nets[k:k + 3]
        assert len({n.config_id for n in group}) == 1
        assert len({n.seed for n in group}) == 3
        assert len({n.network_id for n in group}) == 3
        for n in group[1:]:
            assert dataclasses.replace(n, seed=group[0].seed, index=group[0].index) == group[0]
    assert nets[0].config_id != nets[3].config_id
    # The first replicate of each config is the network replicates = 1 draws for that config.
    single = sample_networks(mini_config(num_networks=4))
    assert [n.network_id for n in nets[::3]] == [n.network_id for n in single]


CHANGED_FIELDS = {
    "arch.hidden": lambda a: dataclasses.replace(a, hidden=(*a.hidden[:-1], a.hidden[-1] + 1)),
    "arch.activation": lambda a: dataclasses.replace(
        a, activation="gelu" if a.activation != "gelu" else "relu"),
    "arch.family": lambda a: dataclasses.replace(a, family="cnn" if a.family == "mlp" else "mlp"),
    "arch.input_shape": lambda a: dataclasses.replace(a, input_shape=(8, 8, 3)),
    "arch.num_classes": lambda a: dataclasses.replace(a, num_classes=a.num_classes + 1),
    "arch.padding": lambda a: dataclasses.replace(a, padding="VALID" if a.padding == "SAME" else "SAME"),
    "dataset": lambda v: "mnist1d" if v != "mnist1d" else "digits",
    "optimizer": lambda v: "adamw" if v != "adamw" else "sgd",
    "learning_rate": lambda v: v * (1 + 1e-12),  # any change, however small
    "weight_decay": lambda v: v + 1e-9,
    "momentum": lambda v: v + 0.01,
    "init": lambda v: "lecun_normal" if v != "lecun_normal" else "he_normal",
    "init_scale": lambda v: v + 0.1,
    "dropout": lambda v: v + 0.05,
    "batch_size": lambda v: v + 1,
    "train_fraction": lambda v: v / 2,
    "epochs": lambda v: v + 1,
    "seed": lambda v: v + 1,
    "max_train": lambda v: (v or 0) + 1,
    "max_test": lambda v: None,
}


def test_every_network_field_is_covered_by_the_identity_test():
    fields = {f.name for f in dataclasses.fields(NetworkConfig)} - {"index", "arch"}
    # A SIREN's own fields: no classifier has them (tests/test_inr.py checks they change INR ids).
    siren_only = {"arch.omega0", "arch.output_offset"}
    arch_fields = {f"arch.{f.name}" for f in dataclasses.fields(ArchSpec)} - siren_only
    assert set(CHANGED_FIELDS) == fields | arch_fields


@pytest.mark.parametrize("field", list(CHANGED_FIELDS))
def test_id_changes_with_every_hyper_parameter(field):
    net = sample_networks(mini_config())[3]
    if field == "arch.padding":  # a CNN's only: compare two CNNs
        net = dataclasses.replace(net, arch=dataclasses.replace(net.arch, family="cnn"))
    if field.startswith("arch."):
        changed = dataclasses.replace(net, arch=CHANGED_FIELDS[field](net.arch))
    else:
        changed = dataclasses.replace(net, **{field: CHANGED_FIELDS[field](getattr(net, field))})
    assert changed != net
    assert changed.network_id != net.network_id


def test_id_ignores_the_position_in_the_zoo():
    net = sample_networks(mini_config())[3]
    assert dataclasses.replace(net, index=99).network_id == net.network_id


def test_identity_is_json_of_plain_values():
    net = sample_networks(mini_config())[0]
    identity = net.identity()
    assert "index" not in identity and identity["arch"] == net.arch.to_dict()
    assert isinstance(identity["training_version"], int)
    assert all(isinstance(v, (str, int, float, type(None), dict)) for v in identity.values())
    assert math.isfinite(identity["learning_rate"])


def test_mini_doc_is_not_mutated_by_helpers():
    doc = mini_doc(seed=5)
    doc["hyper"]["batch_size"] = 1
    assert MINI_DOC["zoo"]["seed"] == 0 and MINI_DOC["hyper"]["batch_size"] == 32


def test_package_exports_resolve():
    import zoo_builder

    for name in zoo_builder.__all__:
        assert getattr(zoo_builder, name) is not None
    assert zoo_builder.load_preset is load_preset and zoo_builder.ConfigError is ConfigError
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        zoo_builder.nope  # noqa: B018
