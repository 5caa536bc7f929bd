"""The region forward (nets/region.py) computes what the plain build computes.

Every net, every layer (score layers included) with random non-zero weights and biases, at input
sizes from 1x1 to larger than 500, odd and non-square: scores within the fast path's 1e-5 of the
plain build's. The image-dependent rectangles are checked against a brute-force receptive-field
walk, the backgrounds against the values the plain layers compute with two different images,
and the caches against weight changes. In training (autograd on, dropout on) the same forward
runs with the backgrounds computed differentiably: scores, input gradients and every parameter
gradient agree with the plain build's, the dropout masks and the RNG's consumption are the
default path's. No timing here (`make bench`).
"""
from __future__ import annotations

import pytest
import torch

import nets
import nets.region as nr
from test_fast_paths import TOL, WIDTH, assert_same_scores, heads, inputs, randomize_, rel

NETS = ["voc-fcn32s", "voc-fcn16s", "voc-fcn8s", "voc-fcn8s-atonce", "voc-fcn-alexnet", "voc-fcn-googlenet",
        "nyud-fcn32s-color-d", "nyud-fcn32s-color-hha", "nyud-fcn16s-color-hha", "siftflow-fcn8s",
        "pascalcontext-fcn16s"]
SIZES = [(1, 1), (7, 13), (2, 31), (37, 53), (64, 64), (33, 1)]
LARGE = ["voc-fcn8s", "voc-fcn-alexnet", "voc-fcn-googlenet", "siftflow-fcn16s"]


def region_pair(name: str, seed: int = 0):
    """(default build with the region forward, plain build) with the same random weights."""
    fast = randomize_(nets.build(name, width=WIDTH), seed).eval()
    plain = nets.build(name, width=WIDTH, fast=False).eval()
    plain.load_state_dict(fast.state_dict())
    nr.set_region(fast, True)
    return fast, plain


@pytest.fixture
def region_calls(monkeypatch) -> list[str]:
    """Records every region forward (by the net's name), so a silent fallback would show."""
    calls: list[str] = []
    real = nr.run_region

    def spy(owner, program, inputs, outputs):
        calls.append(owner.caffe_name)
        return real(owner, program, inputs, outputs)

    for module in ("nets.vgg_fcn", "nets.alexnet_fcn", "nets.googlenet_fcn"):
        monkeypatch.setattr(f"{module}.run_region", spy)
    return calls


@pytest.mark.parametrize("name", NETS)
def test_region_forward_equals_plain(name, region_calls):
    fast, plain = region_pair(name)
    for h, w in SIZES:
        xs = inputs(fast, h, w)
        with torch.inference_mode():
            assert_same_scores(fast(*xs), plain(*xs))
        with torch.no_grad():  # the training's test pass
            assert_same_scores(fast(*xs), plain(*xs))
    streams = len(getattr(fast, "streams", ())) or 1
    assert len(region_calls) == 2 * len(SIZES) * streams


@pytest.mark.parametrize("name", LARGE)
def test_region_forward_equals_plain_above_500(name, region_calls):
    fast, plain = region_pair(name, seed=3)
    xs = inputs(fast, 517, 263, n=1)
    with torch.inference_mode():
        assert_same_scores(fast(*xs), plain(*xs))
    assert region_calls


def test_region_needs_the_switch_and_the_fast_kernels(region_calls):
    fast, plain = region_pair("voc-fcn16s")
    xs = inputs(fast, 21, 30)
    plain.train()(*xs)
    with torch.no_grad():
        plain(*xs)
        nr.set_region(fast, False)
        fast(*xs)
        fast.train()(*xs)
        nr.set_region(fast, True)
        nets.set_fast(fast, False)
        fast(*xs)  # the plain build never takes it
        fast.eval()(*xs)
        nets.set_fast(fast, True)
    assert region_calls == []
    with torch.no_grad():
        fast(*xs)  # eval, no_grad
    fast(*xs)  # eval, autograd on
    fast.train()(*xs)  # training: dropout on, autograd on
    assert region_calls == ["voc-fcn16s"] * 3


