"""Scenes generated serially or in worker processes, in index order either way.

Workers are spawned processes that share the machine's cores between their OpenCV thread pools.
A scene depends only on (settings, index), so the output is identical for any number of workers.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

from smarthdr_cli.data.synth.layout import write_scene
from smarthdr_cli.data.synth.options import SynthSettings
from smarthdr_cli.data.synth.scene import synth_scene
from smarthdr_cli.machine import usable_cores


def _make_scene(settings: SynthSettings, index: int, folder: Path, with_gt: bool) -> dict[str, Any]:
    """Generate and write one scene; its parameters for synth.json (also runs in worker processes)."""
    scene = synth_scene(settings, index)
    write_scene(scene, folder, with_gt, overwrite=settings.overwrite)
    return scene.params


def _start_worker(threads: int) -> None:
    import cv2

    cv2.setNumThreads(threads)


def run(out: Path, settings: SynthSettings, jobs: list[tuple[int, str, bool]]) -> Iterator[dict[str, Any]]:
    """Parameters of every scene in `jobs`, in order, generated serially or in `settings.jobs` processes."""
    workers = max(1, min(settings.jobs, len(jobs)))
    if workers == 1:
        for index, name, with_gt in jobs:
            yield _make_scene(settings, index, out / name, with_gt)
        return
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    threads = max(1, usable_cores() // workers)
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(workers, mp_context=context, initializer=_start_worker, initargs=(threads,)) as pool:
        futures = [pool.submit(_make_scene, settings, index, out / name, with_gt) for index, name, with_gt in jobs]
        try:
            for future in futures:
                yield future.result()
        except BaseException:
            for future in futures:
                future.cancel()
            raise
