"""Caffe's `SoftmaxWithLoss` layer (softmax + multinomial logistic loss), forward and backward.

Forward, per non-ignored pixel (n, y, x) with label l:  -log(max(p[n, l, y, x], FLT_MIN)),
where p = softmax over channels computed in float32 as Caffe does (subtract the channel max,
exponentiate, divide by the sum). The per-pixel losses are summed and divided by a normalizer:

* `normalize=False` (every VGG net of the reference): Caffe's legacy `normalize: false`, i.e.
  normalization BATCH_SIZE: divide by the batch size N. With the reference's batch of 1 image
  this is the plain sum over the image's labelled pixels.
* `normalize=True` (voc-fcn-alexnet): normalization VALID: divide by the number of non-ignored
  pixels.

Caffe clamps the normalizer to at least 1, so an image whose pixels are all ignored gives loss 0.

Backward is Caffe's, not autograd's derivative of the clamped forward: d loss / d score =
(p - onehot(l)) / normalizer at labelled pixels and 0 at ignored ones, even where the FLT_MIN
clamp was active (there autograd through `clamp` would give 0).

Precision: everything is float32, like Caffe. Caffe's CPU layer adds the per-pixel losses one
after the other, in N, H, W order, into a float32 accumulator; on CPU the loss value here is that
same sequential float32 sum (numpy's cumulative sum), so it equals Caffe's printed loss, which a
pairwise sum does not at 500 x 500 (measured: 5.0e-4 relative when every pixel has loss ln 21, an
untrained net; 2.9e-5 for voc-fcn8s against live Caffe). On CUDA the value is `torch.sum`, as
Caffe's GPU layer reduces with cuBLAS asum, whose order is unspecified. The gradient does not
depend on the sum.
"""
from __future__ import annotations

import numpy as np
import torch

#: Caffe clamps probabilities to FLT_MIN before the log: a pixel contributes at most -log(FLT_MIN) = 87.34.
FLT_MIN = float(np.finfo(np.float32).tiny)


def _caffe_sum(pixel_loss: torch.Tensor) -> torch.Tensor:
    """Sum of the N x H x W per-pixel losses as Caffe's CPU layer adds them (see the module doc)."""
    if pixel_loss.device.type != "cpu" or pixel_loss.numel() == 0:
        return pixel_loss.sum()
    flat = pixel_loss.detach().reshape(-1).numpy()
    return torch.tensor(np.cumsum(flat, dtype=np.float32)[-1], dtype=torch.float32)


class _CaffeSoftmaxWithLoss(torch.autograd.Function):
    """Forward and backward of Caffe's SoftmaxWithLossLayer for score N x C x H x W, label N x H x W."""

    @staticmethod
    def forward(ctx, score: torch.Tensor, label: torch.Tensor, ignore_label: int, normalize: bool):
        prob = torch.softmax(score.float(), dim=1)
        valid = label != ignore_label
        safe_label = torch.where(valid, label, torch.zeros_like(label)).unsqueeze(1)
        p_true = prob.gather(1, safe_label).squeeze(1)
        pixel_loss = -torch.log(torch.clamp(p_true, min=FLT_MIN))
        total = _caffe_sum(torch.where(valid, pixel_loss, torch.zeros_like(pixel_loss)))
        count = valid.sum()
        if normalize:
            normalizer = torch.clamp(count.to(torch.float32), min=1.0)
        else:
            # a fill on the device (torch.tensor(..., device=cuda) would be a copy that waits for the GPU)
            normalizer = torch.full((), float(max(1, score.shape[0])), dtype=torch.float32, device=score.device)
        ctx.save_for_backward(prob, safe_label, valid, normalizer)
        ctx.score_dtype = score.dtype
        return total / normalizer

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor):
        prob, safe_label, valid, normalizer = ctx.saved_tensors
        grad = prob.clone()
        grad.scatter_add_(1, safe_label, torch.full_like(safe_label, -1, dtype=grad.dtype))
        grad.mul_(valid.unsqueeze(1).to(grad.dtype))
        grad.mul_(grad_output.to(torch.float32) / normalizer)
        return grad.to(ctx.score_dtype), None, None, None


def check_labels(label: torch.Tensor, num_classes: int, ignore_label: int = 255) -> None:
    """ValueError when a label is neither a class index (0 .. num_classes - 1) nor `ignore_label`.
    Reads the values: on a GPU tensor that waits for the GPU, so the CUDA training loop checks the
    CPU copy of the labels and tells softmax_with_loss (labels_checked=True)."""
    bad = (label != ignore_label) & ((label < 0) | (label >= num_classes))
    if bool(bad.any()):
        values = sorted(set(label[bad].unique().tolist()))[:10]
        raise ValueError(f"labels {values} are outside 0..{num_classes - 1} and are not the ignore "
                         f"label {ignore_label}")


def softmax_with_loss(score: torch.Tensor, label: torch.Tensor, *, normalize: bool,
                      ignore_label: int = 255, labels_checked: bool = False) -> torch.Tensor:
    """Caffe `SoftmaxWithLoss` of `score` (N x C x H x W logits) against `label` (N x H x W or
    N x 1 x H x W integer class indices, `ignore_label` = no loss and no gradient).

    Returns a 0-dim float32 tensor: the summed pixel loss divided by N (`normalize=False`, Caffe
    BATCH_SIZE normalization) or by the number of labelled pixels (`normalize=True`, VALID).
    Raises ValueError when shapes disagree or a label is neither a class index nor `ignore_label`
    (Caffe aborts on such labels; `labels_checked=True` skips that check, see check_labels).
    """
    if score.ndim != 4:
        raise ValueError(f"score must be N x C x H x W, got shape {tuple(score.shape)}")
    if label.ndim == 4 and label.shape[1] == 1:
        label = label[:, 0]
    if label.shape != score.shape[:1] + score.shape[2:]:
        raise ValueError(f"label shape {tuple(label.shape)} does not match score {tuple(score.shape)} "
                         "(expected N x H x W)")
    if label.dtype.is_floating_point:
        raise ValueError(f"label must hold integer class indices, got dtype {label.dtype}")
    label = label.long()
    if not labels_checked:  # labels_checked: the caller ran check_labels on them (a CPU copy)
        check_labels(label, score.shape[1], ignore_label)
    return _CaffeSoftmaxWithLoss.apply(score, label, int(ignore_label), bool(normalize))
