"""Fast kernels for the default (Caffe-exact, float32) path of the nets.

Every net is built with them (`nets.build(name)`); `nets.build(name, fast=False)` (or
`set_fast(net, False)`) gives the plain build: NCHW, every layer through its torch.nn module, no
prepacking, no fusion. That is the baseline the fast path is measured (`make bench`) and tested
(tests/test_fast_paths.py) against. Both compute the same function: only the float32 summation
order differs (scores and gradients agree to about 1e-6 relative; the tests hold them to 1e-5),
dropout draws the same masks from the same seed, and parameters, names, shapes, strides and
the state_dict are identical.

What the fast path does on the CPU, and why:

- Activations in channels_last (NHWC): oneDNN's convolutions and PyTorch's pooling are fastest
  there (1.2x on the whole net). Parameters stay contiguous NCHW (other code views them flat).
- Inference (autograd off, e.g. under `torch.inference_mode()`): the trunk convolutions run
  oneDNN with their weights packed once into its blocked layout and the ReLU fused in. Packed
  weights are cached outside the module (a weak dictionary keyed by module, so pickling,
  deepcopy and state_dict are unchanged) and re-packed whenever the weight changes: version
  counter, storage address and a sample of the values (which also catches writes via `.data`).
- fc6 / fc7 (the convolutionalized fully connected layers: 7x7 and 1x1 kernels on a map of a
  few hundred pixels) as matrix products on the weight's own memory, forward and backward: each
  product runs as oneDNN's 1x1 convolution with the big matrix (the 411 MB fc6 weight or its
  gradient) as the activation, which oneDNN reads in place. As a plain convolution, oneDNN
  reorders the whole weight on every call and runs fc6 at half that speed; packing it once
  would cost 411 MB of resident memory.
- Fixed bilinear deconvolutions whose weight is exactly diagonal (as the reference fills every
  one of them) run as depthwise (grouped) transposed convolutions: C kernels instead of C^2, of
  which all but C are zero. A weight with any non-zero off-diagonal entry, or one that is being
  learned (requires_grad in a grad-enabled forward), runs the dense deconvolution.

On other devices the layers run as in the plain build. On CUDA the nets switch TF32 off for
convolutions and matmuls (`exact_cuda_math`), since TF32 moves results far beyond 1e-5. Under
torch.compile and autocast (the opt-in bf16 mode, reproduce/evaluation/bf16.py) the plain layers run too.
"""
from __future__ import annotations

import weakref
from typing import Any, Callable

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["set_fast", "is_fast", "entry_layout", "conv_relu", "fc_conv", "diagonal_deconv_weight",
           "exact_cuda_math", "clear_caches"]


# --------------------------------------------------------------------------------------------
# switching
# --------------------------------------------------------------------------------------------
def set_fast(net: nn.Module, enabled: bool) -> nn.Module:
    """Turn the fast kernels on or off for `net` and every submodule that has them; returns `net`."""
    for module in net.modules():
        if hasattr(module, "fast"):
            module.fast = bool(enabled)
    return net


def is_fast(module: nn.Module) -> bool:
    """Whether `module` uses the fast kernels (modules without the switch are plain)."""
    return bool(getattr(module, "fast", False))


def _tracing() -> bool:
    """True under torch.compile / FX tracing, which should see the plain modules."""
    compiler = getattr(torch, "compiler", None)
    return bool(compiler is not None and compiler.is_compiling())


def exact_cuda_math(x: torch.Tensor) -> None:
    """Keep CUDA convolutions and matmuls in full float32 (TF32 off), as Caffe computes.

    Process-wide and sticky, so that the backward pass (run after the forward returns) is exact
    too. A no-op for CPU tensors. The opt-in bf16 mode (reproduce/evaluation/bf16.py) runs in bfloat16.
    """
    if x.is_cuda:
        if torch.backends.cudnn.allow_tf32:
            torch.backends.cudnn.allow_tf32 = False
        if torch.backends.cuda.matmul.allow_tf32:
            torch.backends.cuda.matmul.allow_tf32 = False


def entry_layout(x: torch.Tensor, fast: bool) -> torch.Tensor:
    """The trunk's input in the layout its convolutions are fastest in (channels_last on CPU)."""
    if fast and x.dim() == 4 and x.device.type == "cpu" and not _tracing():
        return x.contiguous(memory_format=torch.channels_last)
    return x


