"""reproduce.training.solver.CaffeSGD against Caffe's SGDSolver::ApplyUpdate computed by hand (float64)."""
import math

import numpy as np
import pytest
import torch
from torch import nn

import nets
from nets.caffe import DEFAULT_MULTS, Scale, conv, deconv
from reproduce.training.solver import CaffeSGD, caffe_learning_rate


class TinyNet(nn.Module):
    """One blob of each kind: VGG conv (weights 1/1, bias 2/0), AlexNet conv (1/1, 1/1), fixed
    deconvolution and fixed Scale (lr_mult 0)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv_a = conv(2, 3, 3, pad=1)
        self.conv_b = conv(3, 2, 1, mults=DEFAULT_MULTS)
        self.up = deconv(2, 4, 2)
        self.scale = Scale(2, 0.01)

    def forward(self, x):
        return self.up(self.scale(self.conv_b(torch.relu(self.conv_a(x)))))


def test_multipliers_as_caffe_sets_them():
    m = nets.param_multipliers(TinyNet())
    assert m == {"conv_a.weight": (1, 1), "conv_a.bias": (2, 0), "conv_b.weight": (1, 1), "conv_b.bias": (1, 1),
                 "up.weight": (0, 1), "scale.weight": (0, 1)}


def test_update_matches_hand_computed_caffe_update():
    torch.manual_seed(0)
    net = TinyNet()
    base_lr, momentum, wd, iter_size = 0.01, 0.9, 0.0005, 2
    solver = CaffeSGD(net, base_lr=base_lr, momentum=momentum, weight_decay=wd, iter_size=iter_size)
    mults = nets.param_multipliers(net)
    params = dict(net.named_parameters())
    w = {k: p.detach().double().numpy().copy() for k, p in params.items()}
    v = {k: np.zeros_like(a) for k, a in w.items()}
    fixed = {k: p.detach().clone() for k, p in params.items() if mults[k][0] == 0}
    rng = np.random.default_rng(1)
    for step in range(3):
        solver.zero_grad()
        grads = {}
        for k, p in params.items():
            if p.requires_grad:  # the summed gradient of iter_size images, as backward leaves it
                g = rng.standard_normal(p.shape).astype(np.float32)
                p.grad = torch.from_numpy(g.copy())
                grads[k] = g.astype(np.float64)
        assert solver.step() == pytest.approx(base_lr)
        for k in w:
            lr_mult, decay_mult = mults[k]
            if lr_mult == 0:
                continue
            diff = grads[k] / iter_size + wd * decay_mult * w[k]
            v[k] = momentum * v[k] + base_lr * lr_mult * diff
            w[k] = w[k] - v[k]
            np.testing.assert_allclose(params[k].detach().numpy(), w[k], rtol=2e-6, atol=1e-8, err_msg=f"{k} step {step}")
            np.testing.assert_allclose(solver.history[k].numpy(), v[k], rtol=2e-6, atol=1e-9)
    for k, before in fixed.items():
        assert torch.equal(params[k].detach(), before), f"{k} has lr_mult 0 but changed"
        assert not params[k].requires_grad and k not in solver.history
    assert solver.iteration == 3


def test_bias_gets_twice_the_rate_and_no_decay_in_a_real_net():
    net = nets.build("voc-fcn16s", width=1 / 32)
    solver = CaffeSGD(net, base_lr=0.1, momentum=0.99, weight_decay=0.0005)
    before = {k: p.detach().clone() for k, p in net.named_parameters()}
    with torch.no_grad():
        net.conv1_1.weight.mul_(0).add_(1.0)
    solver.zero_grad()
    net.conv1_1.bias.grad = torch.ones_like(net.conv1_1.bias)
    net.conv1_1.weight.grad = torch.zeros_like(net.conv1_1.weight)
    solver.step()
    # weight: gradient 0, decay only: w = 1 - 0.1 * 0.0005 * 1
    assert torch.allclose(net.conv1_1.weight, torch.full_like(net.conv1_1.weight, 1 - 0.1 * 0.0005), rtol=0, atol=1e-7)
    # bias: lr_mult 2, decay_mult 0: b = b0 - 2 * 0.1 * 1
    assert torch.allclose(net.conv1_1.bias, before["conv1_1.bias"] - 0.2, atol=1e-6)
    # fixed bilinear deconvolutions untouched; zero-initialized score layers stay zero (decay of 0 is 0)
    for name in ("upscore2.weight", "upscore16.weight", "score_fr.weight", "score_pool4.bias"):
        assert torch.equal(dict(net.named_parameters())[name], before[name]), name


def test_iter_size_accumulation_of_real_backward_passes():
    """Two images, iter_size 2: the same update as one step on the mean gradient."""
    torch.manual_seed(0)
    net_a, net_b = TinyNet(), TinyNet()
    net_b.load_state_dict(net_a.state_dict())
    xs = [torch.randn(1, 2, 5, 5) for _ in range(2)]
    sa = CaffeSGD(net_a, base_lr=0.05, momentum=0.9, weight_decay=0.001, iter_size=2)
    sa.zero_grad()
    for x in xs:
        net_a(x).square().sum().backward()
    sa.step()
    sb = CaffeSGD(net_b, base_lr=0.05, momentum=0.9, weight_decay=0.001, iter_size=1)
    sb.zero_grad()
    (sum(net_b(x).square().sum() for x in xs) / 2).backward()
    sb.step()
    for (k, a), (_, b) in zip(net_a.named_parameters(), net_b.named_parameters()):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7, msg=k)


def test_same_as_pytorch_sgd_for_a_fixed_rate_without_multipliers():
    """docs/reference.md §6, item 2: with a fixed lr, v <- mu v + lr (g + wd w) equals PyTorch's form."""
    torch.manual_seed(0)
    a = nn.Sequential(conv(2, 3, 3, mults=DEFAULT_MULTS), nn.ReLU(), conv(3, 2, 1, mults=DEFAULT_MULTS))
    b = nn.Sequential(conv(2, 3, 3, mults=DEFAULT_MULTS), nn.ReLU(), conv(3, 2, 1, mults=DEFAULT_MULTS))
    b.load_state_dict(a.state_dict())
    caffe = CaffeSGD(a, base_lr=0.01, momentum=0.99, weight_decay=0.0005)
    torch_sgd = torch.optim.SGD(b.parameters(), lr=0.01, momentum=0.99, weight_decay=0.0005)
    for step in range(5):
        x = torch.randn(1, 2, 6, 6)
        caffe.zero_grad()
        a(x).square().sum().backward()
        caffe.step()
        torch_sgd.zero_grad()
        b(x).square().sum().backward()
        torch_sgd.step()
    for (k, pa), (_, pb) in zip(a.named_parameters(), b.named_parameters()):
        torch.testing.assert_close(pa, pb, rtol=1e-5, atol=1e-7, msg=k)


