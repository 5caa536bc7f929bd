"""Shared by every test module: the helper modules beside the tests (caffe_encoder, train_support,
train_runner) import by their plain names, whichever way pytest was started (from the repository
root or from tests/, with any --import-mode)."""
from __future__ import annotations

import sys
from pathlib import Path

HERE = str(Path(__file__).resolve().parent)
if HERE not in sys.path:
    sys.path.insert(0, HERE)
