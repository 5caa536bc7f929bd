"""The paper's numbers as data (results/paper) and the side-by-side tables rendered from metrics.json."""
from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

import nets
from reproduce.reporting.paper import default_paper_dir, load_paper_table, load_paper_tables
from reproduce.reporting.tables import render_tables
from reproduce.commands.tables_cli import tables_command

# Every experiment a paper row names must be one of ours, or Appendix A's label-only "upper-bound".
EXPERIMENTS = set(nets.names()) | {"upper-bound"}


# --- the paper's numbers ---------------------------------------------------------------------


def test_every_table_parses_and_maps_to_known_experiments():
    tables = load_paper_tables()
    assert {t.id for t in tables} == {
        "table1_architectures", "table2_skip", "table3_voc_test", "table4_nyud", "table5_siftflow",
        "table6_context", "appendix_a_upper_bound", "reference_readme", "wk_seg11valid",
        "pami_seg11valid", "pami_voc_test",
    }
    for t in tables:
        assert t.source_text and t.caption
        for r in t.rows:
            assert r.experiment is None or r.experiment in EXPERIMENTS, (t.id, r.method)
            if r.experiment and not any(c.split for c in t.columns):
                assert r.split, (t.id, r.method)


def test_cvpr_numbers_match_the_facts_sheet():
    t1 = load_paper_table("table1_architectures")
    assert [t1.row(m).values["mean_iu"] for m in ("FCN-AlexNet", "FCN-VGG16", "FCN-GoogLeNet")] == [39.8, 56.0, 42.5]
    assert [t1.row(m).values["forward_ms"] for m in ("FCN-AlexNet", "FCN-VGG16", "FCN-GoogLeNet")] == [50, 210, 59]
    assert t1.row("FCN-VGG16").experiment == "voc-fcn32s"
    assert t1.row("FCN-GoogLeNet").experiment == "voc-fcn-googlenet" and t1.row("FCN-GoogLeNet").split == "seg11valid"

    t2 = load_paper_table("table2_skip")
    assert t2.row("FCN-32s").values == {"pixel_acc": 89.1, "mean_acc": 73.3, "mean_iu": 59.4, "fw_iu": 81.4}
    assert t2.row("FCN-8s").values["mean_iu"] == 62.7 and t2.row("FCN-8s").experiment == "voc-fcn8s"
    assert any("heavy" in n for n in t2.notes)  # the CVPR recipe differs from the reference solvers

    t3 = load_paper_table("table3_voc_test")
    assert t3.row("FCN-8s").values["mean_iu_voc2011_test"] == 62.7
    assert t3.row("FCN-8s").values["mean_iu_voc2012_test"] == 62.2
    assert t3.row("R-CNN").values["mean_iu_voc2012_test"] is None

    t4 = load_paper_table("table4_nyud")
    row = t4.row("FCN-16s RGB-HHA")
    assert row.experiment == "nyud-fcn16s-color-hha"
    assert row.values == {"pixel_acc": 65.4, "mean_acc": 46.1, "mean_iu": 34.0, "fw_iu": 49.5}
    assert t4.row("FCN-32s RGB-HHA").values["pixel_acc"] == 64.3
    assert t4.row("FCN-32s RGB").experiment == "nyud-fcn32s-color"
    assert t4.row("Gupta et al.").values["mean_acc"] is None

    t5 = load_paper_table("table5_siftflow")
    fcn = t5.row("FCN-16s")
    assert fcn.values == {"pixel_acc": 85.2, "mean_acc": 51.7, "mean_iu": 39.5, "fw_iu": 76.1, "geom_acc": 94.3}
    assert fcn.experiment == "siftflow-fcn16s"
    assert t5.row("Tighe et al. 1").values["mean_acc"] == 41.1

    t6 = load_paper_table("table6_context")
    assert t6.row("FCN-8s", classes="59").values["mean_iu"] == 35.1
    assert t6.row("FCN-8s", classes="33").values["mean_iu"] == 53.5
    assert t6.row("FCN-8s", classes="33").experiment is None
    assert any("UNVERIFIED" in n for n in t6.notes)

    a = load_paper_table("appendix_a_upper_bound")
    assert {int(r.labels["factor"]): r.values["mean_iu"] for r in a.rows} == {
        128: 50.9, 64: 73.3, 32: 86.1, 16: 92.8, 8: 96.4, 4: 98.5}


