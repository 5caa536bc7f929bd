"""reproduce.evaluation.evaluate: rigged nets with known scores and losses, SIFT Flow's two heads, `fcn eval`
and the VOC evaluation-server export, on generated tiny data and reduced-width nets."""
from __future__ import annotations

import json
import math
import tarfile

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

import nets
from reproduce import experiments
from reproduce.commands.eval_cli import eval_command
from reproduce.evaluation.evaluate import evaluate
from reproduce.evaluation.palette import voc_palette

WIDTH = 1 / 32


class FakeSplit:
    """A dataset split in memory: `ids`, `split`, items as the readers return them."""

    def __init__(self, samples, split="fake"):
        self.samples, self.ids, self.split = samples, [f"img{i}" for i in range(len(samples))], split

    def __len__(self):
        return len(self.samples)

    def __getitem__(self, i):
        return self.samples[i]


class LabelEcho(torch.nn.Module):
    """Rigged net: channel c of the input holds head c's label; returns 3 * one-hot of it."""

    inputs = ("data",)

    def __init__(self, classes=(21,)):
        super().__init__()
        self.classes = classes

    def forward(self, data):
        outs = []
        for c, n in enumerate(self.classes):
            lab = data[:, c].long().clamp(0, n - 1)  # 255 (ignored) -> any class
            outs.append(3.0 * torch.nn.functional.one_hot(lab, n).permute(0, 3, 1, 2).float())
        return outs[0] if len(outs) == 1 else {"score_sem": outs[0], "score_geo": outs[1]}


class Constant(torch.nn.Module):
    """Rigged net: logit 1 for class k, 0 for the others, everywhere."""

    inputs = ("data",)

    def __init__(self, k, n=21):
        super().__init__()
        self.k, self.n = k, n

    def forward(self, data):
        out = torch.zeros(data.shape[0], self.n, *data.shape[2:])
        out[:, self.k] = 1.0
        return out


def voc_samples():
    """Two VOC-like images; labels 0 (background), 1 and 255 with known counts."""
    a = np.zeros((6, 8), np.uint8)
    a[0, :4] = 1          # 4 pixels class 1
    a[5, :2] = 255        # 2 ignored
    b = np.full((5, 7), 1, np.uint8)
    b[:2, :] = 0          # 14 pixels class 0, 21 class 1
    b[4, 6] = 255         # 1 ignored -> 20 class 1
    out = []
    for lab in (a, b):
        data = np.zeros((3,) + lab.shape, np.float32)
        data[0] = lab
        out.append({"data": data, "label": lab})
    return out


def test_perfect_net_scores_100_and_loss_is_mean_of_per_image_sums():
    e = experiments.get("voc-fcn32s")
    samples = voc_samples()
    rec = evaluate(LabelEcho(), e, FakeSplit(samples), progress=False)
    assert rec["scores"] == {"pixel_acc": 100.0, "mean_acc": 100.0, "mean_iu": 100.0, "fw_iu": 100.0}
    assert rec["num_images"] == 2 and rec["split"] == "fake" and rec["experiment"] == "voc-fcn32s"
    # Each labelled pixel costs log(1 + 20 e^-3); per image summed (normalize false), then averaged.
    pixel = math.log1p(20 * math.exp(-3))
    valid = [int((s["label"] != 255).sum()) for s in samples]
    assert valid == [46, 34]
    assert rec["loss"] == pytest.approx(pixel * sum(valid) / 2, rel=1e-5)
    assert rec["loss_normalized"] is False


def test_constant_prediction_gives_hand_computed_scores_and_loss():
    e = experiments.get("voc-fcn8s")
    samples = voc_samples()
    rec = evaluate(Constant(0), e, FakeSplit(samples), progress=False)
    n0, n1 = (46 - 4) + 14, 4 + 20  # ground-truth pixels of class 0 and 1, all predicted 0
    total = n0 + n1
    s = rec["scores"]
    assert s["pixel_acc"] == pytest.approx(100 * n0 / total)
    assert s["mean_acc"] == pytest.approx(50.0)  # class 0: 100 %, class 1: 0 %; 19 absent classes left out
    assert s["mean_iu"] == pytest.approx(50 * n0 / total)  # IU0 = n0 / (n0 + n1), IU1 = 0
    assert s["fw_iu"] == pytest.approx(100 * (n0 / total) ** 2)
    z = math.e + 20
    per_image = [(42 * -math.log(math.e / z) + 4 * -math.log(1 / z)),
                 (14 * -math.log(math.e / z) + 20 * -math.log(1 / z))]
    assert rec["loss"] == pytest.approx(sum(per_image) / 2, rel=1e-5)
    assert rec["per_class_iu"][0] == pytest.approx(100 * n0 / total)
    assert rec["per_class_iu"][2] is None or math.isnan(rec["per_class_iu"][2])


