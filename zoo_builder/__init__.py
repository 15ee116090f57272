"""zoo_builder: reproducible populations of small MLPs and CNNs, stored as self-describing zoos."""

from zoo_builder.architecture import ArchSpec, apply
from zoo_builder.config import ConfigError, ZooConfig, load_config, load_preset, sample_networks
from zoo_builder.permutation import PermutationSpec, apply_permutation, permutation_spec
from zoo_builder.storage import Zoo, ZooError, load_zoo, verify_zoo

__all__ = [
    "ArchSpec", "ConfigError", "PermutationSpec", "Zoo", "ZooConfig", "ZooError", "apply",
    "apply_permutation", "load_config", "load_preset", "load_zoo", "permutation_spec",
    "sample_networks", "verify_zoo",
]