def test_reference_third_party_and_pami_numbers_and_their_flags():
    readme = load_paper_table("reference_readme")
    assert readme.verified == "yes" and readme.source == "REPO"
    vals = {(r.experiment, r.split): r.values["mean_iu"] for r in readme.rows}
    assert vals == {("voc-fcn32s", "seg11valid"): 63.6, ("voc-fcn16s", "seg11valid"): 65.0,
                    ("voc-fcn8s", "seg11valid"): 65.5, ("voc-fcn8s-atonce", "seg11valid"): 65.4,
                    ("voc-fcn-alexnet", "seg11valid"): 48.0, ("voc-fcn8s", "seg12test"): 67.2}
    wk = load_paper_table("wk_seg11valid")
    assert wk.third_party and wk.row("FCN8s (original caffemodel)").values["mean_iu"] == 65.51
    assert wk.row("FCN32s (original caffemodel)").printed["pixel_acc"] == "90.49"
    pami = load_paper_table("pami_seg11valid")
    assert pami.verified == "no" and all(r.unverified == {"pixel_acc", "mean_acc", "mean_iu", "fw_iu"}
                                         for r in pami.rows)
    test = load_paper_table("pami_voc_test").row("FCN-8s-heavy")
    assert test.values["mean_iu_voc2012_test"] == 67.2 and not test.is_unverified("mean_iu_voc2012_test")
    assert test.is_unverified("mean_iu_voc2011_test") and test.is_unverified("inference_time_ms")


def test_malformed_paper_csv_is_reported_with_file_and_line(tmp_path):
    paper = tmp_path / "paper"
    shutil.copytree(default_paper_dir(), paper)
    p = paper / "table4_nyud.csv"
    p.write_text(p.read_text().replace("34.0", "34,0", 1))
    with pytest.raises(ValueError, match=r"table4_nyud\.csv:7"):
        load_paper_tables(paper)
    p.write_text(p.read_text().replace("34,0", "3x.0", 1))
    with pytest.raises(ValueError, match=r"table4_nyud\.csv:7: column 'mean_iu' is not a number"):
        load_paper_tables(paper)


# --- rendering -------------------------------------------------------------------------------


def _metrics(path: Path, experiment: str, split: str, iteration: int | None = 1000, **blocks) -> Path:
    rec = {"schema_version": 1, "experiment": experiment, "weights": f"{experiment}.pt", "split": split,
           "num_images": 3, "iteration": iteration, "loss": 1.0}
    rec.update(blocks)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(rec))
    return path


def _s(pixel_acc, mean_acc, mean_iu, fw_iu):
    return {"pixel_acc": pixel_acc, "mean_acc": mean_acc, "mean_iu": mean_iu, "fw_iu": fw_iu}


def _csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def _md_row(md: str, start: str) -> str:
    hits = [line for line in md.splitlines() if line.startswith(start)]
    assert len(hits) == 1, (start, hits)
    return hits[0]


@pytest.fixture()
def runs(tmp_path):
    r = tmp_path / "runs"
    # NYUD 16s RGB-HHA: all within 1.0 of 65.4 / 46.1 / 34.0 / 49.5
    _metrics(r / "nyud16" / "metrics.json", "nyud-fcn16s-color-hha", "test", scores=_s(65.0, 46.5, 34.9, 49.5))
    # NYUD 32s RGB: mean IU 1.5 off -> outside at 1.0, within at 2.0
    _metrics(r / "nyud32" / "deep" / "metrics.json", "nyud-fcn32s-color", "test", scores=_s(60.0, 42.2, 30.7, 43.9))
    # a second, older run of the same experiment that must not be used
    _metrics(r / "nyud32-old" / "metrics.json", "nyud-fcn32s-color", "test", iteration=10,
             scores=_s(10.0, 10.0, 10.0, 10.0))
    # SIFT Flow: geometric accuracy from scores_geo
    _metrics(r / "sf" / "metrics.json", "siftflow-fcn16s", "test", scores=_s(85.0, 51.0, 39.0, 76.0),
             scores_geo=_s(94.0, 90.0, 88.0, 89.0))
    # Context: the two readings
    _metrics(r / "ctx" / "metrics.json", "pascalcontext-fcn8s", "val", scores=_s(60.0, 40.0, 30.0, 45.0),
             scores_without_background=_s(65.9, 46.5, 35.1, 51.0))
    # a run on the wrong split is not a Table 2 run
    _metrics(r / "voc" / "metrics.json", "voc-fcn8s", "train", scores=_s(90.3, 75.9, 62.7, 83.2))
    return r