def test_state_dict_resumes_exactly():
    torch.manual_seed(0)
    xs = [torch.randn(1, 2, 5, 5) for _ in range(4)]

    def run(net, solver, batch):
        for x in batch:
            solver.zero_grad()
            net(x).square().sum().backward()
            solver.step()

    kw = dict(base_lr=0.02, momentum=0.9, weight_decay=0.0005, lr_policy="step", gamma=0.5, stepsize=2)
    full = TinyNet()
    start = {k: v.clone() for k, v in full.state_dict().items()}
    s_full = CaffeSGD(full, **kw)
    run(full, s_full, xs)

    first = TinyNet()
    first.load_state_dict(start)
    s_first = CaffeSGD(first, **kw)
    run(first, s_first, xs[:2])
    second = TinyNet()
    second.load_state_dict(first.state_dict())
    s_second = CaffeSGD(second, **kw)
    s_second.load_state_dict(s_first.state_dict())
    assert s_second.iteration == 2 and s_second.learning_rate() == pytest.approx(0.01)
    run(second, s_second, xs[2:])
    for k, v in full.state_dict().items():
        assert torch.equal(v, second.state_dict()[k]), k


def test_state_dict_of_another_net_is_refused():
    s = CaffeSGD(TinyNet(), base_lr=0.1, momentum=0.9, weight_decay=0)
    other = CaffeSGD(nets.build("voc-fcn32s", width=1 / 32), base_lr=0.1, momentum=0.9, weight_decay=0)
    with pytest.raises(ValueError, match="does not match"):
        s.load_state_dict(other.state_dict())


@pytest.mark.parametrize("policy, kw, it, expected", [
    ("fixed", {}, 12345, 0.01),
    ("step", {"gamma": 0.1, "stepsize": 100}, 99, 0.01),
    ("step", {"gamma": 0.1, "stepsize": 100}, 250, 0.01 * 0.1 ** 2),
    ("exp", {"gamma": 0.99}, 10, 0.01 * 0.99 ** 10),
    ("inv", {"gamma": 1e-4, "power": 0.75}, 1000, 0.01 * (1 + 0.1) ** -0.75),
    ("multistep", {"gamma": 0.5, "stepvalues": (10, 20, 40)}, 9, 0.01),
    ("multistep", {"gamma": 0.5, "stepvalues": (10, 20, 40)}, 20, 0.0025),
    ("multistep", {"gamma": 0.5, "stepvalues": (10, 20, 40)}, 1000, 0.00125),
    ("poly", {"power": 0.9, "max_iter": 1000}, 250, 0.01 * 0.75 ** 0.9),
    ("sigmoid", {"gamma": -0.01, "stepsize": 500}, 700, 0.01 / (1 + math.exp(2.0))),
])
def test_caffe_learning_rate_policies(policy, kw, it, expected):
    assert caffe_learning_rate(policy, it, base_lr=0.01, **kw) == pytest.approx(expected, rel=1e-12)


def test_policy_settings_are_checked():
    with pytest.raises(ValueError, match="unknown lr_policy"):
        CaffeSGD(TinyNet(), base_lr=0.1, momentum=0.9, weight_decay=0, lr_policy="cosine")
    with pytest.raises(ValueError, match="needs stepsize"):
        caffe_learning_rate("step", 3, base_lr=0.1, gamma=0.1)
