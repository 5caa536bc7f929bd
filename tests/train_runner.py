"""`fcn train` in a process of its own on the 4 fixture samples at 32 px (this module holds no tests).

    python tests/train_runner.py voc-fcn32s --width 0.0625 --out DIR ...
    python tests/train_runner.py eval voc-fcn32s --weights W ...   (fcn eval, the same samples)

runs the real command line (reproduce.commands.train_cli, reproduce.commands.eval_cli) with every experiment's splits replaced by the
in-memory samples of train_support.voc_samples(32), one torch thread, so that the run-operations
tests (tests/test_train_runops.py) can signal, kill and lock real trainer processes and compare
their weights bit for bit. FCN_TEST_SECONDS_PER_IMAGE (seconds, default 0) slows the loading of
every training image, so that a signal can land at any point of a run of a few dozen iterations;
FCN_TEST_SECONDS_PER_SNAPSHOT (default 0) makes every checkpoint write that much slower, so that a
second signal can land while one is written.
"""
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402

from reproduce.experiments.base import Experiment  # noqa: E402
from train_support import SmallDataset, voc_samples  # noqa: E402


class SlowDataset(SmallDataset):
    """The samples, each one `delay` seconds late (a stand-in for decoding a large image)."""

    def __init__(self, base: SmallDataset, delay: float) -> None:
        super().__init__(base.samples, base.ids)
        self.delay = delay

    def __getitem__(self, i):
        time.sleep(self.delay)
        return super().__getitem__(i)


def _split(self, root, which="val", **kw):
    delay = float(os.environ.get("FCN_TEST_SECONDS_PER_IMAGE", "0"))
    return SlowDataset(voc_samples(32), delay) if which == "train" and delay > 0 else voc_samples(32)


def _slow_snapshots(delay: float) -> None:
    from reproduce.training import checkpoint
    save = checkpoint.save_atomic

    def slow_save(obj, path, record=None):
        if Path(path).parent.name == "snapshot":
            time.sleep(delay)
        return save(obj, path, record)

    checkpoint.save_atomic = slow_save


if __name__ == "__main__":
    torch.set_num_threads(1)
    Experiment.open_split = _split
    if float(os.environ.get("FCN_TEST_SECONDS_PER_SNAPSHOT", "0")) > 0:
        _slow_snapshots(float(os.environ["FCN_TEST_SECONDS_PER_SNAPSHOT"]))
    if sys.argv[1:2] == ["eval"]:
        from reproduce.commands.eval_cli import eval_command
        sys.argv = ["fcn", *sys.argv[1:]]
        eval_command(sys.argv[2:], prog_name="fcn eval")
    from reproduce.commands.train_cli import train_command
    sys.argv = ["fcn", "train", *sys.argv[1:]]
    train_command(sys.argv[2:], prog_name="fcn train")
