"""The one error every dataset reader raises for bad input on disk."""
from __future__ import annotations

import os
from pathlib import Path


class DatasetError(ValueError):
    """A dataset file is missing, unreadable or inconsistent.

    `path` is the offending file (or directory); `problem` says what is wrong with it.
    The message is "<path>: <problem>".
    """

    def __init__(self, path: str | os.PathLike[str], problem: str) -> None:
        self.path = Path(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")

    def __reduce__(self):  # picklable (DataLoader and multiprocessing workers send it back)
        return type(self), (self.path, self.problem)
