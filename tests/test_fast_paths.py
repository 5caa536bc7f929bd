"""The default (fast) path computes what the plain build computes, and the opt-in bf16 mode stays close.

`nets.build(name)` runs the fast kernels of nets/fast.py (channels_last, packed oneDNN convolutions
with fused ReLU for inference, fc6 / fc7 as matrix products, diagonal deconvolutions as depthwise
ones); `nets.build(name, fast=False)` is the plain port. Both must agree to 1e-5 relative
(max |difference| / max |plain|) in scores and in every gradient, at odd input sizes, with learned
non-diagonal deconvolutions, and after the weights change under the caches. No timing here:
speed is measured by `make bench`.
"""
from __future__ import annotations

import copy
import math
import pickle

import pytest
import torch
from torch.nn import functional as F

import nets
import nets.fast as nf
from nets.caffe import Deconvolution

TOL = 1e-5
WIDTH = 1 / 16
NETS = ["voc-fcn32s", "voc-fcn8s", "voc-fcn8s-atonce", "voc-fcn-alexnet", "voc-fcn-googlenet", "nyud-fcn32s-color-d",
        "nyud-fcn16s-color-hha", "siftflow-fcn16s", "pascalcontext-fcn32s"]
SIZES = [(37, 53), (64, 64), (1, 7)]


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    """max |a - b| / max |b| (max |a - b| when b is all zero)."""
    scale = b.abs().max().item()
    diff = (a.detach() - b.detach()).abs().max().item()
    return diff / scale if scale > 0 else diff


