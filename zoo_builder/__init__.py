"""zoo_builder: reproducible populations of small MLPs and CNNs, stored as self-describing zoos.

The ground floor: datasets, architectures and their symmetries, training, storage and
the importers of published zoos. It imports no other room (docs/architecture.md).

The names below are imported on first use, so importing a light submodule (e.g.
``zoo_builder.files``, ``zoo_builder.config``) does not pull in JAX, pandas or pyarrow.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

_EXPORTS = {
    "ArchSpec": "architecture", "apply": "architecture",
    "ConfigError": "config", "ZooConfig": "config", "load_config": "config", "load_preset": "config",
    "sample_networks": "config",
    "PermutationSpec": "permutation", "apply_permutation": "permutation", "permutation_spec": "permutation",
    "Zoo": "storage", "ZooError": "storage", "load_zoo": "storage", "verify_zoo": "storage",
}

__all__ = [
    "ArchSpec", "ConfigError", "PermutationSpec", "Zoo", "ZooConfig", "ZooError", "apply",
    "apply_permutation", "load_config", "load_preset", "load_zoo", "permutation_spec",
    "sample_networks", "verify_zoo",
]

if TYPE_CHECKING:
    from zoo_builder.architecture import ArchSpec, apply
    from zoo_builder.config import ConfigError, ZooConfig, load_config, load_preset, sample_networks
    from zoo_builder.permutation import PermutationSpec, apply_permutation, permutation_spec
    from zoo_builder.storage import Zoo, ZooError, load_zoo, verify_zoo


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f"zoo_builder.{_EXPORTS[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'zoo_builder' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
