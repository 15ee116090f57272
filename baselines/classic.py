"""Classic reference methods on the array views: flat-mlp, statnn, statnn-gbt, cnn-matrices.

* ``flat-mlp``: an MLP on the flat view (every parameter in one vector) — the
  naive baseline, not invariant to hidden-unit permutations.
* ``statnn``: an MLP on the stats view (Unterthiner et al. 2020), invariant to
  hidden-unit permutations because its features are.
* ``statnn-gbt``: scikit-learn's HistGradientBoosting on the same features, one
  regressor / classifier per target; the number of boosting iterations is chosen
  on the validation part only (staged predictions), then the model is refitted
  with that many iterations. Retrieval: the predicted class probabilities over
  the dataset labels, L2-normalised, are the embedding.
* ``cnn-matrices``: a small CNN over the matrices view (each layer's weight matrix
  one channel of an image).

The neural methods reuse `baselines.harness`: its heads (`model_config_for`), loss
(`per_graph_loss`), validation metric (`val_metric`), device mesh and prediction
format; this module adds only the generic path for dense array inputs. Features
are standardised with statistics of the train part only. Model selection reads
the validation part only, never test. Deterministic given `seed`.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
from threadpoolctl import threadpool_limits

from baselines import harness

NEURAL = ("flat-mlp", "statnn", "cnn-matrices")
METHODS = (*NEURAL, "statnn-gbt")
VIEW_OF = {"flat-mlp": "flat", "statnn": "stats", "statnn-gbt": "stats", "cnn-matrices": "matrices"}
TRACES = {"train": 0, "eval": 0}
CLIP = 10.0  # standardised features are clipped to [-CLIP, CLIP]


# --------------------------------------------------------------------------- features


def raw_features(method: str, part) -> np.ndarray:
    """The view a method reads, as float32: (n, F) for the MLPs and GBT, (n, R, C, L) for the CNN."""
    view = VIEW_OF[method]
    if view == "stats":
        return np.asarray(part.view("stats"), np.float32)
    x, _ = part.view(view)
    x = np.asarray(x, np.float32)
    if view == "matrices":
        x = np.transpose(x, (0, 2, 3, 1))  # (n, L, R, C) -> channels last
    return x


@dataclasses.dataclass(frozen=True)
class Standardizer:
    """Per-feature standardisation with statistics of the train part only."""

    mean: np.ndarray
    std: np.ndarray

    @classmethod
    def fit(cls, x: np.ndarray) -> Standardizer:
        x64 = np.asarray(x, np.float64)
        std = x64.std(0)
        # Constant train features (e.g. padding no train network fills) keep their scale.
        std = np.where(std > 1e-8, std, 1.0)
        return cls(x64.mean(0).astype(np.float32), std.astype(np.float32))

    def __call__(self, x: np.ndarray) -> np.ndarray:
        # Clipped: a feature nearly constant on train must not blow up on another part.
        return np.clip((x - self.mean) / self.std, -CLIP, CLIP).astype(np.float32)


# --------------------------------------------------------------------------- models


@dataclasses.dataclass(frozen=True)
class ArrayConfig:
    """A neural method over an array view.

    Attributes:
      kind, outputs: as `baselines.ng_gnn.ModelConfig` (from `harness.model_config_for`).
      trunk: "mlp" or "cnn".
      hidden: width of the MLP layers / channels of the CNN; layers: trunk depth.
      embed_dim: retrieval embedding length; dropout: MLP input dropout (0: none).
    """

    kind: str = "regression"
    outputs: tuple[tuple[str, int], ...] = (("test_acc", 1), ("gen_gap", 1))
    trunk: str = "mlp"
    hidden: int = 64
    layers: int = 2
    embed_dim: int = 16


def config_for(task, method: str, **overrides) -> ArrayConfig:
    """ng-gnn's heads for `task`, with the trunk of `method`."""
    heads = harness.model_config_for(task)
    trunk = "cnn" if method == "cnn-matrices" else "mlp"
    return ArrayConfig(kind=heads.kind, outputs=heads.outputs, trunk=trunk, **overrides)


