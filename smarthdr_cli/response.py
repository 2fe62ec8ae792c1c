"""Camera response: bring JPEG/PNG/TIFF frames into the gamma-2.2 domain that eq. (1) assumes.

A camera's JPEG tone curve is not x^2.2 (typically an S-curve with a shoulder). Assuming gamma
2.2 makes the long frame look inconsistent with the exposure ratio (about 2x off in the shadows),
and a network or a ghost test then rejects it. So the response is estimated from the bracket
itself (Debevec & Malik 1997, OpenCV's implementation), every frame is linearised with it and
re-encoded as `linear ** (1 / 2.2)`, after which `x ** 2.2 / t` is proportional to radiance.

Film scans, scanners and many camera JPEGs lift their darkest code above 0 (a black offset).
Debevec's curve is a log curve and cannot reach 0, so it maps that code to a positive floor, and
every dark pixel of every frame becomes the same small radiance. The offset is therefore found
from the bracket (`black_level`), the curve is fitted to the codes above it, and its toe is
rebuilt to reach 0 there.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from smarthdr_cli.bracket import GAMMA
from smarthdr_cli.errors import InputError

CODES = 256
LOOKUP = 65536  # entries of the table frames are looked up in (16-bit codes)
MIN_DISTINCT_CODES = 64
MAX_BLACK = 40  # codes: a "black" above about 15% of the range is content, not an offset
BLACK_PILE = 0.005  # share of the darkest frame's samples that must sit at the black level
TOE_CODES = 4  # codes above the black where Debevec's curve is unreliable (weights, smoothness)
TOE_EXPONENT = (0.5, 3.0)  # range of the toe's power law
RESPONSE_CHOICES = ("auto", "gamma", "calibrate")  # or a curve file


@dataclass(frozen=True)
class ResponseChoice:
    """How frames are brought to the gamma-2.2 domain: `text` is auto, gamma, calibrate or a
    curve file's path, as given; `source` names the choice in messages (the CLI: its flag)."""

    text: str = "auto"
    source: str = "response"

    @property
    def file(self) -> Path | None:
        """The curve file, where the choice is one."""
        return None if self.text in RESPONSE_CHOICES else Path(self.text)

    def check(self) -> None:
        """Refuse a choice no bracket could use (a curve file that does not exist), before any frame is read."""
        if self.file is not None and not self.file.is_file():
            raise InputError(f"{self.source} {self.text}: choose auto, gamma, calibrate or an existing curve file")


def parse_response(text: str, source: str) -> ResponseChoice:
    """`text` (auto, gamma, calibrate or a curve file) as a checked ResponseChoice."""
    choice = ResponseChoice(text, source)
    choice.check()
    return choice


@dataclass(frozen=True)
class Response:
    """Relative linear exposure for each 8-bit code, per channel (256x3), with curve[255] = 1."""

    curve: np.ndarray
    source: str  # "gamma", "calibrated", or the file it came from
    black: int = 0  # 8-bit code that zero light maps to (film base, scanner, JPEG lift); 0 if none

    def linearise(self, image: np.ndarray, bits: int = 16) -> np.ndarray:
        """[0,1] frame -> relative linear exposure in [0,1]; 16-bit input is interpolated."""
        return _lookup(image, self.curve, bits)

    def to_gamma_domain(
        self, image: np.ndarray, gamma: float = GAMMA, bits: int = 16, out: np.ndarray | None = None
    ) -> np.ndarray:
        """`linearise(image) ** (1 / gamma)`; `out` (float32, C-contiguous, `image`'s shape) may
        be `image` itself: a reader then holds one copy of each frame, not two."""
        return _lookup(image, np.power(self.curve, np.float32(1.0 / gamma), dtype=np.float32), bits, out)


