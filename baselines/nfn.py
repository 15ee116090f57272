"""nfn-np: the neuron-permutation (NP) equivariant layers of Neural Functional Networks, in Flax.

After Zhou et al., NeurIPS 2023 ("Permutation Equivariant Neural Functionals",
github.com/AllanYangZhou/nfn, ``NPLinear``/``NPPool``). A network is read as its
weight-space features: layer ``i``'s kernel as an array ``(n_in, n_out, F)`` (one
entry per connection; a conv kernel's 9 spatial taps are feature channels, as NFN
does) and its bias as ``(n_out, F)``. An NP layer maps such features to new ones
with the most general linear map that commutes with permuting any layer's units:
per connection a pointwise term, plus terms broadcast along rows (from means over
the layer's outputs and the previous layer's features of the same units), along
columns (means over its inputs, its bias, the next layer's features of the same
units) and from global means. Stacked with pointwise nonlinearities, then
mean-pooled per layer (``NPPool``) and an MLP, the model is invariant to
hidden-unit permutations. Input and output units get learned position embeddings
(NFN's ``io_embed``): their order means something here.

Zoos that mix architectures, by padding with masks within a *layout* (input width,
taps of a hidden layer and of the last layer, output width: an MLP and a CNN of one
zoo are two layouts) and one batch, hence one compilation, per layout:

* **widths**: hidden layers are zero-padded to the widest of the layout, with unit
  masks; every mean is masked and padded entries are zeroed after each layer;
* **depths**: hidden layers are padded to the deepest of the layout with absent
  *slots* (masks 0). Hidden layer ``i`` is slot ``h{i}`` whatever the depth, the last
  layer is slot ``head``; a per-network one-hot of its last hidden slot links the
  head to it. NP parameters are per slot and shared by every layout; only the lift
  of raw features and the input/output embeddings are per layout. The global terms
  and the pooling read every slot of the zoo (zeros and a presence flag for absent ones).

A padded network gives the same output as the unpadded one (up to float rounding).

Nothing here reads an architecture family: only parameter shapes, so any
layer-list family of dense or HWIO conv kernels works.
"""

from __future__ import annotations

import dataclasses
import zlib
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from baselines import classic, harness

TRACES = {"train": 0, "eval": 0}
# A layout: (input width, taps of a hidden layer, taps of the last layer, output width): every
# shape but the hidden widths and the depth, which are padded.
Layout = tuple[int, int, int, int]


# --------------------------------------------------------------------------- encoding


def kernel_features(kernel) -> np.ndarray:
    """A kernel as weight-space features (n_in, n_out, taps): dense (in, out) gets 1 tap, HWIO 9."""
    k = np.asarray(kernel, np.float32)
    if k.ndim == 2:
        return k[:, :, None]
    return np.moveaxis(k.reshape(-1, *k.shape[-2:]), 0, -1)


def layout_of(params) -> Layout:
    """(input width, taps of the hidden layers, taps of the last layer, output width)."""
    shapes = [np.shape(layer["kernel"]) for layer in params]
    taps = [int(np.prod(s[:-2])) if len(s) > 2 else 1 for s in shapes]
    if len(set(taps[:-1])) > 1:
        raise ValueError(f"hidden layers with different numbers of taps {taps[:-1]}: nfn-np pads depths "
                         "only over layers of one kind")
    return int(shapes[0][-2]), taps[0] if len(taps) > 1 else 1, taps[-1], int(shapes[-1][-1])


def slot_names(depth: int) -> tuple[str, ...]:
    """Parameter slots of `depth` hidden layers and the last: ``h0 … h{depth-1}``, then ``head``."""
    return tuple(f"h{i}" for i in range(depth)) + ("head",)


