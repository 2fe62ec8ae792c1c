import numpy as np
import pytest

from smarthdr_cli.bracket import Bracket, check_content, choose_three
from smarthdr_cli.errors import BracketError


@pytest.mark.parametrize(
    "count, reference, chosen, position",
    [
        (2, None, [0, 1], 0),
        (3, None, [0, 1, 2], 1),
        (5, None, [0, 2, 4], 1),
        (9, None, [0, 4, 8], 1),
        (4, None, [0, 1, 3], 1),
        (5, 0, [0, 1, 4], 0),
        (5, 4, [0, 3, 4], 2),
        (5, 3, [0, 3, 4], 1),
    ],
)
def test_choose_three(count, reference, chosen, position):
    assert choose_three(count, reference) == (chosen, position)


def test_choose_three_refuses_single_frames_and_bad_reference():
    with pytest.raises(BracketError):
        choose_three(1, None)
    with pytest.raises(BracketError):
        choose_three(3, 5)


def test_bracket_validates():
    frame = np.zeros((4, 5, 3), np.float32)
    with pytest.raises(BracketError, match="differ in size"):
        Bracket([frame, np.zeros((5, 4, 3), np.float32)], np.array([1.0, 4.0]), 0)
    with pytest.raises(BracketError, match="increasing"):
        Bracket([frame, frame], np.array([4.0, 1.0]), 0)
    with pytest.raises(BracketError, match="at least 2"):
        Bracket([frame], np.array([1.0]), 0)


def test_check_content_refuses_black_and_white_frames():
    rng = np.random.default_rng(0)
    good = rng.random((20, 20, 3)).astype(np.float32)
    check_content([good], ["good"])
    with pytest.raises(BracketError, match="black.png: frame is entirely black"):
        check_content([good, np.zeros_like(good)], ["good", "black.png"])
    with pytest.raises(BracketError, match="entirely saturated"):
        check_content([np.ones_like(good)], ["white.png"])


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_content_check_refuses_a_single_non_finite_value(bad):
    frame = np.full((30, 40, 3), 0.5, np.float32)
    check_content([frame], ["ok"])
    frame[17, 23, 1] = bad
    with pytest.raises(BracketError, match="non-finite"):
        check_content([frame], ["bad"])


def test_content_check_of_codes_decides_as_for_their_float_values():
    """Every code, as a flat frame of codes and of their float values: the same verdict."""
    refused = set()
    for code in range(256):
        frame = np.full((40, 40, 3), code, np.uint8)
        verdicts = []
        for image in (frame, np.divide(frame, np.float32(255.0), dtype=np.float32)):
            try:
                check_content([image], ["f"])
                verdicts.append("ok")
            except BracketError as exc:
                verdicts.append(str(exc))
        assert verdicts[0] == verdicts[1], (code, verdicts)
        if verdicts[0] != "ok":
            refused.add(code)
    assert refused == {0, 1, 2, *range(250, 256)}
