"""How `zoobench` fails: a domain error (a bad file, config, option, a zoo a task cannot use) is one line
naming the file and exits 1; anything else is a bug and shows its traceback; ``--debug`` shows it for both."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import tomli_w
from conftest import copy_zoo, flip_byte, mini_doc
from conftest import run_cli as run

from zoo_builder.config import ConfigError
from zoo_builder.errors import DomainError
from zoo_builder.files import sha256_file
from zoo_builder.storage import MANIFEST, TABLE, write_manifest
from zoobench import cli, zoo_commands


def _error(err: str) -> str:
    assert err.startswith("zoobench: error: "), err
    assert "Traceback" not in err
    return err.removeprefix("zoobench: error: ")


# --------------------------------------------------------------------------- domain errors: exit 1, one line


def test_a_bad_config_names_the_file(capsys, tmp_path):
    doc = mini_doc()
    doc["zoo"]["epochs"] = 0
    bad = tmp_path / "bad.toml"
    bad.write_text(tomli_w.dumps(doc))
    code, out, err = run(capsys, "zoo", "build", "--config", bad, "--out", tmp_path / "zoo")
    assert code == 1 and out == ""
    assert _error(err).startswith(f"{bad}: zoo.epochs")


def test_a_corrupted_zoo_file_is_named(capsys, tiny_zoo, tmp_path):
    zoo = copy_zoo(tiny_zoo, tmp_path / "zoo")
    flip_byte(zoo / TABLE)
    code, out, err = run(capsys, "tasks", zoo, "--json")
    assert code == 1
    assert json.loads(out)["error"] == _error(err).strip()
    assert _error(err).startswith(f"{zoo / TABLE}: checksum mismatch")


def _without_column(src, dst, column: str):
    """A copy of zoo `src` whose table lacks `column` (checksum updated): readable, not a zoobench table."""
    zoo = copy_zoo(src, dst)
    pd.read_parquet(zoo / TABLE).drop(columns=[column]).to_parquet(zoo / TABLE)
    manifest = json.loads((zoo / MANIFEST).read_text())
    manifest["files"][TABLE] = sha256_file(zoo / TABLE)
    write_manifest(zoo, manifest)  # resealed: only the missing column is wrong
    for split_file in (zoo / "splits").glob("*.json"):
        split_file.unlink()
    return zoo


def test_a_zoo_table_without_a_column_is_named(capsys, tiny_zoo, tmp_path):
    zoo = _without_column(tiny_zoo, tmp_path / "zoo", "config_id")
    code, _, err = run(capsys, "tasks", zoo)
    assert code == 1
    message = _error(err)
    assert message.startswith(f"{zoo / TABLE}: ") and "config_id" in message
    assert "docs/zoo_format.md" in message


def test_a_task_the_zoo_cannot_give_names_the_zoo(capsys, tiny_zoo, tmp_path):
    """The mini zoo has one network per config: no replicate pairs to merge."""
    zoo = copy_zoo(tiny_zoo, tmp_path / "zoo")  # loading a task writes its split file next to the zoo
    code, out, err = run(capsys, "baselines", "run", "--zoo", zoo, "--task", "merging",
                         "--method", "naive", "--out", tmp_path / "subs")
    assert code == 1 and out == ""
    message = _error(err)
    assert message.startswith(f"{zoo}: ") and "merging needs replicate pairs" in message


def test_a_bad_submission_is_named(capsys, tiny_zoo, tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"format": "zoobench-submission"')
    db = tmp_path / "lb.sqlite"
    code, out, _ = run(capsys, "leaderboard", "score", bad, "--zoo", tiny_zoo, "--db", db)
    assert code == 1 and out.startswith(f"{bad}: ")
    code, _, err = run(capsys, "leaderboard", "html", tmp_path / "site", "--db", db, "--submission", bad,
                       "--zoo", tiny_zoo)
    assert code == 1 and _error(err).startswith(f"{bad}: ")


def test_a_leaderboard_file_that_is_not_a_database_is_named(capsys, tmp_path):
    db = tmp_path / "lb.sqlite"
    db.write_bytes(b"not sqlite" * 100)
    code, out, err = run(capsys, "leaderboard", "show", "--db", db, "--format", "json")
    assert code == 1 and _error(err).startswith(f"{db}: not a usable leaderboard database")
    assert json.loads(out)["error"].startswith(str(db))


def test_options_that_do_not_go_together_are_a_usage_mistake(capsys, tmp_path):
    db = tmp_path / "lb.sqlite"
    code, _, err = run(capsys, "leaderboard", "show", "--db", db)  # no database: refused, and none made
    assert code == 1 and _error(err).startswith(f"{db}: no leaderboard database there")
    assert not db.exists()
    from leaderboard.store import connect

    connect(db).close()
    code, _, err = run(capsys, "leaderboard", "html", tmp_path / "site", "--db", db, "--submission", "x.json")
    assert code == 1 and "--submission needs --zoo" in _error(err)


def test_a_missing_file_is_named(capsys, tiny_zoo, tmp_path):
    missing = tmp_path / "none.json"
    code, _, err = run(capsys, "leaderboard", "score", missing, "--zoo", tiny_zoo,
                       "--db", tmp_path / "lb.sqlite")
    assert code == 1 and str(missing) in _error(err)


# --------------------------------------------------------------------------- bugs: a traceback


@pytest.mark.parametrize("error", [KeyError("('1632673910113b11', 86)"), ValueError("deep inside"),
                                   TypeError("oops")])
def test_an_unexpected_error_is_not_swallowed(capsys, monkeypatch, tmp_path, error):
    def broken(args):
        raise error

    monkeypatch.setattr(zoo_commands, "cmd_zoo_info", broken)
    with pytest.raises(type(error)) as e:
        cli.main(["zoo", "info", str(tmp_path)])
    assert e.value is error
    assert "zoobench: error" not in capsys.readouterr().err


def test_an_os_error_without_a_path_is_a_bug(monkeypatch, tmp_path):
    def broken(args):
        raise OSError("something low-level")

    monkeypatch.setattr(zoo_commands, "cmd_zoo_info", broken)
    with pytest.raises(OSError, match="something low-level"):
        cli.main(["zoo", "info", str(tmp_path)])


def test_debug_shows_the_traceback_of_domain_errors_too(capsys, tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[zoo\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        cli.main(["--debug", "zoo", "build", "--config", str(bad), "--out", str(tmp_path / "zoo")])
    code, _, err = run(capsys, "zoo", "build", "--config", bad, "--out", tmp_path / "zoo")
    assert code == 1 and _error(err).startswith(f"{bad}: not valid TOML")


def test_every_domain_error_type_is_one():
    from benchmark.splits import SplitError, SplitUnavailable
    from benchmark.submission import SubmissionError
    from benchmark.tasks import TaskUnavailable
    from leaderboard.store import StoreError
    from zoo_builder.datasets import DatasetError
    from zoo_builder.devices import ClusterError, PeerFailed
    from zoo_builder.errors import UsageError
    from zoo_builder.smallcnnzoo import SourceError
    from zoo_builder.storage import ZooError

    for kind in (ConfigError, ZooError, SourceError, SplitError, SplitUnavailable, TaskUnavailable,
                 SubmissionError, PeerFailed, ClusterError, DatasetError, StoreError, UsageError):
        assert issubclass(kind, DomainError), kind
    # those that were ValueErrors still are, for callers that catch ValueError
    for kind in (ConfigError, SplitError, SplitUnavailable, TaskUnavailable, SubmissionError, ClusterError,
                 DatasetError, StoreError, UsageError):
        assert issubclass(kind, ValueError), kind