def encode(params_list: Sequence, width: int, depth: int, scale: dict | None = None) -> dict:
    """Networks of one layout as one padded batch, hidden widths padded to `width`, depths to `depth`.

    Returns {"w": per slot (n, rows, cols, taps), "b": per slot (n, cols), "m": unit masks
    (n, units) of the inputs, of each hidden slot's outputs and of the outputs, "present": (n,
    depth) which hidden slots a network has, "last": (n, depth) one-hot of its last hidden slot}.
    The head's rows are the units of the network's last hidden layer (``last`` picks them).
    `scale` maps (slot, "w"|"b") to a divisor (`fit_scale`); missing entries divide by 1.
    """
    n_in, taps, head_taps, n_out = layout = layout_of(params_list[0])
    n = len(params_list)
    ws = [np.zeros((n, n_in if s == 0 else width, width, taps), np.float32) for s in range(depth)]
    ws.append(np.zeros((n, width, n_out, head_taps), np.float32))
    bs = [np.zeros((n, width), np.float32) for _ in range(depth)] + [np.zeros((n, n_out), np.float32)]
    ms = [np.ones((n, n_in), np.float32)] + [np.zeros((n, width), np.float32) for _ in range(depth)]
    ms.append(np.ones((n, n_out), np.float32))
    present, last = np.zeros((n, depth), np.float32), np.zeros((n, depth), np.float32)
    scale = scale or {}
    for j, params in enumerate(params_list):
        if layout_of(params) != layout:
            raise ValueError(f"network {j} has layout {layout_of(params)}, not {layout}: one per batch")
        d = len(params) - 1
        if d > depth:
            raise ValueError(f"network {j} has {d} hidden layers, more than depth={depth}")
        present[j, :d], last[j, d - 1] = 1.0, 1.0
        for i, (layer, name) in enumerate(zip(params, slot_names(d), strict=True)):
            s = -1 if i == d else i  # the head goes to the last slot
            w = kernel_features(layer["kernel"])
            if w.shape[0] > ws[s].shape[1] or w.shape[1] > ws[s].shape[2]:
                raise ValueError(f"network {j}, layer {i}: kernel {w.shape[:2]} does not fit the padding "
                                 f"{ws[s].shape[1:3]}")
            ws[s][j, :w.shape[0], :w.shape[1]] = w / scale.get((name, "w"), 1.0)
            bs[s][j, :w.shape[1]] = np.asarray(layer["bias"], np.float32) / scale.get((name, "b"), 1.0)
            if i < d:
                ms[i + 1][j, :w.shape[1]] = 1.0
    return {"w": tuple(ws), "b": tuple(bs), "m": tuple(ms), "present": present, "last": last}


def fit_scale(params_list: Sequence) -> dict:
    """(slot, "w"|"b") -> std of that slot's weights / biases over `params_list` (the train part).

    A first layer of 64 inputs has weights several times smaller than a head; each slot's
    std pools all units of a layer, so dividing by it keeps the invariance.
    """
    values: dict = {}
    for params in params_list:
        for name, layer in zip(slot_names(len(params) - 1), params, strict=True):
            values.setdefault((name, "w"), []).append(np.ravel(layer["kernel"]))
            values.setdefault((name, "b"), []).append(np.ravel(layer["bias"]))
    stds = {k: float(np.std(np.concatenate(v))) for k, v in values.items()}
    return {k: s if s > 1e-8 else 1.0 for k, s in stds.items()}


# --------------------------------------------------------------------------- layers


def _mean(x, mask, axis):
    """Mean of `x` over `axis` counting only entries where `mask` (broadcastable to x) is 1."""
    return (x * mask).sum(axis) / jnp.maximum(mask.sum(axis), 1.0)


def unit_masks(batch) -> tuple[list, list]:
    """Per slot, the masks of its rows (input units) and columns (output units)."""
    ms, last = batch["m"], batch["last"]
    depth = last.shape[-1]
    head_rows = sum(last[:, s, None] * ms[s + 1] for s in range(depth))
    return [ms[s] for s in range(depth)] + [head_rows], list(ms[1:])


def _entry_mask(rows, cols):
    return rows[:, :, None, None] * cols[:, None, :, None]


def summary(ws, bs, batch, slots: Sequence[str]) -> jnp.ndarray:
    """Invariant per-slot means (NFN's ``NPPool``): for every slot of `slots`, the masked mean of
    its weights and of its bias and a presence flag (zeros for slots the network lacks).

    Returns (batch, len(slots) * (2 F + 1)).
    """
    rows, cols = unit_masks(batch)
    names = slot_names(len(ws) - 1)
    n, feats = ws[0].shape[0], ws[0].shape[-1]
    present = jnp.concatenate([batch["present"], jnp.ones((n, 1), ws[0].dtype)], -1)
    parts = []
    for slot in slots:
        if slot in names:
            i = names.index(slot)
            w_mean = _mean(_mean(ws[i], cols[i][:, None, :, None], 2), rows[i][:, :, None], 1)
            parts += [w_mean, _mean(bs[i], cols[i][:, :, None], 1), present[:, i:i + 1]]
        else:
            parts.append(jnp.zeros((n, 2 * feats + 1), ws[0].dtype))
    return jnp.concatenate(parts, -1)


