"""Zoo configs: TOML files mapped onto frozen dataclasses, validated once.

A zoo config describes *distributions* over networks; `sample_networks` draws
the concrete `NetworkConfig` of every network. Network ``i`` is drawn from its
own generator seeded with ``(zoo seed, i)``, so a network never depends on how
many others are sampled, and its id is a hash of its own config: the same zoo
config always yields the same networks and ids.

An INR zoo (``[zoo] kind = "inr"``, `InrConfig`) is different: one SIREN per image
of its datasets, all fitted alike; `zoo_builder.inr` lists its networks.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.resources
import json
import math
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from zoo_builder import datasets
from zoo_builder.architecture import (
    CLASSIFIER_ACTIVATIONS,
    CLASSIFIER_FAMILIES,
    DEFAULT_OMEGA0,
    DEPTH_RANGE,
    WIDTH_RANGE,
    ArchSpec,
)
from zoo_builder.errors import DomainError
from zoo_builder.files import read_bounded

OPTIMIZERS = ("sgd", "momentum", "adam", "adamw", "rmsprop")
INITS = ("he_normal", "glorot_normal", "lecun_normal", "glorot_uniform")
PRESETS = ("tiny", "small", "paper", "inr-tiny", "inr-small", "inr-paper")
ZOO_KINDS = ("classifier", "inr")
# A SIREN's initialisation: the SIREN paper's, or DWSNets' (which adds 0.5 to the output).
INR_INITS = ("siren", "dwsnets")
INR_OUTPUT_OFFSET = {"siren": 0.0, "dwsnets": 0.5}
# The splits of a dataset whose images an INR zoo can represent.
IMAGE_SPLITS = ("train", "test")
# Bumped whenever training semantics change, so ids of networks trained differently differ.
# 2: dropout masks are keyed by the unpadded layer's units, so they no longer depend on the bucket.
TRAINING_VERSION = 2
MAX_CONFIG_BYTES = 1 << 20


class ConfigError(DomainError, ValueError):
    """A zoo config is invalid; the message names the file, the field and what was expected."""


@dataclasses.dataclass(frozen=True)
class Distribution:
    """A hyper-parameter's distribution: const, choice, uniform, log_uniform or int_uniform."""

    kind: str
    values: tuple

    def sample(self, rng: np.random.Generator):
        if self.kind == "const":
            return self.values[0]
        if self.kind == "choice":
            return self.values[int(rng.integers(len(self.values)))]
        lo, hi = self.values
        if self.kind == "uniform":
            return float(rng.uniform(lo, hi))
        if self.kind == "log_uniform":
            return float(math.exp(rng.uniform(math.log(lo), math.log(hi))))
        if self.kind == "int_uniform":
            return int(rng.integers(lo, hi + 1))
        raise AssertionError(self.kind)

    def support(self) -> tuple:
        """Every value a discrete distribution can take, or the range's ends."""
        return self.values

    def to_toml(self):
        return self.values[0] if self.kind == "const" else {self.kind: list(self.values)}


@dataclasses.dataclass(frozen=True)
class FamilyConfig:
    """One architecture family and how often it is drawn."""

    kind: str
    weight: float
    depth: Distribution
    width: Distribution
    activation: Distribution