def _brute_interval(program, geo, h: int) -> dict[str, tuple[int, int]]:
    """Rows of every blob that depend on some image row, by walking each position's window (sets)."""
    dep = {"data": set(range(h))}
    size = {"data": h}
    for op in program:
        if op.kind in ("conv", "pool"):
            k, s, p = nr._geom(op.module)
            n_out = geo[op.dst][0].n
            src = dep[op.srcs[0]]
            dep[op.dst] = {o for o in range(n_out) if any(o * s - p + t in src for t in range(k))}
            size[op.dst] = n_out
        elif op.kind == "point":
            dep[op.dst], size[op.dst] = dep[op.srcs[0]], size[op.srcs[0]]
        else:
            dep[op.dst] = set().union(*(dep[s] for s in op.srcs))
            size[op.dst] = size[op.srcs[0]]
    return {k: (min(v), max(v) + 1) for k, v in dep.items() if v}


def _programs():
    vgg = nets.build("voc-fcn8s", width=WIDTH)
    from nets.vgg_fcn import vgg16_region_program
    yield "voc-fcn8s", vgg, vgg16_region_program(vgg, vgg.trunk_names)
    alex = nets.build("voc-fcn-alexnet", width=WIDTH)
    yield "voc-fcn-alexnet", alex, alex.region_program()
    goog = nets.build("voc-fcn-googlenet", width=WIDTH)
    yield "voc-fcn-googlenet", goog, goog.region_program()


@pytest.mark.parametrize("h", [1, 2, 7, 32, 33, 500])
def test_dependent_rectangles_match_a_brute_force_walk(h):
    for name, _, program in _programs():
        geo = nr.blob_geometry(program, {"data": (h, 5)})
        brute = _brute_interval(program, geo, h)
        for op in program:
            ay = geo[op.dst][0]
            assert (ay.a, ay.b) == brute[op.dst], (name, h, op.dst)
            assert 0 <= ay.a < ay.b <= ay.n and len(ay.cls) == ay.n
        # the first convolution's pad makes the maps larger than the dependent part
        first = geo[program[0].dst][0]
        assert first.n > first.b - first.a


def test_background_is_what_the_plain_layers_compute_with_any_image():
    """Outside the dependent rectangle, conv3_1's plain output is the same for two different images
    and equals the region path's background there (the constants deep in the padding and the
    frames along the edges); inside, the two images differ."""
    net, plain = region_pair("voc-fcn8s", seed=5)
    from nets.vgg_fcn import vgg16_region_program
    program = vgg16_region_program(net, net.trunk_names)
    h, w = 23, 40
    plan = nr._plan(net, program, {"data": (h, w)}, {"data": 3})
    outs = []
    for seed in (1, 2):
        x = inputs(plain, h, w, n=1, seed=seed)[0]
        with torch.no_grad():
            for name in plain.trunk_names[:7]:
                m = getattr(plain, name)
                x = torch.relu(m(x)) if isinstance(m, torch.nn.Conv2d) else m(x)
        outs.append(x[0])
    ay, ax = plan.geo["conv3_1"]
    outside = torch.ones(ay.n, ax.n, dtype=torch.bool)
    outside[ay.a:ay.b, ax.a:ax.b] = False
    assert outside.any() and outs[0].shape[1:] == (ay.n, ax.n)
    assert torch.equal(outs[0][:, outside], outs[1][:, outside])
    assert not torch.equal(outs[0][:, ~outside], outs[1][:, ~outside])
    v = plan.vals["conv3_1"]
    cy, cx = torch.tensor(ay.cls), torch.tensor(ax.cls)
    bg = v[cy[:, None], cx[None, :]].permute(2, 0, 1)  # C x H x W
    assert rel(bg[:, outside].float(), outs[0][:, outside]) <= TOL
    assert not bg[:, outside].isnan().any()
    # not a single constant: the edge frames differ from the deep-padding constant
    assert len({tuple(bg[:, i, j].tolist()) for i, j in outside.nonzero().tolist()}) > 1


