"""HHA: equality with Gupta et al.'s MATLAB output, the missing-mask path, bad input, batch command."""
from __future__ import annotations

import os
import warnings
from pathlib import Path

import h5py
import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from reproduce.datasets.hha import (NYUD_COLOR_CAMERA, box_sum, box_sums, camera_matrix,
                                    gravity_direction, hha, matlab_uint8, rotation_between)
from reproduce.datasets.hha_batch import to_millimetres
from reproduce.datasets.hha_cli import hha_command

FIXTURES = Path(__file__).parent / "fixtures" / "hha"
ANGLE_OF_NO_NORMAL = 180 + 128 - 90     # saveHHA: NaN angle -> 180 degrees, stored as angle + 38


def _png(name: str) -> np.ndarray:
    with Image.open(FIXTURES / name) as im:
        return np.asarray(im)


@pytest.fixture(scope="module")
def demo():
    """Filled depth (m), raw missing mask, MATLAB HHA, and our HHA of the filled depth and with the mask."""
    depth = _png("0.png") / 10000.0
    missing = _png("0_raw.png") == 0
    return {
        "depth": depth,
        "missing": missing,
        "matlab": _png("matlab_hha.png"),
        "ours": hha(depth, NYUD_COLOR_CAMERA),
        "ours_raw": hha(depth, NYUD_COLOR_CAMERA, missing),
    }


# ---------------------------------------------------------------- equality with MATLAB

def test_demo_equals_matlab_on_every_pixel_and_channel(demo):
    with Image.open(FIXTURES / "matlab_hha.png") as im:
        assert im.mode == "RGB"
    ours, matlab = demo["ours"], demo["matlab"]
    assert ours.dtype == np.uint8 and ours.shape == (480, 640, 3)
    mismatch = (ours != matlab).sum(axis=(0, 1))
    assert mismatch.tolist() == [0, 0, 0], f"mismatching pixels per channel: {mismatch}"


def test_channel_order_is_disparity_height_angle(demo):
    depth_cm = demo["depth"] * 100
    disparity = matlab_uint8(31000.0 / np.maximum(depth_cm, 100.0))
    np.testing.assert_array_equal(demo["ours"][..., 0], disparity)
    np.testing.assert_array_equal(demo["matlab"][..., 0], disparity)   # the PNG's R is disparity too
    # height grows upward in the image (the floor is at the bottom), the angle channel does not
    height = demo["ours"][..., 1].astype(float)
    assert height[:100].mean() > height[-100:].mean() + 50


def test_no_missing_mask_equals_all_false_mask(demo):
    explicit = hha(demo["depth"], NYUD_COLOR_CAMERA, np.zeros(demo["depth"].shape, bool))
    np.testing.assert_array_equal(explicit, demo["ours"])


def test_float32_depth_is_accepted(demo):
    out = hha(demo["depth"].astype(np.float32), NYUD_COLOR_CAMERA)
    assert out.shape == (480, 640, 3)
    # float32 rounding of the depth moves a few values across a rounding boundary at most
    assert (out != demo["ours"]).any(axis=-1).mean() < 0.01


# ---------------------------------------------------------------- the missing-mask path

def test_missing_pixels_are_left_out_of_the_fits(demo):
    """Changing the depth at missing pixels changes no angle or disparity at a valid pixel."""
    depth, missing, ref = demo["depth"], demo["missing"], demo["ours_raw"]
    moved = depth.copy()
    moved[missing] *= 1.3
    out = hha(moved, NYUD_COLOR_CAMERA, missing)
    valid = ~missing
    np.testing.assert_array_equal(out[..., 2][valid], ref[..., 2][valid])
    np.testing.assert_array_equal(out[..., 0][valid], ref[..., 0][valid])
    # height is measured from the lowest point of the whole (filled) cloud, as the original does,
    # so it may shift by a constant; the gravity direction, hence the shape, is unchanged
    unsaturated = valid & (out[..., 1] < 255) & (ref[..., 1] < 255)
    shift = out[..., 1][unsaturated].astype(int) - ref[..., 1][unsaturated].astype(int)
    assert unsaturated.sum() > 100000 and shift.max() - shift.min() <= 1
    # and the mask does matter
    assert (ref[..., 2] != demo["ours"][..., 2]).sum() > 10000


