"""Run-time set-up: CPU device count and XLA's CPU threads, set in the environment before JAX starts."""

from __future__ import annotations

import os

import pytest

from zoo_builder.errors import UsageError
from zoobench import runtime


@pytest.fixture
def env(monkeypatch):
    for name in ("XLA_FLAGS", "ZOOBENCH_CPU_DEVICES", "NPROC"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    return monkeypatch


def test_one_device_per_core_and_two_threads_per_device(env):
    runtime.use_every_cpu_core()
    assert os.environ["XLA_FLAGS"] == "--xla_force_host_platform_device_count=2"
    assert os.environ["NPROC"] == "4"


def test_an_explicit_device_count_is_kept_and_sets_the_threads(env):
    env.setenv("XLA_FLAGS", "--xla_dump_to=/tmp/x --xla_force_host_platform_device_count=4")
    runtime.use_every_cpu_core()
    assert os.environ["XLA_FLAGS"] == "--xla_dump_to=/tmp/x --xla_force_host_platform_device_count=4"
    assert os.environ["NPROC"] == "8"


def test_zoobench_cpu_devices_and_a_users_nproc_win(env):
    env.setenv("ZOOBENCH_CPU_DEVICES", "1")
    env.setenv("NPROC", "3")
    runtime.use_every_cpu_core()
    assert os.environ["XLA_FLAGS"] == "--xla_force_host_platform_device_count=1"
    assert os.environ["NPROC"] == "3"


@pytest.mark.parametrize(("devices", "cores", "threads"), [(1, 2, 2), (2, 2, 4), (4, 2, 8), (2, 16, 16)])
def test_threads_are_at_least_the_cores_and_two_per_device(devices, cores, threads):
    assert runtime.cpu_threads(devices, cores) == threads


def test_the_compile_cache_keeps_every_program_unless_told_a_threshold(monkeypatch):
    monkeypatch.delenv("ZOOBENCH_COMPILE_CACHE_MIN_SECONDS", raising=False)
    assert runtime.compile_cache_min_seconds() == 0.0
    monkeypatch.setenv("ZOOBENCH_COMPILE_CACHE_MIN_SECONDS", "0.5")
    assert runtime.compile_cache_min_seconds() == 0.5
    for bad in ("soon", "-1", "nan"):
        monkeypatch.setenv("ZOOBENCH_COMPILE_CACHE_MIN_SECONDS", bad)
        with pytest.raises(UsageError, match="ZOOBENCH_COMPILE_CACHE_MIN_SECONDS"):
            runtime.compile_cache_min_seconds()