def test_weight_changes_reach_the_region_caches():
    fast, plain = region_pair("voc-fcn8s")
    xs = inputs(fast, 30, 26)
    with torch.inference_mode():
        assert_same_scores(fast(*xs), plain(*xs))
    other = randomize_(nets.build("voc-fcn8s", width=WIDTH), seed=9)
    for net in (fast, plain):
        net.load_state_dict(other.state_dict())
    with torch.inference_mode():
        assert_same_scores(fast(*xs), plain(*xs))
    gen = torch.Generator().manual_seed(4)
    for net in (fast, plain):
        gen.manual_seed(4)
        net.conv1_2.weight.data.copy_(torch.randn(net.conv1_2.weight.shape, generator=gen) * 0.05)
        net.conv2_1.bias.data.fill_(0.7)  # biases alone change the background too
    with torch.inference_mode():
        assert_same_scores(fast(*xs), plain(*xs))


def test_region_flops():
    net = nets.build("voc-fcn8s")
    from nets.vgg_fcn import vgg16_region_program
    program = vgg16_region_program(net, net.trunk_names)
    full = nr.region_flops(program, {"data": (500, 500)}, region=False)
    part = nr.region_flops(program, {"data": (500, 500)})
    assert 360e9 < full < 364e9  # the trunk's nominal FLOPs at 500 x 500
    assert 0.6 * full < part < 0.75 * full


def test_batch_and_double():
    fast, plain = region_pair("voc-fcn-alexnet")
    fast.double(), plain.double()
    xs = [x.double() for x in inputs(fast, 19, 44, n=3)]
    with torch.inference_mode():
        a, b = heads(fast(*xs)), heads(plain(*xs))
    for k in a:
        assert rel(a[k], b[k]) <= 1e-10


def test_default_and_opt_outs(region_calls, monkeypatch):
    xs = [torch.rand(1, 3, 12, 9)]
    with torch.inference_mode():
        nets.build("voc-fcn32s", width=WIDTH).eval()(*xs)
        assert region_calls == ["voc-fcn32s"]  # the default
        nets.build("voc-fcn32s", width=WIDTH, region=False).eval()(*xs)
        nets.build("voc-fcn32s", width=WIDTH, fast=False).eval()(*xs)
        monkeypatch.setenv("FCN_REGION", "0")
        nets.build("voc-fcn32s", width=WIDTH).eval()(*xs)
    assert region_calls == ["voc-fcn32s"]


def test_forward_hooks_see_whole_blobs(region_calls):
    fast, plain = region_pair("voc-fcn8s")
    seen = []
    handles = [net.pool2.register_forward_hook(lambda m, i, o: seen.append(o.clone())) for net in (fast, plain)]
    xs = inputs(fast, 20, 30)
    with torch.inference_mode():
        assert_same_scores(fast(*xs), plain(*xs))
    for h in handles:
        h.remove()
    # the default path ran (run_region declined): the hook saw the whole blob, as in the plain build
    assert region_calls == ["voc-fcn8s"] and len(seen) == 2
    assert seen[0].shape == seen[1].shape and rel(seen[0], seen[1]) <= TOL
    with torch.inference_mode():
        assert_same_scores(fast(*xs), plain(*xs))
    assert region_calls == ["voc-fcn8s"] * 2


def test_training_and_its_test_passes_run_the_region_forward(tmp_path, region_calls):
    """Training's test passes (eval mode under no_grad) and its training forwards (TRAIN phase,
    gradients on) take the region forward."""
    from reproduce.training.train import train
    from train_support import tiny_experiment, voc_samples

    exp = tiny_experiment(base_lr=1e-7, max_iter=4, test_interval=2)
    val = voc_samples(32)
    train(exp, data_root=None, init=None, out_dir=tmp_path, width=WIDTH, train_dataset=voc_samples(32),
          val_dataset=val, progress=False, display=1, keep_snapshots=0)
    with open(tmp_path / "test_log.csv") as f:
        passes = sum(1 for _ in f) - 1
    assert passes >= 2
    assert region_calls == [exp.name] * (passes * len(val) + exp.max_iter * exp.iter_size)


