"""The static leaderboard page: `leaderboard.html`, `leaderboard.plots`, `zoobench leaderboard html`."""

from __future__ import annotations

import os
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from leaderboard.store import add_result, connect, entries

REPO = Path(__file__).resolve().parents[1]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
EVIL = "<script>alert(1)</script>"
VOID = {"meta", "img", "br", "hr", "link", "input"}


class PageParser(HTMLParser):
    """Collects tags, img sources, table cell texts; checks that every non-void tag is closed in order."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.stack, self.errors, self.tags, self.imgs = [], [], [], []
        self.tables, self.scripts, self.text = [], [], []
        self._cell = None
        self._in_script = False

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        a = dict(attrs)
        if tag == "img":
            self.imgs.append(a.get("src"))
        if tag in VOID:
            return
        self.stack.append(tag)
        if tag == "table":
            self.tables.append([])
        elif tag == "tr" and self.tables:
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self._cell = []
        elif tag == "script":
            self._in_script = True
            self.scripts.append("")

    def handle_endtag(self, tag):
        if tag in VOID:
            return
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"unexpected </{tag}>, open: {self.stack}")
            return
        self.stack.pop()
        if tag in ("td", "th") and self._cell is not None:
            self.tables[-1][-1].append("".join(self._cell))
            self._cell = None
        elif tag == "script":
            self._in_script = False

    def handle_data(self, data):
        if self._in_script:
            self.scripts[-1] += data
        elif self._cell is not None:
            self._cell.append(data)
        self.text.append(data)


def parse(page: str) -> PageParser:
    p = PageParser()
    p.feed(page)
    p.close()
    assert not p.errors, p.errors
    assert p.stack == [], f"unclosed: {p.stack}"
    return p


def _metric(v, half=0.05, n=20):
    return {"value": v, "ci_low": v - half, "ci_high": v + half, "n": n}


def _row(method, task, sha, version="1", description="", split="id", **values):
    metrics = {k.replace("__", "/"): _metric(v) for k, v in values.items()}
    sym = ({"test_acc/normalized_abs_diff": 0.01, "test_acc/mean_abs_diff": 0.002}
           if task == "generalization" else {})
    return {"method": method, "version": version, "description": description, "task": task, "split": split,
            "all_checkpoints": False, "zoo": {"name": "tiny", "weights_fingerprint": "a" * 64},
            "split_fingerprint": "s", "metrics": metrics, "symmetry": sym, "bootstrap": {}, "sha256": sha}


@pytest.fixture()
def db(tmp_path) -> Path:
    path = tmp_path / "lb.sqlite"
    conn = connect(path)
    add_result(conn, _row("oracle", "generalization", "1", test_acc__kendall_tau=1.0, test_acc__r2=1.0))
    add_result(conn, _row(EVIL, "generalization", "2", version='"><img src=x onerror=alert(1)>',
                          description="</table><script>alert(2)</script>", test_acc__kendall_tau=0.1,
                          test_acc__r2=-0.2))
    add_result(conn, _row("../../etc/passwd", "generalization", "3", split="ood-width",
                          test_acc__kendall_tau=0.3))
    add_result(conn, _row("knn", "retrieval", "4", mAP=0.6, **{"recall@1": 0.7}))
    conn.close()
    return path


def _rows(db):
    conn = connect(db)
    try:
        return entries(conn)
    finally:
        conn.close()


def _details():
    rng = np.random.default_rng(0)
    true = rng.random(30)
    return [{"method": "oracle", "version": "1", "task": "generalization", "split": "id",
             "y_true": list(true), "y_pred": list(true)},
            {"method": EVIL, "version": "1", "task": "generalization", "split": "id",
             "y_true": list(true), "y_pred": list(rng.random(30))},
            {"method": "knn/../x", "version": "1", "task": "retrieval", "split": "id",
             "embeddings": np.concatenate([rng.normal(size=(10, 5)), rng.normal(3, size=(10, 5))]),
             "labels": ["digits"] * 10 + ["digits@perm1"] * 10}]


def _check_images(page: PageParser, out: Path) -> list[Path]:
    assert page.imgs
    files = []
    for src in page.imgs:
        assert src and "/" not in src and "\\" not in src and src.endswith(".png"), src
        path = out / src
        assert path.is_file(), src
        assert path.read_bytes()[:8] == PNG_SIGNATURE, src
        files.append(path)
    return files


def test_page_parses_escapes_and_links_existing_pngs(tmp_path, db):
    from leaderboard.html import render_site

    out = tmp_path / "site"
    index = render_site(_rows(db), out, _details())
    page_text = index.read_text(encoding="utf-8")
    page = parse(page_text)
    assert page.tags.count("table") == 3  # generalization/id, generalization/ood-width, retrieval/id
    assert page.tags.count("script") == 1  # only ours
    assert "alert" not in "".join(page.scripts)
    assert EVIL not in page_text and "<img src=x" not in page_text
    assert html_escape(EVIL) in page_text
    assert EVIL in "".join(page.text)  # shown as text, escaped in the markup
    images = _check_images(page, out)
    names = {p.name.split("-")[0] for p in images}
    assert names == {"bars", "generalization", "embedding"}
    assert len([p for p in images if p.name.startswith("bars-")]) == 3
    assert sorted(p.name for p in out.iterdir()) == sorted(["index.html", *(p.name for p in images)])


def html_escape(s):
    import html

    return html.escape(s, quote=True)


def test_tables_hold_the_scored_methods(tmp_path, db):
    from leaderboard.html import render_site
    from leaderboard.table import SYMMETRY_COLUMNS, symmetry_cells

    page = parse(render_site(_rows(db), tmp_path / "site").read_text(encoding="utf-8"))
    gen_id, gen_ood, retrieval = page.tables
    assert gen_id[0][:4] == ["method", "version", "test_acc/kendall_tau", "test_acc/r2"]
    assert tuple(gen_id[0][-3:]) == SYMMETRY_COLUMNS
    assert sorted(r[0] for r in gen_id[1:]) == sorted(["oracle", EVIL])
    oracle = next(r for r in gen_id[1:] if r[0] == "oracle")
    assert oracle[2] == "1.000 ± 0.050"
    # the symmetry cells are the text table's (leaderboard.table decides which numbers it shows)
    assert oracle[-3:] == symmetry_cells(next(r for r in _rows(db) if r["method"] == "oracle")["symmetry"])
    assert oracle[-3].startswith("test_acc/") and oracle[-2:] == ["n/a", "n/a"]
    assert [r[0] for r in gen_ood[1:]] == ["../../etc/passwd"]
    assert retrieval[0][2:5] == ["mAP", "recall@1", "recall@10"]
    assert retrieval[1][:5] == ["knn", "1", "0.600 ± 0.050", "0.700 ± 0.050", "–"]


def test_rendering_is_deterministic(tmp_path, db):
    from leaderboard.html import render_site

    rows = _rows(db)
    a = render_site(rows, tmp_path / "a", _details()).read_text(encoding="utf-8")
    b = render_site(rows, tmp_path / "b", _details()).read_text(encoding="utf-8")
    assert a == b
    assert render_site(rows, tmp_path / "a", _details()).read_text(encoding="utf-8") == a


def test_dollar_signs_in_names_do_not_break_the_plots(tmp_path):
    from leaderboard.html import render_site

    rows = [dict(r, method="x$\\frac{$", version="$") for r in _row_dicts()]
    details = [dict(d, method="x$\\frac{$") for d in _details()]
    page = parse(render_site(rows, tmp_path / "site", details).read_text(encoding="utf-8"))
    _check_images(page, tmp_path / "site")


def _row_dicts():
    return [{**_row("m", "generalization", "1", test_acc__r2=0.5), "zoo_name": "tiny",
             "zoo_fingerprint": "a" * 64, "id": 1, "scored_at": ""}]


def test_empty_database_gives_a_valid_page(tmp_path):
    from leaderboard.html import render_site

    page = parse(render_site([], tmp_path / "site").read_text(encoding="utf-8"))
    assert "no scored submissions" in "".join(page.text) and page.imgs == []


def test_rows_over_seeds_show_mean_std_and_seed_count(tmp_path, monkeypatch):
    import matplotlib.axes

    from leaderboard.html import render_site
    from leaderboard.table import PLUS_MINUS

    r2 = [0.5, 0.7, 0.65]
    conn = connect(tmp_path / "lb.sqlite")
    for seed, v in enumerate(r2):
        add_result(conn, {**_row("gnn", "generalization", f"s{seed}", test_acc__r2=v), "seed": seed})
    add_result(conn, _row("oracle", "generalization", "o", test_acc__r2=1.0))
    rows = entries(conn)
    conn.close()
    bars = []
    barh = matplotlib.axes.Axes.barh

    def spy(ax, y, width, *args, **kwargs):
        bars.append((list(width), [list(e) for e in kwargs["xerr"]]))
        return barh(ax, y, width, *args, **kwargs)

    monkeypatch.setattr(matplotlib.axes.Axes, "barh", spy)
    out = tmp_path / "site"
    page_text = render_site(rows, out).read_text(encoding="utf-8")
    page = parse(page_text)
    [table] = page.tables
    assert table[0][-4:] == ["seeds", "consistency/permutation", "consistency/scale", "consistency/sign"]
    r2_col = table[0].index("test_acc/r2")
    gnn, oracle = table[1:]
    mean, std = np.mean(r2), np.std(r2, ddof=1)
    assert (gnn[0], gnn[r2_col], gnn[-4]) == ("gnn", f"{mean:.3f} ± {std:.3f}", "3")
    assert (oracle[0], oracle[r2_col], oracle[-4]) == ("oracle", "1.000 ± 0.050", "")
    assert html_escape(PLUS_MINUS) in page_text
    _check_images(page, out)
    [(values, (low, high))] = [b for b in bars if len(b[0]) == 2 and b[0][1] == 1.0]  # the r2 panel
    assert values[0] == pytest.approx(mean) and low[0] == high[0] == pytest.approx(std)


def test_safe_names_and_pca():
    from leaderboard.html import safe_name
    from leaderboard.plots import pca_2d

    for raw in (EVIL, "../../etc/passwd", "a b/c\\d", "", "ü" * 100):
        name = safe_name(raw, "1")
        assert all(c.isascii() and (c.isalnum() or c in "_-") for c in name), name
        assert len(name) <= 51
    assert safe_name("a/b") != safe_name("a_b")  # the hash tells apart what the slug merges
    x = np.random.default_rng(0).normal(size=(20, 4)) * [10, 3, 0.1, 0.1]
    xy = pca_2d(x)
    assert xy.shape == (20, 2) and np.allclose(xy.mean(axis=0), 0)
    assert np.var(xy[:, 0]) > np.var(xy[:, 1]) > 0
    assert np.array_equal(pca_2d(x), xy)


def _cli(*args, cwd):
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "zoobench.cli", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def test_cli_help_and_missing_database(tmp_path):
    r = _cli("leaderboard", "html", "--help", cwd=tmp_path)
    assert r.returncode == 0 and "OUT_DIR" in r.stdout and "--db" in r.stdout
    r = _cli("leaderboard", "html", str(tmp_path / "site"), "--db", str(tmp_path / "none.sqlite"),
             cwd=tmp_path)
    assert r.returncode == 1 and "no leaderboard database" in r.stderr
    assert not (tmp_path / "none.sqlite").exists()


def test_cli_run_with_scored_submissions(tmp_path, tiny_preset_zoo):
    """Score real generalization and retrieval submissions, then build the page with their predictions."""
    from benchmark.submission import write_submission
    from benchmark.tasks import load_task
    from zoo_builder.storage import load_zoo

    zoo = load_zoo(tiny_preset_zoo)
    gen, ret = load_task("generalization", zoo, "id"), load_task("retrieval", zoo, "id")
    rng = np.random.default_rng(0)
    files = [write_submission(tmp_path / "gen.json", task=gen, method=EVIL, description="<b>x</b>",
                              predictions={i: {"test_acc": float(rng.random()),
                                               "gen_gap": float(rng.random())} for i in gen.test.ids}),
             write_submission(tmp_path / "ret.json", task=ret, method="rand emb",
                              predictions={i: rng.normal(size=4) for i in ret.test.ids})]
    db = tmp_path / "lb.sqlite"
    r = _cli("leaderboard", "score", *map(str, files), "--zoo", str(tiny_preset_zoo), "--db", str(db),
             "--resamples", "20", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    out = tmp_path / "site"
    args = ["leaderboard", "html", str(out), "--db", str(db), "--zoo", str(tiny_preset_zoo)]
    for f in files:
        args += ["--submission", str(f)]
    r = _cli(*args, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == str(out / "index.html")
    text = (out / "index.html").read_text(encoding="utf-8")
    page = parse(text)
    assert EVIL not in text and "<b>x</b>" not in text
    assert len(page.tables) == 2
    assert [row[0] for row in page.tables[0][1:]] == [EVIL] and page.tables[1][1][0] == "rand emb"
    images = _check_images(page, out)
    assert {p.name.split("-")[0] for p in images} == {"bars", "generalization", "embedding"}
    r = _cli("leaderboard", "html", str(tmp_path / "site2"), "--db", str(db), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert parse((tmp_path / "site2" / "index.html").read_text(encoding="utf-8")).tables