def test_alexnet_reports_the_normalized_loss_of_its_val_net():
    e = experiments.get("voc-fcn-alexnet")
    rec = evaluate(Constant(0), e, FakeSplit(voc_samples()), progress=False)
    z = math.e + 20
    per_image = [(42 * -math.log(math.e / z) + 4 * -math.log(1 / z)) / 46,
                 (14 * -math.log(math.e / z) + 20 * -math.log(1 / z)) / 34]
    assert rec["loss"] == pytest.approx(sum(per_image) / 2, rel=1e-5)
    assert rec["loss_normalized"] is True


def test_limit_scores_only_the_first_images_and_workers_give_the_same_result():
    e = experiments.get("voc-fcn32s")
    ds = FakeSplit(voc_samples())
    first = evaluate(Constant(1), e, ds, progress=False, limit=1)
    assert first["num_images"] == 1
    assert first["scores"]["pixel_acc"] == pytest.approx(100 * 4 / 46)
    in_process = evaluate(Constant(1), e, ds, progress=False)
    workers = evaluate(Constant(1), e, ds, progress=False, num_workers=1)
    assert json.dumps(workers) == json.dumps(in_process)  # (NaN per-class entries compare as text)


def test_siftflow_scores_semantic_and_geometric_heads_separately():
    e = experiments.get("siftflow-fcn16s")
    sem = np.array([[0, 5, 8, 255], [27, 27, 31, 5]], np.uint8)   # 8 = cow: absent from test
    geo = np.array([[0, 1, 2, 255], [2, 2, 1, 0]], np.uint8)
    data = np.zeros((3, 2, 4), np.float32)
    data[0], data[1] = sem, 0  # geometric head always predicts class 0 (sky)
    rec = evaluate(LabelEcho((33, 3)), e, FakeSplit([{"data": data, "sem": sem, "geo": geo}]), progress=False)
    assert rec["scores"]["pixel_acc"] == 100.0 and rec["scores"]["mean_iu"] == 100.0
    g = rec["scores_geo"]
    assert g["pixel_acc"] == pytest.approx(100 * 2 / 7)  # 7 labelled pixels, 2 of them sky
    assert g["mean_acc"] == pytest.approx(100 / 3)
    assert "loss_geo" in rec and rec["loss_geo"] > rec["loss"]


def test_siftflow_semantic_means_leave_out_classes_absent_from_test():
    e = experiments.get("siftflow-fcn32s")
    sem = np.array([[8, 5, 5, 5]], np.uint8)  # a cow pixel predicted as building
    data = np.zeros((3, 1, 4), np.float32)
    data[0] = [[5, 5, 5, 5]]
    rec = evaluate(LabelEcho((33, 3)), e, FakeSplit([{"data": data, "sem": sem, "geo": np.zeros((1, 4), np.uint8)}]),
                   progress=False)
    assert rec["scores"]["pixel_acc"] == pytest.approx(75.0)
    assert rec["scores"]["mean_acc"] == pytest.approx(100.0)  # cow (0 %) is not averaged
    assert rec["scores_all_classes"]["mean_acc"] == pytest.approx(50.0)


def test_wrong_class_count_is_refused():
    with pytest.raises(ValueError, match="expected 1 x 21"):
        evaluate(Constant(0, n=20), experiments.get("voc-fcn32s"), FakeSplit(voc_samples()), progress=False)


# ---------------------------------------------------------------------------------------------
# the command, on a generated VOC folder and a reduced-width net