# --------------------------------------------------------------------------------------------
# weight caches (packed convolution weights, depthwise deconvolution weights)
# --------------------------------------------------------------------------------------------
#: module -> (weight key, derived tensor). Weak keys: a deleted module drops its entry; the
#: modules themselves carry no new attributes (pickling, deepcopy and state_dict are unchanged).
_CACHE: "weakref.WeakKeyDictionary[nn.Module, tuple[tuple, Any]]" = weakref.WeakKeyDictionary()


def clear_caches() -> None:
    """Drop every packed / derived weight (they are rebuilt on the next forward)."""
    _CACHE.clear()


def _fingerprint(w: torch.Tensor) -> float:
    """A cheap sample of the weight's values (about 1,000 of them).

    The version counter misses writes made through `.data`; a reload of the weights changes
    this sample, so a stale derived weight is not used after e.g. `layer.weight.data.copy_(...)`.
    """
    flat = w.detach().reshape(-1)
    return float(flat[:: max(1, flat.numel() // 1021)].double().sum())


def _version(w: torch.Tensor) -> int | None:
    try:
        return w._version
    except RuntimeError:  # an inference tensor has no version counter; the fingerprint still applies
        return None


def _weight_key(w: torch.Tensor) -> tuple:
    return (_version(w), w.data_ptr(), w.dtype, w.device, tuple(w.shape), tuple(w.stride()), _fingerprint(w))


def _cached(module: nn.Module, make: Callable[[torch.Tensor], Any]) -> Any:
    """`make(module.weight)`, computed once per weight value and kept until the weight changes."""
    w = module.weight
    key = _weight_key(w)
    hit = _CACHE.get(module)
    if hit is not None and hit[0][0]() is w and hit[0][1] == key:
        return hit[1]
    # Built outside inference mode even when called inside it: an inference tensor could not be
    # used by a later grad-mode forward (the fixed deconvolutions' depthwise weight is saved for
    # backward there), and a normal tensor serves inference mode just as well.
    with torch.inference_mode(False), torch.no_grad():
        value = make(w.detach())
    _CACHE[module] = ((weakref.ref(w), key), value)
    return value


# --------------------------------------------------------------------------------------------
# convolution + ReLU
# --------------------------------------------------------------------------------------------
def _needs_grad(*tensors: torch.Tensor | None) -> bool:
    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)


def _onednn_ok(x: torch.Tensor, layer: nn.Conv2d) -> bool:
    """Whether the packed oneDNN convolution can run this call exactly as `layer` would."""
    return (x.device.type == "cpu" and x.dtype == torch.float32 and x.dim() == 4 and x.layout == torch.strided
            and layer.weight.dtype == torch.float32 and layer.weight.device.type == "cpu"
            and layer.padding_mode == "zeros" and isinstance(layer.padding, tuple)
            and torch.backends.mkldnn.is_available() and torch.backends.mkldnn.enabled
            and hasattr(torch.ops.mkldnn, "_convolution_pointwise")
            and not torch.is_autocast_enabled("cpu"))


def _packed_conv_relu(layer: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    args = (list(layer.padding), list(layer.stride), list(layer.dilation), layer.groups)
    packed = _cached(layer, lambda w: torch.ops.mkldnn._reorder_convolution_weight(w, *args, list(x.shape)))
    return torch.ops.mkldnn._convolution_pointwise(x, packed, layer.bias, *args, "relu", [], "")


def conv_relu(layer: nn.Conv2d, x: torch.Tensor, fast: bool, *, fc: bool = False) -> torch.Tensor:
    """`relu(layer(x))` (the ReLU in place, as Caffe's), with the fast kernels when `fast`.

    `fc` marks fc6 / fc7, the convolutionalized fully connected layers (see `fc_conv`).
    """
    if fast and x.device.type == "cpu" and not _tracing():
        if fc:
            # NCHW like the plain build's fc6 / fc7 output: Dropout draws its mask in memory order,
            # so the same seed gives the same mask as the plain build only in the same layout.
            y = fc_conv(layer, x) if _gemm_ok(layer, x) else layer(x).contiguous()
            return F.relu(y, inplace=True)
        if not _needs_grad(x, layer.weight, layer.bias) and _onednn_ok(x, layer):
            return _packed_conv_relu(layer, x)
    return F.relu(layer(x), inplace=True)


# --------------------------------------------------------------------------------------------
# fc6 / fc7 as matrix products on the weight's own memory
# --------------------------------------------------------------------------------------------
def _gemm_ok(layer: nn.Conv2d, x: torch.Tensor) -> bool:
    return (layer.groups == 1 and tuple(layer.stride) == (1, 1) and tuple(layer.dilation) == (1, 1)
            and layer.padding_mode == "zeros" and tuple(layer.padding) == (0, 0) and x.dim() == 4
            and x.dtype == layer.weight.dtype and x.dtype in (torch.float32, torch.float64)
            and x.device == layer.weight.device and layer.weight.is_contiguous()
            and not torch.is_autocast_enabled(x.device.type))


def _onednn_matmul_ok(t: torch.Tensor) -> bool:
    return (t.device.type == "cpu" and t.dtype == torch.float32 and torch.backends.mkldnn.is_available()
            and torch.backends.mkldnn.enabled)


def _mm_nt(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """a @ b.T for row-major a (P x C) and b (M x C): P x M.

    On the CPU this runs as oneDNN's 1x1 convolution with `a` as a channels_last activation
    (P pixels of C channels, read in place, no reorder) and `b` as the (small) weight. For fc6
    that is about twice the speed of MKL's sgemm on the same product on the development
    machine's AMD CPU, and no 411 MB weight reorder (the big matrix is the activation).
    """
    if not _onednn_matmul_ok(a):
        return a @ b.t()
    p, c = a.shape
    a = a.contiguous()
    # 1 x C x 1 x P with the canonical channels_last strides (what oneDNN recognizes as NHWC).
    act = torch.as_strided(a, (1, c, 1, p), (p * c, 1, p * c, c))
    out = F.conv2d(act, b.reshape(b.shape[0], c, 1, 1))  # 1 x M x 1 x P
    return out[0, :, 0, :].t()


def _mm_nn(c: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
    """c @ a for row-major c (M x O) and a (O x K): M x K.

    On the CPU: oneDNN's 1x1 convolution of `a` read in place as an NCHW activation (O channels,
    K pixels) with `c` (small) as its weight.
    """
    if not _onednn_matmul_ok(a):
        return c @ a
    o, k = a.shape
    out = F.conv2d(a.view(1, o, 1, k), c.reshape(c.shape[0], o, 1, 1))  # 1 x M x 1 x K
    return out[0, :, 0, :]


def _columns(x: torch.Tensor, kh: int, kw: int) -> torch.Tensor:
    """N x (C kh kw) x L patches of `x` in the weight's (C, kh, kw) order (L output pixels)."""
    if kh == 1 and kw == 1:
        return x.reshape(x.shape[0], x.shape[1], -1)
    return F.unfold(x, (kh, kw))


def _gemm_conv_forward(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """conv2d(x, weight, bias) for a stride-1, unpadded, ungrouped convolution: N x O x oh x ow, NCHW."""
    n, _, h, w = x.shape
    o, _, kh, kw = weight.shape
    oh, ow = h - kh + 1, w - kw + 1
    if oh < 1 or ow < 1:
        raise RuntimeError(f"input {h}x{w} is smaller than the {kh}x{kw} kernel")
    lpix = oh * ow
    sn, sc, sh, sw = x.stride()
    # (N L) x K patches in the weight's (C, kh, kw) order, gathered straight from x in one copy
    # (25 MB for fc6 at 500x500; unfold and then transposing its output took twice the time)
    windows = x.as_strided((n, oh, ow, x.shape[1], kh, kw), (sn, sh, sw, sc, sh, sw), x.storage_offset())
    patches = windows.reshape(n * lpix, -1)
    y = _mm_nt(weight.reshape(o, -1), patches).reshape(o, n, lpix).transpose(0, 1)  # N x O x L
    # Written into a fresh tensor (not a view of an intermediate), so that it may be ReLU'd in place.
    out = torch.empty((n, o, oh, ow), dtype=x.dtype, device=x.device)
    if bias is None:
        out.view(n, o, lpix).copy_(y)
    else:
        torch.add(y, bias.view(1, o, 1), out=out.view(n, o, lpix))
    return out


class _GemmConv(torch.autograd.Function):
    """conv2d(x, weight, bias) for a stride-1, unpadded, ungrouped convolution, as matrix products."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        ctx.save_for_backward(x, weight)
        ctx.has_bias = bias is not None
        return _gemm_conv_forward(x, weight, bias)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: torch.Tensor):
        x, weight = ctx.saved_tensors
        n, c, h, w = x.shape
        o, _, kh, kw = weight.shape
        g = grad.reshape(n, o, -1)                     # N x O x L
        lpix = g.shape[2]
        w2 = weight.reshape(o, -1)                     # O x K, the weight's own memory
        gx = gw = gb = None
        if ctx.needs_input_grad[0]:
            gt = g.transpose(1, 2).reshape(n * lpix, o)  # (N L) x O, a copy (small)
            gcols = _mm_nn(gt, w2).reshape(n, lpix, -1).transpose(1, 2)  # N x K x L
            gx = gcols.reshape(n, c, h, w) if kh == kw == 1 else F.fold(gcols.contiguous(), (h, w), (kh, kw))
        if ctx.needs_input_grad[1]:
            cols = _columns(x, kh, kw)                 # N x K x L
            gflat = g.transpose(0, 1).reshape(o, n * lpix)                 # O x (N L)
            cflat = cols.transpose(0, 1).reshape(cols.shape[1], n * lpix)  # K x (N L)
            gw = _mm_nt(gflat.contiguous(), cflat.contiguous()).reshape(weight.shape)
        if ctx.has_bias and ctx.needs_input_grad[2]:
            gb = g.sum((0, 2))
        return gx, gw, gb


def fc_conv(layer: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    """`layer(x)` for fc6 / fc7 as matrix products on the weight's memory (autograd-aware), NCHW.

    The weight (O x C x kh x kw, contiguous) is read in place as an O x (C kh kw) matrix, the
    input unfolded into its (C kh kw) x L patches (25 MB for fc6 at 500x500, against 411 MB for
    the weight): forward, input gradient and weight gradient are one product each.
    """
    if _needs_grad(x, layer.weight, layer.bias):
        return _GemmConv.apply(x, layer.weight, layer.bias)
    return _gemm_conv_forward(x, layer.weight, layer.bias)


# --------------------------------------------------------------------------------------------
# diagonal deconvolutions
# --------------------------------------------------------------------------------------------
def _depthwise_or_none(w: torch.Tensor) -> torch.Tensor | None:
    """(C, 1, k, k) diagonal kernels of a (C, C, k, k) weight, or None if any off-diagonal is non-zero."""
    c = w.shape[0]
    idx = torch.arange(c, device=w.device)
    diag = w[idx, idx]  # C x k x k (a copy)
    # Exact test, no large temporary: the weight has as many non-zeros as its diagonal has.
    if int(torch.count_nonzero(w)) != int(torch.count_nonzero(diag)):
        return None
    return diag.unsqueeze(1).contiguous()


def diagonal_deconv_weight(layer: nn.ConvTranspose2d) -> torch.Tensor | None:
    """The depthwise (C, 1, k, k) form of `layer`'s weight if it is exactly diagonal, else None.

    Checked once per weight value (cached): a learned or edited non-diagonal weight is detected.
    """
    w = layer.weight
    if (layer.groups != 1 or w.dim() != 4 or w.shape[0] != w.shape[1] or w.shape[0] < 2
            or w.device.type == "meta" or w.is_sparse):
        return None
    return _cached(layer, _depthwise_or_none)


def deconv_forward(layer: nn.ConvTranspose2d, x: torch.Tensor, output_size: list[int] | None) -> torch.Tensor | None:
    """Depthwise transposed convolution for a diagonal `layer`, or None when the dense one must run."""
    if output_size is not None or layer.padding_mode != "zeros" or x.device.type != "cpu" or _tracing():
        return None
    if torch.is_grad_enabled() and layer.weight.requires_grad:
        return None  # a learned deconvolution needs the full weight gradient
    dw = diagonal_deconv_weight(layer)
    if dw is None:
        return None
    if dw.dtype != x.dtype and not torch.is_autocast_enabled(x.device.type):
        return None
    if x.dim() == 4:
        x = x.contiguous(memory_format=torch.channels_last)  # oneDNN's depthwise kernel is NHWC (4x faster)
    return F.conv_transpose2d(x, dw, layer.bias, layer.stride, layer.padding, layer.output_padding,
                              layer.in_channels, layer.dilation)
