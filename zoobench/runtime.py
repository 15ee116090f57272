"""Run-time set-up every `zoobench` command shares: XLA CPU devices and threads, the compile cache.

These are process-wide settings, so the application sets them once at its start
(`zoobench.cli.main`); the libraries below never touch them.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import jax

from zoo_builder.errors import UsageError

DEVICE_COUNT_FLAG = re.compile(r"--xla_force_host_platform_device_count=(\d+)")


def use_every_cpu_core() -> None:
    """Give XLA one CPU device per core; call before JAX starts its backend (GPUs are unaffected).

    XLA runs a CPU device's program mostly on one core, so a population sharded over
    one device per core trains about twice as fast on two cores. An explicit device
    count in XLA_FLAGS is respected; ZOOBENCH_CPU_DEVICES overrides the core count.
    Whatever the count, XLA's CPU client gets `cpu_threads` threads unless NPROC is set.
    """
    flags, cores = os.environ.get("XLA_FLAGS", ""), os.cpu_count() or 1
    found = DEVICE_COUNT_FLAG.search(flags)
    if found:
        count = int(found.group(1))
    else:
        count = int(os.environ.get("ZOOBENCH_CPU_DEVICES") or cores)
        os.environ["XLA_FLAGS"] = f"{flags} --xla_force_host_platform_device_count={count}".strip()
    os.environ.setdefault("NPROC", str(cpu_threads(count, cores)))


def cpu_threads(devices: int, cores: int) -> int:
    """Threads for XLA's CPU client (it reads NPROC, else takes one per core): two per device.

    Each CPU device runs its part of a data-parallel step on a thread of one shared
    pool, and a device waiting at an all-reduce holds its thread. With one thread per
    core and one device per core, a loaded machine could leave the other device's part
    queued behind it: the all-reduce never completed and XLA aborted the process after
    40 s. Measured on 2 cores with two busy loops beside a cnn-matrices run on inr-small:
    2 of 3 runs aborted with 2 threads, 0 of 3 with 4 and 0 of 3 with 8 (then 0 of 3 with
    this default); on the quiet machine the run took 26-27 s either way, inr-small's build 28.5 s.
    """
    return max(cores, 2 * devices)


def enable_compile_cache() -> None:
    """Reuse XLA compilations across runs (a zoo rebuild, a resumed build, the tests) and across
    the baselines' tasks and splits, whose programs are often identical.

    By default every program is kept, however fast it compiled: with a 0.5 s threshold a warm
    tiny `reproduce` still compiled 554 of its 744 programs (15 s of 131 s profiled), where
    loading them all takes about 8 s; the cache grew by 2 MB.

    ZOOBENCH_COMPILE_CACHE names the directory; "0", "off" or "none" turn the cache off.
    ZOOBENCH_COMPILE_CACHE_MIN_SECONDS keeps only programs that took longer to compile: the
    tests, mostly cold, use 0.5 as before (keeping every program, a fresh-clone test run
    wrote 2,792 cache entries against 261; its time, 918 s against 1,004 s, was within noise).
    """
    cache = os.environ.get("ZOOBENCH_COMPILE_CACHE", str(Path.home() / ".cache" / "zoobench" / "xla"))
    if cache and cache.lower() not in ("0", "off", "none"):
        jax.config.update("jax_compilation_cache_dir", cache)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", compile_cache_min_seconds())


def compile_cache_min_seconds() -> float:
    """ZOOBENCH_COMPILE_CACHE_MIN_SECONDS (default 0: keep every program)."""
    value = os.environ.get("ZOOBENCH_COMPILE_CACHE_MIN_SECONDS", "0")
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if not seconds >= 0:
        raise UsageError(f"ZOOBENCH_COMPILE_CACHE_MIN_SECONDS must be seconds >= 0, got {value!r}")
    return seconds


def set_up() -> None:
    """Everything a command needs before it computes anything."""
    use_every_cpu_core()
    enable_compile_cache()
