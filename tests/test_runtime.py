"""zoobench.runtime: the XLA flags every command starts with."""

from __future__ import annotations

import pytest

from zoobench import runtime


@pytest.mark.parametrize("before, devices", [("", "3"), ("--xla_force_host_platform_device_count=5", "5")])
def test_cpu_devices_and_a_patient_collective_timeout(monkeypatch, before, devices):
    monkeypatch.setenv("XLA_FLAGS", before)
    monkeypatch.setenv("ZOOBENCH_CPU_DEVICES", "3")
    runtime.use_every_cpu_core()
    flags = runtime.os.environ["XLA_FLAGS"].split()
    assert f"--xla_force_host_platform_device_count={devices}" in flags
    assert f"--{runtime.TERMINATE_FLAG}={runtime.COLLECTIVE_TIMEOUT_S}" in flags
    assert len(flags) == 2


def test_a_timeout_the_user_set_is_kept(monkeypatch):
    monkeypatch.setenv("XLA_FLAGS", f"--{runtime.TERMINATE_FLAG}=7")
    runtime.use_every_cpu_core()
    assert runtime.os.environ["XLA_FLAGS"].count(runtime.TERMINATE_FLAG) == 1
    assert f"--{runtime.TERMINATE_FLAG}=7" in runtime.os.environ["XLA_FLAGS"]
