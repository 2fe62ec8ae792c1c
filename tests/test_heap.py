"""`heap.reused_heap`: freed blocks stay in the process inside the block and go back after it."""
from __future__ import annotations

import subprocess
import sys

import pytest

from smarthdr_cli import heap

CHECK = r"""
import numpy as np
from smarthdr_cli import heap

def rss():
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS")) / 1024

def churn():  # what SIFT does at every fit: blocks below the mmap threshold, made and freed
    blocks = [np.ones((8 << 20) // 8) for _ in range(24)]
    del blocks

start = rss()
churn()
plain = rss() - start
with heap.reused_heap():
    with heap.reused_heap():  # nested: the outer block decides
        churn()
        kept = rss() - start
    inner_end = rss() - start
after = rss() - start
print(round(plain), round(kept), round(inner_end), round(after))
"""


@pytest.mark.skipif(heap._LIBC is None, reason="glibc's mallopt only")
def test_freed_blocks_are_kept_inside_and_handed_back_after():
    done = subprocess.run([sys.executable, "-c", CHECK], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    plain, kept, inner_end, after = (int(v) for v in done.stdout.split())
    assert plain < 60, "without the block, glibc hands 192 MB of freed blocks back at once"
    assert kept > 150 and inner_end > 150, "inside the block the freed blocks stay for reuse"
    assert after < 60, "at the end of the outermost block they are handed back"


def test_outside_glibc_it_is_a_no_op(monkeypatch):
    monkeypatch.setattr(heap, "_LIBC", None)
    with heap.reused_heap():
        pass
