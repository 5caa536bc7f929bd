"""Checkpoints under injected faults: bytes flipped, truncated, empty, non-finite, leftover temporaries.

Every .pt the project writes carries a content checksum (weight_convert.ptfile), checked by the one
loader, `load_pt`, that resume, --init, fcn infer/eval and the converter all use.
"""
import os
import shutil
import subprocess
import sys
import warnings

import pytest
import torch

from reproduce.training import checkpoint
from reproduce.evaluation.infer import WeightsError, load_weights
from reproduce.training.train import NonFiniteLossError, train
from train_support import assert_states_equal, read_state, tiny_experiment, voc_samples
from weight_convert.errors import WeightMismatchError
from weight_convert.ptfile import DamagedFileError, load_pt, verify
from weight_convert.sources import load_state_dict
from weight_convert.writers import write_arrays

WIDTH = 1 / 16


def _small_state():
    g = torch.Generator().manual_seed(0)
    return {"conv1_1.weight": torch.randn(4, 3, 3, 3, generator=g), "conv1_1.bias": torch.randn(4, generator=g),
            "upscore.weight": torch.randn(2, 2, 4, 4, generator=g)}


def _flip(path, offset):
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x10
    path.write_bytes(bytes(data))


def _equal(a, b):
    return isinstance(a, dict) and a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _flip_sweep(path, state, step=1):
    """Flip one bit at every `step`-th byte; returns (refused, loaded identical); fails on a silent change."""
    original = path.read_bytes()
    refused = identical = 0
    for offset in range(0, len(original), step):
        _flip(path, offset)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                loaded = load_pt(path)
        except ValueError as e:
            assert str(path) in str(e)
            refused += 1
        else:
            assert _equal(loaded, state), f"flip at byte {offset} of {len(original)} loaded different tensors"
            identical += 1
        path.write_bytes(original)
    return refused, identical


def test_every_byte_flip_of_a_snapshot_is_refused_or_loads_identical(tmp_path):
    state = _small_state()
    path = checkpoint.save_atomic(state, tmp_path / "iter_2.pt")
    assert verify(path) is True
    refused, identical = _flip_sweep(path, state)
    print(f"checksummed file, {path.stat().st_size} bytes: {refused} flips refused, {identical} loaded identical")
    assert refused > 0.9 * (refused + identical)


def test_old_files_without_checksum_warn_and_their_crcs_are_checked(tmp_path):
    state = _small_state()
    path = tmp_path / "old.pt"
    torch.save(state, path)
    with pytest.warns(UserWarning, match="no content checksum"):
        assert _equal(load_pt(path), state)
    refused, identical = _flip_sweep(path, state, step=7)
    print(f"old file (zip CRCs only): {refused} flips refused, {identical} loaded identical")
    assert refused > 0


@pytest.mark.parametrize("fault", ["truncated", "empty"])
def test_truncated_or_empty_file_is_refused_naming_it(tmp_path, fault):
    path = checkpoint.save_atomic(_small_state(), tmp_path / "final.pt")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2] if fault == "truncated" else b"")
    with pytest.raises(DamagedFileError, match="final.pt"):
        load_pt(path)


