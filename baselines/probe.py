"""probe: learned probe inputs run through each network, an MLP on the outputs (ProbeGen).

After Kahana et al. 2024 ("Deep Linear Probe Generators for Weight Space
Learning"): a network is represented by what it computes, its outputs on a
small set of learned inputs (*probes*), concatenated and read by an MLP head.
The probes are not free parameters each: a shared *deep linear* generator (a
stack of Dense layers with no activation between them) maps one latent code per
probe to an input, which biases the probes towards structure and overfits less
than free probes. Image probes end in a tanh (as ProbeGen's image generator);
coordinate probes (INRs, `ArchSpec.input_dims` of length 1) are left linear.

* Invariant to every function-preserving symmetry (permutations, rescalings,
  sign flips) by construction: only the network's function is read. Twins agree
  up to float rounding.
* Each network runs its own forward pass, exactly. Networks are grouped by their
  spec with the hidden widths blanked (family, depth, padding, input and output
  shape); within a group they are zero-padded to the group's widest layers and
  one `jax.vmap` over `zoo_builder.architecture.forward` runs them all (the
  forward pass is exact on zero-padded parameters: padded units have no incoming
  and no outgoing weights). MLPs and CNNs of every activation share a group: each
  network's own activation is picked inside the step (`lax.switch` on its index),
  so a zoo compiles one program per (family, depth), not per activation. Another
  family runs through `zoo_builder.architecture.apply` and keeps its activation
  in the group.
* The heads, loss, epoch loop, early stopping on validation (never test), data
  parallel steps (`NamedSharding`) and prediction format are those of
  `baselines.classic` and `baselines.harness`; batches hold networks of one group
  (`harness.bucket_batches`), padded to one size, so each group compiles once.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from baselines import classic, harness
from zoo_builder.architecture import ACTIVATIONS, CLASSIFIER_ACTIVATIONS, ArchSpec, apply, forward

TRACES = {"train": 0, "eval": 0}
# Families whose `forward` takes the nonlinearity as a function: one group serves all activations.
SHARED_ACTIVATION = ("mlp", "cnn")
# No sine: a SIREN runs in a group of its own.
_ACTIVATION_FNS = tuple(ACTIVATIONS[name] for name in CLASSIFIER_ACTIVATIONS)


@dataclasses.dataclass(frozen=True)
class ProbeConfig:
    """The probe model.

    Attributes:
      kind, outputs: as `baselines.ng_gnn.ModelConfig` (from `harness.model_config_for`).
      num_probes: probe inputs (ProbeGen uses 64 or 128).
      latent_dim: length of each probe's latent code.
      generator_layers, generator_width: the deep linear generator: `generator_layers`
        Dense layers without activations, the hidden ones `generator_width` wide.
      hidden, layers, embed_dim: the MLP head (`classic.ArrayNet`'s trunk and heads).
    """

    kind: str = "regression"
    outputs: tuple[tuple[str, int], ...] = (("test_acc", 1), ("gen_gap", 1))
    num_probes: int = 64
    latent_dim: int = 32
    generator_layers: int = 3
    generator_width: int = 64
    hidden: int = 128
    layers: int = 2
    embed_dim: int = 16

    def __post_init__(self):
        for name in ("num_probes", "latent_dim", "generator_layers", "generator_width", "hidden", "layers",
                     "embed_dim"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"ProbeConfig.{name} must be a positive integer, got {value!r}")

    def head(self) -> classic.ArrayConfig:
        return classic.ArrayConfig(kind=self.kind, outputs=self.outputs, trunk="mlp", hidden=self.hidden,
                                   layers=self.layers, embed_dim=self.embed_dim)


def config_for(task, **overrides) -> ProbeConfig:
    """ng-gnn's heads for `task` (`harness.model_config_for`) on the probe model."""
    heads = harness.model_config_for(task)
    return ProbeConfig(kind=heads.kind, outputs=heads.outputs, **overrides)


class ProbeGenerator(nn.Module):
    """All probes at once, (num_probes, *input_dims): latent codes through a deep linear map."""

    config: ProbeConfig
    input_dims: tuple[int, ...]

    @nn.compact
    def __call__(self):
        cfg = self.config
        z = self.param("latent", nn.initializers.normal(1.0), (cfg.num_probes, cfg.latent_dim))
        for _ in range(cfg.generator_layers - 1):
            z = nn.Dense(cfg.generator_width)(z)  # no activation: the generator is deep but linear
        x = nn.Dense(math.prod(self.input_dims))(z).reshape(cfg.num_probes, *self.input_dims)
        return jnp.tanh(x)


# --------------------------------------------------------------------------- running the networks


def group_key(arch: ArchSpec) -> ArchSpec:
    """The group a network runs in: its spec with the hidden widths (and a shared activation) blanked."""
    blank: dict[str, Any] = {"hidden": (1,) * arch.depth}
    if arch.family in SHARED_ACTIVATION:
        blank["activation"] = CLASSIFIER_ACTIVATIONS[0]
    return dataclasses.replace(arch, **blank)


def plan_groups(archs: Sequence[ArchSpec], groups: dict | None = None) -> dict[ArchSpec, ArchSpec]:
    """Group key -> the spec its networks are padded to: each hidden layer as wide as the group's widest.

    `groups` (a previous plan) is widened, never narrowed, so programs compiled for it still fit.
    """
    out = dict(groups or {})
    for arch in archs:
        key = group_key(arch)
        widths = arch.hidden if key not in out else tuple(map(max, out[key].hidden, arch.hidden))
        out[key] = dataclasses.replace(key, hidden=widths)
    return out


def activation_index(arch: ArchSpec) -> int:
    """What picks the network's activation inside a shared group's step (0 where the group fixes it)."""
    return CLASSIFIER_ACTIVATIONS.index(arch.activation) if arch.family in SHARED_ACTIVATION else 0


def network_fn(spec: ArchSpec):
    """``(params, activation index, x) -> outputs`` of one network of the group padded to `spec`."""
    if spec.family in SHARED_ACTIVATION:
        def run(params, activation, x):
            return forward(spec.family, params, x, lambda h: jax.lax.switch(activation, _ACTIVATION_FNS, h),
                           padding=spec.padding)
    else:
        def run(params, activation, x):
            del activation  # in the group's spec
            return apply(spec, params, x)
    return run


def responses(spec: ArchSpec, nets, activation, probes) -> jax.Array:
    """(networks, probes, outputs): every network of a stacked, padded batch of group `spec` on the probes."""
    return jax.vmap(network_fn(spec), in_axes=(0, 0, None))(nets, activation, probes)


def pad_params(params, spec: ArchSpec, network: str = "") -> list[dict[str, np.ndarray]]:
    """Canonical `params` zero-padded (at the end of every axis) to the layer shapes of `spec`."""
    out = []
    for i, (layer, shapes) in enumerate(zip(params, spec.layer_shapes(), strict=True)):
        padded = {}
        for name, shape in zip(("kernel", "bias"), shapes, strict=True):
            value = np.asarray(layer[name], np.float32)
            if value.ndim != len(shape) or any(s > t for s, t in zip(value.shape, shape, strict=True)):
                raise ValueError(f"network {network!r} layer {i} {name}: shape {value.shape} does not fit "
                                 f"its group's {shape}")
            padded[name] = np.pad(value, [(0, t - s) for s, t in zip(value.shape, shape, strict=True)])
        out.append(padded)
    return out


@dataclasses.dataclass(frozen=True, eq=False)
class Stacks:
    """A part's networks as one zero-padded, stacked pytree per group.

    Attributes:
      specs: the padded spec of each group.
      params: per group, the canonical layer list with a leading network axis (None: no member).
      activation: per group, each member's `activation_index`.
      group, row: per item, its group and its row in that group's stack.
    """

    specs: tuple[ArchSpec, ...]
    params: tuple
    activation: tuple[np.ndarray, ...]
    group: np.ndarray
    row: np.ndarray


def stack(part, groups: dict[ArchSpec, ArchSpec]) -> Stacks:
    """`part`'s networks (`TaskPart.networks`) stacked per group of `groups` (`plan_groups`)."""
    keys = list(groups)
    position = {k: g for g, k in enumerate(keys)}
    networks = part.networks()
    group = np.array([position[group_key(a)] for _, a in networks], np.int64)
    row = np.zeros(len(networks), np.int64)
    params, activation = [], []
    for g, key in enumerate(keys):
        members = np.flatnonzero(group == g)
        row[members] = np.arange(len(members))
        padded = [pad_params(networks[i][0], groups[key], part.ids[i]) for i in members]
        params.append(jax.tree.map(lambda *xs: np.stack(xs), *padded) if padded else None)
        activation.append(np.array([activation_index(networks[i][1]) for i in members], np.int32))
    return Stacks(tuple(groups[k] for k in keys), tuple(params), tuple(activation), group, row)


def _batch(stacks: Stacks, idx: np.ndarray, size: int, targets: dict):
    """Items `idx` (one group) padded to `size` rows (copies of the first) with a mask of real rows.

    Returns (group spec, (nets, activation), targets, mask): the arguments of a step.
    """
    g = int(stacks.group[idx[0]])
    fill = np.full(size - len(idx), idx[0], idx.dtype)
    full = np.concatenate([idx, fill])
    rows = stacks.row[full]
    mask = np.zeros(size, np.float32)
    mask[:len(idx)] = 1.0
    nets = jax.tree.map(lambda a: a[rows], stacks.params[g])
    return (stacks.specs[g], (nets, stacks.activation[g][rows]), {k: v[full] for k, v in targets.items()},
            mask)


# --------------------------------------------------------------------------- training


def _input_dims(specs: Sequence[ArchSpec]) -> tuple[int, ...]:
    dims = sorted({s.input_dims for s in specs})
    if len(dims) != 1:
        raise ValueError(f"probe needs one input shape for every network of a task (its probes are shared); "
                         f"got {dims}")
    return dims[0]


def _output_width(specs: Sequence[ArchSpec], input_dims: tuple[int, ...]) -> int:
    """The outputs per probe, read off each group's forward pass; every group must agree."""
    probes = jax.ShapeDtypeStruct((1, *input_dims), jnp.float32)
    widths = {}
    for spec in specs:
        struct = lambda shape: jax.ShapeDtypeStruct(shape, jnp.float32)  # noqa: E731
        params = [{"kernel": struct(k), "bias": struct(b)} for k, b in spec.layer_shapes()]
        widths[spec] = jax.eval_shape(network_fn(spec), params, jnp.int32(0), probes).shape[-1]
    if len(set(widths.values())) != 1:
        raise ValueError(f"probe needs one output width for every network of a task; got {widths}")
    return next(iter(widths.values()))


@dataclasses.dataclass(frozen=True, eq=False)
class TrainedProbe:
    model_config: ProbeConfig
    train_config: harness.TrainConfig
    variables: Any  # {"generator": ..., "head": ...}
    groups: dict  # `plan_groups` of every network of the task
    input_dims: tuple[int, ...]
    classes: dict
    scale: dict
    # Jitted (train, evaluate) per group spec, reused by `outputs` (no second compilation).
    steps: dict = dataclasses.field(default_factory=dict, compare=False, repr=False)


def model_forward(cfg: ProbeConfig, input_dims: tuple[int, ...], spec: ArchSpec):
    """``forward(variables, (nets, activation)) -> heads`` for a batch of networks of group `spec`."""
    generator, head = ProbeGenerator(cfg, input_dims), classic.ArrayNet(cfg.head())

    def run(variables, inputs, affine=None):
        nets, activation = inputs
        out = responses(spec, nets, activation, generator.apply(variables["generator"]))
        return head.apply(variables["head"], out.reshape(out.shape[0], -1), affine)
    return run


def init_variables(cfg: ProbeConfig, input_dims: tuple[int, ...], out_width: int, seed: int):
    k_gen, k_head = jax.random.split(jax.random.PRNGKey(seed))
    responses = jnp.zeros((1, cfg.num_probes * out_width))
    variables = {"generator": ProbeGenerator(cfg, input_dims).init(k_gen),
                 "head": classic.ArrayNet(cfg.head()).init(k_head, responses)}
    # Strongly typed: a weak-typed leaf (the retrieval head's scale) turns strong after the first
    # update, which would compile the steps a second time.
    return jax.tree.map(lambda x: jnp.asarray(x, x.dtype), variables)


def _steps_for(cfg, input_dims, tx, scale, mesh, steps: dict, spec: ArchSpec):
    """The jitted (train, evaluate) of group `spec`, made once and kept in `steps`."""
    if spec not in steps:
        steps[spec] = harness.jitted_steps(model_forward(cfg, input_dims, spec), cfg, tx, scale, mesh, TRACES,
                                           key=("probe", input_dims, spec))
    return steps[spec]


def evaluate_stacks(evaluate, variables, stacks: Stacks, size: int) -> dict[str, np.ndarray]:
    """Model outputs for every item of `stacks`, in item order.

    `evaluate(spec)` gives the ``(variables, (nets, activation)) -> heads`` function of group `spec`.
    """
    n = len(stacks.group)
    outs: dict[str, np.ndarray] = {}
    for idx in harness.bucket_batches(np.arange(n), stacks.group, size):
        spec, inputs, _, _ = _batch(stacks, idx, size, {})
        out = jax.device_get(evaluate(spec)(variables, inputs))
        for name, v in out.items():
            outs.setdefault(name, np.zeros((n,) + v.shape[1:], v.dtype))[idx] = np.asarray(v)[:len(idx)]
    return outs


DEFAULT_TRAIN = harness.TrainConfig(batch_size=32, epochs=100, patience=15, learning_rate=1e-3,
                                    progress=False)


def fit(task, seed: int = 0, train_cfg: harness.TrainConfig | None = None,
        **model_overrides) -> tuple[TrainedProbe, list[dict]]:
    """Train on `task.train`, keep the parameters with the best validation metric (as `classic.fit_neural`).

    Returns (trained, history): one dict per epoch (epoch, train_loss, val_metric).
    Only `task.train` and `task.val` targets are read.
    """
    train_cfg = train_cfg or DEFAULT_TRAIN
    cfg = config_for(task, **model_overrides)
    mesh = harness.mesh_for(train_cfg.num_devices)
    size = harness.per_device(train_cfg.batch_size, mesh.devices.size) * mesh.devices.size
    # Groups over every part, so a part's batches fit the programs compiled on train.
    groups = plan_groups([a for p in task.parts for _, a in p.networks()])
    specs = list(groups.values())
    input_dims = _input_dims(specs)
    out_width = _output_width(specs, input_dims)
    train, val = stack(task.train, groups), stack(task.val, groups)
    y_train, y_val = harness.part_targets(cfg, task.train), harness.part_targets(cfg, task.val)
    scale = harness.target_scale(cfg, y_train)
    variables = init_variables(cfg, input_dims, out_width, seed)
    tx = harness.adamw(train_cfg.learning_rate, train_cfg.weight_decay)
    state = jax.device_put(harness.State(variables, tx.init(variables)), NamedSharding(mesh, P()))
    steps: dict = {}
    step = lambda spec: _steps_for(cfg, input_dims, tx, scale, mesh, steps, spec)  # noqa: E731

    def train_step(state, spec, inputs, targets, mask):
        return step(spec)[0](state, inputs, targets, mask)

    best, history = harness.run_epochs(
        state, train_step,
        lambda order: (_batch(train, idx, size, y_train)
                       for idx in harness.bucket_batches(order, train.group, size)),
        len(train.group),
        lambda v: classic.selection_metric(cfg, evaluate_stacks(lambda s: step(s)[1], v, val, size), y_val,
                                           scale),
        train_cfg, seed, desc="probe")
    return TrainedProbe(cfg, train_cfg, best, groups, input_dims, dict(task.classes), scale, steps), history


def outputs(trained: TrainedProbe, part) -> dict[str, np.ndarray]:
    """Raw model outputs for every item of `part`, in `part.ids` order."""
    mesh = harness.mesh_for(trained.train_config.num_devices)
    size = harness.per_device(trained.train_config.batch_size, mesh.devices.size) * mesh.devices.size
    # Networks wider than any the groups were made for (e.g. another zoo) widen them: new programs.
    groups = plan_groups([a for _, a in part.networks()], trained.groups)
    cfg = trained.model_config
    evaluate = lambda spec: _steps_for(cfg, trained.input_dims, harness.NO_UPDATE, trained.scale,  # noqa: E731
                                       mesh, trained.steps, spec)[1]
    return evaluate_stacks(evaluate, trained.variables, stack(part, groups), size)


def predict(trained: TrainedProbe, part) -> dict:
    """Predictions for `part` in the leaderboard's format (`harness.format_predictions`)."""
    return harness.format_predictions(trained.model_config, trained.classes, outputs(trained, part), part)
