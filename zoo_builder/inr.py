"""INR zoos: which images get a SIREN, how each starts, and fitting a population of them.

An INR zoo (`zoo_builder.config.InrConfig`) holds one SIREN per selected image:
the first ``images_per_class[split]`` images of each class of each split (or
all of them), in split order. Each SIREN maps a pixel's coordinates in
[-1, 1]^2 (`coordinates`) to its intensity in [0, 1] (`image_targets`).

As for classifiers, a population is one stacked pytree: `InrTrainer` fits a
chunk of INRs under `jax.vmap` (each against its own image), with a loop over
Adam steps inside one jitted program, sharded over the local devices. An INR's
randomness comes only from its own seed, which hashes (zoo seed, dataset,
split, image index), so neither its chunk nor the other images change it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import time
from collections.abc import Callable, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from zoo_builder.architecture import ArchSpec, Params, siren_forward
from zoo_builder.config import InrConfig, InrFit
from zoo_builder.datasets import Dataset, DatasetError, load_dataset
from zoo_builder.population import Timer, _stream, _uniform, population_mesh, timed_run
from zoo_builder.storage import ZooError

# Bumped whenever fitting semantics change, so ids of INRs fitted differently differ.
INR_TRAINING_VERSION = 1
# How images become targets: "[-1, 1]" inputs mapped affinely onto [0, 1] intensities.
TARGET_SCALING = "[-1, 1]"
# PSNR of an exact fit, where the MSE underflows: keeps the table finite.
MAX_PSNR = 200.0
# Executables by (arch, fit, population size, devices): a resumed or repeated build in one process
# (the tests, shards) compiles once.
_COMPILED: dict = {}


@dataclasses.dataclass(frozen=True)
class InrSpec:
    """Everything that determines one fitted INR: its image, its seed, how it is fitted."""

    index: int
    arch: ArchSpec
    dataset: str
    image_split: str
    image_index: int
    label: int
    seed: int
    fit: InrFit

    def identity(self) -> dict:
        """The fields that define the INR (not its position in a zoo, nor its label: the image's)."""
        return {"kind": "inr", "arch": self.arch.to_dict(), "dataset": self.dataset,
                "image_split": self.image_split, "image_index": self.image_index, "seed": self.seed,
                "fit": dataclasses.asdict(self.fit), "training_version": INR_TRAINING_VERSION}

    @property
    def config_id(self) -> str:
        """Hash of everything but the seed: INRs of one image fitted alike share it."""
        identity = self.identity()
        identity.pop("seed")
        return _hash(identity)

    @property
    def network_id(self) -> str:
        return _hash(self.identity())


def _hash(doc: dict) -> str:
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:16]


def inr_seed(zoo_seed: int, dataset: str, split: str, image_index: int) -> int:
    """The seed of the INR of one image: a hash of the zoo's seed and the image."""
    salt = int.from_bytes(hashlib.sha256(f"{dataset}/{split}".encode()).digest()[:4], "little")
    return int(np.random.default_rng([zoo_seed, salt, image_index]).integers(2**31 - 1))


# --------------------------------------------------------------------------- images


def load_inr_datasets(cfg: InrConfig) -> dict[str, Dataset]:
    """Every dataset of an INR zoo at its image shape, pixels mapped onto [-1, 1] (`TARGET_SCALING`)."""
    out = {}
    for name in cfg.datasets:
        try:
            out[name] = load_dataset(name, cfg.input_shape, input_scaling=TARGET_SCALING)
        except DatasetError:
            raise
        except ValueError as e:  # not an image source with a known pixel range
            raise DatasetError(f"{cfg.source}: zoo.datasets: {name}: {e}") from None
    return out


def split_arrays(ds: Dataset, split: str) -> tuple[np.ndarray, np.ndarray]:
    """(images, labels) of one split of a dataset."""
    return (ds.x_train, ds.y_train) if split == "train" else (ds.x_test, ds.y_test)


