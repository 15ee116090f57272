"""A build killed with SIGKILL, at a chunk boundary or in the middle of a write, resumes
into the zoo an uninterrupted build writes; a half-written file is never taken as valid."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import tomli_w
from conftest import MINI_DOC, REPO_ROOT
from test_build import _cli_build, assert_same_zoo

from zoo_builder.build import PARTS_DIR
from zoo_builder.storage import MANIFEST, WEIGHTS_DIR

# Runs a build in a fresh process that SIGKILLs itself at the chosen point. `mid-write`
# dies inside storage.atomic_path after half of the second chunk's weights are on disk;
# `after-chunk` dies right after the first chunk is recorded as finished.
KILLER = textwrap.dedent("""
    import os, signal, sys
    from zoo_builder import build, storage
    from zoo_builder.config import load_config

    point, config, out = sys.argv[1:4]
    writes = []

    def die():
        os.kill(os.getpid(), signal.SIGKILL)

    real_save = storage.save_file

    def save_then_die(tensors, path, metadata=None):
        writes.append(path)
        real_save(tensors, path, metadata=metadata)
        if point == "mid-write" and len(writes) == 2:
            size = os.path.getsize(path)
            with open(path, "r+b") as f:
                f.truncate(size // 2)
            die()

    storage.save_file = save_then_die
    on_chunk = (lambda chunk: die()) if point == "after-chunk" else None
    build.build_zoo(load_config(config), out, progress=False, on_chunk=on_chunk)
    print("finished without being killed")
""")


def _killed_build(point: str, config: Path, out: Path) -> None:
    env = dict(os.environ)
    env.pop("XLA_FLAGS", None)
    proc = subprocess.run([sys.executable, "-c", KILLER, point, str(config), str(out)], cwd=REPO_ROOT,
                          env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == -signal.SIGKILL, (proc.returncode, proc.stdout, proc.stderr[-2000:])


@pytest.mark.slow
@pytest.mark.parametrize("point", ["after-chunk", "mid-write"])
def test_a_killed_build_resumes_into_the_uninterrupted_zoo(tiny_zoo, tmp_path, point):
    config = tmp_path / "mini.toml"
    config.write_text(tomli_w.dumps(MINI_DOC))
    out = tmp_path / "killed"
    _killed_build(point, config, out)

    assert not (out / MANIFEST).exists()  # an unfinished zoo is never taken as complete
    finished = sorted(p.stem for p in (out / PARTS_DIR).glob("*.sha256"))
    assert len(finished) == 1
    if point == "mid-write":
        # The second chunk died before its rename: only a temporary file holds its half bytes.
        names = sorted(p.name for p in (out / WEIGHTS_DIR).iterdir())
        assert [n for n in names if not n.endswith(".tmp")] == [f"{finished[0]}.safetensors"]
        assert any(n.endswith(".tmp") for n in names)

    doc = _cli_build(config, out)
    assert (doc["chunks_trained"], doc["chunks_skipped"]) == (1, 1)
    assert not any(p.name.endswith(".tmp") for p in (out / WEIGHTS_DIR).iterdir())
    assert_same_zoo(tiny_zoo, out)
