"""Multi-process builds: processes joined by `jax.distributed` on 127.0.0.1 each build
their shard, process 0 merges, and the zoo equals a single-process build; a process
that cannot join fails with a message instead of hanging."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import tomli_w
from conftest import MINI_DOC, REPO_ROOT, flip_byte
from test_build import assert_same_zoo

from zoo_builder.build import build_zoo, build_zoo_in_processes, process_shard_dir
from zoo_builder.devices import Cluster, PeerFailed
from zoo_builder.storage import MANIFEST, ZooError, load_zoo, write_manifest
from zoobench.cli import main

# Every process must join within this (seconds); the failure tests wait for it to pass.
INIT_TIMEOUT = 3


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env() -> dict:
    """This test's environment without any cluster JAX could auto-detect (the CI may run under Slurm)."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("SLURM_", "OMPI_", "PMI_", "JAX_COORDINATOR", "JAX_LOCAL_DEVICE"))}
    env.pop("XLA_FLAGS", None)  # one CPU device per process (conftest sets ZOOBENCH_CPU_DEVICES=1)
    env["PYTHONHASHSEED"] = "123"
    return env


def _build_cmd(config: Path, out: Path, *options: str) -> list[str]:
    return [sys.executable, "-m", "zoobench.cli", "zoo", "build", "--config", str(config),
            "--out", str(out), "--json", "--no-progress", *options]


