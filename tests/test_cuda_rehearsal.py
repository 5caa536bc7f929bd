"""The GPU tests' and `make bench-gpu`'s own code, rehearsed on the CPU in every `make test`.

tests/test_cuda.py and bench/case_gpu.py run only on a CUDA GPU, which this project is lent for a few
minutes at a time, if at all (tools/gpu_check.sh). A slip in their Python (a renamed helper, a wrong
keyword, a record key that fcn plan no longer reads) would cost those minutes. Here each runs once
with the CPU standing in for the GPU: test_cuda's device name `CUDA` is set to "cpu", case_gpu's
`DEVICE` likewise, and CUDA's event timer and memory counters are replaced by host stand-ins. What this
shows is that the code runs and that its device-independent assertions hold; what only a GPU can show
(the CUDA kernels, TF32 off, NCCL, pinned memory, no host synchronisation) is left to `make test-gpu`.
"""
from __future__ import annotations

import functools
import json
import time

import pytest
import torch

import test_cuda as gpu
import test_oracle_caffe as oracle
from bench import case_gpu
from test_cuda import deterministic, exact_cuda_math  # noqa: F401  (the rehearsed tests' fixtures)
from test_oracle_caffe import caffemodels  # noqa: F401  (the session fixture, shared)

# test_cuda's tests that run here, and those that do not, with the reason.
REHEARSED = {
    "test_forward_equals_caffe_on_cuda", "test_loss_and_gradients_equal_caffe_on_cuda",
    "test_sgd_steps_equal_caffe_on_cuda", "test_default_build_equals_plain_on_cuda",
    "test_killed_and_resumed_run_on_cuda_ends_bitwise_equal", "test_gpu_snapshots_resume_on_the_cpu_and_back",
    "test_fcn_eval_on_cuda_equals_cpu", "test_fcn_infer_on_cuda_equals_cpu", "test_bf16_mode_agreement_on_cuda",
    "test_two_nccl_processes_equal_one_process_with_iter_size_two",
}
NOT_REHEARSED = {
    "test_tf32_is_off_in_the_exact_path": "it checks a switch that only a CUDA input flips",
    "test_no_host_synchronisation_between_displays": (
        "torch.cuda.set_sync_debug_mode and the CUDA loop's worker read-ahead exist only on CUDA "
        "(tests/test_train_cuda_path.py runs that loop's host logic on the CPU)"),
}


def rehearse(name: str):
    """test_cuda's test function `name` (listed in REHEARSED)."""
    assert name in REHEARSED, name
    return getattr(gpu, name)


@pytest.fixture(autouse=True)
def cpu_in_place_of_cuda(monkeypatch):
    monkeypatch.setattr(gpu, "CUDA", "cpu")


def test_every_cuda_test_is_rehearsed_or_says_why_not():
    tests = {n for n in vars(gpu) if n.startswith("test_") and callable(getattr(gpu, n))}
    assert tests == REHEARSED | NOT_REHEARSED.keys(), (
        f"rehearse these here or say why not: {sorted(tests - REHEARSED - NOT_REHEARSED.keys())}; "
        f"gone from test_cuda: {sorted((REHEARSED | NOT_REHEARSED.keys()) - tests)}")


def test_the_caffe_goldens(caffemodels):  # noqa: F811
    name = oracle.EXPERIMENTS[0]
    rehearse("test_forward_equals_caffe_on_cuda")(name, caffemodels)
    rehearse("test_loss_and_gradients_equal_caffe_on_cuda")(name, caffemodels)
    rehearse("test_sgd_steps_equal_caffe_on_cuda")(*oracle.SGD_RUNS[0], caffemodels)


def test_the_default_build_against_the_plain():
    rehearse("test_default_build_equals_plain_on_cuda")("voc-fcn8s")


def test_the_killed_and_resumed_run(tmp_path, deterministic, monkeypatch):  # noqa: F811
    rehearse("test_killed_and_resumed_run_on_cuda_ends_bitwise_equal")(tmp_path, None, monkeypatch)


def test_snapshots_across_devices(tmp_path):
    rehearse("test_gpu_snapshots_resume_on_the_cpu_and_back")(tmp_path)


def test_fcn_eval_and_infer(tmp_path):
    for name, folder in [("test_fcn_eval_on_cuda_equals_cpu", "eval"), ("test_fcn_infer_on_cuda_equals_cpu", "infer")]:
        (tmp_path / folder).mkdir()
        rehearse(name)(tmp_path / folder)


def test_the_bf16_mode():
    rehearse("test_bf16_mode_agreement_on_cuda")(False)  # compiled on the CPU it takes minutes


def test_two_processes_against_iter_size_two(tmp_path):
    rehearse("test_two_nccl_processes_equal_one_process_with_iter_size_two")  # its body, over gloo:
    gpu.two_processes_equal_one_with_iter_size_two(tmp_path, "gloo")


