"""reproduce.training.loss.softmax_with_loss against Caffe's SoftmaxWithLoss written out in float64 numpy."""
import numpy as np
import pytest
import torch

from reproduce.training.loss import FLT_MIN, softmax_with_loss


def caffe_reference(score: np.ndarray, label: np.ndarray, normalize: bool, ignore: int = 255):
    """Loss and d loss / d score of SoftmaxWithLoss, straight from its definition (float64)."""
    s = score.astype(np.float64)
    p = np.exp(s - s.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    n, c, h, w = s.shape
    loss, grad, valid = 0.0, p.copy(), 0
    for i in range(n):
        for y in range(h):
            for x in range(w):
                lab = label[i, y, x]
                if lab == ignore:
                    grad[i, :, y, x] = 0
                    continue
                loss -= np.log(max(p[i, lab, y, x], FLT_MIN))
                grad[i, lab, y, x] -= 1
                valid += 1
    normalizer = max(1.0, float(valid) if normalize else float(n))
    return loss / normalizer, grad / normalizer


@pytest.fixture
def batch():
    """Batch 2, 5 classes, 6 x 7 pixels, some labels ignored (255), float32 logits."""
    rng = np.random.default_rng(0)
    score = (rng.standard_normal((2, 5, 6, 7)) * 3).astype(np.float32)
    label = rng.integers(0, 5, size=(2, 6, 7)).astype(np.int64)
    label[0, 0, :4] = 255
    label[1, 2:5, 3] = 255
    return score, label


@pytest.mark.parametrize("normalize", [False, True])
def test_loss_and_gradient_match_the_definition(batch, normalize):
    score, label = batch
    s = torch.from_numpy(score).requires_grad_()
    loss = softmax_with_loss(s, torch.from_numpy(label), normalize=normalize)
    loss.backward()
    ref_loss, ref_grad = caffe_reference(score, label, normalize)
    assert loss.dtype == torch.float32 and loss.ndim == 0
    assert loss.item() == pytest.approx(ref_loss, rel=1e-6)
    np.testing.assert_allclose(s.grad.numpy(), ref_grad, rtol=1e-5, atol=1e-7)


def test_normalization_divides_by_batch_or_by_labelled_pixels(batch):
    score, label = batch
    s, y = torch.from_numpy(score), torch.from_numpy(label)
    summed = torch.nn.functional.cross_entropy(s.double(), y, ignore_index=255, reduction="sum").item()
    valid = int((label != 255).sum())
    assert softmax_with_loss(s, y, normalize=False).item() == pytest.approx(summed / 2, rel=1e-6)
    assert softmax_with_loss(s, y, normalize=True).item() == pytest.approx(summed / valid, rel=1e-6)
    # batch 1, normalize false (every VGG net): the plain sum over the image's labelled pixels
    one = softmax_with_loss(s[:1], y[:1], normalize=False).item()
    summed_one = torch.nn.functional.cross_entropy(s[:1].double(), y[:1], ignore_index=255, reduction="sum").item()
    assert one == pytest.approx(summed_one, rel=1e-6)


def test_ignored_pixels_give_no_loss_and_no_gradient(batch):
    score, label = batch
    s = torch.from_numpy(score).requires_grad_()
    y = torch.from_numpy(label)
    softmax_with_loss(s, y, normalize=False).backward()
    ignored = (y == 255).unsqueeze(1).expand_as(s)
    assert s.grad[ignored].abs().max().item() == 0.0
    # changing the scores at ignored pixels changes nothing
    s2 = torch.from_numpy(score).clone()
    s2[ignored] = 1000.0
    assert softmax_with_loss(s2, y, normalize=False).item() == softmax_with_loss(torch.from_numpy(score), y,
                                                                                 normalize=False).item()


def test_all_ignored_gives_zero_loss_with_caffes_normalizer_floor():
    s = torch.randn(1, 3, 4, 4, requires_grad=True)
    y = torch.full((1, 4, 4), 255)
    for normalize in (False, True):
        loss = softmax_with_loss(s, y, normalize=normalize)
        loss.backward()
        assert loss.item() == 0.0 and s.grad.abs().max().item() == 0.0
        s.grad = None


def test_flt_min_clamp_and_caffe_gradient_where_it_is_active():
    # the true class is 200 below the others: p underflows to 0 in float32, Caffe takes -log(FLT_MIN)
    s = torch.tensor([[[[0.0]], [[200.0]]]], requires_grad=True)  # 1 x 2 x 1 x 1
    y = torch.tensor([[[0]]])
    loss = softmax_with_loss(s, y, normalize=False)
    loss.backward()
    assert loss.item() == pytest.approx(-np.log(FLT_MIN), rel=1e-6)  # 87.3365
    assert s.grad[0, :, 0, 0].tolist() == pytest.approx([-1.0, 1.0])  # p - onehot, not 0


def test_label_of_shape_n1hw_is_accepted(batch):
    score, label = batch
    s, y = torch.from_numpy(score), torch.from_numpy(label)
    assert softmax_with_loss(s, y[:, None], normalize=False).item() == softmax_with_loss(s, y, normalize=False).item()


@pytest.mark.parametrize("bad", [5, 7, -1])
def test_out_of_range_labels_are_refused(batch, bad):
    score, label = batch
    label = label.copy()
    label[1, 1, 1] = bad
    with pytest.raises(ValueError, match=str(bad)):
        softmax_with_loss(torch.from_numpy(score), torch.from_numpy(label), normalize=False)


def test_shape_mismatch_is_refused(batch):
    score, label = batch
    with pytest.raises(ValueError, match="does not match"):
        softmax_with_loss(torch.from_numpy(score), torch.from_numpy(label[:, :5]), normalize=False)


def test_loss_value_is_caffes_sequential_float32_sum():
    """Caffe's CPU layer accumulates pixel losses one by one in float32 (N, H, W order)."""
    import numpy as np
    import torch

    from reproduce.training.loss import softmax_with_loss

    score = torch.zeros(1, 21, 500, 500)  # an untrained net: every pixel's loss is ln 21
    label = torch.zeros(1, 500, 500, dtype=torch.long)
    label[0, :10] = 255
    loss = softmax_with_loss(score, label, normalize=False).item()
    pixel = np.full(490 * 500, -np.log(np.float32(1 / 21)), dtype=np.float32)
    assert loss == float(np.cumsum(pixel, dtype=np.float32)[-1])
    exact = 490 * 500 * np.log(21.0)
    assert abs(loss - exact) / exact > 1e-4  # the accumulation error Caffe's printed loss carries