# --------------------------------------------------------------------------------------------
# inference: partial convolutions with their edge terms, their outputs in nets.workspace blocks
# --------------------------------------------------------------------------------------------
WORKSPACE_NETS = ["voc-fcn8s", "voc-fcn-alexnet", "voc-fcn-googlenet", "nyud-fcn32s-color-hha"]


@pytest.fixture
def every_map_in_the_workspace(monkeypatch):
    """Every partial convolution's output through nets.workspace (the tests' maps are small)."""
    import nets.workspace as ws
    monkeypatch.setattr(ws, "MIN_BYTES", 0)
    ws.clear()
    yield ws
    ws.clear()


@pytest.fixture
def edge_convs(monkeypatch) -> list[bool]:
    """Records whether each partial convolution took the edge-term path; a fallback (materializing
    the input) is allowed only where the geometry asks for it: no symmetric padding of the core
    gives R' (AlexNet's conv1 and some small GoogLeNet maps), or fc6 (never packed by oneDNN)."""
    taken: list[bool] = []
    real = nr._edge_conv

    def spy(op, plan, src, oy, ox, k, s, p, blocks):
        y = real(op, plan, src, oy, ox, k, s, p, blocks)
        if y is None:
            ceil_modes = [nr._main_call(a, d, op.kind, k, s, p)[1] for a, d in ((src.ay, oy), (src.ax, ox))]
            assert op.fc or not all(ceil_modes), op.dst
        taken.append(y is not None)
        return y

    monkeypatch.setattr(nr, "_edge_conv", spy)
    return taken


@pytest.mark.parametrize("name", WORKSPACE_NETS)
def test_region_forward_through_the_workspace(name, every_map_in_the_workspace, edge_convs, region_calls):
    """Calls at alternating sizes and images reuse the blocks: each output still the plain build's,
    and an earlier call's outputs untouched by the later calls."""
    ws = every_map_in_the_workspace
    fast, plain = region_pair(name, seed=7)
    kept = []
    for i, (h, w) in enumerate([(37, 53), (64, 64), (37, 53), (2, 31), (64, 64)]):
        xs = inputs(fast, h, w, seed=i)
        with torch.inference_mode() if i % 2 else torch.no_grad():
            out, ref = heads(fast(*xs)), heads(plain(*xs))
        assert_same_scores(out, ref)
        kept.append((out, {k: v.clone() for k, v in out.items()}))
        assert ws.held_bytes() > 0  # the blocks came back
    for out, copy in kept:
        assert all(torch.equal(out[k], copy[k]) for k in out)
    assert sum(edge_convs) > 0.75 * len(edge_convs)
    streams = len(getattr(fast, "streams", ())) or 1
    assert len(region_calls) == 5 * streams


def test_inference_then_test_pass_then_training_on_one_net(every_map_in_the_workspace):
    """Blocks and edge terms made under inference_mode serve a no_grad forward, and a training
    step on the same net afterwards is the plain build's."""
    fast, plain = region_pair("voc-fcn16s", seed=2)
    xs = inputs(fast, 41, 29, n=1)
    with torch.inference_mode():
        assert_same_scores(fast(*xs), plain(*xs))
    with torch.no_grad():
        assert_same_scores(fast(*xs), plain(*xs))
    for net in (fast, plain):
        net.zero_grad()
        heads(net(*xs))["score"].square().mean().backward()
    for (n, a), (_, b) in zip(fast.named_parameters(), plain.named_parameters()):
        if b.grad is not None and b.grad.abs().max() > 0:
            assert rel(a.grad, b.grad) <= GRAD_TOL, n


def test_a_forward_that_fails_midway_leaves_the_next_one_right(every_map_in_the_workspace, monkeypatch):
    """Blocks taken by a forward that raised are never given back (they are simply freed): the
    next forward is still the plain build's."""
    fast, plain = region_pair("voc-fcn8s", seed=6)
    xs = inputs(fast, 40, 50, n=1)
    real = nr._framed_op

    def broken(op, *args):
        if op.dst == "pool2":
            raise RuntimeError("injected")
        return real(op, *args)

    monkeypatch.setattr(nr, "_framed_op", broken)
    with torch.inference_mode(), pytest.raises(RuntimeError, match="injected"):
        fast(*xs)
    monkeypatch.setattr(nr, "_framed_op", real)
    with torch.inference_mode():
        assert_same_scores(fast(*xs), plain(*xs))
        assert_same_scores(fast(*xs), plain(*xs))