@dataclasses.dataclass(frozen=True)
class ZooConfig:
    name: str
    seed: int
    num_networks: int
    input_shape: tuple[int, int, int]
    num_classes: int
    datasets: Distribution
    max_train: int | None
    max_test: int | None
    epochs: int
    checkpoint_epochs: tuple[int, ...]
    families: tuple[FamilyConfig, ...]
    optimizer: Distribution
    learning_rate: Mapping[str, Distribution]
    weight_decay: Distribution
    momentum: Distribution
    init: Distribution
    init_scale: Distribution
    dropout: Distribution
    batch_size: Distribution
    train_fraction: Distribution
    width_buckets: tuple[int, ...]
    chunk_size: int
    mix_optimizers: bool = False
    replicates: int = 1
    source: str = "<dict>"
    kind = "classifier"

    def to_dict(self) -> dict:
        """The config as the TOML document it came from (normalised)."""
        return {
            "zoo": {
                "name": self.name,
                "seed": self.seed,
                "num_networks": self.num_networks,
                "replicates": self.replicates,
                "input_shape": list(self.input_shape),
                "num_classes": self.num_classes,
                "datasets": self.datasets.to_toml(),
                **({"max_train": self.max_train} if self.max_train is not None else {}),
                **({"max_test": self.max_test} if self.max_test is not None else {}),
                "epochs": self.epochs,
                "checkpoint_epochs": list(self.checkpoint_epochs),
            },
            "training": {"width_buckets": list(self.width_buckets), "chunk_size": self.chunk_size,
                         "mix_optimizers": self.mix_optimizers},
            "family": [
                {
                    "kind": f.kind,
                    "weight": f.weight,
                    "depth": f.depth.to_toml(),
                    "width": f.width.to_toml(),
                    "activation": f.activation.to_toml(),
                }
                for f in self.families
            ],
            "hyper": {
                "optimizer": self.optimizer.to_toml(),
                "learning_rate": {k: v.to_toml() for k, v in self.learning_rate.items()},
                "weight_decay": self.weight_decay.to_toml(),
                "momentum": self.momentum.to_toml(),
                "init": self.init.to_toml(),
                "init_scale": self.init_scale.to_toml(),
                "dropout": self.dropout.to_toml(),
                "batch_size": self.batch_size.to_toml(),
                "train_fraction": self.train_fraction.to_toml(),
            },
        }

    def fingerprint(self) -> str:
        """sha256 of the normalised config: what a build's outputs are checked against."""
        blob = json.dumps(self.to_dict(), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()


@dataclasses.dataclass(frozen=True)
class NetworkConfig:
    """Everything that determines one trained network."""

    index: int
    arch: ArchSpec
    dataset: str
    optimizer: str
    learning_rate: float
    weight_decay: float
    momentum: float
    init: str
    init_scale: float
    dropout: float
    batch_size: int
    train_fraction: float
    epochs: int
    seed: int
    max_train: int | None = None
    max_test: int | None = None

    def identity(self) -> dict:
        """The fields that define the network (not its position in a zoo)."""
        d = dataclasses.asdict(self)
        d.pop("index")
        d["arch"] = self.arch.to_dict()
        d["training_version"] = TRAINING_VERSION
        return d

    @property
    def config_id(self) -> str:
        """Hash of everything but the seed: replicates of one config share it."""
        identity = self.identity()
        identity.pop("seed")
        return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]

    @property
    def network_id(self) -> str:
        blob = json.dumps(self.identity(), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


@dataclasses.dataclass(frozen=True)
class InrFit:
    """How every INR of a zoo is fitted: full-batch or coordinate mini-batch Adam.

    Attributes:
      init: one of `INR_INITS` (docs/parameters.md says what each draws).
      steps: Adam steps at most.
      learning_rate: Adam's.
      batch_size: coordinates per step, or None for every pixel of the image.
      target_psnr: stop an INR once its image's PSNR (dB) reaches it; None: never.
    """

    init: str
    steps: int
    learning_rate: float
    batch_size: int | None = None
    target_psnr: float | None = None


@dataclasses.dataclass(frozen=True)
class InrConfig:
    """An INR zoo: one SIREN per selected image of each dataset, fitted by `fit`.

    Attributes:
      datasets: dataset names (as `zoo_builder.datasets.load_dataset` takes them).
      input_shape: (H, W, C) the images are resized to; each SIREN outputs C channels.
      images_per_class: split ("train", "test") -> how many images of each class get an
        INR: the first ones of the split, or None for every image.
      hidden, omega0: the SIRENs' hidden widths and frequency scale.
      checkpoint_steps: steps at which parameters and PSNR are kept (the last is `fit.steps`).
      chunk_size: INRs fitted together (one program, one weights file).
    """

    name: str
    seed: int
    datasets: tuple[str, ...]
    input_shape: tuple[int, int, int]
    images_per_class: Mapping[str, int | None]
    hidden: tuple[int, ...]
    omega0: float
    fit: InrFit
    checkpoint_steps: tuple[int, ...]
    chunk_size: int
    source: str = "<dict>"
    kind = "inr"

    def arch(self) -> ArchSpec:
        """The architecture every INR of the zoo shares."""
        return ArchSpec(family="siren", input_shape=self.input_shape, hidden=self.hidden,
                        num_classes=self.input_shape[2], activation="sine", omega0=self.omega0,
                        output_offset=INR_OUTPUT_OFFSET[self.fit.init])

    def to_dict(self) -> dict:
        """The config as the TOML document it came from (normalised)."""
        fit = {"steps": self.fit.steps, "learning_rate": self.fit.learning_rate,
               "checkpoint_steps": list(self.checkpoint_steps), "chunk_size": self.chunk_size}
        if self.fit.batch_size is not None:
            fit["batch_size"] = self.fit.batch_size
        if self.fit.target_psnr is not None:
            fit["target_psnr"] = self.fit.target_psnr
        per_class = {k: "all" if v is None else v for k, v in self.images_per_class.items()}
        return {
            "zoo": {"name": self.name, "kind": "inr", "seed": self.seed, "datasets": list(self.datasets),
                    "input_shape": list(self.input_shape), "images_per_class": per_class},
            "siren": {"hidden": list(self.hidden), "omega0": self.omega0, "init": self.fit.init},
            "fit": fit,
        }

    def fingerprint(self) -> str:
        """sha256 of the normalised config: what a build's outputs are checked against."""
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()


# --------------------------------------------------------------------------- parsing


class _Fields:
    """Reads one TOML table, tracking the path for error messages and unknown keys."""

    def __init__(self, table: Any, path: str, source: str):
        if not isinstance(table, dict):
            raise ConfigError(f"{source}: {path or 'top level'}: expected a table, got {table!r}")
        self.table, self.path, self.source = table, path, source
        self.used: set[str] = set()

    def error(self, key: str, problem: str) -> ConfigError:
        where = f"{self.path}.{key}" if self.path else key
        return ConfigError(f"{self.source}: {where}: {problem}")

    def get(self, key: str, default: Any = ...) -> Any:
        self.used.add(key)
        if key not in self.table:
            if default is ...:
                raise self.error(key, "missing")
            return default
        return self.table[key]

    def sub(self, key: str) -> _Fields:
        self.used.add(key)
        return _Fields(self.table.get(key, {}), f"{self.path}.{key}" if self.path else key, self.source)

    def int(self, key: str, default: Any = ..., minimum: int | None = None) -> int:
        value = self.get(key, default)
        if value is None and default is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.error(key, f"expected an integer, got {value!r}")
        if minimum is not None and value < minimum:
            raise self.error(key, f"expected an integer >= {minimum}, got {value}")
        return value

    def dist(self, key: str, kind: str, allowed: tuple | None = None, lo: float | None = None,
             hi: float | None = None, default: Any = ...) -> Distribution:
        """Parse a distribution; `kind` is "int", "float" or "str" for its values."""
        raw = self.get(key, default)
        dist = _parse_distribution(raw, lambda p: self.error(key, p))
        for v in dist.values:
            ok = {
                "int": isinstance(v, int) and not isinstance(v, bool),
                "float": isinstance(v, int | float) and not isinstance(v, bool),
                "str": isinstance(v, str),
            }[kind]
            if not ok:
                raise self.error(key, f"expected {kind} values, got {v!r}")
            if allowed is not None and v not in allowed:
                raise self.error(key, f"unknown value {v!r}; expected one of {list(allowed)}")
            if lo is not None and v < lo:
                raise self.error(key, f"value {v!r} is below the minimum {lo}")
            if hi is not None and v > hi:
                raise self.error(key, f"value {v!r} is above the maximum {hi}")
        if dist.kind in ("uniform", "log_uniform", "int_uniform"):
            if kind == "str":
                raise self.error(key, "string values need {choice = [...]}")
            if kind == "int" and dist.kind != "int_uniform":
                raise self.error(key, f"integer values need {{int_uniform = [...]}} or {{choice = [...]}}, "
                                      f"not {dist.kind}")
            a, b = dist.values
            if a > b:
                raise self.error(key, f"range [{a}, {b}] is empty")
            if dist.kind == "log_uniform" and a <= 0:
                raise self.error(key, f"log_uniform needs positive bounds, got [{a}, {b}]")
        return dist

    def finish(self) -> None:
        unknown = sorted(set(self.table) - self.used)
        if unknown:
            raise ConfigError(
                f"{self.source}: {self.path or 'top level'}: unknown key(s) {unknown}; "
                f"expected only {sorted(self.used)}"
            )


def _parse_distribution(raw: Any, error) -> Distribution:
    if isinstance(raw, list):
        raw = {"choice": raw}
    if isinstance(raw, dict):
        if len(raw) != 1:
            raise error(f"expected one of choice/uniform/log_uniform/int_uniform, got {raw!r}")
        (kind, values), = raw.items()
        if kind not in ("choice", "uniform", "log_uniform", "int_uniform"):
            raise error(
                f"unknown distribution {kind!r}; expected choice, uniform, log_uniform or int_uniform")
        if not isinstance(values, list) or not values:
            raise error(f"{kind} needs a non-empty list, got {values!r}")
        if kind != "choice" and len(values) != 2:
            raise error(f"{kind} needs [low, high], got {values!r}")
        return Distribution(kind, tuple(values))
    if isinstance(raw, int | float | str) and not isinstance(raw, bool):
        return Distribution("const", (raw,))
    raise error(f"expected a value, a list of choices or a distribution table, got {raw!r}")


def _validate_dataset_name(name: str) -> str | None:
    try:
        base, _ = datasets.parse_dataset_name(name)
    except ValueError as e:
        return str(e)
    if not base.startswith("tfds:") and base not in datasets.dataset_names():
        return f"unknown dataset {name!r}; expected one of {list(datasets.dataset_names())} or tfds:NAME"
    return None


def _zoo_kind(doc: dict, source: str) -> str:
    zoo = doc.get("zoo") if isinstance(doc, dict) else None
    kind = zoo.get("kind", "classifier") if isinstance(zoo, dict) else "classifier"
    if kind not in ZOO_KINDS:
        raise ConfigError(f"{source}: zoo.kind: unknown kind {kind!r}; expected one of {list(ZOO_KINDS)}")
    return kind


def config_from_dict(doc: dict, source: str = "<dict>") -> ZooConfig | InrConfig:
    """Validate a parsed TOML document and build its `ZooConfig` (or `InrConfig`, for kind "inr")."""
    if _zoo_kind(doc, source) == "inr":
        return inr_config_from_dict(doc, source)
    top = _Fields(doc, "", source)
    zoo = top.sub("zoo")
    zoo.get("kind", "classifier")  # checked above; left out of `to_dict`, so fingerprints stay put
    name = zoo.get("name")
    if not isinstance(name, str) or not name:
        raise zoo.error("name", f"expected a non-empty string, got {name!r}")
    input_shape = zoo.get("input_shape", [8, 8, 1])
    if (not isinstance(input_shape, list) or len(input_shape) != 3
            or not all(isinstance(d, int) and d > 0 for d in input_shape)):
        raise zoo.error("input_shape", f"expected [H, W, C] positive integers, got {input_shape!r}")
    datasets_dist = zoo.dist("datasets", "str")
    for ds in datasets_dist.values:
        problem = _validate_dataset_name(ds)
        if problem:
            raise zoo.error("datasets", problem)
    epochs = zoo.int("epochs", minimum=1)
    ckpts = zoo.get("checkpoint_epochs", [epochs])
    if not isinstance(ckpts, list) or not ckpts or not all(isinstance(c, int) for c in ckpts):
        raise zoo.error("checkpoint_epochs", f"expected a list of integers, got {ckpts!r}")
    for c in ckpts:
        if not 1 <= c <= epochs:
            raise zoo.error("checkpoint_epochs", f"epoch {c} is outside training (1..{epochs})")
    if sorted(set(ckpts)) != ckpts:
        raise zoo.error("checkpoint_epochs", f"expected strictly increasing epochs, got {ckpts}")
    if ckpts[-1] != epochs:
        ckpts = ckpts + [epochs]  # the final network is always kept
    seed = zoo.int("seed", 0, minimum=0)
    num_networks = zoo.int("num_networks", minimum=1)
    replicates = zoo.int("replicates", 1, minimum=1)
    num_classes = zoo.int("num_classes", 10, minimum=2)
    max_train = zoo.int("max_train", None, minimum=1)
    max_test = zoo.int("max_test", None, minimum=1)
    zoo.finish()

    training = top.sub("training")
    buckets = training.get("width_buckets", [16, 32, 64, 128])
    if not isinstance(buckets, list) or not buckets or not all(
            isinstance(b, int) and b > 0 for b in buckets) or sorted(set(buckets)) != buckets:
        raise training.error("width_buckets", f"expected increasing positive integers, got {buckets!r}")
    chunk_size = training.int("chunk_size", 256, minimum=1)
    mix_optimizers = training.get("mix_optimizers", False)
    if not isinstance(mix_optimizers, bool):
        raise training.error("mix_optimizers", f"expected true or false, got {mix_optimizers!r}")
    training.finish()

    raw_families = top.get("family")
    if not isinstance(raw_families, list) or not raw_families:
        raise ConfigError(f"{source}: family: expected at least one [[family]] table")
    families = []
    for i, raw in enumerate(raw_families):
        f = _Fields(raw, f"family[{i}]", source)
        kind = f.get("kind")
        if kind not in CLASSIFIER_FAMILIES:
            raise f.error("kind", f"unknown family {kind!r}; expected one of {list(CLASSIFIER_FAMILIES)} "
                                  "(SIRENs are INR zoos: [zoo] kind = \"inr\")")
        weight = f.get("weight", 1.0)
        if not isinstance(weight, int | float) or isinstance(weight, bool) or weight <= 0:
            raise f.error("weight", f"expected a positive number, got {weight!r}")
        depth_range, width_range = DEPTH_RANGE[kind], WIDTH_RANGE[kind]
        family = FamilyConfig(
            kind=kind,
            weight=float(weight),
            depth=f.dist("depth", "int", lo=depth_range[0], hi=depth_range[1]),
            width=f.dist("width", "int", lo=width_range[0], hi=width_range[1]),
            activation=f.dist("activation", "str", allowed=CLASSIFIER_ACTIVATIONS, default="relu"),
        )
        widest = max(family.width.values)
        if widest > buckets[-1]:
            raise f.error("width", f"width {widest} exceeds the largest width bucket {buckets[-1]}")
        f.finish()
        families.append(family)

    hyper = top.sub("hyper")
    optimizer = hyper.dist("optimizer", "str", allowed=OPTIMIZERS)
    lr_table = hyper.sub("learning_rate")
    learning_rate = {}
    for opt in optimizer.values:
        learning_rate[opt] = lr_table.dist(opt, "float", lo=1e-8, hi=10.0)
    lr_table.finish()
    cfg = ZooConfig(
        name=name,
        seed=seed,
        num_networks=num_networks,
        replicates=replicates,
        input_shape=tuple(input_shape),
        num_classes=num_classes,
        datasets=datasets_dist,
        max_train=max_train,
        max_test=max_test,
        epochs=epochs,
        checkpoint_epochs=tuple(ckpts),
        families=tuple(families),
        optimizer=optimizer,
        learning_rate=learning_rate,
        weight_decay=hyper.dist("weight_decay", "float", lo=0.0, hi=1.0, default=0.0),
        momentum=hyper.dist("momentum", "float", lo=0.0, hi=0.999, default=0.9),
        init=hyper.dist("init", "str", allowed=INITS, default="he_normal"),
        init_scale=hyper.dist("init_scale", "float", lo=1e-3, hi=100.0, default=1.0),
        dropout=hyper.dist("dropout", "float", lo=0.0, hi=0.9, default=0.0),
        batch_size=hyper.dist("batch_size", "int", lo=1, hi=65536, default=32),
        train_fraction=hyper.dist("train_fraction", "float", lo=1e-3, hi=1.0, default=1.0),
        width_buckets=tuple(buckets),
        chunk_size=chunk_size,
        mix_optimizers=mix_optimizers,
        source=source,
    )
    hyper.finish()
    top.finish()
    return cfg


def _positive_float(f: _Fields, key: str, default=...) -> float | None:
    value = f.get(key, default)
    if value is None and default is None:
        return None
    if (isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value)
            or value <= 0):
        raise f.error(key, f"expected a positive number, got {value!r}")
    return float(value)


