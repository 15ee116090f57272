"""Shared fixtures for the zoo_builder tests: CPU only, offline, compiled once.

JAX compilation dominates the run time of these tests, so:

* JAX's persistent compilation cache is enabled for the session (and, through
  ``ZOOBENCH_COMPILE_CACHE``, for the ``zoobench`` subprocesses and in-process CLI
  calls), so re-runs reuse compilations;
* the build-mechanics tests share one small config (`MINI_DOC`) and one session
  zoo built from it (`tiny_zoo`); rebuilding the same config in the same process
  (determinism, resume, shards, merge, CLI) hits the trainer's in-process cache of
  executables, so only the first build pays compilation;
* the ``tiny`` preset is built once per session (`tiny_preset_zoo`) for the tests
  that need a realistic zoo (MLPs and CNNs, several datasets).

Never modify a session zoo in place: copy it first (`copy_zoo`).
"""

from __future__ import annotations

import copy
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
# One cache for this process, the subprocesses it starts and in-process CLI calls
# (cli.enable_compile_cache reads ZOOBENCH_COMPILE_CACHE and must not switch the
# directory mid-session). Override with ZOOBENCH_TEST_COMPILE_CACHE.
COMPILE_CACHE = Path(
    os.environ.get("ZOOBENCH_TEST_COMPILE_CACHE", REPO_ROOT / ".pytest_cache" / "zoobench-xla")
)
COMPILE_CACHE.mkdir(parents=True, exist_ok=True)
os.environ["ZOOBENCH_COMPILE_CACHE"] = str(COMPILE_CACHE)
os.environ.setdefault("JAX_PLATFORMS", "cpu")
# The CLI gives XLA one CPU device per core; subprocess builds use one, like the in-process
# builds they are compared with (1 vs N devices agree only within float tolerance).
os.environ.setdefault("ZOOBENCH_CPU_DEVICES", "1")

from zoobench.runtime import enable_compile_cache  # noqa: E402 (it starts JAX: the environment first)

# Cold runs write what they compile: only programs over 0.5 s, in this process, its subprocesses and
# in-process CLI calls, all through the commands' own set-up.
os.environ.setdefault("ZOOBENCH_COMPILE_CACHE_MIN_SECONDS", "0.5")
enable_compile_cache()

# The build-mechanics config: 12 two-layer MLPs in exactly two groups (sgd, adam),
# hence two chunks, so resume/shard/merge have something to split. Varied
# activations, inits, dropout, datasets and widths (padded to the bucket of 16).
MINI_DOC = {
    "zoo": {
        "name": "mini",
        "seed": 0,
        "num_networks": 12,
        "input_shape": [8, 8, 1],
        "num_classes": 10,
        "datasets": {"choice": ["digits", "digits@perm1"]},
        "max_train": 128,
        "max_test": 64,
        "epochs": 2,
        "checkpoint_epochs": [1, 2],
    },
    "training": {"width_buckets": [16], "chunk_size": 64},
    "family": [
        {
            "kind": "mlp",
            "depth": 2,
            "width": {"choice": [8, 12, 16]},
            "activation": {"choice": ["relu", "tanh", "gelu", "sigmoid"]},
        }
    ],
    "hyper": {
        "optimizer": {"choice": ["sgd", "adam"]},
        "learning_rate": {"sgd": {"log_uniform": [0.03, 0.3]}, "adam": {"log_uniform": [1e-3, 3e-2]}},
        "weight_decay": {"log_uniform": [1e-6, 1e-3]},
        "init": {"choice": ["he_normal", "glorot_normal", "lecun_normal", "glorot_uniform"]},
        "init_scale": {"uniform": [0.5, 1.5]},
        "dropout": {"choice": [0.0, 0.1]},
        "batch_size": 32,
        "train_fraction": {"uniform": [0.5, 1.0]},
    },
}


# The held-out zoo: 192 MLPs on digits whose targets vary well above their measurement noise, so
# "beats a constant on the test networks" means something. Widths up to 64 and train fractions
# log-uniform down to 3% make some networks overfit: gen_gap has std 0.085 on the train part
# (0.04 with widths <= 16), against ~0.02 noise of an accuracy measured on 540 test images.
HELD_OUT_DOC = {
    **copy.deepcopy(MINI_DOC),
    "zoo": {**MINI_DOC["zoo"], "name": "held-out", "num_networks": 192, "datasets": {"choice": ["digits"]},
            "max_train": 1024, "max_test": 540, "epochs": 10, "checkpoint_epochs": [10]},
    "training": {"width_buckets": [64], "chunk_size": 64},
    "family": [{"kind": "mlp", "depth": {"choice": [1, 2]}, "width": {"choice": [16, 32, 64]},
                "activation": {"choice": ["relu", "tanh"]}}],
}
HELD_OUT_DOC["hyper"] = {**HELD_OUT_DOC["hyper"], "train_fraction": {"log_uniform": [0.03, 1.0]},
                         "learning_rate": {"sgd": {"log_uniform": [0.003, 0.3]},
                                           "adam": {"log_uniform": [3e-4, 3e-2]}}}