class NPLinear(nn.Module):
    """One NP layer (NFN's ``NPLinear``), equivariant to permuting the units of every layer.

    For layer ``i`` with kernel features ``W_i (n_{i-1}, n_i, F)`` and bias ``b_i (n_i, F)``:
    ``W'_i[r, c] = A W_i[r, c] + B g + R row_i[r] + C col_i[c]`` and
    ``b'_i[c] = D col_i[c] + E g``, where ``row_i[r]`` holds the features of input unit ``r``
    (the mean of ``W_i[r, :]``; the mean of ``W_{i-1}[:, r]`` and ``b_{i-1}[r]``),
    ``col_i[c]`` those of output unit ``c`` (the mean of ``W_i[:, c]``, ``b_i[c]``, the mean of
    ``W_{i+1}[c, :]``) and ``g`` the global `summary`. A..E are per slot, all means masked.
    With depths padded, the head's previous layer and the last hidden slot's next one are
    picked per network by ``batch["last"]``.

    Attributes:
      features: output features per entry.
      slots: every slot of the zoo, in order (the global term's layout).
    """

    features: int
    slots: tuple[str, ...]

    @nn.compact
    def __call__(self, ws, bs, batch):
        rows_m, cols_m = unit_masks(batch)
        present, last = batch["present"][..., None, None], batch["last"][..., None, None]
        depth = len(ws) - 1
        in_means = [_mean(w, rows_m[i][:, :, None, None], 1) for i, w in enumerate(ws)]  # (B, cols, F)
        out_means = [_mean(w, cols_m[i][:, None, :, None], 2) for i, w in enumerate(ws)]  # (B, rows, F)
        g = summary(ws, bs, batch, self.slots)
        dense = lambda name, bias=False: nn.Dense(self.features, use_bias=bias, name=name)  # noqa: E731
        out_w, out_b = [], []
        for i, slot in enumerate(slot_names(depth)):
            if i == 0:
                prev = []
            elif i < depth:
                prev = [in_means[i - 1], bs[i - 1]]
            else:  # the head follows each network's last hidden slot
                prev = [sum(last[:, s] * in_means[s] for s in range(depth)),
                        sum(last[:, s] * bs[s] for s in range(depth))]
            if i < depth:  # the next layer: hidden slot i + 1, or the head after the last one
                nxt = last[:, i] * out_means[-1]
                if i + 1 < depth:
                    nxt = nxt + present[:, i + 1] * out_means[i + 1]
                nxt = [nxt]
            else:
                nxt = []
            rows = jnp.concatenate([out_means[i], *prev], -1)
            cols = jnp.concatenate([in_means[i], bs[i], *nxt], -1)
            z = (dense(f"{slot}_w", True)(ws[i]) + dense(f"{slot}_wg")(g)[:, None, None]
                 + dense(f"{slot}_wr")(rows)[:, :, None] + dense(f"{slot}_wc")(cols)[:, None, :])
            u = dense(f"{slot}_b", True)(cols) + dense(f"{slot}_bg")(g)[:, None]
            out_w.append(z * _entry_mask(rows_m[i], cols_m[i]))
            out_b.append(u * cols_m[i][:, :, None])
        return tuple(out_w), tuple(out_b)


# --------------------------------------------------------------------------- model


@dataclasses.dataclass(frozen=True)
class NFNConfig:
    """nfn-np.

    Attributes:
      kind, outputs, embed_dim: the heads (as `classic.ArrayConfig`, `classic.heads`).
      hidden: features per weight-space entry; layers: NP layers; head_hidden: the MLP after pooling.
      max_depth: hidden layers of the deepest network of the task (the slots of the global terms).
      io_embed: learned embeddings of input and output positions (NFN's ``io_embed``).
    """

    kind: str = "regression"
    outputs: tuple[tuple[str, int], ...] = (("test_acc", 1), ("gen_gap", 1))
    hidden: int = 16
    layers: int = 2
    head_hidden: int = 64
    embed_dim: int = 16
    max_depth: int = 4
    io_embed: bool = True

    @property
    def slots(self) -> tuple[str, ...]:
        return slot_names(self.max_depth)


