"""Small hand-made networks shared by the view and neural-graph tests."""

from __future__ import annotations

import numpy as np

from zoo_builder.architecture import ArchSpec


def random_params(arch: ArchSpec, seed: int = 0) -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    return [{"kernel": rng.normal(size=k).astype(np.float32), "bias": rng.normal(size=b).astype(np.float32)}
            for k, b in arch.layer_shapes()]


def mlp(*hidden: int, input_shape=(4, 4, 1), num_classes: int = 3) -> ArchSpec:
    return ArchSpec("mlp", input_shape, hidden, num_classes, "relu")


def cnn(*hidden: int, input_shape=(8, 8, 2), num_classes: int = 3) -> ArchSpec:
    return ArchSpec("cnn", input_shape, hidden, num_classes, "relu")


ARCHS = [mlp(5), mlp(6, 4), mlp(7, 5, 4, 6), cnn(4, 5), cnn(3, 4, 6), cnn(4, 3, 5, 2)]
