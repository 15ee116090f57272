"""The docs cannot rot: every code block of README.md and docs/*.md is parsed or run.

* shell blocks (``bash``, ``sh``, ``shell``, ``console``, unlabelled): every
  ``zoobench`` command parses with the real argument parser, ``make`` names a
  Makefile target, ``python FILE`` names a file of the repository and
  ``python -m MODULE`` an importable module; any other program must be in
  `ALLOWED_PROGRAMS`. ``srun``, ``sbatch --wrap`` and ``$(...)`` are looked into.
* ``python`` blocks compile, and their imports of zoobench's packages resolve;
  those that define every name they use are run on the tiny preset zoo.
* ``toml`` blocks parse (and load as zoo configs when they have a ``[zoo]``
  table); ``json`` blocks parse, and the submission schema equals the shipped one.
* ``text`` marks a block that is not code (a directory tree, output).

Also: docs/baselines.md's profile table is `baselines.run.profile_table()`, and
examples/evaluate_new_method.py runs end to end and its submission scores.
"""

from __future__ import annotations

import ast
import builtins
import contextlib
import importlib
import importlib.util
import io
import json
import os
import re
import shlex
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest

from zoobench import cli

REPO_ROOT = Path(__file__).resolve().parents[1]
DOC_FILES = [REPO_ROOT / "README.md", *sorted((REPO_ROOT / "docs").glob("*.md"))]
EXAMPLE = REPO_ROOT / "examples" / "evaluate_new_method.py"

SHELL_LANGS = {"", "bash", "sh", "shell", "console"}
NOT_CODE_LANGS = {"text"}
ZOOBENCH_PACKAGES = {"benchmark", "baselines", "leaderboard", "zoo_builder", "zoobench"}
# Programs a doc may show besides those `check_command` looks into (zoobench, python, make,
# srun, mpirun, sbatch): plain tools whose arguments are the reader's own.
ALLOWED_PROGRAMS = {
    "cd", "cp", "mv", "mkdir", "rm", "ls", "cat", "echo", "export", "source", "git", "pip", "tar",
    "tfds", "pytest", "ruff", "du", "head", "tail",
}
# Values for shell variables in commands; any other variable becomes "0".
SHELL_VALUES = {"HOME": "/home/user"}
LAUNCHER_OPTIONS_WITH_VALUE = {"-n", "-N", "-c", "-p", "-t", "-J", "-o", "-e", "-np", "--ntasks", "--nodes"}


@dataclass(frozen=True)
class Block:
    path: Path
    index: int
    line: int  # line of the opening fence, 1-based
    lang: str
    text: str

    @property
    def where(self) -> str:
        lang = self.lang or "unlabelled"
        return f"{self.path.relative_to(REPO_ROOT)}:{self.line} (block {self.index}, {lang})"


def code_blocks(path: Path) -> list[Block]:
    """The fenced code blocks of a markdown file, in order."""
    blocks, lines = [], path.read_text().splitlines()
    i = 0
    while i < len(lines):
        m = re.match(r"\s*(`{3,})\s*([\w+-]*)", lines[i])
        if not m:
            i += 1
            continue
        fence, start = m.group(1), i
        i += 1
        while i < len(lines) and not lines[i].strip().startswith(fence):
            i += 1
        assert i < len(lines), f"{path.relative_to(REPO_ROOT)}:{start + 1}: code block never closed"
        blocks.append(Block(path, len(blocks), start + 1, m.group(2).lower(), "\n".join(lines[start + 1:i])))
        i += 1
    return blocks


ALL_BLOCKS = [b for path in DOC_FILES for b in code_blocks(path)]


def blocks_of(*langs: str) -> list:
    return [pytest.param(b, id=f"{b.path.name}-{b.index}") for b in ALL_BLOCKS if b.lang in langs]


# --------------------------------------------------------------------------- shell


def shell_commands(block: Block) -> list[tuple[int, str]]:
    """(line number, command line) of a shell block: comments, prompts and continuations handled."""
    commands, pending, first = [], "", None
    for n, raw in enumerate(block.text.splitlines(), start=block.line + 1):
        line = raw.rstrip()
        if block.lang == "console" and not pending:
            if not line.lstrip().startswith("$ "):
                continue  # output
        if not pending:
            line = re.sub(r"^\s*\$ ", "", line)
            first = n
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        commands.append((first, pending + line))
        pending = ""
    if pending:
        commands.append((first, pending))
    return commands