def test_threads_running_one_net_at_once(every_map_in_the_workspace):
    import threading
    fast, plain = region_pair("voc-fcn8s", seed=4)
    xs = [inputs(fast, 45, 38, n=1, seed=s) for s in range(4)]
    with torch.inference_mode():
        refs = [plain(*x) for x in xs]
        fast(*xs[0])  # the plan and its edge terms exist before the threads start
    outs: dict[int, torch.Tensor] = {}
    errors = []

    def work(i):
        try:
            with torch.inference_mode():
                for _ in range(3):
                    outs[i] = fast(*xs[i])
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for i in range(4):
        assert_same_scores(outs[i], refs[i])


# --------------------------------------------------------------------------------------------
# training: the region forward under autograd (backgrounds computed differentiably each call)
# --------------------------------------------------------------------------------------------
GRAD_TOL = 1e-4  # gradients relative to their max, as tests/test_oracle_caffe.py holds them
TRAIN_SIZES = [(1, 1), (7, 13), (33, 1), (37, 53)]
TRAIN_LARGE = ["voc-fcn8s", "voc-fcn-alexnet", "nyud-fcn32s-color-hha", "siftflow-fcn8s"]


def _train_pair(name: str, seed: int = 0):
    fast, plain = region_pair(name, seed)
    return fast.train(), plain.train()


def _grad_step(net, xs, seed: int = 7):
    """TRAIN-phase forward (dropout seeded), a random linear loss of every head, backward:
    (scores, input gradients, parameter gradients)."""
    net.zero_grad(set_to_none=True)
    xs = [x.clone().requires_grad_() for x in xs]
    torch.manual_seed(seed)
    outs = heads(net(*xs))
    gen = torch.Generator().manual_seed(11)
    sum((o * torch.randn(o.shape, generator=gen)).sum() for o in outs.values()).backward()
    return outs, [x.grad for x in xs], {n: p.grad for n, p in net.named_parameters() if p.grad is not None}


def assert_same_training_step(fast, plain, xs) -> float:
    """Scores (dropout on) within TOL, input and every parameter gradient within GRAD_TOL of the
    plain build's; returns the worst gradient error."""
    out_a, xg_a, g_a = _grad_step(fast, xs)
    out_b, xg_b, g_b = _grad_step(plain, xs)
    assert_same_scores(out_a, out_b)  # same dropout masks too
    worst = 0.0
    for a, b in zip(xg_a, xg_b):
        assert b.abs().max() > 0 and rel(a, b) <= GRAD_TOL, rel(a, b)
        worst = max(worst, rel(a, b))
    trainable = {n for n, p in plain.named_parameters() if p.requires_grad}
    assert g_a.keys() == g_b.keys() == trainable
    for n in g_b:
        assert rel(g_a[n], g_b[n]) <= GRAD_TOL, (n, rel(g_a[n], g_b[n]))
        worst = max(worst, rel(g_a[n], g_b[n]))
    return worst


@pytest.mark.parametrize("name", NETS)
def test_region_training_gradients_equal_plain(name, region_calls):
    fast, plain = _train_pair(name)
    for h, w in TRAIN_SIZES:
        assert_same_training_step(fast, plain, inputs(fast, h, w))
    streams = len(getattr(fast, "streams", ())) or 1
    assert len(region_calls) == len(TRAIN_SIZES) * streams  # no silent fallback


@pytest.mark.parametrize("name", TRAIN_LARGE)
def test_region_training_gradients_equal_plain_above_500(name, region_calls):
    fast, plain = _train_pair(name, seed=3)
    assert_same_training_step(fast, plain, inputs(fast, 517, 263, n=1))
    assert region_calls