def test_render_marks_within_outside_and_not_run(runs, tmp_path):
    out = tmp_path / "tables"
    written = render_tables([runs], out, tolerance=1.0)
    assert out / "index.md" in written and out / "table4_nyud.md" in written and out / "table4_nyud.csv" in written

    md = (out / "table4_nyud.md").read_text()
    assert "±1" in md
    assert _md_row(md, "| FCN-16s RGB-HHA |").endswith("| within ±1 |")
    assert "34.0 / 34.9 (+0.9)" in _md_row(md, "| FCN-16s RGB-HHA |")
    row32 = _md_row(md, "| FCN-32s RGB |")
    assert "29.2 / 30.7 (+1.5)" in row32 and row32.endswith("| **outside ±1** |")
    assert _md_row(md, "| FCN-32s HHA |").endswith("| not run |")
    assert "61.5 / not run" in _md_row(md, "| FCN-32s RGBD |")
    assert _md_row(md, "| Gupta et al. |").endswith("| no experiment |")
    assert "nyud32/deep/metrics.json" in md and "nyud32-old" not in md

    rows = _csv(out / "table4_nyud.csv")
    cell = next(r for r in rows if r["method"] == "FCN-32s RGB" and r["column"] == "mean_iu")
    assert cell["status"] == "outside" and float(cell["ours"]) == 30.7 and float(cell["diff"]) == pytest.approx(1.5)
    cell = next(r for r in rows if r["method"] == "FCN-32s RGB" and r["column"] == "pixel_acc")
    assert cell["status"] == "within" and float(cell["diff"]) == 0.0
    assert {r["status"] for r in rows if r["method"] == "FCN-32s HHA"} == {"not run"}

    # Table 2's voc-fcn8s needs a seg11valid run; the train-split run does not count
    assert _md_row((out / "table2_skip.md").read_text(), "| FCN-8s |").endswith("| not run |")

    sf = _md_row((out / "table5_siftflow.md").read_text(), "| FCN-16s |")
    assert "94.3 / 94.0 (-0.3)" in sf and sf.endswith("| within ±1 |")

    ctx = (out / "table6_context.md").read_text()
    assert "UNVERIFIED" in ctx
    with_bg = _md_row(ctx, "| FCN-8s [with background")
    without_bg = _md_row(ctx, "| FCN-8s [without background")
    assert "35.1 / 30.0 (-5.1)" in with_bg and with_bg.endswith("outside ±1** |")
    assert "35.1 / 35.1 (+0.0)" in without_bg and without_bg.endswith("| within ±1 |")

    index = (out / "index.md").read_text()
    assert "| CVPR Table 4 | 1 | 1 | 3 |" in index  # 16s within; 32s RGB outside; RGBD, HHA, RGB-HHA not run


def test_tolerance_is_configurable(runs, tmp_path):
    render_tables([runs], tmp_path / "t2", tolerance=2.0)
    md = (tmp_path / "t2" / "table4_nyud.md").read_text()
    assert _md_row(md, "| FCN-32s RGB |").endswith("| within ±2 |")
    render_tables([runs], tmp_path / "t0", tolerance=0.0)
    assert _md_row((tmp_path / "t0" / "table4_nyud.md").read_text(), "| FCN-16s RGB-HHA |").endswith(
        "**outside ±0** |")
    with pytest.raises(ValueError, match="tolerance"):
        render_tables([runs], tmp_path / "neg", tolerance=-1)