def inr_config_from_dict(doc: dict, source: str = "<dict>") -> InrConfig:
    """Validate the TOML document of an INR zoo (``[zoo] kind = "inr"``) and build its `InrConfig`."""
    top = _Fields(doc, "", source)
    zoo = top.sub("zoo")
    zoo.get("kind")
    name = zoo.get("name")
    if not isinstance(name, str) or not name:
        raise zoo.error("name", f"expected a non-empty string, got {name!r}")
    names = zoo.get("datasets")
    names = [names] if isinstance(names, str) else names
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        raise zoo.error("datasets", f"expected a dataset name or a list of them, got {names!r}")
    if len(set(names)) != len(names):
        raise zoo.error("datasets", f"lists a dataset twice: {names}")
    for ds in names:
        problem = _validate_dataset_name(ds)
        if problem is None and datasets.parse_dataset_name(ds)[0] == "mnist1d":
            problem = "mnist1d holds 1-D signals, not images; an INR represents an image"
        if problem:
            raise zoo.error("datasets", problem)
    input_shape = zoo.get("input_shape", [28, 28, 1])
    if (not isinstance(input_shape, list) or len(input_shape) != 3
            or not all(isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in input_shape)):
        raise zoo.error("input_shape", f"expected [H, W, C] positive integers, got {input_shape!r}")
    per_class_raw = zoo.get("images_per_class", {"train": "all", "test": "all"})
    if not isinstance(per_class_raw, dict) or not per_class_raw:
        raise zoo.error("images_per_class", f"expected a table split -> count or \"all\", e.g. "
                                            f"{{ train = 100 }}, got {per_class_raw!r}")
    per_class: dict[str, int | None] = {}
    for split in IMAGE_SPLITS:  # in this order, whatever the file's
        if split not in per_class_raw:
            continue
        v = per_class_raw[split]
        if v != "all" and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
            raise zoo.error(f"images_per_class.{split}", f"expected a positive integer or \"all\", got {v!r}")
        per_class[split] = None if v == "all" else v
    unknown = sorted(set(per_class_raw) - set(IMAGE_SPLITS))
    if unknown:
        raise zoo.error("images_per_class", f"unknown split(s) {unknown}; expected {list(IMAGE_SPLITS)}")
    seed = zoo.int("seed", 0, minimum=0)
    zoo.finish()

    siren = top.sub("siren")
    hidden = siren.get("hidden", [32, 32])
    lo, hi = WIDTH_RANGE["siren"]
    depth_lo, depth_hi = DEPTH_RANGE["siren"]
    if (not isinstance(hidden, list) or not depth_lo <= len(hidden) <= depth_hi
            or not all(isinstance(w, int) and not isinstance(w, bool) and lo <= w <= hi for w in hidden)):
        raise siren.error("hidden", f"expected {depth_lo} to {depth_hi} widths in [{lo}, {hi}], "
                                    f"got {hidden!r}")
    omega0 = _positive_float(siren, "omega0", DEFAULT_OMEGA0)
    init = siren.get("init", "siren")
    if init not in INR_INITS:
        raise siren.error("init", f"unknown init {init!r}; expected one of {list(INR_INITS)}")
    siren.finish()

    fit = top.sub("fit")
    steps = fit.int("steps", minimum=1)
    learning_rate = _positive_float(fit, "learning_rate")
    if learning_rate > 10.0:
        raise fit.error("learning_rate", f"value {learning_rate} is above the maximum 10.0")
    batch_size = fit.int("batch_size", None, minimum=1)
    target_psnr = _positive_float(fit, "target_psnr", None)
    ckpts = fit.get("checkpoint_steps", [steps])
    if (not isinstance(ckpts, list) or not ckpts
            or not all(isinstance(c, int) and not isinstance(c, bool) for c in ckpts)):
        raise fit.error("checkpoint_steps", f"expected a list of integers, got {ckpts!r}")
    if any(not 1 <= c <= steps for c in ckpts) or sorted(set(ckpts)) != ckpts:
        raise fit.error("checkpoint_steps", f"expected strictly increasing steps in 1..{steps}, got {ckpts}")
    if ckpts[-1] != steps:
        ckpts = ckpts + [steps]  # the fitted INR is always kept
    chunk_size = fit.int("chunk_size", 256, minimum=1)
    fit.finish()
    top.finish()
    return InrConfig(
        name=name, seed=seed, datasets=tuple(names), input_shape=tuple(input_shape),
        images_per_class=per_class, hidden=tuple(hidden), omega0=omega0,
        fit=InrFit(init=init, steps=steps, learning_rate=learning_rate, batch_size=batch_size,
                   target_psnr=target_psnr),
        checkpoint_steps=tuple(ckpts), chunk_size=chunk_size, source=source,
    )


