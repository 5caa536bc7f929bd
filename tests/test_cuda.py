"""The GPU path: every test here is marked `cuda` and runs only where a CUDA device is visible.

`make test-gpu` runs exactly these (`pytest -m cuda`) and fails, rather than skips, on a machine
without CUDA. `make test` collects them too and reports them as skipped with the reason. Sizes are
kept small (the Caffe goldens' 1/64-width nets, 1/16-width nets on 32-64 px images) so that the
whole module runs in a few minutes on one GPU; the speed of the full-size nets on a GPU is
`make bench-gpu`'s (bench/case_gpu.py).

What is checked, all on CUDA with TF32 off (Caffe computes in full float32):
- every committed Caffe golden (tests/fixtures/oracle) at the CPU tolerances of
  tests/test_oracle_caffe.py, through that module's own helpers: forward (intermediate blobs and
  scores), loss, input and parameter gradients, 5 SGD steps;
- the default build (fast kernels, region forward) against the plain build, both on CUDA, and
  the CUDA scores against the CPU's;
- training: a run killed and resumed ends bitwise equal to an uninterrupted one with
  `torch.use_deterministic_algorithms(True)`; snapshots written on the GPU resume on the CPU,
  and the CPU's on the GPU;
- `fcn eval` and `fcn infer --device cuda` against `--device cpu`;
- the opt-in bf16 mode (reproduce/evaluation/bf16.py): its deviation from the exact path, printed;
- DDP over NCCL on 2 GPUs equal to one process with iter_size 2 (skipped with fewer than 2 GPUs).
"""
from __future__ import annotations

import json
import os
import sys

# cuBLAS is deterministic only with a fixed workspace, which must be set before its first call.
os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

import nets  # noqa: E402
import test_oracle_caffe as oracle  # noqa: E402
from test_oracle_caffe import caffemodels  # noqa: E402,F401  (the session fixture, shared)

pytestmark = pytest.mark.cuda

CUDA = "cuda"
WIDTH = 1 / 16


@pytest.fixture(autouse=True)
def exact_cuda_math():
    """TF32 off for every test here (what fcn train / eval do on CUDA: reproduce.training.train.use_exact_cuda_math)."""
    from reproduce.training.train import use_exact_cuda_math
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    use_exact_cuda_math()
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def test_tf32_is_off_in_the_exact_path():
    assert not torch.backends.cuda.matmul.allow_tf32 and not torch.backends.cudnn.allow_tf32
    # nets.fast switches it off by itself for any CUDA input, as a forward outside fcn would be
    torch.backends.cudnn.allow_tf32 = True
    net = nets.build("voc-fcn32s", width=WIDTH).eval().to(CUDA)
    with torch.no_grad():
        net(torch.zeros(1, 3, 32, 32, device=CUDA))
    assert not torch.backends.cudnn.allow_tf32


# ------------------------------------------------------------------------------------------------
# the Caffe goldens, on CUDA, at the CPU's tolerances
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", oracle.EXPERIMENTS)
def test_forward_equals_caffe_on_cuda(name, caffemodels):  # noqa: F811
    errors = oracle.forward_errors(name, caffemodels[name], CUDA)
    bad = {b: e for b, e in errors.items() if not e <= oracle.FORWARD_TOL}
    assert not bad, f"{name} on CUDA: blobs off Caffe by more than {oracle.FORWARD_TOL} relative: {bad}"


@pytest.mark.parametrize("name", oracle.EXPERIMENTS)
def test_loss_and_gradients_equal_caffe_on_cuda(name, caffemodels):  # noqa: F811
    loss_errors, grad_errors = oracle.loss_and_gradient_errors(name, caffemodels[name], CUDA)
    bad = {k: e for k, e in loss_errors.items() if not e <= oracle.LOSS_TOL}
    assert not bad, f"{name} on CUDA: scores or loss off Caffe by more than {oracle.LOSS_TOL}: {bad}"
    bad = {k: e for k, e in grad_errors.items() if not e <= oracle.GRAD_TOL}
    assert not bad, f"{name} on CUDA: gradients off Caffe by more than {oracle.GRAD_TOL}: {bad}"


