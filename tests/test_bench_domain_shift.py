"""bench/domain_shift.py's table: the figures the README quotes come out of `summarise`."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"


@pytest.fixture
def domain_shift(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCH))
    import domain_shift

    yield domain_shift
    for name in ("domain_shift", "reproduce_ablation", "ship_weights", "common"):
        sys.modules.pop(name, None)


def _run(row: str, seed: int | None, b: float, a: float) -> dict:
    def scores(value: float) -> dict:
        return {"mean": {"psnr_mu": value, "ssim_mu": value / 100}, "reference": {"psnr_mu": 20.0, "ssim_mu": 0.2}}

    return {"row": row, "seed": seed, "scores": {"B": scores(b), "A": scores(a)}}


def test_table_gives_means_margins_and_paired_leads(domain_shift) -> None:
    runs = [
        _run("shipped", None, 30.0, 40.0), _run("classic", None, 29.0, 35.0),
        _run("sup-A", 0, 29.0, 39.0), _run("sup-A", 1, 29.5, 39.5), _run("sup-A", 2, 28.0, 39.0),
        _run("recipe", 0, 30.0, 40.0), _run("recipe", 1, 30.5, 40.0), _run("recipe", 2, 30.5, 40.0),
        _run("recipe", 3, 99.0, 99.0),  # a seed beyond --seeds is left out
    ]
    table = {line["row"]: line for line in domain_shift.summarise(runs, seeds=3)}
    assert table["recipe"]["B"]["psnr_mu"] == pytest.approx(30.333, abs=1e-3) and table["recipe"]["B"]["seeds"] == 3
    assert table["sup-A"]["B"]["psnr_mu"] == pytest.approx(28.833, abs=1e-3)
    assert table["reference"]["B"]["psnr_mu"] == 20.0 and table["classic"]["A"]["psnr_mu"] == 35.0
    paired = table["recipe - sup-A (B, paired)"]["B"]
    assert paired["psnr_mu"] == pytest.approx((1.0 + 1.0 + 2.5) / 3) and paired["seeds"] == 3
    assert paired["psnr_mu_margin"] == pytest.approx(4.303 * 0.866025 / 3**0.5, rel=1e-3)  # t(2) x sd / sqrt(n)
    assert table["recipe - shipped (B)"]["B"]["psnr_mu"] == pytest.approx(0.333, abs=1e-3)