def load_config(path: str | Path) -> ZooConfig | InrConfig:
    """Read and validate a zoo config TOML file."""
    path = Path(path)
    try:
        raw = read_bounded(path, MAX_CONFIG_BYTES, "config")
    except OSError as e:
        raise ConfigError(f"{path}: cannot read config: {e.strerror or e}") from e
    except ValueError as e:
        raise ConfigError(str(e)) from None
    try:
        doc = tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: not valid TOML: {e}") from e
    return config_from_dict(doc, source=str(path))


def preset_path(name: str) -> Path:
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; expected one of {list(PRESETS)}")
    return Path(str(importlib.resources.files("zoo_builder") / "presets" / f"{name}.toml"))


def load_preset(name: str) -> ZooConfig | InrConfig:
    """One of the presets that ship with the package (`PRESETS`)."""
    cfg = load_config(preset_path(name))
    return dataclasses.replace(cfg, source=f"preset:{name}")


# --------------------------------------------------------------------------- sampling


def sample_network(cfg: ZooConfig, index: int) -> NetworkConfig:
    """Draw network `index` of the zoo from its own generator.

    With ``replicates = R``, networks ``R*k .. R*k + R-1`` share the config drawn for
    ``k`` and differ only in their seed (pairs for the merging task).
    """
    config_index, replica = divmod(index, cfg.replicates)
    rng = np.random.default_rng([cfg.seed, config_index])
    weights = np.array([f.weight for f in cfg.families])
    family = cfg.families[int(rng.choice(len(weights), p=weights / weights.sum()))]
    depth = family.depth.sample(rng)
    hidden = tuple(family.width.sample(rng) for _ in range(depth))
    arch = ArchSpec(
        family=family.kind,
        input_shape=cfg.input_shape,
        hidden=hidden,
        num_classes=cfg.num_classes,
        activation=family.activation.sample(rng),
    )
    optimizer = cfg.optimizer.sample(rng)
    return NetworkConfig(
        index=index,
        arch=arch,
        dataset=cfg.datasets.sample(rng),
        optimizer=optimizer,
        learning_rate=float(cfg.learning_rate[optimizer].sample(rng)),
        weight_decay=float(cfg.weight_decay.sample(rng)),
        momentum=float(cfg.momentum.sample(rng)),
        init=cfg.init.sample(rng),
        init_scale=float(cfg.init_scale.sample(rng)),
        dropout=float(cfg.dropout.sample(rng)),
        batch_size=int(cfg.batch_size.sample(rng)),
        train_fraction=float(cfg.train_fraction.sample(rng)),
        epochs=cfg.epochs,
        seed=_replica_seed(cfg.seed, config_index, replica, int(rng.integers(2**31 - 1))),
        max_train=cfg.max_train,
        max_test=cfg.max_test,
    )


def _replica_seed(zoo_seed: int, config_index: int, replica: int, first: int) -> int:
    if replica == 0:
        return first
    return int(np.random.default_rng([zoo_seed, config_index, replica]).integers(2**31 - 1))


def sample_networks(cfg: ZooConfig) -> list[NetworkConfig]:
    """Every network of the zoo, in index order; ids are checked to be unique."""
    nets = [sample_network(cfg, i) for i in range(cfg.num_networks)]
    seen: dict[str, int] = {}
    for net in nets:
        if net.network_id in seen:
            raise ConfigError(
                f"{cfg.source}: networks {seen[net.network_id]} and {net.index} have the same "
                "config; widen the distributions or lower num_networks"
            )
        seen[net.network_id] = net.index
    return nets
