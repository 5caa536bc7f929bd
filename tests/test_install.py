"""The package works outside its checkout: a wheel built from the sources (offline, no build
isolation) and `pip install .` into fresh virtual environments give working `fcn` and
`convert-caffe`, run from a folder outside the checkout.

The fresh environments see the dependencies (torch, numpy, ...) of the environment running the
tests through a .pth line naming its site-packages, so nothing is downloaded; a .pth line only
adds that folder to sys.path (its own .pth files, this checkout's editable install among them, are
not processed), and the fresh environment's own site-packages come first.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
#: What a source distribution of the project holds (the build reads nothing else).
SOURCES = ("pyproject.toml", "README.md", "LICENSE", "nets", "weight_convert", "reproduce")


def _run(args: list, cwd: Path, env: dict | None = None, timeout: int = 300) -> str:
    result = subprocess.run([str(a) for a in args], cwd=cwd, capture_output=True, text=True, timeout=timeout,
                            env=env)
    assert result.returncode == 0, f"{' '.join(map(str, args))} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def _copy_sources(dst: Path) -> Path:
    """The project's sources in `dst` (so that the build's build/ and egg-info stay out of the checkout)."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    dst.mkdir(parents=True)
    for name in SOURCES:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, dst / name, ignore=ignore)
        else:
            shutil.copy2(src, dst / name)
    return dst


def _fresh_venv(path: Path) -> Path:
    """A virtual environment without pip whose sys.path ends with this environment's site-packages."""
    _run([sys.executable, "-m", "venv", "--without-pip", path], cwd=path.parent)
    python = path / "bin" / "python"
    purelib = Path(_run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                        cwd=path.parent).strip())
    ours = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    (purelib / "zz_fcn_test_dependencies.pth").write_text("".join(f"{p}\n" for p in sorted(ours)))
    return python


def _pip_install(python: Path, what: Path, cwd: Path) -> None:
    _run([sys.executable, "-m", "pip", "--python", python, "install", "--quiet", "--no-deps", "--no-index",
          "--no-build-isolation", what], cwd=cwd)


def _env(venv: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    return env


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("build")
    src = _copy_sources(base / "src")
    _run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-index", "--no-build-isolation",
          "--wheel-dir", base / "dist", src], cwd=base)
    wheels = list((base / "dist").glob("fcn_repro-*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


def test_the_wheel_holds_the_package_data_and_licence(wheel):
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        size = sum(i.file_size for i in z.infolist())
    assert "reproduce/reporting/paper_data/tables.json" in names and "reproduce/reporting/paper_data/table3_voc_test.csv" in names
    assert any(n.startswith("reproduce/samples/voc/VOC2012/JPEGImages/") for n in names)
    assert any(n.endswith(".dist-info/licenses/LICENSE") or n.endswith(".dist-info/LICENSE") for n in names)
    assert not any(n.startswith("tests/") for n in names)
    assert size < 3 * 2**20, f"the wheel unpacks to {size / 2**20:.1f} MiB"


def test_wheel_installed_outside_the_checkout_runs_every_command(wheel, tmp_path):
    python = _fresh_venv(tmp_path / "venv")
    work = tmp_path / "work"  # a folder outside the checkout: nothing there but what the commands write
    work.mkdir()
    _pip_install(python, wheel, work)
    env = _env(tmp_path / "venv")
    fcn, convert = tmp_path / "venv" / "bin" / "fcn", tmp_path / "venv" / "bin" / "convert-caffe"

    where = _run([python, "-c", "import reproduce, nets; print(reproduce.__file__); print(nets.__file__)"], work, env)
    assert all(Path(p).is_relative_to(tmp_path / "venv") for p in where.split()), where

    version = _run([fcn, "--version"], work, env).strip()
    assert version.startswith("fcn (fcn-repro) 0.") and "commit" not in version  # no checkout here
    assert _run([convert, "--version"], work, env).startswith("convert-caffe (fcn-repro) 0.")
    assert "Usage: fcn tables" in _run([fcn, "tables", "-h"], work, env)

    # fcn tables: the paper's tables are package data
    runs = work / "runs" / "voc-fcn8s"
    runs.mkdir(parents=True)
    (runs / "metrics.json").write_text(json.dumps({
        "schema_version": 1, "experiment": "voc-fcn8s", "weights": "final.pt", "split": "seg11valid",
        "num_images": 736, "iteration": 100000, "loss": 1.0,
        "scores": {"pixel_acc": 90.3, "mean_acc": 75.9, "mean_iu": 62.7, "fw_iu": 83.2}}))
    _run([fcn, "tables", "--runs", work / "runs", "--out", work / "tables"], work, env)
    assert (work / "tables" / "index.md").is_file()
    assert "voc-fcn8s" in (work / "tables" / "reference_readme.md").read_text()

    # fcn smoke data: the VOC / SBD samples are package data
    _run([fcn, "smoke", "data", work / "smoke-data"], work, env)
    assert len(list((work / "smoke-data" / "voc2011" / "JPEGImages").glob("*.jpg"))) == 3
    assert (work / "smoke-data" / "sbd" / "dataset" / "train.txt").read_text().count("\n") == 4

    # the weights pipeline: a caffemodel, converted at width 1/16, run without --width
    _run([fcn, "smoke", "vgg16", work / "vgg16.caffemodel"], work, env)
    _run([convert, work / "vgg16.caffemodel", work / "fcn32s.pt", "--net", "voc-fcn32s", "--from", "vgg16",
          "--width", "0.0625"], work, env)
    image = next((work / "smoke-data" / "voc2011" / "JPEGImages").glob("*.jpg"))
    _run([fcn, "infer", "voc-fcn32s", "--weights", work / "fcn32s.pt", image, "--out", work / "pred",
          "--device", "cpu"], work, env)
    assert (work / "pred" / f"{image.stem}.png").is_file()


def test_pip_install_dot_gives_working_commands(tmp_path):
    src = _copy_sources(tmp_path / "src")
    python = _fresh_venv(tmp_path / "venv")
    work = tmp_path / "work"
    work.mkdir()
    _pip_install(python, src, src)  # `pip install .`, from the source folder
    env = _env(tmp_path / "venv")
    fcn = tmp_path / "venv" / "bin" / "fcn"
    assert _run([fcn, "--version"], work, env).startswith("fcn (fcn-repro) 0.")
    assert _run([tmp_path / "venv" / "bin" / "convert-caffe", "-h"], work, env).startswith("Usage: convert-caffe")
    _run([fcn, "smoke", "data", work / "smoke-data"], work, env)
    assert (work / "smoke-data" / "voc2011" / "ImageSets" / "Segmentation" / "seg11valid.txt").is_file()