class ArrayNet(nn.Module):
    """MLP or small CNN trunk, then ng-gnn's heads (sigmoid/tanh, logits, or L2-normalised embedding)."""

    config: ArrayConfig

    @nn.compact
    def __call__(self, x, affine=None):
        cfg = self.config
        if cfg.trunk == "cnn":
            for i in range(cfg.layers):
                x = nn.gelu(nn.Conv(cfg.hidden * (i + 1), (3, 3), strides=(2, 2))(x))
            h = jnp.concatenate([x.mean((1, 2)), x.max((1, 2))], -1)
            h = nn.gelu(nn.Dense(cfg.hidden)(h))
        else:
            h = x
            for _ in range(cfg.layers):
                h = nn.gelu(nn.Dense(cfg.hidden)(h))
        return heads(self, cfg, h, affine)


def heads(module: nn.Module, cfg, h, affine=None):
    """The task's heads on features `h`, created inside `module`'s compact call.

    A function rather than a module so that every array method (and nfn-np) shares the
    heads without nesting their parameters one level deeper. `cfg` needs ``kind``,
    ``outputs`` and ``embed_dim`` (as `ArrayConfig`). `affine` (regression: head name ->
    (offset, gain), `harness.head_affine` of the train targets) gives squash(offset + gain *
    head(h)), so that a fresh model predicts about the train mean with the train spread; an
    argument, so every split of a task runs one compiled program.
    """
    dense = {name: nn.Dense(size, name=f"head_{name}") for name, size in cfg.outputs}
    if cfg.kind == "retrieval":
        z = nn.Dense(cfg.embed_dim)(h)
        z = z / jnp.maximum(jnp.linalg.norm(z, axis=-1, keepdims=True), 1e-6)
        scale = module.param("scale", lambda _: jnp.array(10.0))
        out = {name: scale * head(z) for name, head in dense.items()}
        out["embedding"] = z
        return out
    out = {name: head(h) for name, head in dense.items()}
    for name, (offset, gain) in (affine or {}).items():
        out[name] = offset + gain * out[name]
    if cfg.kind == "regression":
        out = {name: jax.nn.sigmoid(v) if name == "test_acc" else jnp.tanh(v) for name, v in out.items()}
    return out


@dataclasses.dataclass(frozen=True, eq=False)
class TrainedArray:
    method: str
    model_config: ArrayConfig
    train_config: harness.TrainConfig
    variables: Any
    standardizer: Standardizer
    classes: dict
    scale: dict
    # The jitted eval step of `fit_neural`, reused by `outputs_neural` (no second compilation).
    evaluate: Any = dataclasses.field(default=None, compare=False, repr=False)


def _padded(x: np.ndarray, targets: dict, idx: np.ndarray, size: int):
    """Rows `idx` padded to `size` rows (copies of row idx[0]) with a mask of real rows."""
    real = len(idx)
    full = np.concatenate([idx, np.full(size - real, idx[0], idx.dtype)])
    mask = np.zeros(size, np.float32)
    mask[:real] = 1.0
    return x[full], {k: v[full] for k, v in targets.items()}, mask


def _steps(model: ArrayNet, tx, scale: dict, mesh):
    forward = lambda params, x, affine: model.apply(params, x, affine)  # noqa: E731
    return harness.jitted_steps(forward, model.config, tx, scale, mesh, TRACES, key=("array",))


def _batch_size(train_cfg: harness.TrainConfig, n_dev: int) -> int:
    return harness.per_device(train_cfg.batch_size, n_dev) * n_dev


def _eval(evaluate, params, x: np.ndarray, batch: int) -> dict[str, np.ndarray]:
    chunks: dict[str, list] = {}
    for s in range(0, len(x), batch):
        idx = np.arange(s, min(s + batch, len(x)))
        xb, _, mask = _padded(x, {}, idx, batch)
        out = jax.device_get(evaluate(params, xb))
        for name, v in out.items():
            chunks.setdefault(name, []).append(np.asarray(v)[mask.astype(bool)])
    return {name: np.concatenate(v) for name, v in chunks.items()}


