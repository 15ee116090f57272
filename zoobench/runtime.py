"""Run-time set-up every `zoobench` command shares: one XLA CPU device per core, the compile cache.

Both are process-wide settings, so the application sets them once at its start
(`zoobench.cli.main`); the libraries below never touch them.
"""

from __future__ import annotations

import os
from pathlib import Path

import jax


def use_every_cpu_core() -> None:
    """Give XLA one CPU device per core; call before JAX starts its backend (GPUs are unaffected).

    XLA runs a CPU device's program mostly on one core, so a population sharded over
    one device per core trains about twice as fast on two cores. An explicit device
    count in XLA_FLAGS is respected; ZOOBENCH_CPU_DEVICES overrides the core count.
    The devices' collectives wait up to `COLLECTIVE_TIMEOUT_S` for each other.
    """
    flags = os.environ.get("XLA_FLAGS", "")
    if "xla_force_host_platform_device_count" not in flags:
        count = os.environ.get("ZOOBENCH_CPU_DEVICES") or str(os.cpu_count() or 1)
        flags = f"{flags} --xla_force_host_platform_device_count={int(count)}"
    if TERMINATE_FLAG not in flags:
        flags = f"{flags} --{TERMINATE_FLAG}={COLLECTIVE_TIMEOUT_S}"
    os.environ["XLA_FLAGS"] = flags.strip()


# XLA aborts the process when one CPU device reaches an all-reduce 40 s (its default) before another.
# On a loaded machine (two jobs on two cores) a device's thread can wait that long: ng-gnn, statnn and
# nfn-np runs died so (SIGABRT, "Termination timeout for `all reduce ...` of 40 seconds exceeded").
# Waiting is right; an hour still ends a real deadlock.
TERMINATE_FLAG = "xla_cpu_collective_call_terminate_timeout_seconds"
COLLECTIVE_TIMEOUT_S = 3600


def enable_compile_cache() -> None:
    """Reuse XLA compilations across runs (a zoo rebuild, a resumed build, the tests) and across
    the baselines' tasks and splits, whose programs are often identical.

    ZOOBENCH_COMPILE_CACHE names the directory; "0", "off" or "none" turn the cache off.
    """
    cache = os.environ.get("ZOOBENCH_COMPILE_CACHE", str(Path.home() / ".cache" / "zoobench" / "xla"))
    if cache and cache.lower() not in ("0", "off", "none"):
        jax.config.update("jax_compilation_cache_dir", cache)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)


def set_up() -> None:
    """Everything a command needs before it computes anything."""
    use_every_cpu_core()
    enable_compile_cache()