def make_voc_dir(root, ids, sizes, *, labels=True, split="seg11valid"):
    rng = np.random.default_rng(0)
    (root / "JPEGImages").mkdir(parents=True)
    (root / "ImageSets" / "Segmentation").mkdir(parents=True)
    (root / "SegmentationClass").mkdir()
    for ident, (h, w) in zip(ids, sizes):
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(root / "JPEGImages" / f"{ident}.jpg")
        if labels:
            lab = rng.choice(np.array([0, 0, 0, 7, 255], np.uint8), size=(h, w))
            im = Image.fromarray(lab, mode="P")
            im.putpalette(voc_palette())
            im.save(root / "SegmentationClass" / f"{ident}.png")
    (root / "ImageSets" / "Segmentation" / f"{split}.txt").write_text("".join(f"{i}\n" for i in ids))
    return root


@pytest.fixture()
def fresh_weights(tmp_path):
    """A reduced-width voc-fcn32s as built: score_fr is zero, so every logit is 0."""
    torch.manual_seed(0)
    path = tmp_path / "fresh.pt"
    torch.save(nets.build("voc-fcn32s", width=WIDTH).state_dict(), path)
    return path


def test_fcn_eval_of_a_zero_score_net_gives_ln21_per_labelled_pixel(tmp_path, fresh_weights):
    ids, sizes = ["2011_000001", "2011_000002"], [(24, 30), (20, 26)]
    voc = make_voc_dir(tmp_path / "data" / "voc2011" / "VOC2011", ids, sizes)
    out = tmp_path / "runs" / "metrics.json"
    result = CliRunner().invoke(eval_command, [
        "voc-fcn32s", "--weights", str(fresh_weights), "--data-root", str(tmp_path / "data"), "--device", "cpu",
        "--width", str(WIDTH), "--workers", "0", "--out", str(out)])
    assert result.exit_code == 0, result.output
    rec = json.loads(out.read_text())
    labels = [np.array(Image.open(voc / "SegmentationClass" / f"{i}.png")) for i in ids]
    valid = [int((lab != 255).sum()) for lab in labels]
    # All-zero scores: argmax is class 0, each labelled pixel costs ln 21 (docs/reference.md §6, item 6).
    assert rec["loss"] == pytest.approx(math.log(21) * sum(valid) / 2, rel=1e-5)
    n0 = sum(int((lab == 0).sum()) for lab in labels)
    assert rec["scores"]["pixel_acc"] == pytest.approx(100 * n0 / sum(valid))
    assert rec["num_images"] == 2 and rec["split"] == "seg11valid"
    assert rec["weights"] == str(fresh_weights) and rec["iteration"] is None
    assert "mean_iu" in result.output