def _lookup(image: np.ndarray, table: np.ndarray, bits: int, out: np.ndarray | None = None) -> np.ndarray:
    """`table` (256 codes x 3, linear between codes) applied to `image`, a frame of `bits`-bit
    codes scaled to [0, 1], through a lookup table: the same values as interpolating every pixel
    (np.interp took 1 s per channel of a 12 MP frame). 8-bit frames index the table itself,
    others a 16-bit table interpolated from it (exact for 16-bit codes)."""
    import cv2

    image = np.ascontiguousarray(image, dtype=np.float32)
    if bits <= 8:
        if float(image.min()) < 0.0:
            image = np.maximum(image, np.float32(0.0))
        codes = cv2.convertScaleAbs(image, alpha=CODES - 1)  # rounds and saturates at 255, in one pass
        return cv2.LUT(codes, np.ascontiguousarray(table.reshape(CODES, 1, 3), dtype=np.float32), dst=out)
    image = np.clip(image, 0.0, 1.0)
    codes = np.empty(image.shape, dtype=np.uint16)
    np.rint(image * np.float32(LOOKUP - 1), out=codes, casting="unsafe")
    fine = np.arange(LOOKUP, dtype=np.float64) * ((CODES - 1) / (LOOKUP - 1))
    grid = np.arange(CODES, dtype=np.float64)
    planes = [
        np.interp(fine, grid, table[:, channel]).astype(np.float32).take(plane)
        for channel, plane in enumerate(cv2.split(codes))  # contiguous planes: take is 3x faster than on strided ones
    ]
    return cv2.merge(planes, dst=out)


def gamma_response(gamma: float = GAMMA) -> Response:
    codes = np.linspace(0.0, 1.0, CODES, dtype=np.float32)
    return Response(np.repeat((codes**gamma)[:, None], 3, axis=1), "gamma")