def test_windows_without_valid_depth_get_the_no_normal_angle(demo):
    missing, out = demo["missing"], demo["ours_raw"]
    padded = np.pad(~missing, 3)
    valid_in_window = sum(padded[i:i + 480, j:j + 640].astype(int) for i in range(7) for j in range(7))
    empty = valid_in_window == 0
    assert empty.sum() > 1000
    assert (out[..., 2][empty] == ANGLE_OF_NO_NORMAL).all()
    assert (out[..., 2][valid_in_window >= 10] != ANGLE_OF_NO_NORMAL).mean() > 0.99


def test_missing_path_agrees_with_the_python_port_output(demo):
    """hha.png is the Python port's output with this mask (no MATLAB output exists for it).

    Windows with very few valid points give ill-conditioned fits whose result depends on the
    order of the window sums (a re-creation of the port's own code on current scipy differs from
    this file on about 1% of pixels too), so we ask for agreement on the well-determined pixels.
    """
    ours, port = demo["ours_raw"], _png("hha.png")
    np.testing.assert_array_equal(ours[..., 0], port[..., 0])
    height_diff = np.abs(ours[..., 1].astype(int) - port[..., 1].astype(int))
    assert height_diff.max() <= 1 and (height_diff == 0).mean() > 0.985
    assert (ours[..., 2] == port[..., 2]).mean() > 0.985
    valid = ~demo["missing"]
    assert (ours == port).all(axis=-1)[valid].mean() > 0.985


def test_unmasked_zero_depth_poisons_its_windows_like_matlab(demo):
    """MATLAB: 1/Z = Inf at an unmasked zero depth, so every window holding it has no normal."""
    depth = demo["depth"].copy()
    depth[100, 200] = 0.0
    with warnings.catch_warnings():
        warnings.simplefilter("error")            # no RuntimeWarning leaks out of the Inf/NaN handling
        out = hha(depth, NYUD_COLOR_CAMERA, np.zeros(depth.shape, bool))
    assert (out[97:104, 197:204, 2] == ANGLE_OF_NO_NORMAL).all()
    ring = np.ones((11, 11), bool)
    ring[2:9, 2:9] = False
    assert (out[95:106, 195:206, 2][ring] != ANGLE_OF_NO_NORMAL).all()
    assert out[100, 200, 0] == 255        # 31000 / max(0, 100) = 310 saturates


def test_missing_none_means_depth_is_its_own_raw_depth(demo):
    depth = demo["depth"].copy()
    depth[demo["missing"]] = 0.0
    np.testing.assert_array_equal(hha(depth, NYUD_COLOR_CAMERA),
                                  hha(depth, NYUD_COLOR_CAMERA, depth == 0))


# ---------------------------------------------------------------- bad input

def _good():
    rng = np.random.default_rng(0)
    return 1.0 + rng.random((24, 32))


@pytest.mark.parametrize("depth, missing, camera, what", [
    (_good()[None], None, NYUD_COLOR_CAMERA, "2-D"),
    ((_good() * 1000).astype(np.uint16), None, NYUD_COLOR_CAMERA, "floating-point"),
    (np.where(np.arange(32) == 5, np.nan, _good()), None, NYUD_COLOR_CAMERA, "non-finite"),
    (np.where(np.arange(32) == 5, np.inf, _good()), None, NYUD_COLOR_CAMERA, "non-finite"),
    (-_good(), None, NYUD_COLOR_CAMERA, "negative"),
    (np.zeros((24, 32)), None, NYUD_COLOR_CAMERA, "no valid depth"),
    (_good(), np.ones((24, 32), bool), NYUD_COLOR_CAMERA, "no valid depth"),
    (_good(), np.zeros((32, 24), bool), NYUD_COLOR_CAMERA, "shape"),
    (_good(), np.zeros((24, 32), np.uint8), NYUD_COLOR_CAMERA, "bool"),
    (_good(), None, np.eye(2), "camera"),
    (_good(), None, "nyud", "camera"),
    ([[1.0, 2.0]], None, NYUD_COLOR_CAMERA, "numpy array"),
])
def test_bad_input_raises_one_value_error_naming_the_frame(depth, missing, camera, what):
    with pytest.raises(ValueError, match=f"'img_5123'.*{what}"):
        hha(depth, camera, missing, frame="img_5123")


# ---------------------------------------------------------------- helpers

