"""Synthetic training data: dynamic LDR exposure brackets with HDR ground truth, Kalantari layout.

Learned merges need brackets with ground truth, and real ones are scarce (Kalantari has 89
scenes). This engine makes any number of them, deterministically from a seed, fast enough for
hundreds of 1000x1500 scenes, for pre-training and for the project's training experiments.
Scene `i` depends only on (settings, seed, i): each part of a scene draws from a random stream of
its own (`scene.STREAMS`), so e.g. turning noise off leaves the content unchanged.

One generator, one module per concern, in the order a scene is made (each module's docstring
holds its part of the model):

* `options`: `SynthSettings`, their checks and the parsers of the CLI's option strings.
* `profiles`: how a scene is shot (`Capture`): the settings' fields (profile "custom") or a draw
  of the training mix or a test class (EV set, exposure placement, camera motion, objects, tone
  curve, bit depth, JPEG storage, ISO).
* `worlds` (procedural day, night and interior scenes) or `photos` (crops of real HDR
  photographs): the background radiance, metered by `capture.meter`.
* `objects` (moving sprites) and `camera_motion` (hand-held shift, rotation, perspective).
* `capture`: metering and shooting the bracket with the project's one sensor model,
  `smarthdr_cli.camera` (exposure, Poisson-Gaussian noise, tone curve, quantisation).
* `scene`: one scene in memory (`synth_scene`), with its ground truth and motion mask.
* `layout`: scene folders and synth.json on disk; `pool`: worker processes; `dataset`: `generate`.
* `fixed_scene`: the older fixed test scene (tests, benchmarks, the bundled example).
* `primitives`: random draws, value noise and luminance the scene builders share.

Layering: this package is a use case (data); the sensor model it shoots with, `smarthdr_cli.camera`,
is core code and imports nothing from here.
"""
from __future__ import annotations

from smarthdr_cli.data.synth.dataset import generate
from smarthdr_cli.data.synth.options import SynthSettings, parse_ev_sets, parse_objects, parse_split

__all__ = ["SynthSettings", "generate", "parse_ev_sets", "parse_objects", "parse_split"]