def signature(ws, bs) -> str:
    """A layout's name for its own parameters: input width, first layer's taps, output width."""
    return f"i{ws[0].shape[1]}t{ws[0].shape[-1]}o{bs[-1].shape[-1]}"


class NFN(nn.Module):
    """Lift raw features per slot, NP layers with GELU, per-slot mean pooling, an MLP, the heads."""

    config: NFNConfig

    @nn.compact
    def __call__(self, batch, affine=None):
        cfg = self.config
        raw_w, raw_b = batch["w"], batch["b"]
        names = slot_names(len(raw_w) - 1)
        if len(names) > len(cfg.slots):
            raise ValueError(f"{len(names) - 1} hidden layers; this model has slots for {cfg.max_depth}")
        sig = signature(raw_w, raw_b)
        ws = [nn.Dense(cfg.hidden, name=f"lift_{sig}_{s}_w")(w) for w, s in zip(raw_w, names, strict=True)]
        bs = [nn.Dense(cfg.hidden, name=f"lift_{sig}_{s}_b")(b[..., None]) for b, s in zip(raw_b, names,
                                                                                          strict=True)]
        if cfg.io_embed:  # breaks the symmetry of input and output units only
            init = nn.initializers.normal(1.0)
            ws[0] = ws[0] + self.param(f"in_embed_{sig}", init, (ws[0].shape[1], cfg.hidden))[:, None]
            ws[-1] = ws[-1] + self.param(f"out_embed_{sig}", init, (ws[-1].shape[2], cfg.hidden))[None]
            bs[-1] = bs[-1] + self.param(f"out_bias_embed_{sig}", init, (bs[-1].shape[1], cfg.hidden))
        rows, cols = unit_masks(batch)
        ws = [w * _entry_mask(rows[i], cols[i]) for i, w in enumerate(ws)]
        bs = [b * cols[i][:, :, None] for i, b in enumerate(bs)]
        for k in range(cfg.layers):
            ws, bs = NPLinear(cfg.hidden, cfg.slots, name=f"np_{k}")(ws, bs, batch)
            ws, bs = [nn.gelu(w) for w in ws], [nn.gelu(b) for b in bs]  # gelu(0) = 0: padding stays 0
        h = nn.gelu(nn.Dense(cfg.head_hidden)(summary(ws, bs, batch, cfg.slots)))
        return classic.heads(self, cfg, h, affine)


def merge_params(trees: Sequence) -> dict:
    """The union of parameter trees initialised on different layouts (shared names agree: flax
    derives each parameter's init key from its path, not from what else was created)."""
    out: dict = {}
    for tree in trees:
        for key, value in tree.items():
            out[key] = merge_params([out[key], value]) if isinstance(value, dict) and key in out else value
    return out


# --------------------------------------------------------------------------- parts and batches


@dataclasses.dataclass(frozen=True, eq=False)
class Encoded:
    """A part's items grouped by layout: arrays[a] holds the items of `layouts[a]` (`encode`);
    item k is row ``row[k]`` of ``arrays[assignment[k]]``."""

    arrays: tuple[dict, ...]
    assignment: np.ndarray
    row: np.ndarray


def paddings_of(networks: Sequence) -> dict[Layout, tuple[int, int]]:
    """Layout -> (widest hidden layer, most hidden layers) of its networks: the padding."""
    out: dict[Layout, tuple[int, int]] = {}
    for params in networks:
        key = layout_of(params)
        wide = max(int(np.shape(layer["kernel"])[-1]) for layer in params[:-1])
        width, depth = out.get(key, (1, 1))
        out[key] = (max(width, wide), max(depth, len(params) - 1))
    return out


def widest(*paddings: dict) -> dict[Layout, tuple[int, int]]:
    """The elementwise largest of several `paddings_of` results."""
    out: dict[Layout, tuple[int, int]] = {}
    for pads in paddings:
        for key, (w, d) in pads.items():
            w0, d0 = out.get(key, (1, 1))
            out[key] = (max(w, w0), max(d, d0))
    return out


