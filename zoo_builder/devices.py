"""Joining a multi-process build: the cluster, its coordinator and the barriers between steps."""

from __future__ import annotations

import dataclasses
import socket
import sys
import time

import jax
from jax._src import distributed

from zoo_builder.errors import DomainError


class ClusterError(DomainError, ValueError):
    """The options of a multi-process build do not describe a cluster this process can join."""


class PeerFailed(DomainError, RuntimeError):
    """Another process of a distributed build failed; this one stops too."""


@dataclasses.dataclass(frozen=True)
class Cluster:
    """How this process joins a multi-process build; None fields are auto-detected by JAX.

    JAX fills unset fields from the environment it runs in (Slurm, Open MPI, Cloud
    TPU, or JAX_COORDINATOR_ADDRESS / JAX_LOCAL_DEVICE_IDS).
    """

    coordinator: str | None = None  # HOST:PORT of process 0's coordination service
    num_processes: int | None = None
    process_id: int | None = None
    init_timeout_s: int = 300  # connecting to the coordinator, and process 0 waiting for all to join
    # Waiting at a barrier for the slowest process's shard; a process that dies is noticed
    # sooner, by the coordination service's heartbeats.
    barrier_timeout_s: int = 7 * 24 * 3600

    def __post_init__(self):
        if self.num_processes is not None and self.num_processes < 1:
            raise ClusterError(f"num_processes must be >= 1, got {self.num_processes}")
        if self.process_id is not None and self.process_id < 0:
            raise ClusterError(f"process_id must be >= 0, got {self.process_id}")
        if None not in (self.process_id, self.num_processes) and self.process_id >= self.num_processes:
            raise ClusterError(f"process_id must be in 0..num_processes-1 = 0..{self.num_processes - 1}, "
                               f"got {self.process_id}")
        if self.coordinator is not None:
            parse_address(self.coordinator)


def parse_address(value: str) -> tuple[str, int]:
    """HOST:PORT (HOST may be a name, an IPv4 address or a bracketed IPv6 address)."""
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ClusterError(f"coordinator address must be HOST:PORT with a port in 1..65535, got {value!r}")
    return host.strip("[]"), int(port)


def wait_for_coordinator(address: str, timeout_s: float) -> None:
    """Return once something listens at `address`; raise a clear error after `timeout_s`.

    Without this a process pointed at a wrong address would die inside JAX's
    coordination client with an abort and a C++ stack trace, not a message.
    """
    host, port = parse_address(address)
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with socket.create_connection((host, port), timeout=2.0):
                return
        except socket.gaierror as e:
            raise ConnectionError(f"coordinator {address}: cannot resolve host {host!r} ({e})") from None
        except OSError as e:
            if time.monotonic() >= deadline:
                raise ConnectionError(
                    f"coordinator {address}: nothing listening after {timeout_s:g}s ({e}); start "
                    "process 0 with the same --coordinator, or check the host and port") from None
        time.sleep(0.5)


def join_cluster(cluster: Cluster) -> tuple[int, int]:
    """`jax.distributed.initialize` this process; returns (process_id, num_processes).

    Must run before any JAX computation. Process 0 hosts the coordination service;
    the others first wait (at most `init_timeout_s`) for it to listen.
    """
    if cluster.coordinator is not None and cluster.process_id not in (None, 0):
        wait_for_coordinator(cluster.coordinator, cluster.init_timeout_s)
    # JAX aborts the process (a C++ check failure, DEADLINE_EXCEEDED) if not every process joins
    # in time; this line says beforehand what it was waiting for.
    print(f"zoobench: joining the distributed build (coordinator {cluster.coordinator or 'auto-detected'}, "
          f"process {_or_auto(cluster.process_id)} of {_or_auto(cluster.num_processes)}); every process "
          f"must join within {cluster.init_timeout_s}s", file=sys.stderr, flush=True)
    try:
        jax.distributed.initialize(cluster.coordinator, cluster.num_processes, cluster.process_id,
                                   initialization_timeout=cluster.init_timeout_s)
    except ValueError as e:  # JAX found no cluster environment to fill the unset fields from
        raise ClusterError(f"cannot join a distributed build: {e} Pass --coordinator HOST:PORT "
                           "--num-processes N --process-id I, or run under Slurm or Open MPI") from None
    # Start the backend now: it exchanges device topologies with every process, which would
    # otherwise happen at the first computation and stall the others if this one failed before.
    jax.local_devices()
    return jax.process_index(), jax.process_count()


def _or_auto(value: int | None) -> str:
    return "auto" if value is None else str(value)


def barrier(name: str, timeout_s: float, error: str | None = None) -> None:
    """Wait until every process of the distributed build reaches step `name`; fail if one failed.

    A process that failed passes its `error` instead of waiting, and the others
    raise it, naming that process, instead of waiting for it. Built on the
    coordination service's key-value store, not a collective, so it needs no
    cross-process collectives backend (CPU builds have none by default).
    """
    client = distributed.global_state.client
    if client is None:
        raise RuntimeError("barrier() needs jax.distributed.initialize first (join_cluster)")
    me, count = jax.process_index(), jax.process_count()
    client.key_value_set(f"zoobench/{name}/{me}", "ok" if error is None else f"error: {error}")
    if error is not None:
        return
    for other in range(count):
        status = client.blocking_key_value_get(f"zoobench/{name}/{other}", int(timeout_s * 1000))
        if status != "ok":
            raise PeerFailed(f"process {other} of {count} failed before {name!r}: {status[len('error: '):]}")