# ------------------------------------------------------------------------------------------------
# make bench-gpu (bench/case_gpu.py), end to end at 1/16 width, and fcn plan reading what it wrote;
# a run stopped after its first phase leaves that phase's figures
# ------------------------------------------------------------------------------------------------
class HostEvent:
    """torch.cuda.Event's timing calls, on the host clock."""

    def __init__(self, enable_timing: bool = False) -> None:
        self.t = 0.0

    def record(self) -> None:
        self.t = time.perf_counter()

    def synchronize(self) -> None:
        pass

    def elapsed_time(self, end: "HostEvent") -> float:
        return (end.t - self.t) * 1000.0


@pytest.fixture
def bench_gpu_on_the_cpu(monkeypatch):
    monkeypatch.setattr(case_gpu, "DEVICE", "cpu")
    monkeypatch.setattr("reproduce.device.cuda_unavailable_reason", lambda *a, **k: None)
    for name, stand_in in [("Event", HostEvent), ("synchronize", lambda *a, **k: None),
                           ("reset_peak_memory_stats", lambda *a, **k: None),
                           ("max_memory_allocated", lambda *a, **k: 3 * 2**20),
                           ("empty_cache", lambda: None), ("get_device_name", lambda *a: "the CPU (rehearsal)")]:
        monkeypatch.setattr(torch.cuda, name, stand_in)
    monkeypatch.setattr(case_gpu, "measure_kernels", functools.partial(case_gpu.measure_kernels, width=gpu.WIDTH))
    monkeypatch.setattr(case_gpu, "measure_loop", functools.partial(case_gpu.measure_loop, display=1, width=gpu.WIDTH))
    monkeypatch.setattr(case_gpu, "measure_compile", functools.partial(case_gpu.measure_compile, width=gpu.WIDTH))
    # torch.compile on the CPU takes minutes: the compile phase's code runs with the eager bf16 mode
    from reproduce.evaluation import bf16
    eager = bf16.bf16_mode
    monkeypatch.setattr(bf16, "bf16_mode", lambda net, compile=False: eager(net, compile=False))


def test_bench_gpu_end_to_end_and_fcn_plan_reads_its_record(tmp_path, bench_gpu_on_the_cpu, capsys):
    from reproduce.pipeline import plan as planning

    out = tmp_path / "gpu.json"
    assert case_gpu.main(["--warmup", "1", "--runs", "2", "--loop-iterations", "4", "--out", str(out)]) == 0
    record = json.loads(out.read_text())
    assert set(record["sizes"]) == set(case_gpu.SIZES) and record["phases_done"] == ["kernels", "loop", "compile"]
    for rec in record["sizes"].values():
        for case in ("forward_exact", "forward_bf16", "train_exact", "train_bf16", "forward_bf16_compile"):
            assert len(rec[case]["event_s"]) == 2 and rec[case]["median_s"] > 0 and rec[case]["peak_gpu_mib"] == 3
        assert rec["forward_bf16_compile"]["first_call_s"] > 0
        assert rec["train_exact"]["hours_per_100k"] == pytest.approx(rec["train_exact"]["median_s"] * 100_000 / 3600)
        assert 0 < rec["bf16_vs_exact"]["max_rel_logit_diff"] < 0.1 and rec["bf16_vs_exact"]["argmax_agreement"] > 0.5
    assert record["deterministic"]["slowdown"] > 0
    loop = record["loop"]
    assert loop["window"] == [1, 3] and loop["s_per_iteration"] > 0 and 0 < loop["busy_fraction"] <= 1
    md = out.with_suffix(".md").read_text()
    assert md.startswith("# voc-fcn8s on the CPU (rehearsal)") and "| 500x375 | train exact |" in md
    assert "INCOMPLETE" not in md and "the GPU is busy" in md and "torch.compile first call at 500x375" in md and md in capsys.readouterr().out
    times = planning.step_times(tmp_path)
    assert "gpu.json" in times.source and "real training loop" in times.source and times.assumption is None
    assert times.train_s == pytest.approx(loop["s_per_iteration"] * 375 * 500 / loop["mean_pixels"])
    assert times.forward_s == pytest.approx(record["sizes"]["500x375"]["forward_exact"]["median_s"])


def test_bench_gpu_stopped_after_a_phase_keeps_what_it_measured(tmp_path, bench_gpu_on_the_cpu, monkeypatch):
    """As when the device call's time limit kills it in the loop: gpu.json holds the kernels' figures."""
    def killed(*args, **kwargs):
        raise KeyboardInterrupt("the call's time limit")

    monkeypatch.setattr(case_gpu, "measure_loop", killed)
    out = tmp_path / "gpu.json"
    with pytest.raises(KeyboardInterrupt):
        case_gpu.main(["--warmup", "0", "--runs", "1", "--out", str(out)])
    record = json.loads(out.read_text())
    assert record["phases_done"] == ["kernels"] and "loop" not in record
    assert record["sizes"]["500x375"]["train_exact"]["median_s"] > 0
    assert "INCOMPLETE: the run stopped before measuring loop, compile (measured: kernels)" in out.with_suffix(".md").read_text()