def test_fcn_eval_limit_and_checkpoint_iteration(tmp_path, fresh_weights):
    make_voc_dir(tmp_path / "voc", ["a", "b", "c"], [(20, 20)] * 3)
    ckpt = tmp_path / "iter_4000.pt"
    torch.save({"net": torch.load(fresh_weights), "iteration": 4000}, ckpt)
    out = tmp_path / "m.json"
    result = CliRunner().invoke(eval_command, [
        "voc-fcn32s", "--weights", str(ckpt), "--data-root", str(tmp_path / "voc"), "--width", str(WIDTH),
        "--workers", "0", "--limit", "2", "--out", str(out), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    rec = json.loads(out.read_text())
    assert rec["num_images"] == 2 and rec["iteration"] == 4000


def test_fcn_eval_names_the_file_when_weights_do_not_fit(tmp_path, fresh_weights):
    make_voc_dir(tmp_path / "voc", ["a"], [(20, 20)])
    result = CliRunner().invoke(eval_command, [
        "voc-fcn32s", "--weights", str(fresh_weights), "--data-root", str(tmp_path / "voc"), "--width", "0.0625",
        "--workers", "0", "--out", str(tmp_path / "m.json"), "--device", "cpu"])
    assert result.exit_code != 0
    assert "fresh.pt" in result.output and "width" in result.output
    assert not (tmp_path / "m.json").exists()


def test_export_voc_test_writes_the_server_layout_and_tarball(tmp_path):
    torch.manual_seed(0)
    net = nets.build("voc-fcn8s", width=WIDTH)
    with torch.no_grad():
        net.score_fr.bias[15] = 1.0  # person wins everywhere
    weights = tmp_path / "w.pt"
    torch.save(net.state_dict(), weights)
    ids, sizes = ["2008_000001", "2008_000002"], [(22, 30), (26, 18)]
    make_voc_dir(tmp_path / "VOCdevkit" / "VOC2012", ids, sizes, labels=False, split="test")
    out = tmp_path / "export"
    result = CliRunner().invoke(eval_command, [
        "voc-fcn8s", "--weights", str(weights), "--data-root", str(tmp_path), "--width", str(WIDTH),
        "--workers", "0", "--device", "cpu", "--export-voc-test", str(out)])
    assert result.exit_code == 0, result.output
    archive = out / "comp6_VOC2012_test.tar.gz"
    with tarfile.open(archive) as tar:
        files = sorted(m.name for m in tar.getmembers() if m.isfile())
        assert files == [f"results/VOC2012/Segmentation/comp6_test_cls/{i}.png" for i in ids]
        for ident, (h, w) in zip(ids, sizes):
            with Image.open(tar.extractfile(f"results/VOC2012/Segmentation/comp6_test_cls/{ident}.png")) as im:
                assert im.mode == "P" and im.size == (w, h)
                assert im.getpalette()[:48] == voc_palette()[:48]
                assert np.all(np.array(im) == 15)


def test_fcn_eval_scores_a_caffemodel_like_the_same_weights_as_pt(tmp_path):
    from weight_convert.caffe_writer import write_caffemodel
    torch.manual_seed(1)
    net = nets.build("voc-fcn32s", width=WIDTH)
    with torch.no_grad():
        net.score_fr.bias[7] = 0.5
        net.score_fr.weight.normal_(0, 0.01)  # predictions that depend on the image
    torch.save(net.state_dict(), tmp_path / "w.pt")
    blobs: dict[str, list] = {}
    for key, p in net.named_parameters():
        blobs.setdefault(key.rsplit(".", 1)[0], []).append(p.detach().numpy())
    write_caffemodel(tmp_path / "w.caffemodel", "voc-fcn32s",
                     [(n, "Deconvolution" if n.startswith("upscore") else "Convolution", b) for n, b in blobs.items()])
    make_voc_dir(tmp_path / "voc", ["a", "b"], [(20, 24), (24, 20)])
    records = []
    for w in ("w.pt", "w.caffemodel"):
        out = tmp_path / f"{w}.json"
        result = CliRunner().invoke(eval_command, [
            "voc-fcn32s", "--weights", str(tmp_path / w), "--data-root", str(tmp_path / "voc"), "--width", str(WIDTH),
            "--workers", "0", "--out", str(out), "--device", "cpu"])
        assert result.exit_code == 0, result.output
        records.append(json.loads(out.read_text()))
    assert records[0]["scores"] == records[1]["scores"] and records[0]["loss"] == records[1]["loss"]
    assert records[0]["per_class_acc"][7] > 0  # the loaded score_fr bias shows: class 7 is predicted


def test_fcn_eval_bf16_is_opt_in_and_recorded(tmp_path, fresh_weights):
    """--bf16 (bf16 autocast) scores the same zero-score net and says so in metrics.json; the
    default record says bf16_mode false; the old --fast is refused with a pointer to --bf16."""
    make_voc_dir(tmp_path / "voc", ["a", "b"], [(20, 24), (22, 18)])
    args = ["voc-fcn32s", "--weights", str(fresh_weights), "--data-root", str(tmp_path / "voc"), "--width",
            str(WIDTH), "--workers", "0", "--device", "cpu", "--split", "seg11valid"]
    records = {}
    for name, extra in (("exact", []), ("bf16", ["--bf16"])):
        out = tmp_path / f"{name}.json"
        result = CliRunner().invoke(eval_command, args + extra + ["--out", str(out)])
        assert result.exit_code == 0, result.output
        records[name] = json.loads(out.read_text())
    assert records["exact"]["bf16_mode"] is False and "fast_mode" not in records["exact"]
    assert records["bf16"]["bf16_mode"] is True and records["bf16"]["bf16"] is True
    assert records["bf16"]["scores"]["pixel_acc"] == pytest.approx(records["exact"]["scores"]["pixel_acc"])
    old = CliRunner().invoke(eval_command, args + ["--fast", "--out", str(tmp_path / "old.json")])
    assert old.exit_code == 2 and "renamed --bf16" in old.output and not (tmp_path / "old.json").exists()
