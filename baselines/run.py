"""Run reference methods on a zoo's tasks and write leaderboard submissions.

`run(zoo, task_name, method, split, seeds, out_dir)` trains `method` once per seed
on the task's train part (model selection on val), predicts its test part and
writes one submission per seed with `benchmark.submission.write_submission`.
The command ``zoobench baselines run`` (`zoobench.baselines_command`) calls it.

The merging task has its own methods: ``naive`` (identity permutations),
``weight-matching`` (Git Re-Basin, `baselines.weight_matching`) and ``ng-gnn``
(matching node embeddings, `baselines.ng_gnn_merging`); the other methods do
not apply to it (``--task all`` / ``--method all`` run only the pairs that make
sense). `PROFILES` holds the hyper-parameters of each method per profile.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NamedTuple

from baselines import classic, harness, nfn, ng_gnn_merging, probe, weight_matching
from benchmark.augmentation import PERMUTE_ONLY, AugmentConfig, augmented_task
from benchmark.submission import write_submission
from benchmark.tasks import TASKS, load_task

PREDICTION_TASKS = ("generalization", "classification", "retrieval", "inr-classification")


@dataclasses.dataclass(frozen=True)
class MethodSettings:
    """How one method is trained: optimisation (`train`) and model-config overrides (`model`).

    `train` None means the method's own default (`classic.DEFAULT_TRAIN`,
    `harness.TrainConfig()`); `model` holds fields of the method's model config
    (e.g. ``hidden``, statnn-gbt's ``max_iter``). On the tasks of `AUGMENTED_TASKS`
    the train part gets `augment_copies` augmented copies of every network
    (`benchmark.augmentation`; None: the method's default, `AUGMENT_COPIES`). On a zoo
    of INRs `inr_train`, where given, replaces `train` (a SIREN's ω0 makes its
    function, hence a probe's gradients, far steeper than a classifier's), and
    `inr_model` is added to `model` (ng-gnn's probe features, as the Neural Graphs
    paper uses them on INRs).
    """

    train: harness.TrainConfig | None = None
    model: tuple[tuple[str, object], ...] = ()
    augment_copies: int | None = None
    augment: AugmentConfig = AugmentConfig()
    inr_train: harness.TrainConfig | None = None
    inr_model: tuple[tuple[str, object], ...] = ()



class Fitted(NamedTuple):
    """A method's test predictions (submission format) and its training history.

    history: one dict per epoch (``epoch``, ``train_loss``, ``val_metric``) for the
    neural methods, one per target for the boosted trees, empty for methods that
    do not train.
    """

    predictions: dict
    history: list[dict]


def _classic(method: str, task, seed: int, settings: MethodSettings) -> Fitted:
    trained, history = classic.fit(method, task, seed=seed, train_cfg=settings.train, **dict(settings.model))
    return Fitted(classic.predict(trained, task.test), history)


def _ng_gnn(method: str, task, seed: int, settings: MethodSettings) -> Fitted:
    if task.name == "merging":
        model, variables = ng_gnn_merging.default_model(seed=seed, **dict(settings.model))
        return Fitted(ng_gnn_merging.predict_pairs(model, variables, task.test), [])
    cfg = harness.model_config_for(task, **dict(settings.model))
    train_cfg = settings.train or harness.TrainConfig(progress=False)
    trained, history = harness.fit(cfg, train_cfg, task, seed=seed)
    return Fitted(harness.predict(trained, task.test), history)


def _nfn(method: str, task, seed: int, settings: MethodSettings) -> Fitted:
    trained, history = nfn.fit(task, seed=seed, train_cfg=settings.train, **dict(settings.model))
    return Fitted(nfn.predict(trained, task.test), history)


def _probe(method: str, task, seed: int, settings: MethodSettings) -> Fitted:
    trained, history = probe.fit(task, seed=seed, train_cfg=settings.train, **dict(settings.model))
    return Fitted(probe.predict(trained, task.test), history)


def _weight_matching(method: str, task, seed: int, settings: MethodSettings) -> Fitted:
    return Fitted(weight_matching.predict_pairs(task.test, method, seed=seed), [])


@dataclasses.dataclass(frozen=True)
class Method:
    """A reference method: the tasks it handles and how it trains and predicts.

    `fit_predict(name, task, seed, settings)` trains on ``task.train`` (selection on
    ``task.val`` only) and returns a `Fitted`: the test predictions in the submission
    format and the training history.
    """

    name: str
    tasks: tuple[str, ...]
    fit_predict: Callable[[str, object, int, MethodSettings], Fitted]


# Methods that are another method trained otherwise: its model, training loop and profile settings.
VARIANT_OF = {"flat-mlp-aug": "flat-mlp"}


def _variant(method: str, task, seed: int, settings: MethodSettings) -> Fitted:
    base = VARIANT_OF[method]
    return REGISTRY[base].fit_predict(base, task, seed, settings)


# Every reference method, in table order: adding a baseline is one module and one row here.
REGISTRY: dict[str, Method] = {m.name: m for m in (
    *(Method(name, PREDICTION_TASKS, _classic) for name in classic.METHODS),
    Method("ng-gnn", (*PREDICTION_TASKS, "merging"), _ng_gnn),
    Method("probe", PREDICTION_TASKS, _probe),
    Method("nfn-np", PREDICTION_TASKS, _nfn),
    # DWSNets reports the flat MLP without and with permutation augmentation on INRs.
    Method("flat-mlp-aug", ("inr-classification",), _variant),
    *(Method(name, ("merging",), _weight_matching) for name in weight_matching.MERGING_METHODS),
)}
METHODS = tuple(REGISTRY)
# The tasks whose neural baselines train on augmented networks, as DWSNets and Neural Graphs do on INRs.
AUGMENTED_TASKS = ("inr-classification",)
# Augmented copies per training network by default: the neural methods, but plain flat-mlp (DWSNets'
# unaugmented MLP row); flat-mlp-aug is flat-mlp with permutation augmentation only. Not ng-gnn: it is
# permutation invariant by construction, and the other augmentations cost it validation accuracy on
# inr-small (lr 1e-3, seed 0: best 0.44 in 44 epochs with 2 copies, 0.62 in 20 without).
AUGMENT_COPIES = {m: 2 for m in ("statnn", "cnn-matrices", "probe", "nfn-np", "flat-mlp-aug")}
PREDICTION_METHODS = tuple(m for m in METHODS if set(PREDICTION_TASKS) <= set(REGISTRY[m].tasks))
MERGING_METHODS = tuple(m for m in METHODS if "merging" in REGISTRY[m].tasks)


# Per-profile settings. "full" is each method's defaults; "fast" is what `zoobench reproduce`
# trains the `small` zoo with: every neural method until validation stops improving (the
# epoch caps are far above where early stopping ends the runs; reproduce.json records
# whether it did), at batch sizes and widths that keep the main job to minutes on a
# 2-core CPU; "smoke" is for the tiny zoo and tests. docs/baselines.md lists them.
PROFILES: dict[str, dict[str, MethodSettings]] = {
    # Probes of an INR learn at 1e-4 (at 1e-3 and 3e-3 their train loss stays at chance: measured on
    # inr-small's train and val parts).
    "full": {"probe": MethodSettings(inr_train=dataclasses.replace(probe.DEFAULT_TRAIN, learning_rate=1e-4)),
             "ng-gnn": MethodSettings(inr_model=(("probe_features", 32),))},
    "fast": {
        # On INRs the weights alone teach ng-gnn little from inr-small's 1,400 training INRs (val 0.10 at
        # lr 2e-3 and 1e-3 for 12 epochs; 0.22 at best in 60 epochs with Fourier-encoded values), with 32
        # probe features 0.62 in 20 epochs at lr 1e-3; at 2e-3 it peaks at 0.44 and then diverges
        # (validation part, seed 0; docs/baselines.md).
        "ng-gnn": MethodSettings(harness.TrainConfig(batch_size=32, epochs=100, patience=8,
                                                     learning_rate=2e-3, progress=False),
                                 (("hidden", 32), ("num_layers", 3)), inr_model=(("probe_features", 32),),
                                 inr_train=harness.TrainConfig(batch_size=32, epochs=100, patience=8,
                                                               learning_rate=1e-3, progress=False)),
        **{m: MethodSettings(harness.TrainConfig(batch_size=32, epochs=200, patience=10, progress=False))
           for m in ("flat-mlp", "statnn")},
        "cnn-matrices": MethodSettings(harness.TrainConfig(batch_size=32, epochs=100, patience=8,
                                                           progress=False), (("hidden", 32),)),
        "statnn-gbt": MethodSettings(model=(("max_iter", 200),)),
        "probe": MethodSettings(harness.TrainConfig(batch_size=32, epochs=200, patience=10, progress=False),
                                (("num_probes", 32), ("hidden", 64)),
                                inr_train=harness.TrainConfig(batch_size=32, epochs=200, patience=10,
                                                              learning_rate=1e-4, progress=False)),
        "nfn-np": MethodSettings(harness.TrainConfig(batch_size=32, epochs=100, patience=8,
                                                     learning_rate=2e-3, progress=False)),
    },
    "smoke": {
        "ng-gnn": MethodSettings(harness.TrainConfig(batch_size=8, epochs=2, patience=2, learning_rate=3e-3,
                                                     num_buckets=1, progress=False), (("hidden", 16),),
                                 inr_model=(("probe_features", 8),)),
        **{m: MethodSettings(harness.TrainConfig(batch_size=16, epochs=4, patience=4, learning_rate=3e-3,
                                                 progress=False))
           for m in classic.NEURAL},
        "statnn-gbt": MethodSettings(model=(("max_iter", 20),)),
        "probe": MethodSettings(harness.TrainConfig(batch_size=16, epochs=4, patience=4, learning_rate=3e-3,
                                                    progress=False), (("num_probes", 16), ("hidden", 32)),
                                inr_train=harness.TrainConfig(batch_size=16, epochs=4, patience=4,
                                                              learning_rate=1e-4, progress=False)),
        "nfn-np": MethodSettings(harness.TrainConfig(batch_size=16, epochs=4, patience=4, learning_rate=3e-3,
                                                     progress=False), (("hidden", 8), ("layers", 1))),
    },
}


def settings_for(method: str, profile: str = "full") -> MethodSettings:
    if profile not in PROFILES:
        raise ValueError(f"profile must be one of {list(PROFILES)}, got {profile!r}")
    if method == "flat-mlp-aug":  # flat-mlp as the profile trains it, on permuted copies only
        return dataclasses.replace(PROFILES[profile].get("flat-mlp", MethodSettings()), augment=PERMUTE_ONLY)
    return PROFILES[profile].get(method, MethodSettings())


def _default_train(method: str) -> harness.TrainConfig:
    method = VARIANT_OF.get(method, method)
    if method == "probe":
        return probe.DEFAULT_TRAIN
    return classic.DEFAULT_TRAIN if method in classic.NEURAL else harness.TrainConfig(progress=False)


def epoch_cap(method: str, profile: str) -> int:
    """The most epochs `method` trains for under `profile` (early stopping usually ends it sooner)."""
    return (settings_for(method, profile).train or _default_train(method)).epochs


def _settings_text(method: str, profile: str) -> str:
    """The non-default hyper-parameters of `method` under `profile`, as ``name=value`` pairs."""
    settings = settings_for(method, profile)
    parts = [f"{k}={v}" for k, v in settings.model]
    if settings.train is not None:
        base = _default_train(method)
        parts += [f"{f.name}={getattr(settings.train, f.name)}" for f in dataclasses.fields(settings.train)
                  if f.name != "progress" and getattr(settings.train, f.name) != getattr(base, f.name)]
    if settings.inr_train is not None:
        base = settings.train or _default_train(method)
        parts += [f"INR zoos: {f.name}={getattr(settings.inr_train, f.name)}"
                  for f in dataclasses.fields(settings.inr_train)
                  if f.name != "progress" and getattr(settings.inr_train, f.name) != getattr(base, f.name)]
    parts += [f"INR zoos: {k}={v}" for k, v in settings.inr_model]
    copies = augment_copies(method, settings)
    if copies:
        parts.append(f"augment={copies}" + (" (permutations)" if settings.augment == PERMUTE_ONLY else ""))
    return ", ".join(parts) or "defaults"


def profile_table() -> str:
    """Markdown table of every method's settings per profile (docs/baselines.md embeds it; a test
    checks the copy is current)."""
    lines = ["| method | " + " | ".join(PROFILES) + " |", "|---|" + "---|" * len(PROFILES)]
    for method in METHODS:
        lines.append(f"| {method} | " + " | ".join(_settings_text(method, p) for p in PROFILES) + " |")
    return "\n".join(lines)


def applies(task_name: str, method: str) -> bool:
    """Whether `method` handles `task_name` (`REGISTRY`)."""
    return task_name in REGISTRY[method].tasks


def augment_copies(method: str, settings: MethodSettings) -> int:
    return AUGMENT_COPIES.get(method, 0) if settings.augment_copies is None else settings.augment_copies


def fit_predict(method: str, task, seed: int, settings: MethodSettings = MethodSettings()) -> Fitted:
    """Train `method` on `task` (selection on val): its test predictions and training history.

    On `AUGMENTED_TASKS` the train part is augmented first (copies drawn from `seed`).
    """
    if task.zoo.kind == "inr":
        settings = dataclasses.replace(settings, train=settings.inr_train or settings.train,
                                       model=settings.model + settings.inr_model)
    copies = augment_copies(method, settings)
    if task.name in AUGMENTED_TASKS and copies:
        task = augmented_task(task, copies, seed=seed, cfg=settings.augment)
    return REGISTRY[method].fit_predict(method, task, seed, settings)


def submission_name(task_name: str, split: str, method: str, seed: int) -> str:
    return f"{task_name}-{split}-{method}-seed{seed}.json"


def run(zoo, task_name: str, method: str, split: str = "id", seeds: Sequence[int] = (0,), out_dir=".",
        *, profile: str = "full", settings: MethodSettings | None = None) -> list[Path]:
    """Write ``OUT/{task}-{split}-{method}-seed{S}.json`` for every seed; returns the paths.

    `settings` (default: the `profile`'s for `method`) says how the method is trained.
    """
    if method not in REGISTRY:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if task_name not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {task_name!r}")
    if not applies(task_name, method):
        raise ValueError(f"method {method!r} does not handle the {task_name!r} task")
    task = load_task(task_name, zoo, split)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for seed in seeds:
        preds = fit_predict(method, task, int(seed), settings or settings_for(method, profile)).predictions
        path = out_dir / submission_name(task_name, split, method, seed)
        paths.append(write_submission(path, task=task, method=method, version="0",
                                      description=f"zoobench reference baseline {method} ({profile} profile)",
                                      predictions=preds, seed=int(seed)))
    return paths