def image_targets(images: np.ndarray) -> np.ndarray:
    """Images (N, H, W, C) scaled to [-1, 1] as INR targets (N, H*W, C) in [0, 1], row-major pixels."""
    images = np.asarray(images, np.float32)
    return ((images + 1.0) * 0.5).reshape(images.shape[0], -1, images.shape[-1])


def coordinates(height: int, width: int) -> np.ndarray:
    """Pixel coordinates (H*W, 2) float32 in [-1, 1]^2: (row, column), rows first, as `image_targets`."""
    rows = np.linspace(-1.0, 1.0, height, dtype=np.float32)
    cols = np.linspace(-1.0, 1.0, width, dtype=np.float32)
    return np.stack(np.meshgrid(rows, cols, indexing="ij"), axis=-1).reshape(-1, 2)


def selected_images(labels: np.ndarray, per_class: int | None, num_classes: int, where: str) -> np.ndarray:
    """Indices of the first `per_class` images of each class (every image for None), increasing.

    Raises:
      DatasetError: naming `where` and the class, if a class has fewer images.
    """
    if per_class is None:
        return np.arange(len(labels))
    chosen = []
    for c in range(num_classes):
        members = np.flatnonzero(labels == c)
        if len(members) < per_class:
            raise DatasetError(f"{where}: class {c} has {len(members)} images, fewer than the "
                               f"{per_class} images_per_class asks for")
        chosen.append(members[:per_class])
    return np.sort(np.concatenate(chosen))


def inr_specs(cfg: InrConfig, datasets: Mapping[str, Dataset]) -> list[InrSpec]:
    """Every INR of the zoo, in index order: datasets, then splits, then images, as the config lists them."""
    arch = cfg.arch()
    specs = []
    for name in cfg.datasets:
        ds = datasets[name]
        for split, per_class in cfg.images_per_class.items():
            _, labels = split_arrays(ds, split)
            where = f"{cfg.source}: zoo.images_per_class.{split}: {name} {split}"
            for i in selected_images(labels, per_class, ds.num_classes, where):
                specs.append(InrSpec(index=len(specs), arch=arch, dataset=name, image_split=split,
                                     image_index=int(i), label=int(labels[i]),
                                     seed=inr_seed(cfg.seed, name, split, int(i)), fit=cfg.fit))
    return specs


def targets_of(specs: Sequence[InrSpec], datasets: Mapping[str, Dataset]) -> np.ndarray:
    """The targets (n, H*W, C) of `specs`, stacked."""
    rows = [split_arrays(datasets[s.dataset], s.image_split)[0][s.image_index] for s in specs]
    return image_targets(np.stack(rows))


# --------------------------------------------------------------------------- initialisation


def init_siren(arch: ArchSpec, init: str, seed: int) -> list[dict[str, np.ndarray]]:
    """Initial parameters of one SIREN (numpy float32), drawn from its own seed.

    ``"siren"`` (Sitzmann et al. 2020, and their reference code): first layer
    U(-1/n, 1/n), every later layer (the head too) U(-sqrt(6/n)/omega0,
    sqrt(6/n)/omega0), biases U(-1/sqrt(n), 1/sqrt(n)) (PyTorch's default for a
    linear layer, which that code keeps). ``"dwsnets"`` (Navon et al. 2023,
    ``nn/inr.py``): every sine layer, the first too, U(-sqrt(6/n)/omega0,
    sqrt(6/n)/omega0) with zero biases; the linear head PyTorch's default, weights
    and bias U(-1/sqrt(n), 1/sqrt(n)); the model adds 0.5 to its output
    (`ArchSpec.output_offset`). ``n`` is the layer's fan-in.
    """
    rng = np.random.default_rng([seed, 1])
    params = []
    for i, (kshape, bshape) in enumerate(arch.layer_shapes()):
        n = kshape[0]
        sine_layer = i < arch.depth
        torch_default = 1.0 / math.sqrt(n)
        if init == "siren":
            bound = 1.0 / n if i == 0 else math.sqrt(6.0 / n) / arch.omega0
            bias_bound = torch_default
        elif init == "dwsnets":
            bound = math.sqrt(6.0 / n) / arch.omega0 if sine_layer else torch_default
            bias_bound = 0.0 if sine_layer else torch_default
        else:
            raise ValueError(f"unknown SIREN init {init!r}")
        kernel = rng.uniform(-bound, bound, kshape).astype(np.float32)
        bias = rng.uniform(-bias_bound, bias_bound, bshape).astype(np.float32)
        params.append({"kernel": kernel, "bias": bias})
    return params


