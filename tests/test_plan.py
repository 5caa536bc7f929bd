"""reproduce.pipeline.plan / `fcn plan`: stages, dependencies (tied to the Makefile's chains), costs, schedule."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from reproduce import experiments
from reproduce.pipeline import plan as planning
from reproduce.commands.plan_cli import plan_command

ROOT = Path(__file__).resolve().parents[1]


def makefile_dependencies() -> dict[str, tuple[str, ...]]:
    """experiment -> the trained stages its Makefile target starts from ($(RUNS)/<stage>/final.pt inits)."""
    text = (ROOT / "Makefile").read_text()
    out = {}
    for name, inits in re.findall(r"\$\(eval \$\(call train_from,([^,]+),([^,]+),", text):
        out[name] = tuple(re.findall(r"\$\(RUNS\)/([^/ ]+)/final\.pt", inits))
    return out


def test_dependencies_are_the_makefiles_chains():
    make = makefile_dependencies()
    assert sorted(make) == sorted(experiments.names())  # every experiment is a Makefile stage
    assert planning.dependencies() == make
    assert make["voc-fcn8s"] == ("voc-fcn16s",) and make["voc-fcn16s"] == ("voc-fcn32s",)
    assert set(make["nyud-fcn32s-color-hha"]) == {"nyud-fcn32s-color", "nyud-fcn32s-hha"}


def test_groups_cover_every_experiment_once_and_match_the_makefile_tables():
    listed = [n for g in planning.GROUPS.values() for n in g]
    assert sorted(listed) == sorted(experiments.names())
    text = (ROOT / "Makefile").read_text()
    for var, group in (("VOC_RUNS", "voc"), ("NYUD_RUNS", "nyud"), ("SIFTFLOW_RUNS", "siftflow"),
                       ("CONTEXT_RUNS", "context")):
        runs = re.search(rf"^{var} := (.*)$", text, re.M).group(1).split()
        assert tuple(runs) == planning.GROUPS[group]


@pytest.mark.parametrize("group", planning.GROUP_NAMES)
def test_stage_order_puts_dependencies_first(group):
    names = planning.stage_names(group)
    deps = planning.dependencies()
    for i, n in enumerate(names):
        assert all(d in names[:i] for d in deps[n]), (n, names)
    if group != "all":
        assert set(planning.GROUPS[group]) <= set(names)


def test_unknown_group_is_an_error():
    with pytest.raises(ValueError, match="unknown group 'vocc'"):
        planning.stage_names("vocc")


def _stages(hours: dict[str, float], deps: dict[str, tuple[str, ...]]) -> list[planning.Stage]:
    return [planning.Stage(n, "voc", deps.get(n, ()), (), 1, 1, 1, 1, h, 0.0, 0, 0) for n, h in hours.items()]


def _check_schedule(stages, slots, gpus):
    by = {s.stage: s for s in slots}
    assert sorted(by) == sorted(s.name for s in stages)
    for s in stages:
        for d in s.depends:
            assert by[s.name].start >= by[d].end - 1e-9, f"{s.name} starts before {d} ends"
    for g in range(gpus):
        mine = sorted((s for s in slots if s.gpu == g), key=lambda s: s.start)
        assert all(a.end <= b.start + 1e-9 for a, b in zip(mine, mine[1:])), f"GPU {g} runs two stages at once"


def test_schedule_respects_dependencies_and_uses_the_gpus():
    hours = {"a32": 10, "a16": 10, "a8": 10, "b": 25, "c": 5, "d": 5}
    deps = {"a16": ("a32",), "a8": ("a16",)}
    stages = _stages(hours, deps)
    one = planning.schedule(stages, 1)
    _check_schedule(stages, one, 1)
    assert max(s.end for s in one) == pytest.approx(sum(hours.values()))
    two = planning.schedule(stages, 2)
    _check_schedule(stages, two, 2)
    # the 30 h chain starts at once and the rest fits beside it: 35 h on the chain's GPU at worst
    assert max(s.end for s in two) == pytest.approx(35)
    many = planning.schedule(stages, 8)
    _check_schedule(stages, many, 8)
    assert max(s.end for s in many) == pytest.approx(30)  # the critical path
    with pytest.raises(ValueError):
        planning.schedule(stages, 0)


def test_real_plan_schedule_on_several_gpus():
    p = planning.make_plan("all", gpus=3)
    _check_schedule(p.stages, p.schedule, 3)
    total = sum(s.hours for s in p.stages)
    assert p.makespan >= total / 3 - 1e-9 and p.makespan < total
    one = planning.make_plan("all", gpus=1)
    assert one.makespan == pytest.approx(total)


def test_costs_follow_the_configs():
    p = planning.make_plan("voc", bench_dir=ROOT / "results" / "bench")
    s = {x.name: x for x in p.stages}
    exp = experiments.get("voc-fcn8s-atonce")
    assert s["voc-fcn8s-atonce"].max_iter == exp.max_iter and s["voc-fcn8s-atonce"].images == exp.max_iter
    assert s["voc-fcn8s-atonce"].train_hours == pytest.approx(3 * s["voc-fcn32s"].train_hours, rel=0.2)
    alex = planning.make_plan("alexnet").stages[0]
    assert alex.iter_size == 20 and alex.images == 20 * alex.max_iter
    # FCN-VGG16: about 134 M float32 parameters (final.pt ~ 0.54 GB), snapshots add the momentum
    assert 0.5e9 < s["voc-fcn32s"].state_bytes < 0.6e9
    assert s["voc-fcn32s"].snapshot_bytes > 1.9 * s["voc-fcn32s"].state_bytes
    assert s["voc-fcn32s"].init_weights == ("vgg16",) and s["voc-fcn16s"].init_weights == ()


def test_step_time_without_a_gpu_measurement_states_the_assumption(tmp_path):
    t = planning.step_times(tmp_path)
    assert t.assumption and "ASSUMED" in t.assumption and "210 ms" in t.assumption and "gpu.json" in t.assumption
    assert t.train_s == pytest.approx(0.210 * planning.DEFAULT_TRAIN_OVER_FORWARD)
    (tmp_path / "nets.json").write_text(json.dumps({
        "forward": [{"net": "voc-fcn8s", "fast": {"median_s": 1.0}}],
        "train": [{"net": "voc-fcn8s", "stands_for": [["pascalcontext-fcn8s", "60 classes"]], "fast": {"median_s": 2.5}},
                  {"net": "voc-fcn-alexnet", "fast": {"median_s": 0.5}}]}))
    t = planning.step_times(tmp_path)
    assert t.train_s == pytest.approx(0.525) and "ratio 2.50 measured on the CPU" in t.assumption
    assert t.relative == {"voc-fcn8s": 1.0, "pascalcontext-fcn8s": 1.0, "voc-fcn-alexnet": 0.2}


def test_step_time_from_the_gpu_bench(tmp_path):
    (tmp_path / "gpu.json").write_text(json.dumps({
        "gpu": "NVIDIA H100", "sizes": {"500x375": {"train_exact": {"median_s": 0.1}, "forward_exact": {"median_s": 0.03}}},
        "loop": {"mean_pixels": 375 * 500 / 2, "s_per_iteration": 0.0625}}))
    t = planning.step_times(tmp_path)
    assert t.assumption is None and t.train_s == 0.125 and t.forward_s == 0.03 and t.size == (375, 500)
    assert "gpu.json" in t.source and "NVIDIA H100" in t.source
    assert "real training loop" in t.source
    (tmp_path / "gpu.json").write_text(json.dumps({
        "sizes": {"500x375": {"train_exact": {"median_s": 0.1}, "forward_exact": {"median_s": 0.03}}}}))
    assert planning.step_times(tmp_path).train_s == 0.1
    stage = planning.make_stage("voc-fcn32s", t)
    assert stage.train_hours == pytest.approx(100000 * 0.125 * t.factor("voc-fcn32s", "vgg", 1) / 3600)


def test_fcn_plan_command(tmp_path):
    result = CliRunner().invoke(plan_command, ["voc", "--gpus", "2", "--bench-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    for text in ("voc-fcn32s", "voc-fcn8s-atonce", "GPU 0:", "GPU 1:", "wall time", "ASSUMED", "sbd", "vgg16"):
        assert text in result.output
    line = next(l for l in result.output.splitlines() if l.startswith("voc-fcn16s"))
    assert "voc-fcn32s" in line and "100000" in line
    result = CliRunner().invoke(plan_command, ["siftflow", "--json", "--bench-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert [s["name"] for s in data["stages"]] == ["siftflow-fcn32s", "siftflow-fcn16s", "siftflow-fcn8s"]
    assert data["step_times"]["assumption"] and data["makespan_hours"] == pytest.approx(data["gpu_hours"])
    result = CliRunner().invoke(plan_command, ["everything"])
    assert result.exit_code == 2 and "everything" in result.output