@pytest.mark.parametrize("name,run", oracle.SGD_RUNS)
def test_sgd_steps_equal_caffe_on_cuda(name, run, caffemodels):  # noqa: F811
    errors = oracle.sgd_errors(name, run, caffemodels[name], CUDA)
    bad = {k: e for k, e in errors.items() if not e <= oracle.SGD_TOL}
    assert not bad, f"{name} ({run}) on CUDA: off Caffe after the SGD steps by more than {oracle.SGD_TOL}: {bad}"


# ------------------------------------------------------------------------------------------------
# the default build (fast kernels, region forward) against the plain build
# ------------------------------------------------------------------------------------------------
FAST_NETS = ["voc-fcn32s", "voc-fcn8s", "voc-fcn8s-atonce", "voc-fcn-alexnet", "voc-fcn-googlenet",
             "nyud-fcn32s-color-d", "nyud-fcn32s-color-hha", "siftflow-fcn16s"]
FAST_TOL = 1e-5  # tests/test_fast_paths.py's


@pytest.mark.parametrize("name", FAST_NETS)
def test_default_build_equals_plain_on_cuda(name):
    from test_fast_paths import heads, inputs, randomize_, rel

    default = randomize_(nets.build(name, width=WIDTH), seed=0)
    plain = nets.build(name, width=WIDTH, fast=False)
    plain.load_state_dict(default.state_dict())
    cpu_scores = {}
    for h, w in [(37, 53), (64, 64)]:
        xs = inputs(default, h, w)
        with torch.no_grad():
            cpu_scores[(h, w)] = heads(plain.eval()(*xs))
    default, plain = default.to(CUDA).eval(), plain.to(CUDA).eval()
    for (h, w), want in cpu_scores.items():
        xs = [x.to(CUDA) for x in inputs(default, h, w)]
        with torch.inference_mode():
            a, b = heads(default(*xs)), heads(plain(*xs))
        for k in b:
            assert b[k].abs().max() > 0
            assert rel(a[k], b[k]) <= FAST_TOL, f"{name} {h}x{w} {k}: default vs plain on CUDA {rel(a[k], b[k]):.3g}"
            assert rel(a[k].cpu(), want[k]) <= FAST_TOL, f"{name} {h}x{w} {k}: CUDA vs CPU {rel(a[k].cpu(), want[k]):.3g}"
    # training mode (gradients): the default build's backward against the plain build's
    default.train(), plain.train()
    xs = [x.to(CUDA) for x in inputs(default, 40, 48)]
    grads = []
    for net in (default, plain):
        net.zero_grad()
        torch.manual_seed(5)  # the same dropout masks
        sum(s.float().square().mean() for s in heads(net(*xs)).values()).backward()
        grads.append({n: p.grad.detach().clone() for n, p in net.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys() and grads[0]
    worst = max(rel(grads[0][n], grads[1][n]) for n in grads[1] if grads[1][n].abs().max() > 0)
    assert worst <= 1e-4, f"{name}: default vs plain gradients on CUDA differ by {worst:.3g}"


# ------------------------------------------------------------------------------------------------
# training on CUDA
# ------------------------------------------------------------------------------------------------
@pytest.fixture
def deterministic():
    """torch.use_deterministic_algorithms(True) (warn_only: an op without a deterministic CUDA kernel
    warns, and the bitwise comparison below is what decides)."""
    saved = torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()
    benchmark = torch.backends.cudnn.benchmark
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.benchmark = False
    yield
    torch.use_deterministic_algorithms(saved[0], warn_only=saved[1])
    torch.backends.cudnn.benchmark = benchmark


def _train(out, dataset, device, **kw):
    from reproduce.training.train import train
    from train_support import tiny_experiment, voc_samples

    settings = dict(max_iter=6, test_interval=3, snapshot=2)
    settings.update(kw.pop("settings", {}))
    exp = tiny_experiment(base_lr=1e-7, momentum=0.99, iter_size=2, **settings)
    return train(exp, data_root=None, init=None, out_dir=out, width=WIDTH, train_dataset=dataset,
                 val_dataset=voc_samples(32), progress=False, display=1, keep_snapshots=0, device=device, **kw)


def test_killed_and_resumed_run_on_cuda_ends_bitwise_equal(tmp_path, deterministic, monkeypatch):
    """Interrupted in the main process right after the iteration-4 checkpoint (the images are
    decoded in worker processes on CUDA, so the interruption is not the data's), then resumed."""
    from reproduce.training import checkpoint
    from reproduce.training import train as training
    from train_support import assert_states_equal, read_state, voc_samples

    whole, broken = tmp_path / "whole", tmp_path / "broken"
    _train(whole, voc_samples(32), CUDA)
    real = training._snapshot

    def snapshot_then_die(run, done):
        real(run, done)
        if done == 4:
            raise KeyboardInterrupt("simulated kill")

    with monkeypatch.context() as m:
        m.setattr(training, "_snapshot", snapshot_then_die)
        with pytest.raises(KeyboardInterrupt):
            _train(broken, voc_samples(32), CUDA)
    assert [i for i, _ in checkpoint.list_snapshots(broken / "snapshot")] == [2, 4]
    _train(broken, voc_samples(32), CUDA)
    a, b = read_state(whole / "final.pt"), read_state(broken / "final.pt")
    assert_states_equal(a, b)
    sa, sb = (checkpoint.load_checkpoint(d / "snapshot" / "iter_6.pt") for d in (whole, broken))
    assert_states_equal(sa["solver"]["history"], sb["solver"]["history"])
    assert sa["display_losses"] == sb["display_losses"]
    assert_ran_exactly_on(CUDA, json.loads((whole / "run.json").read_text()))


def assert_ran_exactly_on(device: str, run: dict) -> None:
    """run.json's device record names `device`, and on CUDA records TF32 off."""
    assert run["device"]["device"].startswith(device), run["device"]
    if device.startswith("cuda"):
        assert run["device"]["tf32"] == {"matmul": False, "cudnn": False}, run["device"]


def test_no_host_synchronisation_between_displays(tmp_path, monkeypatch):
    """Iterations that log nothing never wait for the GPU: they run under
    torch.cuda.set_sync_debug_mode("error"), which raises on any synchronising call (loss.item(),
    a blocking copy, a value read). Images come from worker processes in pinned memory."""
    from reproduce.training import train as training
    from train_support import voc_samples

    real, quiet, pinned = training._one_iteration, [], []
    real_next = training._worker_read_ahead.__next__

    def watched_next(self):
        item, sample = real_next(self)
        pinned.append(sample["data"].is_pinned())
        return item, sample

    def watched(run, model, images):
        if run.solver.iteration % run.settings.display == 0:
            return real(run, model, images)
        quiet.append(run.solver.iteration)
        torch.cuda.set_sync_debug_mode("error")
        try:
            return real(run, model, images)
        finally:
            torch.cuda.set_sync_debug_mode("default")

    monkeypatch.setattr(training, "_one_iteration", watched)
    monkeypatch.setattr(training._worker_read_ahead, "__next__", watched_next)
    from reproduce.training.train import train
    from train_support import tiny_experiment
    for normalize in (False, True):
        exp = tiny_experiment(base_lr=1e-7, momentum=0.99, iter_size=2, max_iter=12, test_interval=12, snapshot=12,
                              loss_normalize=normalize)
        train(exp, data_root=None, init=None, out_dir=tmp_path / f"n{normalize}", width=WIDTH, device=CUDA,
              train_dataset=voc_samples(32), val_dataset=voc_samples(32), progress=False, display=6)
    assert len(quiet) == 2 * 10 and pinned and all(pinned)


def test_gpu_snapshots_resume_on_the_cpu_and_back(tmp_path):
    """A run's snapshot written on the GPU resumes on the CPU (and a CPU snapshot on the GPU): the
    files hold CPU tensors only; the weights continue from where they were, within float32 noise of
    a run that stayed on one device."""
    from reproduce.training import checkpoint
    from test_ddp import max_relative_difference
    from train_support import read_state, voc_samples

    gpu_then_cpu, cpu_then_gpu, gpu = tmp_path / "g2c", tmp_path / "c2g", tmp_path / "g"
    _train(gpu, voc_samples(32), CUDA)
    _train(gpu_then_cpu, voc_samples(32), CUDA, settings=dict(max_iter=4))
    state = checkpoint.load_checkpoint(gpu_then_cpu / "snapshot" / "iter_4.pt")
    assert all(t.device.type == "cpu" for t in state["net"].values())
    _train(gpu_then_cpu, voc_samples(32), "cpu")  # resumes at 4 on the CPU, ends at 6
    _train(cpu_then_gpu, voc_samples(32), "cpu", settings=dict(max_iter=4))
    _train(cpu_then_gpu, voc_samples(32), CUDA)
    ref = read_state(gpu / "final.pt")
    for other in (gpu_then_cpu, cpu_then_gpu):
        events = [json.loads(line)["kind"] for line in (other / "log.jsonl").read_text().splitlines()]
        assert events.count("resume") == 1, f"{other.name}: did not resume"
        worst = max_relative_difference(ref, read_state(other / "final.pt"))
        print(f"{other.name}: max relative weight difference to the all-GPU run {worst:.3g}", file=sys.stderr)
        assert worst <= 1e-4  # the gradients' tolerance against Caffe: float32 noise, not a different run
    # final.pt written on the GPU loads on the CPU with its record (nets.load) and runs there
    net = nets.load(gpu / "final.pt", "cpu")
    assert all(p.device.type == "cpu" for p in net.parameters())
    back = nets.load(gpu / "final.pt", CUDA)
    x = torch.rand(1, 3, 40, 40) * 255 - 120
    with torch.no_grad():
        assert torch.allclose(back(x.to(CUDA)).cpu(), net(x), rtol=1e-4, atol=1e-4 * net(x).abs().max().item())


# ------------------------------------------------------------------------------------------------
# fcn eval, fcn infer
# ------------------------------------------------------------------------------------------------
def test_fcn_eval_on_cuda_equals_cpu(tmp_path):
    from click.testing import CliRunner
    from reproduce.commands.eval_cli import eval_command
    from test_evaluate import make_voc_dir
    from test_fast_paths import randomize_

    make_voc_dir(tmp_path / "data" / "voc2011" / "VOC2011", ["a", "b", "c"], [(40, 52), (36, 36), (50, 30)])
    weights = tmp_path / "w.pt"
    torch.save(randomize_(nets.build("voc-fcn32s", width=WIDTH), seed=3).state_dict(), weights)
    records = {}
    for i, device in enumerate(("cpu", CUDA)):
        out = tmp_path / f"metrics{i}.json"
        result = CliRunner().invoke(eval_command, [
            "voc-fcn32s", "--weights", str(weights), "--data-root", str(tmp_path / "data"), "--device", device,
            "--width", str(WIDTH), "--workers", "0", "--out", str(out)])
        assert result.exit_code == 0, result.output
        records[device] = json.loads(out.read_text())
    a, b = records["cpu"], records[CUDA]
    assert b["num_images"] == a["num_images"] == 3
    assert b["loss"] == pytest.approx(a["loss"], rel=1e-5)
    for k, v in a["scores"].items():
        assert b["scores"][k] == pytest.approx(v, abs=0.05), k  # percent; an argmax tie may flip a pixel


def test_fcn_infer_on_cuda_equals_cpu(tmp_path):
    from click.testing import CliRunner
    from PIL import Image
    from reproduce.commands.eval_cli import infer_command
    from test_fast_paths import randomize_
    from test_infer import write_rgb

    weights = tmp_path / "w.pt"
    torch.save(randomize_(nets.build("voc-fcn8s", width=WIDTH), seed=4).state_dict(), weights)
    write_rgb(tmp_path / "x.png", 45, 61)
    preds = {}
    for i, device in enumerate(("cpu", CUDA)):
        out = tmp_path / f"out{i}"
        result = CliRunner().invoke(infer_command, ["voc-fcn8s", "--weights", str(weights), str(tmp_path / "x.png"),
                                                    "--out", str(out), "--width", str(WIDTH), "--device", device])
        assert result.exit_code == 0, result.output
        with Image.open(out / "x.png") as im:
            preds[device] = np.array(im)
    assert preds[CUDA].shape == (45, 61)
    agree = float((preds["cpu"] == preds[CUDA]).mean())
    assert agree >= 0.999, f"fcn infer: CUDA and CPU predictions agree on {agree:.4%} of the pixels"


# ------------------------------------------------------------------------------------------------
# the opt-in bf16 mode
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("compile", [False, True], ids=["bf16-eager", "bf16-compile"])
def test_bf16_mode_agreement_on_cuda(compile):
    """bf16 autocast on CUDA against the exact float32 path: its deviation, printed, bounded as on the
    CPU (tests/test_fast_paths.py::test_bf16_mode_deviation_is_bounded)."""
    from reproduce.evaluation.bf16 import bf16_mode
    from test_fast_paths import randomize_

    net = randomize_(nets.build("voc-fcn8s", width=1 / 4), seed=6).eval().to(CUDA)
    gen = torch.Generator().manual_seed(7)
    x = (torch.rand(1, 3, 128, 160, generator=gen) * 255 - 120).to(CUDA)
    with torch.no_grad():
        exact = net(x)
        out = bf16_mode(net, compile=compile)(x)
    assert out.dtype == torch.float32 and out.shape == exact.shape
    rel = ((out - exact).abs().max() / exact.abs().max()).item()
    agree = (out.argmax(1) == exact.argmax(1)).float().mean().item()
    print(f"bf16 ({'compiled' if compile else 'eager'}) on CUDA vs exact: max relative logit difference "
          f"{rel:.3g}, argmax agreement {agree:.4%}", file=sys.stderr)
    assert 0 < rel <= 0.05 and agree >= 0.9


# ------------------------------------------------------------------------------------------------
# DDP over NCCL
# ------------------------------------------------------------------------------------------------
def _ddp_worker(rank: int, world: int, init_file: str, root: str, backend: str) -> None:
    import torch.distributed as dist
    from reproduce.training.train import train
    from test_ddp import _experiment
    from train_support import voc_samples

    device = f"cuda:{rank}" if backend == "nccl" else "cpu"
    if backend == "nccl":
        torch.cuda.set_device(rank)
    dist.init_process_group(backend, init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        train(_experiment(1), data_root=None, init=None, out_dir=os.path.join(root, "ddp"), width=WIDTH,
              train_dataset=voc_samples(32), val_dataset=voc_samples(32), progress=False, display=1, device=device)
    finally:
        dist.destroy_process_group()


@pytest.mark.skipif(not torch.cuda.is_available() or torch.cuda.device_count() < 2,
                    reason="DDP over NCCL needs 2 CUDA GPUs")
def test_two_nccl_processes_equal_one_process_with_iter_size_two(tmp_path):
    two_processes_equal_one_with_iter_size_two(tmp_path, "nccl")


def two_processes_equal_one_with_iter_size_two(tmp_path, backend: str) -> None:
    """2 processes over `backend` (nccl: one GPU each) against one process with iter_size 2 (on cuda:0)."""
    import torch.multiprocessing as mp
    from reproduce.training.train import train
    from test_ddp import _experiment, _losses, max_relative_difference
    from train_support import read_state, voc_samples

    device = "cuda:0" if backend == "nccl" else "cpu"  # of the single process and of rank 0
    mp.spawn(_ddp_worker, args=(2, str(tmp_path / "rendezvous"), str(tmp_path), backend), nprocs=2, join=True)
    single = tmp_path / "single"
    train(_experiment(2), data_root=None, init=None, out_dir=single, width=WIDTH, train_dataset=voc_samples(32),
          val_dataset=voc_samples(32), progress=False, display=1, device=device)
    a, b = read_state(single / "final.pt"), read_state(tmp_path / "ddp" / "final.pt")
    worst = max_relative_difference(a, b)
    print(f"2 {backend} processes vs 1 process with iter_size 2: max relative weight difference {worst:.3g}",
          file=sys.stderr)
    assert worst <= 1e-6
    assert _losses(single / "log.csv") == pytest.approx(_losses(tmp_path / "ddp" / "log.csv"), rel=1e-6)
    run = json.loads((tmp_path / "ddp" / "run.json").read_text())
    assert run["solver"]["world_size"] == 2
    assert_ran_exactly_on(device, run)