def test_table1_timing_from_bench_or_not_measured(runs, tmp_path):
    render_tables([runs], tmp_path / "nob")
    md = (tmp_path / "nob" / "table1_architectures.md").read_text()
    assert "210 / not measured" in md and "not measured" in md
    bench = tmp_path / "forward.json"
    bench.write_text(json.dumps({"device": "Test GPU 9000", "forward_ms": {"voc-fcn32s": 12.34}}))
    render_tables([runs], tmp_path / "b", bench=bench)
    md = (tmp_path / "b" / "table1_architectures.md").read_text()
    row = _md_row(md, "| FCN-VGG16 |")
    assert "210 / 12.3" in row and "outside" not in row  # timings are shown, never marked
    assert "50 / not measured" in _md_row(md, "| FCN-AlexNet |")
    assert "Test GPU 9000" in md
    bench.write_text(json.dumps({"device": "Other", "nets": {"voc-fcn-alexnet": {"forward_ms": 5.0}}}))
    render_tables([runs], tmp_path / "b2", bench=bench)
    assert "50 / 5.0" in _md_row((tmp_path / "b2" / "table1_architectures.md").read_text(), "| FCN-AlexNet |")


def test_appendix_a_from_upper_bound_json(tmp_path):
    ub = tmp_path / "runs" / "ub" / "upper_bound.json"
    ub.parent.mkdir(parents=True)
    ub.write_text(json.dumps({"experiment": "upper-bound", "split": "seg11valid", "num_images": 2,
                              "scores_by_factor": {"4": _s(99, 99, 98.0, 99), "128": _s(80, 60, 52.5, 70)}}))
    render_tables([tmp_path / "runs"], tmp_path / "out")
    md = (tmp_path / "out" / "appendix_a_upper_bound.md").read_text()
    assert "98.5 / 98.0 (-0.5)" in _md_row(md, "| ground truth downsampled x4 |")
    assert _md_row(md, "| ground truth downsampled x128 |").endswith("**outside ±1** |")
    assert "not in run" in _md_row(md, "| ground truth downsampled x8 |")


def test_unverified_numbers_are_marked(tmp_path):
    run = _metrics(tmp_path / "m" / "metrics.json", "voc-fcn8s", "seg11valid", scores=_s(91.2, 77.6, 65.5, 84.5))
    render_tables([run], tmp_path / "out")
    md = (tmp_path / "out" / "pami_seg11valid.md").read_text()
    assert "65.5 † / 65.5 (+0.0)" in _md_row(md, "| FCN-8s-staged |") and "† UNVERIFIED" in md
    rows = _csv(tmp_path / "out" / "pami_seg11valid.csv")
    assert all(r["unverified"] == "yes" for r in rows)
    wk = (tmp_path / "out" / "wk_seg11valid.md").read_text()
    assert "Third-party" in wk and "65.51 / 65.50 (-0.01)" in wk


def test_tables_command(runs, tmp_path):
    out = tmp_path / "cli"
    res = CliRunner().invoke(tables_command, ["--runs", str(runs), "--out", str(out), "--tolerance", "2"])
    assert res.exit_code == 0, res.output
    assert _md_row((out / "table4_nyud.md").read_text(), "| FCN-32s RGB |").endswith("| within ±2 |")
    res = CliRunner().invoke(tables_command, ["--runs", str(tmp_path / "nope"), "--out", str(out)])
    assert res.exit_code != 0 and "nope" in res.output
    bad = _metrics(tmp_path / "bad" / "metrics.json", "voc-fcn8s", "seg11valid")  # no "scores"
    res = CliRunner().invoke(tables_command, ["--runs", str(bad.parent), "--out", str(out)])
    assert res.exit_code != 0 and "missing key 'scores'" in res.output


def test_caveat_goes_into_every_title(runs, tmp_path):
    caveat = "smoke run: 1/16 width, a check of the pipeline, not a reproduction"
    out = tmp_path / "smoke"
    res = CliRunner().invoke(tables_command, ["--runs", str(runs), "--out", str(out), "--caveat", caveat])
    assert res.exit_code == 0, res.output
    pages = sorted(out.glob("*.md"))
    assert len(pages) > 5
    for page in pages:
        title = page.read_text().splitlines()[0]
        assert title.startswith("# ") and title.endswith(f" — {caveat}"), (page.name, title)
    render_tables([runs], tmp_path / "plain")
    assert "—" not in (tmp_path / "plain" / "index.md").read_text().splitlines()[0]
