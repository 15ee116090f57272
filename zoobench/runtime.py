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
    """
    flags = os.environ.get("XLA_FLAGS", "")
    if "xla_force_host_platform_device_count" in flags:
        return
    count = os.environ.get("ZOOBENCH_CPU_DEVICES") or str(os.cpu_count() or 1)
    os.environ["XLA_FLAGS"] = f"{flags} --xla_force_host_platform_device_count={int(count)}".strip()


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