def encode_part(networks: Sequence, layouts: Sequence[Layout], paddings: dict[Layout, tuple[int, int]],
                scale: dict | None) -> Encoded:
    keys = [layout_of(p) for p in networks]
    unknown = sorted(set(keys) - set(layouts))
    if unknown:
        raise ValueError(f"layouts {unknown} were not seen when the model was fitted (known: "
                         f"{list(layouts)})")
    assignment = np.array([layouts.index(k) for k in keys], np.int64)
    row = np.zeros(len(keys), np.int64)
    arrays = []
    for a, layout in enumerate(layouts):
        idx = np.flatnonzero(assignment == a)
        row[idx] = np.arange(len(idx))
        arrays.append(encode([networks[i] for i in idx], *paddings[layout], scale) if len(idx) else None)
    return Encoded(tuple(arrays), assignment, row)


def _take(enc: Encoded, idx: np.ndarray, size: int):
    """The batch of items `idx` (one layout) padded to `size` rows (copies of the first) and its mask."""
    rows = enc.row[idx]
    full = np.concatenate([rows, np.full(size - len(rows), rows[0], rows.dtype)])
    mask = np.zeros(size, np.float32)
    mask[:len(rows)] = 1.0
    return jax.tree.map(lambda x: x[full], enc.arrays[enc.assignment[idx[0]]]), mask


def batches(enc: Encoded, targets: dict, order: np.ndarray, size: int):
    """(inputs, targets, mask) per batch of `order`, one layout per batch (`harness.bucket_batches`)."""
    for idx in harness.bucket_batches(order, enc.assignment, size):
        inputs, mask = _take(enc, idx, size)
        full = np.concatenate([idx, np.full(size - len(idx), idx[0], idx.dtype)])
        yield inputs, {k: v[full] for k, v in targets.items()}, mask


def run_eval(evaluate, params, enc: Encoded, size: int) -> dict[str, np.ndarray]:
    """Model outputs for every item of an encoded part, in item order."""
    outs: dict[str, np.ndarray] = {}
    for idx in harness.bucket_batches(np.arange(len(enc.assignment)), enc.assignment, size):
        inputs, mask = _take(enc, idx, size)
        out = jax.device_get(evaluate(params, inputs))
        for name, v in out.items():
            if name not in outs:
                outs[name] = np.zeros((len(enc.assignment),) + v.shape[1:], v.dtype)
            outs[name][idx] = v[mask.astype(bool)]
    return outs


# --------------------------------------------------------------------------- fit / predict


@dataclasses.dataclass(frozen=True, eq=False)
class TrainedNFN:
    model_config: NFNConfig
    train_config: harness.TrainConfig
    variables: Any
    layouts: tuple[Layout, ...]
    paddings: dict
    scale: dict | None  # input scaling per slot (`fit_scale`), None when off
    target_scale: dict
    classes: dict
    evaluate: Any = dataclasses.field(default=None, compare=False, repr=False)


def config_for(task, **overrides) -> NFNConfig:
    """The heads `task` needs (`harness.model_config_for`), with nfn-np's trunk."""
    heads = harness.model_config_for(task)
    return NFNConfig(kind=heads.kind, outputs=heads.outputs, **overrides)


def _steps(model: NFN, tx, scale: dict, mesh):
    forward = lambda params, batch, affine: model.apply(params, batch, affine)  # noqa: E731
    return harness.jitted_steps(forward, model.config, tx, scale, mesh, TRACES, key=("nfn-np",))


def _initial(path: str, shape, seed: int) -> np.ndarray:
    """The initial value of one parameter, from its name and shape: as flax's defaults (LeCun
    normal kernels, untruncated; zero biases), N(0, 1) position embeddings, the retrieval scale 10
    (`classic.heads`). An unknown name is refused rather than guessed."""
    rng = np.random.default_rng([seed, zlib.crc32(path.encode())])
    name = path.rsplit("/", 1)[-1]
    if name == "kernel":
        return (rng.standard_normal(shape) / np.sqrt(shape[0])).astype(np.float32)
    if name == "bias":
        return np.zeros(shape, np.float32)
    if name.startswith(("in_embed", "out_embed", "out_bias_embed")):
        return rng.standard_normal(shape).astype(np.float32)
    if name == "scale":
        return np.full(shape, 10.0, np.float32)
    raise ValueError(f"no initialiser for parameter {path}")


