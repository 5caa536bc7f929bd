"""Shared by every test module: the helper modules beside the tests (caffe_encoder, train_support,
train_runner) import by their plain names, whichever way pytest was started (from the repository
root or from tests/, with any --import-mode)."""
from __future__ import annotations

import sys
from pathlib import Path

HERE = str(Path(__file__).resolve().parent)
if HERE not in sys.path:
    sys.path.insert(0, HERE)


# ------------------------------------------------------------------------------------------------
# @pytest.mark.cuda: tests of the GPU path (tests/test_cuda.py; `make test-gpu` runs only them)
# ------------------------------------------------------------------------------------------------
def cuda_skip_reason() -> str | None:
    """Why the cuda-marked tests cannot run here (None when they can)."""
    from reproduce.device import cuda_unavailable_reason
    reason = cuda_unavailable_reason()
    return None if reason is None else f"needs a CUDA GPU: {reason}"


def pytest_configure(config) -> None:
    # FCN_REQUIRE_CUDA=1 (make test-gpu): the point of the run is to prove the GPU path, so a
    # machine without CUDA is an error, not a run of skips.
    import os
    if os.environ.get("FCN_REQUIRE_CUDA") == "1":
        from reproduce.device import cuda_unavailable_reason
        reason = cuda_unavailable_reason()
        if reason is not None:
            import pytest
            pytest.exit(f"make test-gpu: no usable CUDA device here ({reason}); the cuda-marked tests "
                        f"prove the GPU path and need one (make test runs the CPU suite)", returncode=3)


def pytest_collection_modifyitems(config, items) -> None:
    reason = None
    for item in items:
        if item.get_closest_marker("cuda") is not None:
            reason = reason or cuda_skip_reason() or ""
            if reason:
                import pytest
                item.add_marker(pytest.mark.skip(reason=reason))
