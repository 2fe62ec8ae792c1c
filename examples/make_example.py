"""Regenerate the bundled example bracket (examples/bracket/) with the project's own camera model.

A procedural HDR scene with a moving object, rendered at EV -2/0/+2 with sensor noise and a
gamma-2.2 response, written in the Kalantari layout: three PNG frames whose sorted names run
short -> long, and `exposure.txt` with one EV per line. Run: python examples/make_example.py
"""
from __future__ import annotations

from pathlib import Path

import imageio.v3 as iio

from smarthdr_cli.camera import render_bracket
from smarthdr_cli.data.synth.fixed_scene import moving_object, procedural_radiance

EVS = (-2, 0, 2)


def main(folder: Path = Path(__file__).resolve().parent / "bracket") -> None:
    folder.mkdir(parents=True, exist_ok=True)
    radiance = procedural_radiance(384, 576, seed=7)
    scenes, _ = moving_object(radiance, len(EVS), reference=1, seed=7)
    frames = render_bracket(scenes, [2.0 ** (ev - EVS[0]) for ev in EVS], noise=0.002, seed=7)
    for index, (frame, name) in enumerate(zip(frames, ("short", "medium", "long")), start=1):
        iio.imwrite(folder / f"{index}_{name}.png", frame)
    (folder / "exposure.txt").write_text("".join(f"{ev}\n" for ev in EVS))


if __name__ == "__main__":
    main()
