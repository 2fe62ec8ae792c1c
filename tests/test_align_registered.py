"""Issue 13: alignment must not move frames of a bracket that is already registered.

A real bracket registered to the pixel had its short frame "moved 26.5 px (homography)": on a
dark, noisy, mostly underexposed frame ECC converges somewhere (along the sky's gradient, or to
where resampling averages the noise away), and nothing compared that against leaving it alone.
"""
import json
import re

import numpy as np
import pytest

from conftest import write_bracket
from smarthdr_cli import align
from smarthdr_cli.app import app
from smarthdr_cli.camera import render_bracket
from smarthdr_cli.data.synth.camera_motion import camera_warp
from smarthdr_cli.data.synth.fixed_scene import procedural_radiance
from smarthdr_cli.io.hdr import read_hdr
from smarthdr_cli.metrics import psnr_mu


def _merge(runner, paths, out, ev, mode):
    result = runner.invoke(app, ["merge", *map(str, paths), "-o", str(out), "--ev", ev, "--response", "gamma",
                                 "--backend", "classic", "--align", mode, "--float32", "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout), result.stderr.splitlines(), read_hdr(out)


@pytest.mark.parametrize("seed,stops", [(5, 3), (4, 4)])
def test_registered_bracket_with_a_dark_noisy_short_frame_stays_in_place(runner, tmp_path, seed, stops):
    radiance = procedural_radiance(384, 576, seed=seed)
    times = [2.0**-stops, 1.0, 2.0**stops]
    frames = render_bracket(radiance, times, noise=0.01, seed=seed)
    short, long = frames[0].astype(np.float32) / 255, frames[2].astype(np.float32) / 255
    assert (short.max(axis=2) < 0.2).mean() > 0.6 and (long.max(axis=2) > 0.99).mean() > 0.4  # dark / clipped
    paths = write_bracket(tmp_path / "b", frames)
    ev = f"{-stops},0,{stops}"
    report, lines, homography = _merge(runner, paths, tmp_path / "h.exr", ev, "homography")
    for name in ("frame1.png", "frame3.png"):
        line = next(line for line in lines if line.startswith(f"align {name}: "))
        assert line.startswith(f"align {name}: kept in place"), line
    assert all("kept in place" in entry for entry in report["alignment"]), report["alignment"]
    _, _, unaligned = _merge(runner, paths, tmp_path / "n.exr", ev, "none")
    assert np.allclose(homography, unaligned, rtol=1e-6, atol=0.0)


def test_a_hand_held_bracket_is_still_aligned(runner, tmp_path):
    """Frames moved by a few px and a fraction of a degree, as a hand-held bracket is."""
    radiance = procedural_radiance(384, 576, seed=6)
    motions = [((5.0, -3.0), 0.3), ((0.0, 0.0), 0.0), ((-4.0, 2.5), -0.25)]
    scenes = [camera_warp(radiance, shift, angle) for shift, angle in motions]
    frames = render_bracket(scenes, [0.25, 1.0, 4.0], noise=0.002, seed=6)
    paths = write_bracket(tmp_path / "b", frames)
    report, lines, aligned = _merge(runner, paths, tmp_path / "h.exr", "-2,0,2", "homography")
    _, _, unaligned = _merge(runner, paths, tmp_path / "n.exr", "-2,0,2", "none")
    for name, ((dx, dy), _) in zip(("frame1.png", "frame3.png"), (motions[0], motions[2])):
        line = next(line for line in lines if line.startswith(f"align {name}: "))
        moved = re.fullmatch(rf"align {name}: (translation|homography), moved ([0-9.]+) px", line)
        assert moved, line
        # the corners of a frame rotated by a fraction of a degree move further than its centre
        assert np.hypot(dx, dy) - 1.0 < float(moved.group(2)) < np.hypot(dx, dy) + 4.0, line
    inner = (slice(24, -24), slice(24, -24))
    truth = radiance[inner] * 0.25  # the reference's (unmoved) view, in units of the short frame's clipping
    gain = psnr_mu(aligned[inner], truth) - psnr_mu(unaligned[inner], truth)
    assert gain > 2.0, gain


def test_identity_is_preferred_unless_a_warp_clearly_beats_it():
    radiance = procedural_radiance(384, 576, seed=5)
    frames = [f.astype(np.float32) / 255 for f in render_bracket(radiance, [0.125, 1.0, 8.0], noise=0.01, seed=5)]
    for index, exposure in ((0, 1.0), (2, 64.0)):
        fit = align.estimate(frames[1], 8.0, frames[index], exposure, "homography")
        assert not fit.applied and fit.reason.startswith("kept in place"), fit.reason
    # the same scene, EV -2/0 and less noise, its short frame really moved by 6.3 px: moved back
    frames = [f.astype(np.float32) / 255 for f in render_bracket(radiance, [0.25, 1.0], noise=0.002, seed=5)]
    moved = camera_warp(frames[0], (6.0, -2.0), 0.0)
    fit = align.estimate(frames[1], 4.0, moved, 1.0, "homography")
    assert fit.applied and 5.5 < fit.shift_px < 7.5, fit.reason