def test_region_training_draws_the_default_paths_dropout(monkeypatch, region_calls):
    """Dropout sees the default path's blobs (shape, memory layout) from the same RNG state, and
    the RNG ends where the default path leaves it: the same masks, bitwise-resumable training."""
    import torch.nn.functional as F

    fast, _ = _train_pair("voc-fcn8s")
    default = nets.build("voc-fcn8s", width=WIDTH, region=False).train()
    default.load_state_dict(fast.state_dict())
    seen: list[tuple] = []
    real = F.dropout

    def spy(x, *args, **kwargs):
        seen.append((tuple(x.shape), x.stride(), torch.get_rng_state()))
        return real(x, *args, **kwargs)

    monkeypatch.setattr(F, "dropout", spy)
    xs = inputs(fast, 45, 61)
    records, ends, outs = [], [], []
    for net in (fast, default):
        seen.clear()
        torch.manual_seed(5)
        outs.append(net(*xs))
        ends.append(torch.get_rng_state())
        records.append(list(seen))
    assert region_calls == ["voc-fcn8s"]
    assert len(records[0]) == len(records[1]) == 2  # drop6, drop7
    for (sa, ta, ra), (sb, tb, rb) in zip(*records):
        assert sa == sb and ta == tb and torch.equal(ra, rb)
    assert torch.equal(ends[0], ends[1])
    assert_same_scores(outs[0], outs[1])


def test_region_training_with_the_solver_equals_plain(region_calls):
    """CaffeSGD steps: every step's backgrounds come from that step's weights (nothing stale is
    cached in grad mode), so the updates stay the plain build's."""
    from reproduce.training.loss import softmax_with_loss
    from reproduce.training.solver import CaffeSGD

    fast, plain = _train_pair("voc-fcn16s")
    xs = inputs(fast, 50, 41, n=1)
    label = torch.randint(0, 21, (1, 50, 41), generator=torch.Generator().manual_seed(3))
    w0 = {n: p.detach().clone() for n, p in plain.named_parameters()}
    for net in (fast, plain):
        solver = CaffeSGD(net, base_lr=1e-2, momentum=0.9, weight_decay=5e-4)
        for it in range(3):
            solver.zero_grad()
            torch.manual_seed(100 + it)
            softmax_with_loss(net(*xs), label, normalize=True).backward()
            solver.step()
    assert region_calls == ["voc-fcn16s"] * 3
    moved = 0
    for (n, a), (_, b) in zip(fast.named_parameters(), plain.named_parameters()):
        step_a, step_b = a.detach().double() - w0[n].double(), b.detach().double() - w0[n].double()
        if step_b.abs().max() > 0:
            moved += 1
            ulp = torch.finfo(torch.float32).eps * w0[n].abs().max().item()
            assert (step_a - step_b).abs().max().item() <= GRAD_TOL * step_b.abs().max().item() + 2 * ulp, n
    assert moved > 10


def test_region_training_in_double(region_calls):
    fast, plain = _train_pair("voc-fcn-alexnet")
    fast.double(), plain.double()
    xs = [x.double() for x in inputs(fast, 19, 44, n=2)]
    out_a, xg_a, g_a = _grad_step(fast, xs)
    out_b, xg_b, g_b = _grad_step(plain, xs)
    assert region_calls == ["voc-fcn-alexnet"]
    for k in heads(out_b):
        assert rel(heads(out_a)[k], heads(out_b)[k]) <= 1e-10
    for n in g_b:
        assert rel(g_a[n], g_b[n]) <= 1e-9, n
    assert rel(xg_a[0], xg_b[0]) <= 1e-9


def test_region_training_hooks_and_opt_out_fall_back(region_calls, monkeypatch):
    fast, plain = _train_pair("voc-fcn32s")
    xs = inputs(fast, 20, 30)
    handle = fast.conv3_1.register_forward_hook(lambda m, i, o: None)
    assert_same_training_step(fast, plain, xs)  # hooked: the default path
    handle.remove()
    monkeypatch.setenv("FCN_REGION", "0")
    assert_same_training_step(fast, plain, xs)
    assert region_calls == ["voc-fcn32s"]  # run_region was asked once (hooked) and declined