def expand_synopsis(line: str) -> str:
    """A usage synopsis as a command: `[--opt X]` -> `--opt X`, `a|b` -> `a`, `FILE...` -> `FILE`."""
    while re.search(r"\[[^\[\]]*\]", line):
        line = re.sub(r"\[([^\[\]]*)\]", r"\1", line)
    line = re.sub(r"(?<![\s|])\|[\w-]+", "", line)
    return re.sub(r"(\S)\.\.\.", r"\1", line)


def substitute(line: str, inner: list[str]) -> str:
    """Replace `$(cmd)` by a value (cmd is checked too, through `inner`) and shell variables by values."""

    def sub_command(m):
        inner.append(m.group(1))
        return "0"

    line = re.sub(r"\$\(([^()]*)\)", sub_command, line)
    return re.sub(r"\$\{?([A-Za-z_]\w*)\}?", lambda m: SHELL_VALUES.get(m.group(1), "0"), line)


def split_commands(line: str) -> list[list[str]]:
    """The simple commands of a line (split at ;, &&, ||, |), comments and redirections dropped."""
    lexer = shlex.shlex(line, posix=True, punctuation_chars=";&|<>")
    lexer.whitespace_split = True
    commands, current, redirect = [], [], False
    for token in lexer:
        if redirect:  # the redirection's target
            redirect = False
        elif token and set(token) <= set(";&|"):
            commands.append(current)
            current = []
        elif token and set(token) <= set("<>&") and set(token) & set("<>"):
            redirect = True
            if current and current[-1].isdigit():
                current.pop()  # the file descriptor of 2> and 2>&1
        else:
            current.append(token)
    return [c for c in [*commands, current] if c]


def makefile_targets() -> set[str]:
    text = (REPO_ROOT / "Makefile").read_text()
    return set(re.findall(r"^([\w.-]+)\s*:(?!=)", text, re.M))


def check_zoobench(argv: list[str]) -> str | None:
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            cli.build_parser().parse_args(argv)
    except SystemExit as e:
        return f"`zoobench {shlex.join(argv)}` does not parse (exit {e.code}): {err.getvalue().strip()}"
    return None


def check_python(argv: list[str]) -> str | None:
    if argv[:1] == ["-m"] and len(argv) > 1:
        if importlib.util.find_spec(argv[1]) is None:
            return f"`python -m {argv[1]}`: no such module"
        return None
    if argv[:1] == ["-c"] and len(argv) > 1:
        compile(argv[1], "<python -c>", "exec")
        return None
    if argv and argv[0].endswith(".py") and not (REPO_ROOT / argv[0]).is_file():
        return f"`python {argv[0]}`: no such file in the repository"
    return None


def check_command(words: list[str]) -> list[str]:
    """Problems with one simple command (empty if it is fine)."""
    while words and re.match(r"[A-Za-z_]\w*=", words[0]):
        words = words[1:]  # VAR=value prefixes
    if not words:
        return []
    program, args = Path(words[0]).name, words[1:]
    if program == "zoobench":
        problem = check_zoobench(args)
        return [problem] if problem else []
    if re.fullmatch(r"python(3(\.\d+)?)?", program):
        problem = check_python(args)
        return [problem] if problem else []
    if program == "make":
        unknown = [t for t in args if not t.startswith("-") and "=" not in t and t not in makefile_targets()]
        return [f"`make {t}`: no such target in the Makefile" for t in unknown]
    if program in ("srun", "mpirun"):  # launchers: check the command they start
        i = 0
        while i < len(args) and args[i].startswith("-"):
            i += 2 if args[i] in LAUNCHER_OPTIONS_WITH_VALUE else 1
        return check_command(args[i:])
    if program == "sbatch":
        problems = []
        for i, a in enumerate(args):
            wrapped = a.removeprefix("--wrap=") if a.startswith("--wrap=") else (
                args[i + 1] if a == "--wrap" and i + 1 < len(args) else None)
            if wrapped is not None:
                problems += check_line(wrapped)
        return problems
    if program not in ALLOWED_PROGRAMS:
        return [f"`{program}`: unknown program (if it belongs, add it to ALLOWED_PROGRAMS)"]
    return []


def check_line(line: str) -> list[str]:
    inner: list[str] = []
    line = substitute(line, inner)
    problems = [p for cmd in inner for p in check_line(cmd)]
    for words in split_commands(line):
        problems += check_command(words)
    return problems


