"""Camera response: bring JPEG/PNG/TIFF frames into the gamma-2.2 domain that eq. (1) assumes.

A camera's JPEG tone curve is not x^2.2 (typically an S-curve with a shoulder). Assuming gamma
2.2 makes the long frame look inconsistent with the exposure ratio (about 2x off in the shadows),
and a network or a ghost test then rejects it. So the response is estimated from the bracket
itself (from brightness transfer functions between the frames' histograms, Grossberg & Nayar
2003, fitted as a smooth log curve), every frame is linearised with it and re-encoded as
`linear ** (1 / 2.2)`, after which `x ** 2.2 / t` is proportional to radiance.

Film scans, scanners and many camera JPEGs lift their darkest code above 0 (a black offset).
A smooth log curve cannot reach 0 there, so the dark end is measured from the longer frames
(`_measured_toe`), and an offset that piles up in the shortest frame (`black_level`) maps to 0.
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
MIN_SHARE = 2e-4  # share of a frame's samples a code needs to give a brightness transfer
SMOOTHNESS = 200.0  # weight of the curve's second difference (100-300 measured best on 5 camera kinds)
TOE_LEVEL = 1.0 / 64  # below this exposure the curve's dark end is measured from longer frames
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
        be `image` itself: a reader then holds one copy of each frame, not two. `image` may be
        8-bit codes (uint8), looked up directly."""
        return _lookup(image, np.power(self.curve, np.float32(1.0 / gamma), dtype=np.float32), bits, out)


def _lookup(image: np.ndarray, table: np.ndarray, bits: int, out: np.ndarray | None = None) -> np.ndarray:
    """`table` (256 codes x 3, linear between codes) applied to `image`, a frame of `bits`-bit
    codes scaled to [0, 1], through a lookup table: the same values as interpolating every pixel
    (np.interp took 1 s per channel of a 12 MP frame). 8-bit frames index the table itself,
    others a 16-bit table interpolated from it (exact for 16-bit codes)."""
    import cv2

    lut = np.ascontiguousarray(table.reshape(CODES, 1, 3), dtype=np.float32)
    if image.dtype == np.uint8:
        return cv2.LUT(np.ascontiguousarray(image), lut, dst=out)
    image = np.ascontiguousarray(image, dtype=np.float32)
    if bits <= 8:
        if float(image.min()) < 0.0:
            image = np.maximum(image, np.float32(0.0))
        codes = cv2.convertScaleAbs(image, alpha=CODES - 1)  # rounds and saturates at 255, in one pass
        return cv2.LUT(codes, lut, dst=out)
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


def _transfers(hists: np.ndarray, times: np.ndarray) -> list[tuple[np.ndarray, np.ndarray, float, np.ndarray]]:
    """Brightness transfer functions between every shorter and longer frame, per channel, from
    their histograms alone (Grossberg & Nayar 2003): the pixel at quantile q of the short frame
    is at quantile q of the long one, whatever moved between them. Each entry: the short
    frame's codes `z`, where they land in the long frame (`tau`, fractional codes), the log
    exposure ratio and each code's share of the frame. Codes that land in the long frame's clipped
    pile, or that share the long frame's zero pile, say nothing and are left out."""
    grid = np.arange(CODES, dtype=np.float64)
    out = []
    for i, j in ((i, j) for i in range(len(times)) for j in range(len(times)) if times[j] > times[i]):
        for short, long_ in zip(hists[i], hists[j]):
            total = short.sum()
            below_short, below_long = np.cumsum(short) / total, np.cumsum(long_) / total
            share = short / total
            middle_short, middle_long = below_short - share / 2, below_long - long_ / (2 * total)
            codes = np.nonzero(
                (share > MIN_SHARE) & (below_short < below_long[CODES - 2]) & (below_short - share > below_long[0])
            )[0]
            seen = long_ > 0
            tau = np.interp(middle_short[codes], middle_long[seen], grid[seen])
            keep = (tau > codes) & (tau < CODES - 1.5)
            out.append((codes[keep], tau[keep], float(np.log(times[j] / times[i])), share[codes[keep]]))
    return out


def _hat(codes: np.ndarray) -> np.ndarray:
    return np.clip(np.minimum(codes, CODES - 1 - codes) / ((CODES - 1) / 2), 0.0, 1.0)


def _fit_log_curve(transfers: list[tuple[np.ndarray, np.ndarray, float, np.ndarray]]) -> np.ndarray | None:
    """ln(exposure) per code from the transfers: g(tau(z)) - g(z) = ln(t_long / t_short), each
    code weighted by its share and by how far both ends are from black and white, plus
    SMOOTHNESS times g''. Exposure ratios alone leave a curve free up to wiggles that repeat
    at every ratio (Grossberg & Nayar's ambiguity); the smoothness term removes them."""
    z = np.concatenate([t[0] for t in transfers])
    if len(z) < MIN_DISTINCT_CODES:
        return None
    tau = np.concatenate([t[1] for t in transfers])
    ratio = np.concatenate([np.full(len(t[0]), t[2]) for t in transfers])
    weight = np.concatenate([np.sqrt(t[3]) for t in transfers]) * _hat(z) * _hat(tau)
    low = np.floor(tau).astype(np.int64)
    frac = tau - low
    rows = np.arange(len(z))
    data = np.zeros((len(z), CODES))
    np.add.at(data, (rows, low), weight * (1 - frac))
    np.add.at(data, (rows, np.minimum(low + 1, CODES - 1)), weight * frac)
    np.add.at(data, (rows, z), -weight)
    scale = SMOOTHNESS * float(np.sqrt(np.mean(weight**2)))
    inner = np.arange(1, CODES - 1)
    smooth = np.zeros((CODES - 2, CODES))
    smooth[inner - 1, inner - 1], smooth[inner - 1, inner], smooth[inner - 1, inner + 1] = scale, -2 * scale, scale
    anchor = np.zeros((1, CODES))
    anchor[0, CODES - 1] = scale
    system = np.concatenate([data, smooth, anchor])
    target = np.concatenate([weight * ratio, np.zeros(CODES - 1)])
    g = np.linalg.lstsq(system, target, rcond=None)[0]
    return g - g[-1]