def test_matlab_uint8_rounds_half_away_from_zero_and_saturates():
    values = np.array([0.5, 1.5, 2.5, 0.49999999999999994, 254.5, 255.5, 300.0, -0.5, -3.0,
                       np.nan, np.inf, 62.5, 62.49999999999999])
    expected = [1, 2, 3, 0, 255, 255, 255, 0, 0, 0, 255, 63, 62]
    assert matlab_uint8(values).tolist() == expected


def _box_sum_direct(stack: np.ndarray, r: int) -> np.ndarray:
    h, w = stack.shape[1:]
    padded = np.pad(stack, ((0, 0), (r, r), (r, r)))
    out = np.zeros_like(stack)
    for i in range(2 * r + 1):
        for j in range(2 * r + 1):
            out += padded[:, i:i + h, j:j + w]
    return out


@pytest.mark.parametrize("r", [1, 3, 10])
def test_box_sum_matches_direct_window_sums_and_is_exact_on_sparse_windows(r):
    rng = np.random.default_rng(r)
    stack = rng.standard_normal((2, 61, 67))
    stack[:, 5:56, 5:60] = 0.0                     # a hole bigger than the window
    stack[:, 30, 32] = [np.pi, -1e-7]              # one lone point in it
    got = box_sum(stack, r)
    np.testing.assert_allclose(got, _box_sum_direct(stack, r), rtol=1e-12, atol=1e-12)
    count = _box_sum_direct((stack != 0).astype(float), r)
    assert (got[count == 0] == 0).all()            # exactly zero, no rounding residue
    lone = np.broadcast_to(count[:1] == 1, got.shape)
    window_of_lone = np.zeros(got.shape[1:], bool)
    window_of_lone[30 - r:31 + r, 32 - r:33 + r] = True
    sel = lone & window_of_lone
    assert sel.sum() == 2 * (2 * r + 1) ** 2
    assert (got[sel] == np.broadcast_to(stack[:, 30, 32][:, None, None], got.shape)[sel]).all()


def test_box_sums_for_several_radii_equal_the_single_radius_sums():
    stack = np.random.default_rng(5).standard_normal((3, 40, 50))
    both = box_sums(stack, (3, 10))
    np.testing.assert_array_equal(both[0], box_sum(stack, 3))
    np.testing.assert_array_equal(both[1], box_sum(stack, 10))


def test_box_sum_keeps_infinity_without_nan():
    stack = np.zeros((1, 9, 9))
    stack[0, 4, 4] = np.inf
    got = box_sum(stack, 2)
    assert np.isposinf(got[0, 2:7, 2:7]).all() and (got[0][~np.isinf(got[0])] == 0).all()


def test_rotation_between_takes_yi_to_yf():
    yi = np.array([0.0, 1.0, 0.0])
    yf = np.array([-0.0388, 0.9992, -0.0091])
    yf /= np.linalg.norm(yf)
    for a, b in [(yi, yf), (yi[:, None], yf[:, None])]:   # flat or column vectors (the port crashed on these)
        r = rotation_between(a, b)
        np.testing.assert_allclose(r @ yi, yf, atol=1e-12)
        np.testing.assert_allclose(r @ r.T, np.eye(3), atol=1e-12)
        assert np.linalg.det(r) == pytest.approx(1.0)
    tiny = np.array([np.sin(np.deg2rad(0.05)), np.cos(np.deg2rad(0.05)), 0.0])
    assert (rotation_between(yi, tiny) == np.eye(3)).all()


def test_gravity_direction_recovers_a_tilted_gravity():
    g = rotation_between(np.array([0.0, 1.0, 0.0]), np.array([0.1, 0.99, -0.05])) @ [0.0, 1.0, 0.0]
    rng = np.random.default_rng(1)
    walls = np.cross(g, rng.standard_normal((500, 3)))
    walls /= np.linalg.norm(walls, axis=1, keepdims=True)
    floor = np.tile(g, (300, 1)) * rng.choice([-1.0, 1.0], (300, 1))
    junk = np.full((50, 3), np.nan)
    normals = np.concatenate([walls, floor, junk]).reshape(34, 25, 3)
    np.testing.assert_allclose(gravity_direction(normals), g, atol=1e-12)


# ---------------------------------------------------------------- batch command

