"""Weight-space augmentation of training networks, as DWSNets and Neural Graphs train with it.

A method may call `augment` on its *training* networks (never on val or test) to
see more of each network's symmetry orbit and neighbourhood:

* a random permutation of every hidden layer's units, then a random draw of every
  other per-unit symmetry the architecture admits (`zoo_builder.symmetry`: a
  positive rescaling of ReLU units, a sign flip of tanh and sine units), as the
  twins draw them: the same function, other weights;
* Gaussian noise on every tensor, with std ``noise`` times that tensor's std;
* for an INR (family ``siren``, whose input is a 2-D pixel coordinate) an affine
  warp of the coordinates folded into the first layer: ``f'(x) = f(x A + t)``
  with ``A`` a rotation by up to ``rotation_degrees`` times a scaling by
  ``1 ± scale``, and ``t`` a shift of up to ``translation`` per axis. The warped
  INR encodes the same digit, moved.

The defaults are DWSNets' (`experiments/data.py`: rotation 45°, resize 0.2,
translation 0.25, noise 0.1), except that its noise adds ``0.1 * std`` to every
entry (a constant shift, no random draw); here it is zero-mean Gaussian.
DWSNets' 1% weight dropout is left out: it does not preserve the function and
the issue asks for none.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from benchmark.tasks import Task, TaskPart
from zoo_builder.architecture import ArchSpec
from zoo_builder.permutation import apply_permutation, permutation_spec, random_permutations
from zoo_builder.symmetry import random_transform, symmetries

COORDINATE_FAMILIES = ("siren",)


@dataclasses.dataclass(frozen=True)
class AugmentConfig:
    """Which augmentations `augment` applies, and how strongly.

    Attributes:
      permute: permute every hidden layer's units at random.
      unit_symmetries: also apply a random draw of the architecture's other per-unit
        symmetries (scale, sign; `zoo_builder.symmetry.symmetries`).
      noise: std of the Gaussian noise on each tensor, in units of that tensor's std (0: none).
      rotation_degrees, scale, translation: the coordinate warp of an INR's first layer
        (angle uniform in ±rotation_degrees, scale factor uniform in 1 ± scale, shift uniform
        in ±translation per axis); 0 turns each off. Ignored for networks of image inputs.
    """

    permute: bool = True
    unit_symmetries: bool = True
    noise: float = 0.1
    rotation_degrees: float = 45.0
    scale: float = 0.2
    translation: float = 0.25

    def __post_init__(self):
        for name in ("noise", "rotation_degrees", "scale", "translation"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and math.isfinite(value) and value >= 0):
                raise ValueError(f"AugmentConfig.{name} must be a finite number >= 0, got {value!r}")
        if self.scale >= 1:
            raise ValueError(f"AugmentConfig.scale must be below 1 (the factor is 1 ± scale), "
                             f"got {self.scale!r}")


PERMUTE_ONLY = AugmentConfig(permute=True, unit_symmetries=False, noise=0.0, rotation_degrees=0.0, scale=0.0,
                             translation=0.0)


def random_coordinate_warp(rng: np.random.Generator, cfg: AugmentConfig) -> tuple[np.ndarray, np.ndarray]:
    """(A, t): a 2x2 rotation-times-scaling and a shift, drawn as `AugmentConfig` says."""
    angle = np.deg2rad(rng.uniform(-cfg.rotation_degrees, cfg.rotation_degrees))
    factor = rng.uniform(1 - cfg.scale, 1 + cfg.scale)
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    return factor * rotation, rng.uniform(-cfg.translation, cfg.translation, size=2)


def warp_coordinates(params, a: np.ndarray, t: np.ndarray):
    """`params` of a network of 2-D inputs such that the new network computes ``f(x A + t)``.

    The first layer computes ``x W + b``; ``(x A + t) W + b = x (A W) + (t W + b)``.
    """
    first = params[0]
    kernel = np.asarray(first["kernel"])
    if kernel.ndim != 2 or kernel.shape[0] != 2:
        raise ValueError(f"a coordinate warp needs a first kernel of shape (2, width), got {kernel.shape}")
    warped = {"kernel": (a @ kernel).astype(kernel.dtype),
              "bias": (np.asarray(first["bias"]) + t @ kernel).astype(kernel.dtype)}
    return [warped, *params[1:]]


def add_noise(params, rng: np.random.Generator, noise: float):
    """Each tensor plus Gaussian noise of std ``noise * tensor.std()`` (a constant tensor gets none)."""
    out = []
    for layer in params:
        new_layer = {}
        for key in sorted(layer):
            value = np.asarray(layer[key])
            new_layer[key] = (value + noise * float(value.std()) * rng.standard_normal(value.shape)).astype(
                value.dtype)
        out.append(new_layer)
    return out


def augment(arch: ArchSpec, params, rng: np.random.Generator, cfg: AugmentConfig = AugmentConfig()):
    """An augmented copy of one training network's `params` (canonical layer list; input untouched).

    The order is warp, then permutation and the other unit symmetries, then noise: the
    warp and the symmetries keep the network's function (up to the warp of its input),
    the noise moves it a little.
    """
    out = [{k: np.asarray(v) for k, v in layer.items()} for layer in params]
    if arch.family in COORDINATE_FAMILIES and (cfg.rotation_degrees or cfg.scale or cfg.translation):
        out = warp_coordinates(out, *random_coordinate_warp(rng, cfg))
    if cfg.permute:
        spec = permutation_spec(arch)
        out = apply_permutation(spec, random_permutations(spec, rng), out)
    if cfg.unit_symmetries:
        for kind, sym in symmetries(arch).items():
            if kind != "permutation":
                out = random_transform(sym, out, rng)
    if cfg.noise:
        out = add_noise(out, rng, cfg.noise)
    return out


def augmented_part(part: TaskPart, copies: int, seed: int, cfg: AugmentConfig = AugmentConfig()) -> TaskPart:
    """A training part with `copies` augmented copies of every network after the originals.

    Offline augmentation: the copies are drawn once (from `seed`), so every view of
    the part (flat, stats, matrices, neural graph) is computed once, as for any part.
    The copies keep their original's targets and get ids ``ID~aug1``, ``ID~aug2``, ...
    Refuses a test part: augmentation is for training networks only.
    """
    if part.name == "test":
        raise ValueError("augmented_part is for training networks; got the test part")
    if not (isinstance(copies, int) and copies >= 0):
        raise ValueError(f"copies must be an integer >= 0, got {copies!r}")
    if copies == 0:
        return part
    rng = np.random.default_rng(seed)
    originals = part.networks()
    networks = list(originals)
    for _ in range(copies):
        networks += [(augment(arch, params, rng, cfg), arch) for params, arch in originals]
    ids = (*part.ids, *(f"{i}~aug{k}" for k in range(1, copies + 1) for i in part.ids))
    reps = copies + 1
    new = dataclasses.replace(
        part, ids=ids, epochs=np.tile(part.epochs, reps),
        targets={t: np.tile(v, reps) for t, v in part.targets.items()},
        pairs=(), synthetic_pairs=(), synthetic_permutations=None, _cache={})
    new._cache["networks"] = networks
    return new


def augmented_task(task: Task, copies: int, seed: int, cfg: AugmentConfig = AugmentConfig()) -> Task:
    """`task` with its train part augmented (`augmented_part`); val and test untouched."""
    return dataclasses.replace(task, train=augmented_part(task.train, copies, seed, cfg))
