"""`convert-caffe` through click's CliRunner: listing, dumps, --net / --from / --hha, bad input."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from click.testing import CliRunner

import nets
from weight_convert import read_caffemodel
from weight_convert.cli import main
from weight_convert.record import NPZ_KEY

import caffe_encoder as enc  # tests/caffe_encoder.py (tests/conftest.py puts tests/ on sys.path)

FIXTURES = Path(__file__).parent / "fixtures" / "caffemodels"
V1_LENET = FIXTURES / "lenet_v1.caffemodel"
W = "0.0625"


def run(*args: object):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def fcn_model(net_name: str, *, seed: int = 0, num_classes=None, skip=()) -> list:
    rng = np.random.default_rng(seed)
    net = nets.build(net_name, width=float(W), num_classes=num_classes)
    layers: dict[str, list[np.ndarray]] = {}
    for name, p in net.named_parameters():
        if name.rpartition(".")[0] in skip:
            continue
        layers.setdefault(name.rpartition(".")[0], []).append(rng.standard_normal(tuple(p.shape)).astype(np.float32))
    return [("data", "Data", [])] + [
        (name, "Deconvolution" if name.startswith("upscore") else "Convolution", blobs)
        for name, blobs in layers.items()]


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli")
    return {
        "vgg16": enc.write_caffemodel(d / "vgg16.caffemodel", enc.vgg16_layers(float(W)), version=1),
        "fcn8s": enc.write_caffemodel(d / "fcn8s.caffemodel", fcn_model("voc-fcn8s")),
        "color": enc.write_caffemodel(d / "color.caffemodel", fcn_model("nyud-fcn32s-color", seed=1)),
        "hha": enc.write_caffemodel(d / "hha.caffemodel", fcn_model("nyud-fcn32s-hha", seed=2)),
    }


def test_list_prints_layers_types_and_shapes():
    result = run(V1_LENET, "--list")
    assert result.exit_code == 0
    lines = result.output.splitlines()
    assert lines[0].split() == ["#", "layer", "type", "blobs"]
    assert lines[2].split() == ["1", "conv1", "Convolution", "20x1x5x5,", "20"]
    assert lines[6].split() == ["5", "ip1", "InnerProduct", "500x800,", "500"]
    assert lines[9].split() == ["8", "loss", "SoftmaxWithLoss", "-"]


@pytest.mark.parametrize("suffix", [".npz", ".h5", ".pt"])
def test_dump_every_blob_as_layer_slash_index(tmp_path, suffix):
    dst = tmp_path / f"lenet{suffix}"
    result = run(V1_LENET, dst)
    assert result.exit_code == 0, result.output
    expected = {f"{layer.name}/{i}": b for layer in read_caffemodel(V1_LENET) for i, b in enumerate(layer.blobs)}
    if suffix == ".npz":
        with np.load(dst) as f:
            assert NPZ_KEY in f.files  # the record (weight_convert.record), not a blob
            got = {k: f[k] for k in f.files if k != NPZ_KEY}
    elif suffix == ".h5":
        with h5py.File(dst) as f:
            got = {f"{layer}/{i}": f[layer][i][()] for layer in f for i in f[layer]}
    else:
        got = {k: v.numpy() for k, v in torch.load(dst, weights_only=True).items()}
    assert sorted(got) == sorted(expected)
    for key, value in expected.items():
        np.testing.assert_array_equal(got[key], value)
    assert not list(tmp_path.glob(".*.tmp"))


def test_net_strict_conversion_writes_the_state_dict(models, tmp_path):
    dst = tmp_path / "fcn8s.pt"
    result = run(models["fcn8s"], dst, "--net", "voc-fcn8s", "--width", W)
    assert result.exit_code == 0, result.output
    assert "matched  score_pool3" in result.output and "0 parameters missing" in result.output
    net = nets.build("voc-fcn8s", width=float(W))
    net.load_state_dict(torch.load(dst, weights_only=True), strict=True)
    fcn8s = {layer.name: layer.blobs for layer in read_caffemodel(models["fcn8s"])}
    np.testing.assert_array_equal(net.score_pool3.weight.detach().numpy(), fcn8s["score_pool3"][0])


def test_unfilled_parameters_exit_2_and_write_nothing(models, tmp_path):
    dst = tmp_path / "fcn32s.pt"
    result = run(models["vgg16"], dst, "--net", "voc-fcn32s", "--width", W)
    assert result.exit_code == 2
    assert "missing  score_fr.weight" in result.output
    assert "unfilled: score_fr.weight, score_fr.bias, upscore.weight" in result.output
    assert not dst.exists() and not list(tmp_path.iterdir())


def test_from_vgg16_transplants_and_reports(models, tmp_path):
    dst = tmp_path / "fcn32s.h5"
    result = run(models["vgg16"], dst, "--net", "voc-fcn32s", "--from", "vgg16", "--width", W)
    assert result.exit_code == 0, result.output
    out = result.output
    assert "surgery  fc6.weight" in out and "(256, 1568) -> (256, 32, 7, 7)" in out
    assert "dropped  fc8" in out and "missing  upscore.weight" in out
    with h5py.File(dst) as f:
        assert f["fc6.weight"].shape == (256, 32, 7, 7)
        assert not f["score_fr.weight"][()].any()                  # zero init kept
        fresh = nets.build("voc-fcn32s", width=float(W)).upscore.weight.detach().numpy()
        np.testing.assert_array_equal(f["upscore.weight"][()], fresh)   # bilinear init kept


def test_staged_conversion_from_a_converted_pt(models, tmp_path):
    fcn32s = tmp_path / "fcn32s.pt"
    assert run(models["vgg16"], fcn32s, "--net", "voc-fcn32s", "--from", "vgg16", "--width", W).exit_code == 0
    fcn16s = tmp_path / "fcn16s.npz"
    result = run(fcn32s, fcn16s, "--net", "voc-fcn16s", "--from", "voc-fcn32s", "--width", W)
    assert result.exit_code == 0, result.output
    assert "dropped  upscore " in result.output and "missing  score_pool4.weight" in result.output
    with np.load(fcn16s) as f:
        before = torch.load(fcn32s, weights_only=True)
        np.testing.assert_array_equal(f["fc6.weight"], before["fc6.weight"].numpy())
    # the source is checked against --from
    result = run(fcn32s, tmp_path / "x.pt", "--net", "voc-fcn8s", "--from", "voc-fcn16s", "--width", W)
    assert result.exit_code == 2
    assert (f"{fcn32s} does not hold voc-fcn16s: it lacks upscore2, score_pool4, upscore16 and has "
            "layers voc-fcn16s does not: upscore") in result.output


def test_color_d_and_late_fusion(models, tmp_path):
    result = run(models["vgg16"], tmp_path / "cd.pt", "--net", "nyud-fcn32s-color-d", "--from", "vgg16", "--width", W)
    assert result.exit_code == 0, result.output
    assert "surgery  conv1_1_bgrd.weight" in result.output
    assert torch.load(tmp_path / "cd.pt", weights_only=True)["conv1_1_bgrd.weight"].shape == (4, 4, 3, 3)

    dst = tmp_path / "hha.pt"
    result = run(models["color"], dst, "--net", "nyud-fcn32s-color-hha", "--from", "nyud-fcn32s-color",
                 "--hha", models["hha"], "--width", W)
    assert result.exit_code == 0, result.output
    sd = torch.load(dst, weights_only=True)
    hha = {layer.name: layer.blobs for layer in read_caffemodel(models["hha"])}
    np.testing.assert_array_equal(sd["score_frhha.weight"].numpy(), hha["score_fr"][0])
    result = run(models["color"], tmp_path / "y.pt", "--net", "nyud-fcn32s-color-hha", "--from",
                 "nyud-fcn32s-color", "--width", W)
    assert result.exit_code == 2 and "--hha" in result.output


def test_truncated_file_exit_2_names_layer_and_offset_and_keeps_dst(models, tmp_path):
    data = Path(models["vgg16"]).read_bytes()
    bad = tmp_path / "cut.caffemodel"
    fc6 = next(layer for layer in read_caffemodel(models["vgg16"]) if layer.name == "fc6")
    bad.write_bytes(data[:fc6.offset + 1000])
    dst = tmp_path / "out.pt"
    dst.write_bytes(b"previous result")
    result = run(bad, dst, "--net", "voc-fcn32s", "--from", "vgg16", "--width", W, "--force")
    assert result.exit_code == 2
    assert "layer 'fc6'" in result.output and "byte offset" in result.output and str(bad) in result.output
    assert dst.read_bytes() == b"previous result"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cut.caffemodel", "out.pt"]


def test_shape_mismatch_exit_2_names_layer(tmp_path):
    src = enc.write_caffemodel(tmp_path / "ctx.caffemodel",
                               fcn_model("voc-fcn32s", num_classes=60, skip=("upscore",)))
    result = run(src, tmp_path / "o.pt", "--net", "voc-fcn32s", "--width", W)
    assert result.exit_code == 2 and "layer 'score_fr'" in result.output
    assert not (tmp_path / "o.pt").exists()


@pytest.mark.parametrize("args, message", [
    (["--net", "voc-fcn64s"], "voc-fcn64s"),
    (["--from", "resnet"], "resnet"),
])
def test_bad_options_exit_2(tmp_path, args, message):
    result = run(V1_LENET, tmp_path / "o.pt", *args)
    assert result.exit_code == 2 and message in result.output


def test_bad_destination_suffix_and_missing_dst(tmp_path):
    result = run(V1_LENET, tmp_path / "o.caffemodel")
    assert result.exit_code == 2 and ".pt, .h5, .npz" in result.output
    assert run(V1_LENET).exit_code == 2


def test_not_a_caffemodel_exit_2(tmp_path):
    src = tmp_path / "notes.caffemodel"
    src.write_text("this is not a caffemodel\n")
    result = run(src, tmp_path / "o.npz")
    assert result.exit_code == 2 and "not a Caffe .caffemodel" in result.output
    assert not (tmp_path / "o.npz").exists()


# ---------------------------------------------------------------------------------------------
# refusals: repeated layer names, extra blobs, existing outputs, empty sources, --from mismatches


@pytest.fixture(scope="module")
def twice(tmp_path_factory):
    """voc-fcn32s weights with score_fr stored twice (the second copy + 1)."""
    layers = fcn_model("voc-fcn32s")
    again = ("score_fr", "Convolution", [b + 1 for b in dict((n, b) for n, _, b in layers)["score_fr"]])
    return enc.write_caffemodel(tmp_path_factory.mktemp("twice") / "twice.caffemodel", layers + [again])


@pytest.mark.parametrize("args", [[], ["--net", "voc-fcn32s"], ["--net", "voc-fcn16s", "--from", "voc-fcn32s"],
                                  ["--list"]], ids=["dump", "net", "from", "list"])
def test_repeated_layer_name_is_refused_in_every_mode(twice, tmp_path, args):
    """Before: the dump refused it, but --net / --from silently took the second copy."""
    dst = tmp_path / "out.pt"
    result = run(twice, dst, *args, "--width", W)
    assert result.exit_code == 2
    assert f"{twice}: layer 'score_fr', byte offset" in result.output and "occurs twice" in result.output
    assert not dst.exists() and not list(tmp_path.iterdir())


@pytest.mark.parametrize("args", [[], ["--net", "voc-fcn32s"]], ids=["dump", "net"])
def test_extra_blob_is_refused_naming_layer_and_counts(tmp_path, args):
    """Before: with --net the third blob was dropped and the conversion succeeded."""
    layers = [(n, k, b + [b[-1]] if n == "fc7" else b) for n, k, b in fcn_model("voc-fcn32s")]
    src = enc.write_caffemodel(tmp_path / "extra.caffemodel", layers)
    result = run(src, tmp_path / "out.pt", *args, "--width", W)
    assert result.exit_code == 2
    assert "layer 'fc7'" in result.output and "holds 3 blobs, a Convolution has at most 2" in result.output
    assert not (tmp_path / "out.pt").exists()


def test_existing_output_is_kept_unless_force(tmp_path):
    """Before: an unrelated existing .h5 was replaced without a word."""
    dst = tmp_path / "results.h5"
    with h5py.File(dst, "w") as f:
        f["unrelated"] = np.arange(3)
    before = dst.read_bytes()
    result = run(V1_LENET, dst)
    assert result.exit_code == 2
    assert f"{dst} already exists" in result.output and "--force" in result.output
    assert dst.read_bytes() == before
    result = run(V1_LENET, dst, "--force")
    assert result.exit_code == 0, result.output
    with h5py.File(dst) as f:
        assert "unrelated" not in f and f["conv1"]["0"].shape == (20, 1, 5, 5)


def test_output_that_is_the_input_is_refused_even_with_force(tmp_path):
    src = tmp_path / "lenet.pt"
    assert run(V1_LENET, src).exit_code == 0
    before = src.read_bytes()
    link = tmp_path / "link.pt"
    link.symlink_to(src)
    for dst in (src, link):
        result = run(src, dst, "--force")
        assert result.exit_code == 2 and "DST is the input file" in result.output
    assert src.read_bytes() == before


def test_source_without_weights_is_an_error(tmp_path):
    """Before: 'wrote out.npz (0 arrays)', exit 0."""
    src = enc.write_caffemodel(tmp_path / "empty.caffemodel", [("data", "Data", []), ("relu", "ReLU", [])])
    result = run(src, tmp_path / "out.npz")
    assert result.exit_code == 2
    assert f"{src}: no layer holds any weights (2 layers, 0 blobs)" in result.output
    torch.save({}, tmp_path / "empty.pt")
    result = run(tmp_path / "empty.pt", tmp_path / "out.npz")
    assert result.exit_code == 2 and "empty.pt: no layer holds any weights" in result.output
    assert not (tmp_path / "out.npz").exists()


def test_from_mismatch_says_which_file_lacks_which_layers(models, tmp_path):
    result = run(V1_LENET, tmp_path / "o.pt", "--net", "voc-fcn32s", "--from", "vgg16", "--width", W)
    assert result.exit_code == 2
    assert (f"{V1_LENET} does not hold vgg16: it lacks conv1_1, conv1_2, conv2_1, conv2_2, conv3_1, "
            "conv3_2, conv3_3, conv4_1, ... (16 in all) and has layers vgg16 does not: conv1, conv2, ip1, ip2"
            ) in result.output
    # the --hha file is checked too: here a VGG16 instead of the HHA FCN-32s
    result = run(models["color"], tmp_path / "o.pt", "--net", "nyud-fcn32s-color-hha", "--from",
                 "nyud-fcn32s-color", "--hha", models["vgg16"], "--width", W)
    assert result.exit_code == 2
    assert (f"{models['vgg16']} does not hold nyud-fcn32s-hha: it lacks score_fr, upscore and has layers "
            "nyud-fcn32s-hha does not: fc8") in result.output
    assert not (tmp_path / "o.pt").exists()


def test_temporaries_of_a_killed_conversion_are_removed_at_the_next_start(tmp_path):
    """A conversion killed mid-write (os._exit: no cleanup runs, as with SIGKILL) leaves its
    temporary; the next conversion to the same DST removes it and says so. Temporaries of a
    running conversion and of other files are kept."""
    dst = tmp_path / "lenet.npz"
    killed = textwrap.dedent(f"""
        import os
        import weight_convert.writers as w
        def die(tmp, arrays, dtypes, release, record):
            tmp.write_bytes(b"half")
            os._exit(137)
        w._write_npz = die
        from weight_convert.cli import main
        main([{str(V1_LENET)!r}, {str(dst)!r}])
    """)
    root = Path(__file__).resolve().parent.parent
    assert subprocess.run([sys.executable, "-c", killed], cwd=root).returncode == 137
    left = sorted(p.name for p in tmp_path.iterdir())
    assert len(left) == 1 and left[0].startswith(".lenet.npz.") and left[0].endswith(".tmp")
    running = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        keep = [tmp_path / f".lenet.npz.{running.pid}.abcd1234.tmp", tmp_path / ".lenet.npz.x.npz.1.ab.tmp",
                tmp_path / ".other.npz.1.abcd1234.tmp"]
        for p in keep:
            p.write_bytes(b"x")
        old_style = tmp_path / ".lenet.npz.k3j_x9q2.tmp"  # named before the pid was part of the name
        old_style.write_bytes(b"x")
        result = run(V1_LENET, dst)
    finally:
        running.kill()
        running.wait()
    assert result.exit_code == 0, result.output
    assert (f"removed 2 temporary file(s) left by an interrupted conversion to {dst}: "
            f"{', '.join(sorted([left[0], old_style.name]))}") in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([dst.name] + [p.name for p in keep])


# ---------------------------------------------------------------------------------------------
# FCN-GoogLeNet from BVLC GoogLeNet (--from googlenet)
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("aux", [True, False], ids=["training-snapshot", "deploy-only"])
def test_from_googlenet_loads_the_trunk_and_drops_the_classifiers(tmp_path, aux):
    layers = enc.googlenet_layers(float(W), aux=aux)
    src = enc.write_caffemodel(tmp_path / "bvlc_googlenet.caffemodel", layers)
    dst = tmp_path / "fcn-googlenet.pt"
    result = run(src, dst, "--net", "voc-fcn-googlenet", "--from", "googlenet", "--width", W)
    assert result.exit_code == 0, result.output
    out = result.output
    assert "matched  inception_5b/pool_proj" in out and "dropped  loss3/classifier" in out
    assert ("dropped  loss1/fc" in out and "dropped  loss2/classifier" in out) == aux
    assert "missing  score_fr.weight" in out and "missing  upscore.weight" in out
    assert " 0 reshaped by surgery" in out  # every trunk blob fits as it is
    net = nets.build("voc-fcn-googlenet", width=float(W))
    state = torch.load(dst, weights_only=True)
    net.load_state_dict(state, strict=True)
    blobs = {name: b for name, _, b in layers if b}
    trunk = [n for n in blobs if not n.startswith("loss")]
    assert len(trunk) == 3 + 9 * 6 and all(f"{n}.weight" in state for n in trunk)
    for n in trunk:
        np.testing.assert_array_equal(state[f"{n}.weight"].numpy(), blobs[n][0])
        np.testing.assert_array_equal(state[f"{n}.bias"].numpy(), blobs[n][1])
    assert not state["score_fr.weight"].any() and not state["score_fr.bias"].any()
    fresh = nets.build("voc-fcn-googlenet", width=float(W)).upscore.weight
    assert torch.equal(state["upscore.weight"], fresh.detach())


def test_from_googlenet_refuses_a_file_that_is_not_googlenet(models, tmp_path):
    layers = [l for l in enc.googlenet_layers(float(W)) if l[0] != "inception_4c/3x3"]
    src = enc.write_caffemodel(tmp_path / "partial.caffemodel", layers)
    result = run(src, tmp_path / "x.pt", "--net", "voc-fcn-googlenet", "--from", "googlenet", "--width", W)
    assert result.exit_code == 2 and "does not hold googlenet: it lacks inception_4c/3x3" in result.output
    result = run(models["vgg16"], tmp_path / "y.pt", "--net", "voc-fcn-googlenet", "--from", "googlenet", "--width", W)
    assert result.exit_code == 2 and "does not hold googlenet: it lacks conv1/7x7_s2" in result.output
    assert not (tmp_path / "x.pt").exists() and not (tmp_path / "y.pt").exists()