def init_from_shapes(module: nn.Module, examples: Sequence[tuple], seed: int) -> dict:
    """`module`'s variables for every argument tuple of `examples`, from their shapes alone.

    Not `module.init`: jitted it compiles the whole forward pass once per layout (25 s on a
    busy 2-core CPU), eager it dispatches every op alone. Each value depends only on `seed`
    and the parameter's path, so parameters that layouts share agree.
    """
    key = jax.random.PRNGKey(seed)
    shapes = merge_params([jax.eval_shape(module.init, key, *args) for args in examples])
    return jax.tree_util.tree_map_with_path(
        lambda path, leaf: _initial("/".join(k.key for k in path), leaf.shape, seed), shapes)


def init_params(model: NFN, encoded: Sequence[Encoded], seed: int) -> dict:
    """Parameters for every layout of `encoded` (`init_from_shapes`)."""
    return init_from_shapes(model, [(jax.tree.map(lambda x: x[:1], arrays),)
                                    for enc in encoded for arrays in enc.arrays if arrays is not None], seed)


def fit(task, seed: int = 0, train_cfg: harness.TrainConfig | None = None,
        **model_overrides) -> tuple[TrainedNFN, list[dict]]:
    """Train nfn-np on `task.train`, keeping the parameters with the best validation metric.

    Selection as the array methods (`classic.selection_metric`): only train and val targets are read.
    """
    train_cfg = train_cfg or harness.TrainConfig(progress=False)
    nets = {p.name: [params for params, _ in p.networks()] for p in task.parts}
    every = [params for part in nets.values() for params in part]
    # Shapes only (no targets) from every part, so that one padding fits every split's networks.
    paddings = paddings_of(every)
    layouts = tuple(sorted(paddings))
    scale = fit_scale(nets["train"]) if train_cfg.scale_inputs else None
    enc = {name: encode_part(part, layouts, paddings, scale) for name, part in nets.items()}
    cfg = config_for(task, max_depth=max(d for _, d in paddings.values()), **model_overrides)
    y_train, y_val = harness.part_targets(cfg, task.train), harness.part_targets(cfg, task.val)
    target_scale = harness.target_scale(cfg, y_train)
    mesh = harness.mesh_for(train_cfg.num_devices)
    size = harness.per_device(train_cfg.batch_size, mesh.devices.size) * mesh.devices.size
    model = NFN(cfg)
    # Flattened: one update over one vector instead of one per parameter leaf (a smaller program).
    tx = harness.adamw(train_cfg.learning_rate, train_cfg.weight_decay, flatten=True)
    params = init_params(model, list(enc.values()), seed)
    state = jax.device_put(harness.State(params, tx.init(params)), NamedSharding(mesh, P()))
    train, evaluate = _steps(model, tx, target_scale, mesh)
    best, history = harness.run_epochs(
        state, train, lambda order: batches(enc["train"], y_train, order, size), len(nets["train"]),
        lambda p: classic.selection_metric(cfg, run_eval(evaluate, p, enc["val"], size), y_val,
                                           target_scale),
        train_cfg, seed, desc="nfn-np")
    trained = TrainedNFN(cfg, train_cfg, best, layouts, paddings, scale, target_scale, dict(task.classes),
                         evaluate)
    return trained, history


def outputs(trained: TrainedNFN, part) -> dict[str, np.ndarray]:
    """Raw model outputs for every item of `part`, in `part.ids` order."""
    mesh = harness.mesh_for(trained.train_config.num_devices)
    size = harness.per_device(trained.train_config.batch_size, mesh.devices.size) * mesh.devices.size
    nets = [params for params, _ in part.networks()]
    evaluate = trained.evaluate
    if evaluate is None:
        _, evaluate = _steps(NFN(trained.model_config), harness.NO_UPDATE, trained.target_scale, mesh)
    # Networks wider or deeper than any seen at fit time get a larger padding (one more compilation).
    enc = encode_part(nets, trained.layouts, widest(trained.paddings, paddings_of(nets)), trained.scale)
    return run_eval(evaluate, trained.variables, enc, size)


def predict(trained: TrainedNFN, part) -> dict:
    """Predictions for `part` in the leaderboard's format (`harness.format_predictions`)."""
    return harness.format_predictions(trained.model_config, trained.classes, outputs(trained, part), part)