def selection_metric(cfg: ArrayConfig, out: dict, targets: dict, scale: dict) -> float:
    """Higher is better. Regression: minus the mean over targets of val MSE / train variance (a
    constant train-mean predictor scores about -1; Kendall τ, ng-gnn's metric, is too coarse on a
    small validation part). Otherwise `harness.val_metric` (accuracy)."""
    if cfg.kind != "regression":
        return harness.val_metric(cfg, out, targets)
    return -float(np.mean([np.mean((out[n][:, 0] - targets[n]) ** 2) / scale[n][1] ** 2
                           for n, _ in cfg.outputs]))


def fit_neural(method: str, model_cfg: ArrayConfig, train_cfg: harness.TrainConfig, task,
               seed: int = 0) -> tuple[TrainedArray, list[dict]]:
    """Train on `task.train`, keep the parameters with the best validation metric (as `harness.fit`)."""
    mesh = harness.mesh_for(train_cfg.num_devices)
    n_dev = mesh.devices.size
    batch = _batch_size(train_cfg, n_dev)
    x_train = raw_features(method, task.train)
    std = Standardizer.fit(x_train)
    x_train, x_val = std(x_train), std(raw_features(method, task.val))
    y_train, y_val = harness.part_targets(model_cfg, task.train), harness.part_targets(model_cfg, task.val)
    scale = harness.target_scale(model_cfg, y_train)
    model = ArrayNet(model_cfg)
    tx = harness.adamw(train_cfg.learning_rate, train_cfg.weight_decay)
    params = model.init(jax.random.PRNGKey(seed), x_train[:1])
    state = jax.device_put(harness.State(params, tx.init(params)), NamedSharding(mesh, P()))
    train, evaluate = _steps(model, tx, scale, mesh)
    best, history = harness.run_epochs(
        state, train,
        lambda order: (_padded(x_train, y_train, order[i:i + batch], batch)
                       for i in range(0, len(order), batch)),
        len(x_train),
        lambda p: selection_metric(model_cfg, _eval(evaluate, p, x_val, batch), y_val, scale),
        train_cfg, seed, desc=method)
    return TrainedArray(method, model_cfg, train_cfg, best, std, dict(task.classes), scale, evaluate), history


def outputs_neural(trained: TrainedArray, part) -> dict[str, np.ndarray]:
    mesh = harness.mesh_for(trained.train_config.num_devices)
    batch = _batch_size(trained.train_config, mesh.devices.size)
    evaluate = trained.evaluate
    if evaluate is None:
        _, evaluate = _steps(ArrayNet(trained.model_config), harness.NO_UPDATE, trained.scale, mesh)
    x = trained.standardizer(raw_features(trained.method, part))
    return _eval(evaluate, trained.variables, x, batch)


# --------------------------------------------------------------------------- gradient-boosted trees


@dataclasses.dataclass(frozen=True)
class GBTConfig:
    """statnn-gbt: HistGradientBoosting per target; `max_iter` iterations at most, chosen on val."""

    kind: str = "regression"
    outputs: tuple[tuple[str, int], ...] = (("test_acc", 1), ("gen_gap", 1))
    max_iter: int = 200
    learning_rate: float = 0.1
    max_leaf_nodes: int = 15
    min_samples_leaf: int = 5
    # OpenMP threads for scikit-learn (None: its default, every core). Next to XLA's idle threads
    # on a small CPU, OpenMP's spinning threads slowed boosting 15x in our tests; zoo-sized
    # feature tables (thousands of rows, ~100 columns) are fast on one thread.
    threads: int | None = 1


@dataclasses.dataclass(frozen=True, eq=False)
class TrainedGBT:
    model_config: GBTConfig
    models: dict  # head name -> fitted estimator
    standardizer: Standardizer
    classes: dict


def gbt_config_for(task, **overrides) -> GBTConfig:
    heads = harness.model_config_for(task)
    return GBTConfig(kind=heads.kind, outputs=heads.outputs, **overrides)


def _gbt(cfg: GBTConfig, max_iter: int, seed: int):
    kw = dict(max_iter=max_iter, learning_rate=cfg.learning_rate, max_leaf_nodes=cfg.max_leaf_nodes,
              min_samples_leaf=cfg.min_samples_leaf, early_stopping=False, random_state=seed)
    cls = HistGradientBoostingRegressor if cfg.kind == "regression" else HistGradientBoostingClassifier
    return cls(**kw)