# --------------------------------------------------------------------------- fitting


def psnr(mse: np.ndarray) -> np.ndarray:
    """PSNR in dB of intensities in [0, 1] (peak 1): -10 log10(MSE), at most `MAX_PSNR`."""
    mse = np.asarray(mse, np.float64)
    return np.minimum(-10.0 * np.log10(np.maximum(mse, 10.0 ** (-MAX_PSNR / 10))), MAX_PSNR)


def _mse(arch: ArchSpec, params: Params, coords: jax.Array, target: jax.Array) -> jax.Array:
    return jnp.mean((siren_forward(params, coords, arch.omega0, arch.output_offset) - target) ** 2)


def make_segment(arch: ArchSpec, fit: InrFit, num_pixels: int) -> Callable:
    """``segment(state, target, seed, coords, start, stop) -> state`` for one INR: Adam steps start..stop-1.

    The state is ``(params, opt_state, done, steps_taken, diverged, diverged_step)``.
    With a `batch_size` below the pixel count, step ``s`` fits the coordinates of
    batch ``s mod E`` of a permutation drawn per epoch ``s // E`` (``E`` batches
    cover the image; the last wraps around). An INR is done, and no longer updated,
    once its whole image reaches `target_psnr`: checked at every step on full
    batches (it is the loss), at every epoch's start on mini-batches. A step whose
    loss or parameters are not finite is not taken and stops the INR (diverged).
    """
    opt = optax.adam(fit.learning_rate)
    batch = min(fit.batch_size or num_pixels, num_pixels)
    full = batch == num_pixels
    per_epoch = -(-num_pixels // batch)
    target_mse = None if fit.target_psnr is None else 10.0 ** (-fit.target_psnr / 10.0)
    loss_and_grad = jax.value_and_grad(lambda p, c, t: _mse(arch, p, c, t))

    def segment(state, target, seed, coords, start, stop):
        def step(s, carry):
            params, opt_state, done, steps_taken, diverged, div_step = carry
            if full:
                loss, grads = loss_and_grad(params, coords, target)
                reached = jnp.bool_(False) if target_mse is None else loss <= target_mse
            else:
                order = jnp.argsort(_uniform(_stream(seed, 5, s // per_epoch), (num_pixels,)))
                order = jnp.concatenate([order, order[: per_epoch * batch - num_pixels]])
                idx = jax.lax.dynamic_slice(order, ((s % per_epoch) * batch,), (batch,))
                loss, grads = loss_and_grad(params, coords[idx], target[idx])
                if target_mse is None:
                    reached = jnp.bool_(False)
                else:  # the predicate does not depend on the INR, so under vmap this stays a branch
                    reached = jax.lax.cond(s % per_epoch == 0,
                                           lambda: _mse(arch, params, coords, target) <= target_mse,
                                           lambda: jnp.bool_(False))
            done = done | reached
            updates, new_opt = opt.update(grads, opt_state, params)
            new_params = optax.apply_updates(params, updates)
            finite = jnp.isfinite(loss) & jnp.isfinite(optax.tree.norm(new_params))
            active = ~done & ~diverged
            take = active & finite
            params = jax.tree.map(lambda a, b: jnp.where(take, a, b), new_params, params)
            opt_state = jax.tree.map(lambda a, b: jnp.where(take, a, b), new_opt, opt_state)
            newly = active & ~finite
            return (params, opt_state, done, steps_taken + take.astype(jnp.int32), diverged | newly,
                    jnp.where(newly, s + 1, div_step))

        return jax.lax.fori_loop(start, stop, step, state)

    return segment


class InrTrainer:
    """Fits chunks of INRs of one architecture and fitting config, compiling once per chunk size.

    Args:
      arch: the SIREN every INR of the zoo is.
      fit: how they are fitted.
      mesh: devices to shard the population axis over (default: this process's own).
    """

    def __init__(self, arch: ArchSpec, fit: InrFit, mesh: Mesh | None = None):
        self.arch, self.fit = arch, fit
        self.mesh = mesh or population_mesh()
        self.pop_sharding = NamedSharding(self.mesh, PartitionSpec("pop"))
        replicated = NamedSharding(self.mesh, PartitionSpec())
        h, w, _ = arch.input_shape
        self.coords = jax.device_put(coordinates(h, w), replicated)
        self.num_pixels = h * w
        self.timer = Timer()

    @property
    def num_devices(self) -> int:
        return self.mesh.devices.size

    def _executables(self, n_pad: int):
        key = (self.arch, self.fit, n_pad, tuple(d.id for d in self.mesh.devices.flat))
        if key in _COMPILED:
            return _COMPILED[key]
        t = time.perf_counter()
        opt = optax.adam(self.fit.learning_rate)
        segment = jax.vmap(make_segment(self.arch, self.fit, self.num_pixels),
                           in_axes=(0, 0, 0, None, None, None))
        evaluate = jax.vmap(lambda p, c, t: _mse(self.arch, p, c, t), in_axes=(0, None, 0))

        def init(params):
            n = params[0]["bias"].shape[0]
            zeros_i, zeros_b = jnp.zeros(n, jnp.int32), jnp.zeros(n, bool)
            return (params, jax.vmap(opt.init)(params), zeros_b, zeros_i, zeros_b, zeros_i)

        def pop(shape, dtype):
            return jax.ShapeDtypeStruct((n_pad, *shape), dtype, sharding=self.pop_sharding)

        params = [{"kernel": pop(k, jnp.float32), "bias": pop(b, jnp.float32)}
                  for k, b in self.arch.layer_shapes()]
        targets = pop((self.num_pixels, self.arch.num_classes), jnp.float32)
        seeds = pop((), jnp.uint32)
        state = jax.tree.map(lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=self.pop_sharding),
                             jax.eval_shape(init, params))
        scalar = jax.ShapeDtypeStruct((), jnp.int32)

        def compile_(fn, *args):
            return jax.jit(fn, out_shardings=self.pop_sharding).lower(*args).compile()

        executables = (compile_(init, params),
                       compile_(segment, state, targets, seeds, self.coords, scalar, scalar),
                       compile_(evaluate, params, self.coords, targets))
        # Compiled in the foreground: training waits for all of it.
        self.timer.compile_s += time.perf_counter() - t
        self.timer.compile_wait_s += time.perf_counter() - t
        _COMPILED[key] = executables
        return executables

    def _run(self, compiled, *args):
        return timed_run(self.timer, compiled, *args)

    def train(self, params, targets: np.ndarray, seeds: np.ndarray, checkpoint_steps: Sequence[int],
              pad_to: int | None = None, on_steps: Callable[[int], None] | None = None) -> dict:
        """Fit the INRs with initial `params` (stacked, see `init_population`) to `targets` (n, H*W, C).

        Args:
          pad_to: fit this many INRs (at least n; padding repeats the first), so chunks of
            slightly different sizes share one compilation.
          on_steps: called with the number of steps done after each segment.

        Returns ``{"checkpoints": {step: (params, metrics)}, "diverged", "diverged_step"}``,
        numpy arrays with the INR axis first; metrics are ``mse``, ``psnr``, ``steps_taken``
        (Adam updates made so far) and ``reached_target``.
        """
        n = len(seeds)
        n_pad = max(n, pad_to or 0)
        n_pad = -(-n_pad // self.num_devices) * self.num_devices

        def pad(a):
            a = np.asarray(a)
            return np.concatenate([a, np.repeat(a[:1], n_pad - n, 0)])

        init_c, segment_c, eval_c = self._executables(n_pad)
        put = lambda tree: jax.device_put(jax.tree.map(pad, tree), self.pop_sharding)  # noqa: E731
        targets_dev = put(targets)
        seeds_dev = put(np.asarray(seeds, np.uint32))
        state = self._run(init_c, put(params))
        checkpoints, done_steps = {}, 0
        for step in checkpoint_steps:
            state = self._run(segment_c, state, targets_dev, seeds_dev, self.coords,
                              np.int32(done_steps), np.int32(step))
            mse = np.asarray(self._run(eval_c, state[0], self.coords, targets_dev))[:n]
            checkpoints[int(step)] = (
                jax.tree.map(lambda a: np.asarray(a)[:n], state[0]),
                {"mse": mse, "psnr": psnr(mse), "steps_taken": np.asarray(state[3])[:n],
                 "reached_target": np.asarray(state[2])[:n]},
            )
            if on_steps is not None:
                on_steps(step - done_steps)
            done_steps = step
        return {"checkpoints": checkpoints, "diverged": np.asarray(state[4])[:n],
                "diverged_step": np.asarray(state[5])[:n]}


def init_population(specs: Sequence[InrSpec]):
    """Initial parameters of INRs, stacked on axis 0 (numpy)."""
    per_inr = [init_siren(s.arch, s.fit.init, s.seed) for s in specs]
    return jax.tree.map(lambda *leaves: np.stack(leaves), *per_inr)


def reconstruct(arch: ArchSpec, params: Params) -> np.ndarray:
    """The image (H, W, C) a SIREN represents, its outputs at every pixel's coordinates."""
    h, w, c = arch.input_shape
    out = siren_forward(jax.tree.map(jnp.asarray, params), jnp.asarray(coordinates(h, w)), arch.omega0,
                        arch.output_offset)
    return np.asarray(out).reshape(h, w, c)


def image_of(zoo, network_id: str) -> np.ndarray:
    """The image (H, W, C) in [0, 1] that INR `network_id` of `zoo` (a `storage.Zoo`) was fitted to.

    Raises:
      ZooError: the zoo is not of INRs, or its dataset loads differently now than when
        it was built (the fingerprint in its manifest differs).
    """
    return images_of(zoo, [network_id])[0]


def images_of(zoo, network_ids: Sequence[str]) -> list[np.ndarray]:
    """`image_of` for several INRs, loading each of their datasets once."""
    if zoo.kind != "inr":
        raise ZooError(f"{zoo.root}: a zoo of kind {zoo.kind!r}, not of INRs; its networks represent "
                       "no image")
    loaded: dict[str, object] = {}
    out = []
    for network_id in network_ids:
        row = zoo.row(network_id)
        name = row["dataset"]
        if name not in loaded:
            ds = load_dataset(name, tuple(zoo.manifest["config"]["zoo"]["input_shape"]),
                              input_scaling=TARGET_SCALING)
            recorded = zoo.manifest.get("datasets", {}).get(name, {}).get("fingerprint")
            if recorded != ds.fingerprint:
                raise ZooError(f"{zoo.root / 'manifest.json'}: dataset {name} now loads with fingerprint "
                               f"{ds.fingerprint[:12]}..., not the {str(recorded)[:12]}... the zoo was "
                               "built on")
            loaded[name] = ds
        images, _ = split_arrays(loaded[name], row["image_split"])
        out.append(image_targets(images[int(row["image_index"])][None]).reshape(images.shape[1:]))
    return out