def test_every_load_path_refuses_a_damaged_file(tmp_path):
    state = _small_state()
    converted = tmp_path / "converted.pt"
    write_arrays(converted, state)
    assert verify(converted) is True
    assert _equal(dict(load_state_dict(converted)), state)
    offset = converted.read_bytes().index(state["upscore.weight"].numpy().tobytes()[:16]) + 8
    _flip(converted, offset)
    with pytest.raises(WeightMismatchError, match="converted.pt.*checksum"):
        load_state_dict(converted)
    net = tiny_experiment().build_net(width=WIDTH)
    weights = checkpoint.save_atomic(checkpoint.cpu_state_dict(net), tmp_path / "final.pt")
    assert load_weights(net, weights) is None
    _flip(weights, weights.stat().st_size // 2)
    with pytest.raises(WeightsError, match="final.pt"):
        load_weights(net, weights)
    with pytest.raises(ValueError, match="final.pt"):
        checkpoint.load_init(net, [weights])


def _train(out, max_iter=6, **changes):
    exp = tiny_experiment(**{"base_lr": 1e-7, "momentum": 0.99, "max_iter": max_iter, "test_interval": 6,
                             "snapshot": 2, **changes})
    return train(exp, data_root=None, init=None, out_dir=out, width=WIDTH, train_dataset=voc_samples(32),
                 val_dataset=voc_samples(32), progress=False, display=1, keep_snapshots=0)


def _damage(path, fault):
    data = path.read_bytes()
    path.write_bytes({"flipped": lambda: data[: len(data) // 2] + bytes([data[len(data) // 2] ^ 1])
                      + data[len(data) // 2 + 1:],
                      "truncated": lambda: data[: len(data) // 3], "empty": lambda: b""}[fault]())


def test_resume_skips_damaged_newest_snapshots_and_ends_identical(tmp_path):
    reference = _train(tmp_path / "reference")
    final = read_state(reference / "final.pt")
    for fault in ("flipped", "truncated", "empty"):
        run = tmp_path / fault
        shutil.copytree(reference, run)
        (run / "final.pt").unlink()
        _damage(run / "snapshot" / "iter_6.pt", fault)
        with pytest.warns(UserWarning, match="iter_6.pt"):
            _train(run)
        assert (run / "snapshot" / "iter_6.pt.damaged").exists(), fault
        assert_states_equal(read_state(run / "final.pt"), final)
    # none valid: a clear error
    run = tmp_path / "none"
    shutil.copytree(reference, run)
    (run / "final.pt").unlink()
    for _, path in checkpoint.list_snapshots(run / "snapshot"):
        _damage(path, "empty")
    with pytest.warns(UserWarning), pytest.raises(ValueError, match="no valid checkpoint"):
        _train(run)


def test_divergence_writes_no_non_finite_snapshot(tmp_path):
    out = tmp_path / "run"
    with pytest.raises(NonFiniteLossError) as err, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _train(out, base_lr=1e38, snapshot=1)
    for _, path in checkpoint.list_snapshots(out / "snapshot"):
        state = checkpoint.load_checkpoint(path)
        assert not checkpoint.nonfinite_entries({"net": state["net"], "solver": state["solver"]["history"]}), path
    named = checkpoint.latest_snapshot(out / "snapshot")
    assert str(named or "none (no snapshot written yet)") in str(err.value)
    assert any("not written, non-finite" in str(w.message) for w in caught)


def test_leftover_temporaries_of_dead_processes_are_removed_at_the_next_start(tmp_path):
    out = _train(tmp_path / "run", max_iter=2)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True).stdout.strip()
    snap = out / "snapshot"
    stale = [snap / f".iter_4.pt.{dead}.abc123.tmp", snap / ".iter_2.pt.k3j4h5.tmp"]
    alive = snap / f".iter_4.pt.{os.getppid()}.xyz789.tmp"
    for p in stale + [alive]:
        p.write_bytes(b"half a checkpoint")
    _train(out, max_iter=4)
    assert not any(p.exists() for p in stale)
    assert alive.exists()
    assert [i for i, _ in checkpoint.list_snapshots(snap)] == [2, 4]


def test_cuda_rng_states_saved_with_more_devices_visible_resume_on_fewer(monkeypatch):
    """A snapshot written while 4 GPUs were visible resumes in a job pinned to 1 (and one written with 1
    on 2): only the devices visible now get a state back; torch.cuda.set_rng_state_all would raise."""
    restored = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "set_rng_state", lambda s, device: restored.append((device, int(s[0]))))
    states = [torch.full((16,), i, dtype=torch.uint8) for i in range(4)]
    cpu = torch.get_rng_state()
    for visible, want in [(1, [(0, 0)]), (2, [(0, 0)])]:
        monkeypatch.setattr(torch.cuda, "device_count", lambda: visible)
        restored.clear()
        checkpoint.set_rng_state({"torch_cpu": cpu, "torch_cuda": states if visible == 1 else states[:1]})
        assert restored == want
    checkpoint.set_rng_state({"torch_cpu": cpu, "torch_cuda": None})
    assert torch.equal(torch.get_rng_state(), cpu)