def mini_doc(**zoo_overrides) -> dict:
    """A deep copy of `MINI_DOC`, with keys of its [zoo] table replaced."""
    doc = copy.deepcopy(MINI_DOC)
    doc["zoo"].update(zoo_overrides)
    return doc


def mini_config(**zoo_overrides):
    from zoo_builder.config import config_from_dict

    return config_from_dict(mini_doc(**zoo_overrides), source="tests:mini")


def flip_byte(path: Path, offset: int | None = None) -> None:
    """Corrupt a file in place: invert one byte (default: the middle one)."""
    data = bytearray(Path(path).read_bytes())
    offset = len(data) // 2 if offset is None else offset
    data[offset] ^= 0xFF
    Path(path).write_bytes(bytes(data))


def copy_zoo(src: Path, dst: Path) -> Path:
    """A private copy of a session zoo, safe to corrupt."""
    shutil.copytree(src, dst)
    return dst


@pytest.fixture(scope="session")
def tiny_config():
    return mini_config()


@pytest.fixture(scope="session")
def tiny_zoo(tmp_path_factory, tiny_config) -> Path:
    """The zoo of `MINI_DOC`, built once per session (read-only: copy before modifying)."""
    from zoo_builder.build import build_zoo

    path = tmp_path_factory.mktemp("zoos") / "mini"
    report = build_zoo(tiny_config, path, progress=False)
    assert report.num_networks == 12 and report.chunks_trained == 2
    return path


def _session_zoo(tmp_path_factory, name: str, config) -> Path:
    """`config` built once into a session directory called `name` (read-only: copy before modifying)."""
    from zoo_builder.build import build_zoo

    path = tmp_path_factory.mktemp("zoos") / name
    build_zoo(config, path, progress=False)
    return path


@pytest.fixture(scope="session")
def tiny_preset_zoo(tmp_path_factory) -> Path:
    """The zoo of the ``tiny`` preset, built once per session (read-only)."""
    from zoo_builder.config import load_preset

    return _session_zoo(tmp_path_factory, "tiny", load_preset("tiny"))


@pytest.fixture(scope="session")
def held_out_zoo(tmp_path_factory) -> Path:
    """The zoo of `HELD_OUT_DOC` (192 networks, about 10 s), built once per session (read-only)."""
    from zoo_builder.config import config_from_dict

    return _session_zoo(tmp_path_factory, "held-out",
                        config_from_dict(copy.deepcopy(HELD_OUT_DOC), source="tests:held-out"))


@pytest.fixture(scope="session")
def inr_tiny_zoo(tmp_path_factory) -> Path:
    """The zoo of the ``inr-tiny`` preset (40 SIRENs of digits, seconds), built once per session."""
    from zoo_builder.config import load_preset

    return _session_zoo(tmp_path_factory, "inr-tiny", load_preset("inr-tiny"))


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of `zoobench ARGV`, called in process (cheap)."""
    from zoobench import cli

    capsys.readouterr()
    try:
        code = cli.main([str(a) for a in argv])
    except SystemExit as e:  # argparse: --help, usage errors
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err



def held_out_scores(task, outputs: dict) -> dict[str, tuple[float, float]]:
    """Target -> (Kendall tau, MSE / MSE of predicting the train mean) on the test part's originals.

    `outputs` maps each regression target to an array aligned with ``task.test.ids`` (as
    `harness.outputs` and `classic.outputs` return it; column 0 is the prediction). The test
    part also holds twins; only the original networks have answers (`test_targets`), matched
    by (id, epoch). Model selection saw only train and val, so these are held-out scores.
    """
    from benchmark.metrics import kendall_tau
    from benchmark.tasks import test_targets

    answers = test_targets(task)
    position = {(i, int(e)): k for k, (i, e) in enumerate(zip(task.test.ids, task.test.epochs, strict=True))}
    rows = [position[(i, int(e))] for i, e in zip(answers["ids"], answers["epochs"], strict=True)]
    scores = {}
    for t in task.targets:
        y, pred = answers["targets"][t], np.asarray(outputs[t])[rows, 0]
        const = float(np.mean((np.mean(task.train.targets[t]) - y) ** 2))
        scores[t] = (kendall_tau(y, pred), float(np.mean((pred - y) ** 2)) / const)
    return scores


def beats_constant(scores: dict[str, tuple[float, float]]) -> bool:
    """Every target ranked better than chance (a constant has tau 0) and fitted better than the
    train mean (a constant's best guess: MSE ratio 1)."""
    return all(tau > 0 and ratio < 1 for tau, ratio in scores.values())