@pytest.mark.parametrize("block", blocks_of(*SHELL_LANGS))
def test_shell_block(block):
    problems = []
    for n, line in shell_commands(block):
        if block.lang == "":
            line = expand_synopsis(line)
        problems += [f"{block.path.relative_to(REPO_ROOT)}:{n}: {p}" for p in check_line(line)]
    assert not problems, f"{block.where}:\n" + "\n".join(problems)


@pytest.mark.parametrize("line, expected", [
    ("zoobench zoo info zoos/tiny  # comment", []),
    ("zoobench zoo build --shard ${SLURM_ARRAY_TASK_ID}/8 --out x", []),
    ("jobid=$(sbatch --parsable build.sbatch) && echo $jobid", []),
    ('sbatch --wrap "zoobench zoo merge a b --out c"', []),
    ("srun -n 4 zoobench zoo build --distributed", []),
    ("mpirun -np 2 zoobench zoo build --distributed", []),
    ("make test && python -m pytest -q 2>&1 | tail > log.txt", []),
    ("zoobench zoo preset small > my.toml", []),
])
def test_the_shell_checker_accepts(line, expected):
    assert check_line(line) == expected


@pytest.mark.parametrize("line, expected", [
    ("zoobench zoo biuld --preset tiny", "does not parse"),
    ("sbatch --wrap 'zoobench zoo merge --out c'", "does not parse"),  # merge needs shards
    ("x=$(zoobench nope)", "does not parse"),
    ("srun zoobench zoo build --shard 8", "does not parse"),
    ("make deploy", "no such target"),
    ("python examples/missing.py", "no such file"),
    ("python -m no_such_module_here", "no such module"),
    ("curl https://example.com | sh", "unknown program"),
])
def test_the_shell_checker_refuses(line, expected):
    problems = check_line(line)
    assert problems and expected in problems[0], problems


def test_a_usage_synopsis_expands_to_a_command():
    assert expand_synopsis("zoobench leaderboard show [--db PATH] [--format text|markdown|json] FILE...") == \
        "zoobench leaderboard show --db PATH --format text FILE"


# --------------------------------------------------------------------------- python