def _start(cmd: list[str]) -> subprocess.Popen:
    return subprocess.Popen(cmd, cwd=REPO_ROOT, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def _finish(proc: subprocess.Popen, timeout: float = 300) -> tuple[int, str, str]:
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        pytest.fail(f"still running after {timeout}s (hangs): {err[-2000:]}")
    return proc.returncode, out, err


@pytest.fixture
def config(tmp_path) -> Path:
    path = tmp_path / "mini.toml"
    path.write_text(tomli_w.dumps(MINI_DOC))
    return path


@pytest.mark.slow
def test_two_processes_build_the_single_process_zoo(tiny_zoo, config, tmp_path):
    out = tmp_path / "zoo"
    coordinator = f"127.0.0.1:{_free_port()}"
    procs = [_start(_build_cmd(config, out, "--coordinator", coordinator, "--num-processes", "2",
                               "--process-id", str(i), "--init-timeout", "60"))
             for i in range(2)]
    results = [_finish(p) for p in procs]
    for rc, _, err in results:
        assert rc == 0, err[-3000:]
    docs = [json.loads(stdout) for _, stdout, _ in results]
    single = load_zoo(tiny_zoo).weights_fingerprint
    assert [d["weights_fingerprint"] for d in docs] == [single, single]
    assert [d["chunks_trained"] for d in docs] == [1, 1]  # each process trained its own chunk
    assert_same_zoo(tiny_zoo, out)
    merged = load_zoo(out).manifest
    assert merged["shard"] is None and len(merged["build"]["shards"]) == 2
    assert not process_shard_dir(out, (0, 2)).parent.exists()  # the shards are merged, then deleted


class ThreadBarrier:
    """`devices.barrier` for threads standing in for processes: each step's statuses, then a wait."""

    def __init__(self, n: int):
        self.n, self.statuses, self.cond = n, {}, threading.Condition()

    def for_process(self, i: int):
        def barrier(step: str, error: str | None) -> None:
            with self.cond:
                self.statuses.setdefault(step, {})[i] = error or "ok"
                self.cond.notify_all()
                if error is not None:
                    return
                assert self.cond.wait_for(lambda: len(self.statuses[step]) == self.n, timeout=300)
                failed = {j: e for j, e in self.statuses[step].items() if e != "ok"}
            if failed:
                raise PeerFailed(f"process {min(failed)} failed before {step!r}: {failed[min(failed)]}")
        return barrier


def _run_threads(cfg, out, n, shards_dir=None) -> tuple[dict, dict]:
    sync = ThreadBarrier(n)
    reports, errors = {}, {}

    def process(i):
        try:
            reports[i] = build_zoo_in_processes(cfg, out, (i, n), sync.for_process(i), shards_dir=shards_dir,
                                                progress=False)
        except Exception as e:  # noqa: BLE001 (returned to the test)
            errors[i] = e

    threads = [threading.Thread(target=process, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return reports, errors


def test_threads_as_processes_merge_into_the_single_zoo(tiny_zoo, tiny_config, tmp_path):
    """The shard-barrier-merge logic without jax.distributed: threads stand in for processes."""
    shards_dir = tmp_path / "scratch"
    shards_dir.mkdir()
    (shards_dir / "keep.txt").write_text("not ours")
    reports, errors = _run_threads(tiny_config, tmp_path / "zoo", 2, shards_dir)
    assert not errors, errors
    assert_same_zoo(tiny_zoo, tmp_path / "zoo")
    assert reports[0].manifest == reports[1].manifest
    assert sorted(p.name for p in shards_dir.iterdir()) == ["keep.txt"]  # only the shards are deleted

    # Run again: the finished zoo is verified and reused, nothing is trained or waited for.
    again = build_zoo_in_processes(tiny_config, tmp_path / "zoo", (1, 2), lambda *_: pytest.fail("waited"))
    assert (again.chunks_trained, again.manifest) == (0, reports[0].manifest)


def test_a_failed_merge_stops_every_process_with_its_message(tiny_config, tmp_path):
    """Process 0's merge fails (a shard's manifest was damaged): the others learn why, at once."""
    out = tmp_path / "zoo"
    shard1 = process_shard_dir(out, (1, 2))
    build_zoo(tiny_config, shard1, shard=(1, 2), progress=False)  # finished earlier, then damaged:
    manifest = json.loads((shard1 / MANIFEST).read_text())
    manifest["datasets"]["digits"]["n_test"] += 1  # resealed: an intact manifest of other data
    write_manifest(shard1, manifest)

    reports, errors = _run_threads(tiny_config, out, 2)
    assert not reports and set(errors) == {0, 1}
    assert isinstance(errors[0], ZooError) and "its dataset records differ" in str(errors[0])
    assert isinstance(errors[1], PeerFailed)
    assert str(errors[1]).startswith("process 0 failed before 'zoo-merged': ZooError: ")
    assert "its dataset records differ" in str(errors[1])
    assert not (out / MANIFEST).exists()


@pytest.mark.slow
def test_a_failing_process_stops_the_others_at_once(tiny_config, config, tmp_path):
    """Process 1's shard is corrupted: it fails, and process 0 stops with its message, not a hang."""
    out = tmp_path / "zoo"
    shard1 = process_shard_dir(out, (1, 2))
    build_zoo(tiny_config, shard1, shard=(1, 2), progress=False)
    weights = next((shard1 / "weights").glob("*.safetensors"))
    flip_byte(weights)
    coordinator = f"127.0.0.1:{_free_port()}"
    t0 = time.monotonic()
    procs = [_start(_build_cmd(config, out, "--coordinator", coordinator, "--num-processes", "2",
                               "--process-id", str(i), "--init-timeout", "60"))
             for i in range(2)]
    (rc0, out0, err0), (rc1, out1, _) = (_finish(p, timeout=120) for p in procs)
    assert (rc0, rc1) == (1, 1), err0[-2000:]
    assert json.loads(out1)["error"] == f"{weights}: checksum mismatch (corrupted or modified)"
    assert json.loads(out0)["error"] == ("process 1 of 2 failed before 'shards-written': ZooError: "
                                         f"{weights}: checksum mismatch (corrupted or modified)")
    assert time.monotonic() - t0 < 60  # not JAX's heartbeat timeout (100 s) or shutdown timeout (300 s)
    assert not (out / MANIFEST).exists()


def test_a_process_whose_coordinator_never_comes_fails_clearly(config, tmp_path):
    coordinator = f"127.0.0.1:{_free_port()}"  # nothing listens there
    t0 = time.monotonic()
    rc, stdout, err = _finish(_start(_build_cmd(
        config, tmp_path / "zoo", "--coordinator", coordinator, "--num-processes", "2", "--process-id", "1",
        "--init-timeout", str(INIT_TIMEOUT))), timeout=120)
    assert rc == 1, err[-2000:]
    assert f"coordinator {coordinator}: nothing listening after {INIT_TIMEOUT}s" in err
    assert "Traceback" not in err
    assert json.loads(stdout)["error"].startswith(f"coordinator {coordinator}")
    assert time.monotonic() - t0 < 60
    assert not (tmp_path / "zoo" / MANIFEST).exists()


def test_a_coordinator_whose_peers_never_come_gives_up(config, tmp_path):
    """Process 0 alone: JAX aborts after the timeout (no Python error to catch), but it ends."""
    coordinator = f"127.0.0.1:{_free_port()}"
    t0 = time.monotonic()
    rc, _, err = _finish(_start(_build_cmd(
        config, tmp_path / "zoo", "--coordinator", coordinator, "--num-processes", "2", "--process-id", "0",
        "--init-timeout", str(INIT_TIMEOUT))), timeout=120)
    assert rc != 0
    assert f"process 0 of 2); every process must join within {INIT_TIMEOUT}s" in err
    assert "DEADLINE_EXCEEDED" in err
    assert time.monotonic() - t0 < 90
    assert not (tmp_path / "zoo" / MANIFEST).exists()


def test_no_cluster_to_detect_is_an_error(config, tmp_path):
    rc, stdout, err = _finish(_start(_build_cmd(config, tmp_path / "zoo", "--distributed",
                                                "--init-timeout", str(INIT_TIMEOUT))), timeout=120)
    assert rc == 1, err[-2000:]
    assert "cannot join a distributed build" in json.loads(stdout)["error"]
    assert "--coordinator HOST:PORT" in err and "Traceback" not in err


@pytest.mark.parametrize(("options", "rc", "message"), [
    (["--coordinator", "127.0.0.1"], 2, "must be HOST:PORT"),
    (["--coordinator", "host:99999"], 2, "must be HOST:PORT"),
    (["--num-processes", "0"], 2, "expected an integer >= 1"),
    (["--process-id", "-1"], 2, "expected an integer >= 0"),
    (["--init-timeout", "soon"], 2, "expected an integer >= 1"),
    (["--num-processes", "2", "--process-id", "2"], 1, "process_id must be in 0..num_processes-1"),
    (["--distributed", "--shard", "0/2"], 1, "--shard is for separate jobs"),
])
def test_bad_distributed_options_are_refused_before_joining(config, tmp_path, capsys, options, rc, message):
    argv = ["zoo", "build", "--config", str(config), "--out", str(tmp_path / "zoo"), "--no-progress",
            *options]
    if rc == 2:
        with pytest.raises(SystemExit) as e:
            main(argv)
        assert e.value.code == 2
    else:
        assert main(argv) == 1
    assert message in capsys.readouterr().err
    assert not (tmp_path / "zoo").exists()


def test_cluster_checks_its_fields():
    with pytest.raises(ValueError, match="HOST:PORT"):
        Cluster(coordinator="no-port")
    with pytest.raises(ValueError, match="num_processes must be >= 1"):
        Cluster(num_processes=0)
    with pytest.raises(ValueError, match="process_id must be >= 0"):
        Cluster(process_id=-1)
    with pytest.raises(ValueError, match=r"process_id must be in 0\.\.num_processes-1 = 0\.\.2, got 3"):
        Cluster(num_processes=3, process_id=3)
    assert Cluster(coordinator="[::1]:1234", num_processes=3, process_id=2).process_id == 2
