"""Starting numba without the scipy import it does not need here.

When numba sets up its compiler (the first call of a compiled function in a process, even one
loaded from the cache) it probes for BLAS by importing `scipy.linalg`: 0.2 s of Python work at
the merge's start, most of it `numpy.f2py`, which scipy's array-API layer pulls in. numba uses
the answer only to pick how `np.correlate`/`np.convolve` take inner products; its linear algebra
(`np.dot`, `np.linalg`) checks for scipy again when such code is compiled. The classic kernels
use neither, so the probe runs with scipy hidden from the starting thread, and numba is told
afterwards whether scipy is installed: what it would have found, without the import.
"""
from __future__ import annotations

import contextlib
import importlib.abc
import importlib.util
import sys
import threading
from typing import Iterator


class _HideScipy(importlib.abc.MetaPathFinder):
    """Makes `import scipy...` fail in one thread only; other threads import it as usual."""

    def __init__(self) -> None:
        self.thread = threading.get_ident()

    def find_spec(self, name: str, path: object = None, target: object = None) -> None:
        if threading.get_ident() == self.thread and (name == "scipy" or name.startswith("scipy.")):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None


@contextlib.contextmanager
def without_scipy() -> Iterator[None]:
    """Run numba's start-up (its import and first dispatch) in this block, scipy hidden."""
    probed_before = "numba.np.arraymath" in sys.modules
    finder = _HideScipy()
    sys.meta_path.insert(0, finder)
    try:
        yield
    finally:
        sys.meta_path.remove(finder)
        arraymath = sys.modules.get("numba.np.arraymath")
        if arraymath is not None and not probed_before and hasattr(arraymath, "_HAVE_BLAS"):
            arraymath._HAVE_BLAS = importlib.util.find_spec("scipy") is not None