def _crops(demo):
    """Three small non-square frames (float32 metres) and their raw depth, as the .mat holds them."""
    boxes = [(0, 96, 0, 128), (300, 396, 400, 528), (150, 246, 250, 378)]
    depth = [demo["depth"][a:b, c:d].astype(np.float32) for a, b, c, d in boxes]
    raw = [np.where(demo["missing"][a:b, c:d], 0, demo["depth"][a:b, c:d]).astype(np.float32)
           for a, b, c, d in boxes]
    return depth, raw


def _write_official_mat(path: Path, depth: list[np.ndarray], raw: list[np.ndarray]) -> None:
    """A MATLAB v7.3 file laid out like nyu_depth_v2_labeled.mat.

    MATLAB stores `depths` (H x W x N, single, metres) column-major, which HDF5 reports with the
    dimensions reversed: N x W x H. The 512-byte user block carries MATLAB's text header.
    """
    with h5py.File(path, "w", userblock_size=512) as f:
        for key, frames in (("depths", depth), ("rawDepths", raw)):
            ds = f.create_dataset(key, data=np.stack(frames).transpose(0, 2, 1))
            ds.attrs["MATLAB_class"] = np.bytes_("single")
    with open(path, "r+b") as f:
        f.write(b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: test HDF5 schema 1.00 .".ljust(116))


def _listing(folder: Path) -> list[str]:
    return sorted(os.listdir(folder))


def test_command_converts_the_official_mat_layout_and_restarts(demo, tmp_path):
    depth, raw = _crops(demo)
    mat = tmp_path / "nyu_depth_v2_labeled.mat"
    _write_official_mat(mat, depth, raw)
    out = tmp_path / "hha"
    runner = CliRunner()

    res = runner.invoke(hha_command, ["--mat", str(mat), "--out", str(out), "--jobs", "1"])
    assert res.exit_code == 0, res.output
    names = ["img_5001.png", "img_5002.png", "img_5003.png"]
    assert _listing(out) == names
    for name, d, r in zip(names, depth, raw):
        with Image.open(out / name) as im:
            assert im.mode == "RGB"
            written = np.asarray(im)
        np.testing.assert_array_equal(written, _expected_from_mat(d, r))

    # a finished run skips everything; an interrupted one left a frame out and a temp file behind
    stamps = {n: (out / n).stat().st_mtime_ns for n in names}
    res = runner.invoke(hha_command, ["--mat", str(mat), "--out", str(out), "--jobs", "1"])
    assert res.exit_code == 0 and "0 written, 3 already done" in res.output
    (out / "img_5002.png").unlink()
    (out / ".img_5002.png.tmp-99999").write_bytes(b"\x89PNG half written")
    res = runner.invoke(hha_command, ["--mat", str(mat), "--out", str(out), "--jobs", "1"])
    assert res.exit_code == 0 and "1 written, 2 already done" in res.output, res.output
    assert _listing(out) == names                     # no partial or temporary file remains
    assert (out / "img_5001.png").stat().st_mtime_ns == stamps["img_5001.png"]
    with Image.open(out / "img_5002.png") as im:
        np.testing.assert_array_equal(np.asarray(im), _expected_from_mat(depth[1], raw[1]))


def _expected_from_mat(depth: np.ndarray, raw: np.ndarray) -> np.ndarray:
    """saveHHA on the millimetre PNGs the .mat frame would give: D = uint16(1000 m), D ./ 1000."""
    return hha(to_millimetres(depth) / 1000.0, NYUD_COLOR_CAMERA, to_millimetres(raw) == 0)


def test_to_millimetres_is_matlab_uint16_of_the_product():
    m = np.array([0.0, 1.0, 1.2344, 1.2346, 70.0, np.nan, -0.5])
    got = to_millimetres(m)
    np.testing.assert_array_equal(got[:5], [0, 1000, 1234, 1235, 65535])
    assert np.isnan(got[5]) and got[6] == -500     # left for hha() to reject, not turned into "missing"
    single = np.float32(2.0005)                   # the product is taken in single precision, as MATLAB does
    assert to_millimetres(np.array([single]))[0] == np.floor(np.float64(single * np.float32(1000)) + 0.5)


def test_command_with_two_processes_and_unrounded_metres(demo, tmp_path):
    depth, raw = _crops(demo)
    mat = tmp_path / "nyu.mat"
    _write_official_mat(mat, depth, raw)
    res = CliRunner().invoke(hha_command, ["--mat", str(mat), "--out", str(tmp_path / "two"),
                                           "--jobs", "2", "--first-id", "1", "--no-round-mm"])
    assert res.exit_code == 0, res.output
    assert _listing(tmp_path / "two") == ["img_1.png", "img_2.png", "img_3.png"]
    for i, (d, r) in enumerate(zip(depth, raw), start=1):
        with Image.open(tmp_path / "two" / f"img_{i}.png") as im:
            written = np.asarray(im)
        np.testing.assert_array_equal(written, hha(d, NYUD_COLOR_CAMERA, r == 0))
        assert not np.array_equal(written, _expected_from_mat(d, r))   # the rounding matters


def test_command_reports_a_bad_frame_by_name_and_keeps_the_others(demo, tmp_path):
    depth, raw = _crops(demo)
    depth[1] = np.zeros_like(depth[1])
    raw[1] = np.zeros_like(raw[1])
    mat = tmp_path / "nyu.mat"
    _write_official_mat(mat, depth, raw)
    res = CliRunner().invoke(hha_command, ["--mat", str(mat), "--out", str(tmp_path / "o"), "--jobs", "1"])
    assert res.exit_code == 1
    assert "img_5002" in res.output and "no valid depth" in res.output
    assert _listing(tmp_path / "o") == ["img_5001.png", "img_5003.png"]


def test_command_rejects_a_mat_without_the_depth_datasets(tmp_path):
    mat = tmp_path / "other.mat"
    with h5py.File(mat, "w") as f:
        f.create_dataset("images", data=np.zeros((1, 3, 4, 4), np.uint8))
    res = CliRunner().invoke(hha_command, ["--mat", str(mat), "--out", str(tmp_path / "o")])
    assert res.exit_code == 1 and "other.mat" in res.output and "'depths'" in res.output
    res = CliRunner().invoke(hha_command, ["--mat", str(mat), "--depth-dir", str(tmp_path),
                                           "--out", str(tmp_path / "o")])
    assert res.exit_code == 2 and "exactly one of" in res.output


def test_command_converts_depth_pngs_with_and_without_raw_depth(demo, tmp_path):
    depth, raw = _crops(demo)
    ddir, rdir = tmp_path / "depth", tmp_path / "raw"
    ddir.mkdir()
    rdir.mkdir()
    ints = []
    for i, (d, r) in enumerate(zip(depth, raw)):
        di = np.round(d.astype(np.float64) * 10000).astype(np.uint16)
        ri = np.where(r == 0, 0, di).astype(np.uint16)
        Image.fromarray(di).save(ddir / f"img_{6001 + i}.png")
        Image.fromarray(ri).save(rdir / f"img_{6001 + i}.png")
        ints.append((di, ri))
    runner = CliRunner()
    res = runner.invoke(hha_command, ["--depth-dir", str(ddir), "--raw-dir", str(rdir),
                                      "--depth-scale", "10000", "--out", str(tmp_path / "a"), "--jobs", "1"])
    assert res.exit_code == 0, res.output
    res = runner.invoke(hha_command, ["--depth-dir", str(ddir), "--depth-scale", "10000",
                                      "--out", str(tmp_path / "b"), "--jobs", "1"])
    assert res.exit_code == 0, res.output
    for i, (di, ri) in enumerate(ints):
        name = f"img_{6001 + i}.png"
        with Image.open(tmp_path / "a" / name) as a, Image.open(tmp_path / "b" / name) as b:
            np.testing.assert_array_equal(np.asarray(a), hha(di / 10000, NYUD_COLOR_CAMERA, ri == 0))
            np.testing.assert_array_equal(np.asarray(b), hha(di / 10000, NYUD_COLOR_CAMERA))
    assert _listing(tmp_path / "a") == _listing(tmp_path / "b") == [f"img_{6001 + i}.png" for i in range(3)]


def test_camera_matrix_layout():
    c = camera_matrix(518.857901, 519.469611, 325.582449, 253.736166)
    np.testing.assert_array_equal(c, NYUD_COLOR_CAMERA)
    assert c[0, 0] == 518.857901 and c[1, 1] == 519.469611 and c[0, 2] == 325.582449 and c[2, 2] == 1