def randomize_(net: torch.nn.Module, seed: int) -> torch.nn.Module:
    """He-uniform random convolutions, score layers included (the build leaves those at zero)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in net.modules():
            if type(m) is torch.nn.Conv2d:
                bound = math.sqrt(6.0 / m.weight[0].numel())
                m.weight.copy_(torch.rand(m.weight.shape, generator=gen) * 2 * bound - bound)
                m.bias.copy_(torch.rand(m.bias.shape, generator=gen) * 0.2 - 0.1)
    return net


def pair(name: str, seed: int = 0) -> tuple[torch.nn.Module, torch.nn.Module]:
    """(default build, plain build) of `name` at reduced width with the same random weights."""
    fast = randomize_(nets.build(name, width=WIDTH, region=False), seed)  # the region path: test_region.py
    plain = nets.build(name, width=WIDTH, fast=False)
    plain.load_state_dict(fast.state_dict())
    return fast, plain


def inputs(net: torch.nn.Module, h: int, w: int, n: int = 2, seed: int = 1) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    channels = 4 if net.caffe_name == "nyud-fcn32s-color-d" else 3
    return [torch.rand(n, channels, h, w, generator=gen) * 255 - 120 for _ in net.inputs]


def heads(out) -> dict[str, torch.Tensor]:
    return out if isinstance(out, dict) else {"score": out}


def assert_same_scores(a, b) -> None:
    a, b = heads(a), heads(b)
    assert a.keys() == b.keys()
    for k in a:
        assert a[k].shape == b[k].shape
        assert rel(a[k], b[k]) <= TOL, (k, rel(a[k], b[k]))
        assert b[k].abs().max() > 0  # a real comparison, not zeros against zeros


@pytest.fixture
def gemm_calls(monkeypatch) -> list[tuple]:
    """Records every fc6 / fc7 matrix-product forward (the fast fc kernel)."""
    calls: list[tuple] = []
    real = nf._gemm_conv_forward

    def spy(x, weight, bias):
        calls.append(tuple(weight.shape))
        return real(x, weight, bias)

    monkeypatch.setattr(nf, "_gemm_conv_forward", spy)
    return calls


@pytest.mark.parametrize("name", NETS)
def test_inference_equals_plain(name, gemm_calls):
    fast, plain = pair(name)
    fast.eval(), plain.eval()
    for h, w in SIZES:
        xs = inputs(fast, h, w)
        with torch.inference_mode():
            assert_same_scores(fast(*xs), plain(*xs))
    # The fast kernels really ran (not a silent fallback), and only in the default build.
    fc_layers = [m for n, m in fast.named_modules() if n.startswith("fc")]
    assert len(gemm_calls) == len(fc_layers) * len(SIZES)
    deconvs = [m for m in fast.modules() if isinstance(m, Deconvolution)]
    assert deconvs and all(m in nf._CACHE for m in deconvs)
    packed = [m for n, m in fast.named_modules() if type(m) is torch.nn.Conv2d and m in nf._CACHE]
    assert len(packed) >= 10 if "alexnet" not in name else len(packed) >= 4
    assert not any(m in nf._CACHE for m in plain.modules())


@pytest.mark.parametrize("name", NETS)
def test_no_grad_equals_inference_mode(name):
    fast, _ = pair(name)
    fast.eval()
    xs = inputs(fast, 45, 38)
    with torch.inference_mode():
        a = heads(fast(*xs))
    with torch.no_grad():
        b = heads(fast(*xs))
    for k in a:
        assert torch.equal(a[k], b[k])


def _train_step(net: torch.nn.Module, xs: list[torch.Tensor], seed: int = 7):
    """Forward in TRAIN phase (dropout on, seeded), a random linear loss, backward."""
    net.train()
    net.zero_grad(set_to_none=True)
    xs = [x.clone().requires_grad_() for x in xs]
    torch.manual_seed(seed)
    outs = heads(net(*xs))
    gen = torch.Generator().manual_seed(11)
    loss = sum((o * torch.randn(o.shape, generator=gen)).sum() for o in outs.values())
    loss.backward()
    grads = {n: p.grad for n, p in net.named_parameters() if p.grad is not None}
    return outs, [x.grad for x in xs], grads


@pytest.mark.parametrize("name", ["voc-fcn8s", "voc-fcn8s-atonce", "voc-fcn-alexnet", "voc-fcn-googlenet",
                                  "nyud-fcn16s-color-hha", "siftflow-fcn16s", "nyud-fcn32s-color-d"])
def test_training_gradients_equal_plain(name, gemm_calls):
    fast, plain = pair(name)
    xs = inputs(fast, 45, 61)
    out_a, xg_a, g_a = _train_step(fast, xs)
    out_b, xg_b, g_b = _train_step(plain, xs)
    assert_same_scores(out_a, out_b)  # same dropout masks too
    for a, b in zip(xg_a, xg_b):
        assert rel(a, b) <= TOL
    trainable = {n for n, p in plain.named_parameters() if p.requires_grad}
    assert g_a.keys() == g_b.keys() == trainable
    for n in g_b:
        assert rel(g_a[n], g_b[n]) <= TOL, (n, rel(g_a[n], g_b[n]))
    # the fc layers (FCN-GoogLeNet has none) went through the matrix-product kernel with its own backward
    assert bool(gemm_calls) == any(n.startswith("fc") for n, _ in fast.named_modules())


def test_training_step_with_the_solver_equals_plain():
    from reproduce.training.loss import softmax_with_loss
    from reproduce.training.solver import CaffeSGD

    fast, plain = pair("voc-fcn16s")
    xs = inputs(fast, 50, 41, n=1)
    label = torch.randint(0, 21, (1, 50, 41), generator=torch.Generator().manual_seed(3))
    for net in (fast, plain):
        net.train()
        solver = CaffeSGD(net, base_lr=1e-2, momentum=0.9, weight_decay=5e-4)
        for it in range(2):
            solver.zero_grad()
            torch.manual_seed(100 + it)
            softmax_with_loss(net(*xs), label, normalize=True).backward()
            solver.step()
    before = nets.build("voc-fcn16s", width=WIDTH, fast=False)
    before.load_state_dict(pair("voc-fcn16s")[0].state_dict())
    moved = 0
    for (n, a), (_, b), (_, w0) in zip(fast.named_parameters(), plain.named_parameters(), before.named_parameters()):
        step_a, step_b = a.detach().double() - w0.double(), b.detach().double() - w0.double()
        if step_b.abs().max() > 0:
            moved += 1
            # the updates agree (not just the weights); float32 storage rounds them to ulp(w)
            ulp = torch.finfo(torch.float32).eps * w0.abs().max().item()
            assert (step_a - step_b).abs().max().item() <= TOL * step_b.abs().max().item() + 2 * ulp, n
    assert moved > 10


def test_learned_non_diagonal_deconvolution():
    fast, plain = pair("voc-fcn16s")
    gen = torch.Generator().manual_seed(5)
    for net in (fast, plain):
        with torch.no_grad():
            net.upscore2.weight.copy_(torch.randn(net.upscore2.weight.shape, generator=gen.manual_seed(5)))
    assert nf.diagonal_deconv_weight(fast.upscore2) is None
    assert nf.diagonal_deconv_weight(fast.upscore16) is not None
    xs = inputs(fast, 40, 57)
    with torch.inference_mode():
        assert_same_scores(fast.eval()(*xs), plain.eval()(*xs))
    # learned: the deconvolution's own weight gets a gradient, equal to the plain one
    for net in (fast, plain):
        net.upscore2.weight.requires_grad_(True)
    _, _, g_a = _train_step(fast, xs)
    _, _, g_b = _train_step(plain, xs)
    assert "upscore2.weight" in g_a
    for n in g_b:
        assert rel(g_a[n], g_b[n]) <= TOL, n


def test_diagonal_deconvolution_is_computed_depthwise(monkeypatch):
    fast, plain = pair("voc-fcn32s")
    xs = inputs(fast, 30, 30)
    with torch.inference_mode():
        expected = plain.eval()(*xs)
    calls = []
    real = F.conv_transpose2d

    def spy(x, w, *args, **kw):
        calls.append(tuple(w.shape))
        return real(x, w, *args, **kw)

    monkeypatch.setattr(F, "conv_transpose2d", spy)
    with torch.inference_mode():
        assert_same_scores(fast.eval()(*xs), expected)
    assert calls == [(21, 1, 64, 64)]  # one kernel per class, not 21 x 21


def test_weight_changes_reach_the_cached_kernels():
    fast, plain = pair("voc-fcn8s")
    xs = inputs(fast, 48, 40)
    with torch.inference_mode():
        fast.eval()(*xs)  # fills the caches (packed convolutions, depthwise deconvolutions)
    # 1) load_state_dict of other weights (bumps the version counters)
    other = randomize_(nets.build("voc-fcn8s", width=WIDTH), seed=9)
    fast.load_state_dict(other.state_dict())
    plain.load_state_dict(other.state_dict())
    with torch.inference_mode():
        assert_same_scores(fast(*xs), plain.eval()(*xs))
    # 2) writes through .data, which the version counter does not see
    gen = torch.Generator().manual_seed(4)
    for net in (fast, plain):
        gen.manual_seed(4)
        net.conv3_1.weight.data.copy_(torch.randn(net.conv3_1.weight.shape, generator=gen) * 0.05)
        net.upscore8.weight.data[0, 1] = 0.5  # no longer diagonal
    with torch.inference_mode():
        assert_same_scores(fast(*xs), plain(*xs))


def test_same_parameters_and_state_as_the_plain_build():
    fast, plain = pair("nyud-fcn16s-color-hha")
    keys = list(fast.state_dict())
    with torch.inference_mode():
        fast.eval()(*inputs(fast, 33, 33))
    sa, sb = fast.state_dict(), plain.state_dict()
    assert list(sa) == keys == list(sb)
    for k in sa:
        assert sa[k].shape == sb[k].shape and sa[k].stride() == sb[k].stride() and sa[k].is_contiguous()
    # the caches live outside the modules: copying and pickling work and compute the same
    clone = copy.deepcopy(fast)
    restored = pickle.loads(pickle.dumps(fast))
    xs = inputs(fast, 29, 31)
    with torch.inference_mode():
        ref = fast(*xs)
        assert torch.equal(clone(*xs), ref) and torch.equal(restored(*xs), ref)


def test_build_switch_and_set_fast():
    plain = nets.build("voc-fcn8s", width=WIDTH, fast=False)
    switches = [m for m in plain.modules() if hasattr(m, "fast")]
    assert len(switches) == 1 + 3 and not any(m.fast for m in switches)  # the net and its 3 deconvolutions
    nets.set_fast(plain, True)
    assert all(m.fast for m in switches)
    assert nets.build("voc-fcn8s", width=WIDTH).fast


@pytest.mark.parametrize("n,c,h,w,o,k,bias,dtype", [
    (1, 16, 11, 9, 24, 7, True, torch.float32),
    (3, 8, 8, 8, 10, 7, True, torch.float32),
    (2, 20, 5, 3, 12, 1, True, torch.float32),
    (2, 6, 7, 7, 5, 7, False, torch.float32),
    (2, 6, 9, 8, 5, 3, True, torch.float64),  # not oneDNN: the plain matmul fallback
])
def test_matrix_product_convolution_matches_conv2d(n, c, h, w, o, k, bias, dtype):
    gen = torch.Generator().manual_seed(0)
    layer = torch.nn.Conv2d(c, o, k, bias=bias).to(dtype)
    x = torch.randn(n, c, h, w, generator=gen, dtype=dtype).contiguous(memory_format=torch.channels_last)
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    ya, yb = nf.fc_conv(layer, xa), layer(xb)
    g = torch.randn(yb.shape, generator=gen, dtype=dtype)
    params = [layer.weight] + ([layer.bias] if bias else [])
    ga = torch.autograd.grad(ya, [xa, *params], g)
    gb = torch.autograd.grad(yb, [xb, *params], g)
    assert ya.is_contiguous() and rel(ya, yb) <= TOL
    for a, b in zip(ga, gb):
        assert rel(a, b) <= TOL
    with torch.no_grad():
        assert rel(nf.fc_conv(layer, x), yb) <= TOL


def test_bf16_mode_deviation_is_bounded():
    from reproduce.evaluation.bf16 import Bf16Net, bf16_mode

    fast, _ = pair("voc-fcn8s")
    fast.eval()
    xs = inputs(fast, 64, 48)
    with torch.inference_mode():
        exact = fast(*xs)
        runner = bf16_mode(fast, compile=False)
        approx = runner(*xs)
    assert isinstance(runner, Bf16Net) and "not Caffe-exact" in runner.describe()
    assert approx.dtype == torch.float32 and approx.shape == exact.shape
    deviation = rel(approx, exact)
    assert 0 < deviation < 0.05  # bfloat16 really ran, and stayed within a few percent
    assert (approx.argmax(1) == exact.argmax(1)).float().mean() > 0.9
    with pytest.raises(ValueError, match="eval"):
        bf16_mode(fast.train(), freeze=True)


@pytest.mark.parametrize("name", ["voc-fcn8s", "nyud-fcn16s-color-hha"])
def test_training_after_an_inference_mode_forward(name, monkeypatch):
    """Before: after a forward under inference_mode, a training backward failed with "Inference
    tensors cannot be saved for backward" (the cached depthwise deconvolution weight was an
    inference tensor). Now the cache is built outside inference mode and serves both modes:
    the gradients are those of a net that never ran under inference_mode."""
    used, _ = pair(name)
    fresh = copy.deepcopy(used)  # the same weights, no cache entries
    xs = inputs(used, 45, 61)
    with torch.inference_mode():
        used.eval()(*xs)
    cached = {m: nf._CACHE[m][1] for m in used.modules() if m in nf._CACHE}
    deconvs = [m for m in cached if isinstance(m, torch.nn.ConvTranspose2d)]
    assert deconvs and not any(t.is_inference() for t in cached.values() if isinstance(t, torch.Tensor))
    depthwise = []
    real = F.conv_transpose2d
    monkeypatch.setattr(F, "conv_transpose2d", lambda x, w, *a, **k: depthwise.append(w) or real(x, w, *a, **k))
    out_a, xg_a, g_a = _train_step(used, xs)
    assert any(w is cached[m] for m in deconvs for w in depthwise)  # the cached weight was reused
    out_b, xg_b, g_b = _train_step(fresh, xs)
    assert_same_scores(out_a, out_b)
    assert g_a.keys() == g_b.keys() and g_a
    for n in g_b:
        assert torch.equal(g_a[n], g_b[n]), n
    for a, b in zip(xg_a, xg_b):
        assert torch.equal(a, b)