def _proba_full(model, x: np.ndarray, n_classes: int, staged: bool = False):
    """Class probabilities over all `n_classes` (classes absent from train get 0)."""
    def full(p):
        out = np.zeros((len(x), n_classes), np.float64)
        out[:, model.classes_.astype(int)] = p
        return out
    if staged:
        return (full(p) for p in model.staged_predict_proba(x))
    return full(model.predict_proba(x))


def fit_gbt(cfg: GBTConfig, task, seed: int = 0) -> tuple[TrainedGBT, list[dict]]:
    """One estimator per target; its iteration count is the best on the validation part (never test)."""
    with threadpool_limits(limits=cfg.threads, user_api="openmp"):
        return _fit_gbt(cfg, task, seed)


def _fit_gbt(cfg: GBTConfig, task, seed: int) -> tuple[TrainedGBT, list[dict]]:
    x_train = raw_features("statnn-gbt", task.train)
    std = Standardizer.fit(x_train)  # trees do not need it; kept so the features match statnn's
    x_train, x_val = std(x_train), std(raw_features("statnn-gbt", task.val))
    models, history = {}, []
    for name, size in cfg.outputs:
        y_tr, y_va = np.asarray(task.train.targets[name]), np.asarray(task.val.targets[name])
        model = _gbt(cfg, cfg.max_iter, seed).fit(x_train, y_tr)
        if cfg.kind == "regression":
            scores = [-float(np.mean((p - y_va) ** 2)) for p in model.staged_predict(x_val)]
        else:  # validation log-loss (accuracy ties too often on small parts)
            scores = [float(np.mean(np.log(np.clip(p[np.arange(len(y_va)), y_va.astype(int)], 1e-12, 1))))
                      for p in _proba_full(model, x_val, size, staged=True)]
        best = int(np.argmax(scores)) + 1
        models[name] = _gbt(cfg, best, seed).fit(x_train, y_tr)
        history.append({"target": name, "iterations": best, "val_score": scores[best - 1]})
    return TrainedGBT(cfg, models, std, dict(task.classes)), history


def outputs_gbt(trained: TrainedGBT, part) -> dict[str, np.ndarray]:
    cfg = trained.model_config
    x = trained.standardizer(raw_features("statnn-gbt", part))
    out = {}
    with threadpool_limits(limits=cfg.threads, user_api="openmp"):
        for name, size in cfg.outputs:
            model = trained.models[name]
            if cfg.kind == "regression":
                out[name] = np.asarray(model.predict(x), np.float64)[:, None]
            else:
                out[name] = _proba_full(model, x, size)
    if cfg.kind == "retrieval":
        p = out[cfg.outputs[0][0]]  # the class probabilities of retrieval's one target
        out["embedding"] = p / np.maximum(np.linalg.norm(p, axis=-1, keepdims=True), 1e-12)
    return out


# --------------------------------------------------------------------------- one entry point

DEFAULT_TRAIN = harness.TrainConfig(batch_size=16, epochs=60, patience=15, learning_rate=1e-3, progress=False)


def fit(method: str, task, seed: int = 0, train_cfg: harness.TrainConfig | None = None, **model_overrides):
    """(trained, history) for a classic `method` on `task`."""
    if method == "statnn-gbt":
        return fit_gbt(gbt_config_for(task, **model_overrides), task, seed)
    if method not in NEURAL:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    cfg = config_for(task, method, **model_overrides)
    return fit_neural(method, cfg, train_cfg or DEFAULT_TRAIN, task, seed)


def outputs(trained, part) -> dict[str, np.ndarray]:
    return outputs_gbt(trained, part) if isinstance(trained, TrainedGBT) else outputs_neural(trained, part)


def predict(trained, part) -> dict:
    """Predictions for `part` in the leaderboard's format (`harness.format_predictions`)."""
    return harness.format_predictions(trained.model_config, trained.classes, outputs(trained, part), part)