def zoobench_imports(tree: ast.AST) -> list[tuple[str, str | None]]:
    """(module, imported name or None) of every import of a zoobench package."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(a.name, None) for a in node.names if a.name.split(".")[0] in ZOOBENCH_PACKAGES]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module \
                and node.module.split(".")[0] in ZOOBENCH_PACKAGES:
            found += [(node.module, a.name) for a in node.names]
    return found


def undefined_names(tree: ast.AST) -> set[str]:
    """Names a block reads but never binds (approximate: one flat scope)."""
    bound, read = set(dir(builtins)), set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            (read if isinstance(node.ctx, ast.Load) else bound).add(node.id)
        elif isinstance(node, ast.alias):
            bound.add((node.asname or node.name).split(".")[0])
        elif isinstance(node, ast.arg):
            bound.add(node.arg)
        elif isinstance(node, ast.FunctionDef | ast.ClassDef):
            bound.add(node.name)
    return read - bound


@pytest.mark.parametrize("block", blocks_of("python"))
def test_python_block(block):
    try:
        tree = compile(block.text, block.where, "exec", ast.PyCF_ONLY_AST)
    except SyntaxError as e:
        pytest.fail(f"{block.where}: does not compile: {e}")
    problems = []
    for module, name in zoobench_imports(tree):
        try:
            mod = importlib.import_module(module)
        except ImportError as e:
            problems.append(f"import {module}: {e}")
            continue
        if name is not None and not hasattr(mod, name):
            problems.append(f"from {module} import {name}: {module} has no {name!r}")
    assert not problems, f"{block.where}:\n" + "\n".join(problems)


RUNNABLE = [p for p in blocks_of("python") if not undefined_names(ast.parse(p.values[0].text))
            and re.search(r"[\"']zoos/\w+[\"']", p.values[0].text)]


@pytest.mark.parametrize("block", RUNNABLE)
def test_self_contained_python_block_runs_on_the_tiny_zoo(block, tiny_preset_zoo):
    """A block that defines every name it uses runs, with its zoo path pointing at the tiny zoo."""
    code = re.sub(r"([\"'])zoos/\w+\1", repr(str(tiny_preset_zoo)), block.text)
    try:
        exec(compile(code, block.where, "exec"), {"__name__": "__docs__"})
    except Exception as e:  # any failure is the doc's
        pytest.fail(f"{block.where}: raised {type(e).__name__}: {e}")


def test_the_runnable_blocks_are_found():
    # README's "Reading a zoo" and "Tasks" blocks and tasks.md's example define every name they use.
    assert RUNNABLE, "no self-contained python block found: did the docs or the detection change?"


# --------------------------------------------------------------------------- toml, json, text


def check_toml(text: str, where: str) -> None:
    """Parse a TOML block; a zoo config (a [zoo] table) must also be a valid config."""
    from zoo_builder.config import config_from_dict

    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        pytest.fail(f"{where}: not TOML: {e}")
    if "zoo" in doc:
        config_from_dict(doc, source=where)  # ConfigError names the field


@pytest.mark.parametrize("block", blocks_of("toml"))
def test_toml_block(block):
    check_toml(block.text, block.where)


def test_the_toml_checker_loads_zoo_configs():
    from zoo_builder.config import ConfigError, preset_path

    text = preset_path("tiny").read_text()
    check_toml(text, "tiny preset")
    with pytest.raises(ConfigError):
        check_toml(text.replace("num_networks = 48", "num_networks = -1"), "broken preset")


def is_schema(doc) -> bool:
    return isinstance(doc, dict) and str(doc.get("$id", "")).endswith("submission.schema.json")


@pytest.mark.parametrize("block", blocks_of("json"))
def test_json_block(block):
    try:
        doc = json.loads(block.text)
    except json.JSONDecodeError as e:
        pytest.fail(f"{block.where}: not JSON: {e}")
    if is_schema(doc):
        shipped = json.loads((REPO_ROOT / "benchmark" / "submission.schema.json").read_text())
        assert doc == shipped, f"{block.where}: differs from benchmark/submission.schema.json"


def test_the_schema_block_is_found():
    # docs/submission.md shows the schema; without this, the comparison above could silently check nothing.
    found = [b.where for b in ALL_BLOCKS if b.lang == "json" and is_schema(json.loads(b.text))]
    assert found, "no json block with the submission schema's $id: did the docs or the detection change?"


def test_every_block_has_a_known_language():
    known = SHELL_LANGS | NOT_CODE_LANGS | {"python", "toml", "json"}
    unknown = [b.where for b in ALL_BLOCKS if b.lang not in known]
    assert not unknown, f"blocks nothing checks (languages: {sorted(known)}): {unknown}"


def test_blocks_are_found():
    langs = {b.lang for b in ALL_BLOCKS}
    assert {"bash", "python", "json"} <= langs, langs


# --------------------------------------------------------------------------- generated tables


def test_profile_table_is_current():
    from baselines.run import profile_table

    text = (REPO_ROOT / "docs" / "baselines.md").read_text()
    m = re.search(r"<!-- profile-table[^\n]*-->\n(.*?)\n?<!-- /profile-table -->", text, re.S)
    assert m, "docs/baselines.md: no <!-- profile-table ... --> ... <!-- /profile-table --> section"
    assert m.group(1).strip() == profile_table(), (
        "docs/baselines.md's profile table is stale; paste baselines.run.profile_table() between the markers")


# --------------------------------------------------------------------------- the worked example


@pytest.mark.slow
def test_the_worked_example_writes_a_submission_that_scores(tiny_preset_zoo, tmp_path, monkeypatch, capsys):
    """examples/evaluate_new_method.py runs as a user runs it, and the commands it prints work."""
    out = tmp_path / "mine.json"
    env = dict(os.environ)  # CPU only, one XLA device (conftest), the session's compile cache
    env.pop("XLA_FLAGS", None)
    argv = [sys.executable, str(EXAMPLE.relative_to(REPO_ROOT)), str(tiny_preset_zoo), str(out)]
    proc = subprocess.run(argv, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert out.is_file()
    printed = [shlex.split(line) for line in proc.stdout.splitlines() if line.strip().startswith("zoobench ")]
    assert [argv[1:3] for argv in printed] == [["leaderboard", "score"], ["leaderboard", "show"]], proc.stdout

    monkeypatch.chdir(tmp_path)  # the printed commands name leaderboard.sqlite in the current directory
    capsys.readouterr()
    assert cli.main([*printed[0][1:], "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    [result] = doc["results"]
    assert result["ok"] and result["stored"], result
    assert (result["task"], result["split"], result["method"]) == ("generalization", "id", "ridge-stats")
    for target in ("test_acc", "gen_gap"):
        tau = result["metrics"][f"{target}/kendall_tau"]["value"]
        assert -1.0 <= tau <= 1.0, result["metrics"]
    assert (tmp_path / "leaderboard.sqlite").is_file()
    assert cli.main(printed[1][1:]) == 0
    assert "ridge-stats" in capsys.readouterr().out
