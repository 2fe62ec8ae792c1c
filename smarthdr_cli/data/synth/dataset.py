"""`generate`: the whole dataset, checked first, written scene by scene, synth.json last."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from smarthdr_cli.data.synth.layout import check_targets, plan, prepare_output, write_summary
from smarthdr_cli.data.synth.options import SynthSettings, check_settings
from smarthdr_cli.data.synth.photos import load_source, source_files
from smarthdr_cli.data.synth.pool import run
from smarthdr_cli.data.synth.scene import streams


def generate(out: Path, settings: SynthSettings, progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """Write the dataset `settings` describe to `out`; returns the summary also written to synth.json.

    Every check (settings, sources, output folder) runs before the first scene. A scene folder
    appears complete or not at all; synth.json is written last.
    """
    from smarthdr_cli import __version__

    check_settings(settings)
    jobs = plan(settings)
    if settings.hdr_source is not None:  # decode the sources the scenes use now: a broken file fails early
        files = source_files(settings.hdr_source)
        for index in sorted({int(streams(settings.seed, i)["source"].integers(len(files))) for i, _, _ in jobs}):
            load_source(files[index])
    check_targets(out, [name for _, name, _ in jobs])
    prepare_output(out, settings.overwrite)
    for name in (settings.split or {}):
        (out / name).mkdir(exist_ok=True)
    scenes = []
    for (_, name, with_gt), params in zip(jobs, run(out, settings, jobs)):
        scenes.append({"folder": name, "ground_truth": with_gt, **params})
        if progress is not None:
            progress(len(scenes), len(jobs))
    return write_summary(out, settings, scenes, __version__)