def _normalise_curve(curve: np.ndarray) -> np.ndarray | None:
    """Monotone, starting at >= 0 and ending at exactly 1 per channel; None if degenerate."""
    curve = np.asarray(curve, dtype=np.float64).reshape(CODES, -1)
    if curve.shape[1] == 1:
        curve = np.repeat(curve, 3, axis=1)
    if curve.shape[1] != 3 or not np.isfinite(curve).all():
        return None
    curve = np.maximum.accumulate(np.maximum(curve, 0.0), axis=0)
    top = curve[-1]
    if np.any(top <= 0) or np.any(curve[CODES // 2] <= 0):
        return None
    return (curve / top).astype(np.float32)


def black_level(codes: np.ndarray) -> int:
    """The 8-bit code that zero light maps to in the darkest frame's `codes`; 0 when it shows none.

    Zero light plus noise piles up at the offset with (nearly) nothing below it (JPEG smears the
    pile over a few codes); dark content without an offset tails off over many codes instead. So
    a pile that stands out is required, not just a darkest code above 0: a bright scene's short
    frame may simply hold no black. The level is where the pile's lower flank reaches half its
    height (the pile's own code when it is a single code).
    """
    hist = np.bincount(codes.ravel(), minlength=CODES).astype(np.float64)
    total = hist.sum()
    lowest = int(np.searchsorted(np.cumsum(hist), 0.0005 * total))  # stray codes (JPEG ringing) ignored
    if lowest < 2 or lowest > MAX_BLACK:
        return 0
    peak = lowest
    while peak < MAX_BLACK and hist[peak + 1] >= hist[peak]:
        peak += 1
    if hist[peak + 1] >= hist[peak]:
        return 0  # still rising: a tail of dark content, not a pile
    above = float(np.median(hist[peak + 3 : peak + 13]))
    if hist[peak - 1 : peak + 2].sum() < BLACK_PILE * total or hist[peak] < 2.0 * above:
        return 0
    return lowest + int(np.argmax(hist[lowest : peak + 1] >= hist[peak] / 2.0))


def _with_toe(curve: np.ndarray, black: int) -> np.ndarray:
    """`curve` that is 0 at and below the `black` code and rises from there as a power law to the
    fitted curve, with the exponent the fitted curve has just above the join.

    Debevec's log curve cannot reach 0: just above the black it bends back and, made monotone,
    stays flat over several codes, which would give those codes one radiance. The join is
    TOE_CODES above the black or where that flat run ends, whichever is higher.
    """
    flat = black + 1
    while flat < CODES - 1 and np.all(curve[flat + 1] <= curve[black + 1] * (1.0 + 1e-6)):
        flat += 1
    anchor = min(max(black + TOE_CODES, flat + 1), CODES // 2)
    upper = min(black + 2 * (anchor - black), CODES - 1)
    low, high = curve[anchor].astype(np.float64), curve[upper].astype(np.float64)
    ratio = np.maximum(high, 1e-12) / np.maximum(low, 1e-12)
    exponent = np.clip(np.log(ratio) / np.log((upper - black) / (anchor - black)), *TOE_EXPONENT)
    steps = (np.arange(black + 1, anchor, dtype=np.float64) - black)[:, None] / (anchor - black)
    out = curve.astype(np.float64).copy()
    out[: black + 1] = 0.0
    out[black + 1 : anchor] = low * steps**exponent
    return out.astype(np.float32)


def calibrate(images: Sequence[np.ndarray], exposures: Sequence[float]) -> Response | None:
    """Debevec-Malik response from the bracket itself, or None when the bracket cannot support it.

    A camera applies one tone curve to all three channels after white balance, so one curve is
    fitted to the samples of all channels together (the channels side by side as one grey image).
    Separate per-channel fits leave each channel's scale free and shift colours. A black offset
    seen in the shortest frame is subtracted: that code maps to 0 (see `black_level`).
    """
    import cv2

    # Work on at most ~1 MP: the fit samples a grid of points and needs no full-resolution frames.
    height, width = images[0].shape[:2]
    step = max(1, int(np.ceil(np.sqrt(height * width / 1.0e6))))
    frames = []
    for image in images:
        codes = (np.clip(image[::step, ::step], 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
        frames.append(np.ascontiguousarray(np.concatenate([codes[:, :, c] for c in range(3)], axis=1)))
    # Too few distinct codes leave the curve to the smoothness prior alone: nothing was measured.
    if len(np.unique(np.concatenate([f.ravel() for f in frames]))) < MIN_DISTINCT_CODES:
        return None
    times = np.asarray(exposures, dtype=np.float32)
    # With a black offset the fit sees the codes above it, stretched over 0..255: the curve is
    # the camera's curve of (code - black), and the pile at the black gets Debevec's least weight.
    black = black_level(frames[int(np.argmin(times))])
    stretch = np.clip((np.arange(CODES) - black) * (CODES - 1) / (CODES - 1 - black), 0, CODES - 1)
    if black:
        lut = np.round(stretch).astype(np.uint8)
        frames = [lut[f] for f in frames]
    try:
        estimator = cv2.createCalibrateDebevec(samples=300, lambda_=10.0, random=False)
        curve = _normalise_curve(np.asarray(estimator.process(frames, times)).reshape(CODES, 1))
    except cv2.error:
        return None
    if curve is None:
        return None
    # A usable response rises by several stops from the dark end to white; flat curves mean the
    # bracket had too little overlap or texture to constrain it.
    if np.any(curve[32] <= 0) or np.any(curve[-1] / np.maximum(curve[32], 1e-9) < 4.0):
        return None
    if black:
        grid = np.arange(CODES, dtype=np.float64)
        curve = np.stack([np.interp(stretch, grid, curve[:, c]) for c in range(3)], axis=1)
        curve = _with_toe(curve.astype(np.float32), black)
    return Response(curve, "calibrated", black)


def load_response(path: Path) -> Response:
    """A response file: 256 lines of 1 or 3 numbers (relative linear exposure for codes 0..255)."""
    try:
        rows = [
            [float(v) for v in line.replace(",", " ").split()]
            for line in path.read_text(encoding="utf-8").splitlines()
            if line.strip() and not line.lstrip().startswith("#")
        ]
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise InputError(f"{path}: cannot read response curve ({exc})") from None
    widths = {len(row) for row in rows}
    if len(rows) != CODES or widths not in ({1}, {3}):
        raise InputError(f"{path}: a response curve has 256 lines of 1 or 3 numbers (codes 0..255)")
    curve = _normalise_curve(np.asarray(rows))
    if curve is None:
        raise InputError(f"{path}: response curve must be finite, non-negative and rising")
    return Response(curve, str(path))