def _measured_toe(curve: np.ndarray, transfers: list[tuple[np.ndarray, np.ndarray, float, np.ndarray]], black: int) -> np.ndarray:
    """`curve` with its dark end measured from the longer frames instead of extrapolated.

    A smooth log curve cannot follow the toe of a response with a black offset (it would have to
    fall to -inf there), and noise moves the darkest codes away from any noise-free curve. Below
    the code where the curve reaches TOE_LEVEL, each code's exposure is read from where its
    pixels land in longer frames (`f(z) = f(tau(z)) / ratio`, coded from the top down so that
    every tau is already known): the mean exposure of the pixels that show that code. Codes at
    or below a found `black` are 0; codes never read are interpolated between their neighbours
    (and 0 at the black).
    """
    out = curve.astype(np.float64).copy()
    top = int(np.argmax(out >= TOE_LEVEL))
    sums, weights = np.zeros(CODES), np.zeros(CODES)
    grid = np.arange(CODES, dtype=np.float64)
    by_code: dict[int, list[tuple[float, float, float]]] = {}
    for codes, tau, ratio, share in transfers:
        for z, t, w in zip(codes, tau, share):
            if z < top:
                by_code.setdefault(int(z), []).append((float(t), float(np.exp(-ratio)), float(w * _hat(np.asarray(t)))))
    for z in range(top - 1, black, -1):
        for t, inverse, w in by_code.get(z, []):
            value = np.interp(t, grid, out)
            if np.isfinite(value):  # not landing beside a code no pixel showed
                sums[z] += w * value * inverse
                weights[z] += w
        out[z] = sums[z] / weights[z] if weights[z] > 0 else np.nan
    seen = np.nonzero(weights[:top] > 0)[0]  # codes read from finite values, all above the black
    out[: black + 1] = 0.0
    between = np.arange(black + 1, top)
    known = np.concatenate([[black], seen, [top]]).astype(np.float64)
    out[between] = np.interp(between, known, np.concatenate([[0.0], out[seen], [out[top]]]))
    return np.minimum.accumulate(out[::-1])[::-1]


def calibrate(images: Sequence[np.ndarray], exposures: Sequence[float]) -> Response | None:
    """The camera's response from the bracket itself, or None when the bracket cannot support it.

    The curve is fitted to brightness transfer functions between the frames' histograms
    (`_transfers`, `_fit_log_curve`), not to sampled pixels: histograms need no registration and
    ignore what moved, and they average every pixel instead of a few hundred. On brackets of
    real HDR photographs through the project's camera model (bench/response_calibration.py) this
    took the mean log error of the curve from 0.29-1.21 (OpenCV's CalibrateDebevec on 300
    samples) to 0.06-0.11 wherever anything moved; on static tripod brackets the two are close. A camera applies one tone curve to all three channels after white balance, so
    the channels' transfers are fitted together. The dark end is then measured from longer
    frames (`_measured_toe`); a black offset that piles up in the shortest frame
    (`black_level`) maps to 0 and is reported.
    """
    # Work on at most ~1 MP: histograms of a regular subsample are those of the frame.
    height, width = images[0].shape[:2]
    step = max(1, int(np.ceil(np.sqrt(height * width / 1.0e6))))
    codes = [
        np.ascontiguousarray(image[::step, ::step]) if image.dtype == np.uint8 else (np.clip(image[::step, ::step], 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
        for image in images
    ]
    # Too few distinct codes leave the curve to the smoothness prior alone: nothing was measured.
    if len(np.unique(np.concatenate([c.ravel() for c in codes]))) < MIN_DISTINCT_CODES:
        return None
    times = np.asarray(exposures, dtype=np.float64)
    hists = np.stack([[np.bincount(c[..., k].ravel(), minlength=CODES) for k in range(3)] for c in codes]).astype(np.float64)
    shortest = codes[int(np.argmin(times))]
    black = black_level(np.concatenate([shortest[:, :, k] for k in range(3)], axis=1))
    transfers = _transfers(hists, times)
    g = _fit_log_curve(transfers)
    if g is None or not np.isfinite(g).all():
        return None
    curve = np.maximum.accumulate(np.exp(g))
    # A usable response rises by several stops from the dark end to white; flat curves mean the
    # bracket had too little overlap or texture to constrain it.
    if curve[32] <= 0 or curve[-1] / max(curve[32], 1e-12) < 4.0:
        return None
    curve = _measured_toe(curve / curve[-1], transfers, black)
    return Response(np.repeat(curve[:, None], 3, axis=1).astype(np.float32), "calibrated", black)


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
