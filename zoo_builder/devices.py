"""How many XLA devices a CPU-only machine should show: one per core."""

from __future__ import annotations

import os


def use_every_cpu_core() -> None:
    """Give XLA one CPU device per core; call before JAX starts (GPUs are unaffected).

    XLA runs a CPU device's program mostly on one core, so a population sharded over
    one device per core trains about twice as fast on two cores. An explicit device
    count in XLA_FLAGS is respected; ZOOBENCH_CPU_DEVICES overrides the core count.
    """
    flags = os.environ.get("XLA_FLAGS", "")
    if "xla_force_host_platform_device_count" in flags:
        return
    count = os.environ.get("ZOOBENCH_CPU_DEVICES") or str(os.cpu_count() or 1)
    os.environ["XLA_FLAGS"] = f"{flags} --xla_force_host_platform_device_count={int(count)}".strip()
