"""The shared argument checks."""

import numpy as np
import pytest

from scgde._utils import check_int


@pytest.mark.parametrize("value", [1, 7, np.int64(3), np.uint8(2)])
def test_check_int_accepts_integers_and_returns_python_ints(value):
    out = check_int(value, "n")
    assert out == int(value) and type(out) is int


@pytest.mark.parametrize("value", [2.0, 2.5, "3", True, np.bool_(True), None, [1]])
def test_check_int_refuses_non_integers_with_a_type_error(value):
    with pytest.raises(TypeError, match="`n` must be an integer, got"):
        check_int(value, "n")


@pytest.mark.parametrize(
    ("minimum", "value", "message"),
    [
        (1, 0, "`n` must be a positive integer, got 0"),
        (0, -1, "`n` must be a non-negative integer, got -1"),
        (2, 1, "`n` must be an integer >= 2, got 1"),
    ],
)
def test_check_int_refuses_values_below_the_minimum(minimum, value, message):
    with pytest.raises(ValueError, match=message):
        check_int(value, "n", minimum=minimum)
    assert check_int(minimum, "n", minimum=minimum) == minimum


def test_check_int_allows_none_only_when_asked():
    assert check_int(None, "n", allow_none=True) is None
    with pytest.raises(TypeError, match="integer or None"):
        check_int(1.5, "n", allow_none=True)
