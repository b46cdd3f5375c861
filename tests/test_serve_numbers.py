"""The numbers of a request: read without a per-value check when written plainly (issue 19).

``plain_numbers(body)`` lets ``read_inputs`` skip the search for infinities and integers past
64 bits in numpy's array; it must never say yes for a body that holds one.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from modelstore._serve_request import ClientError, Limits, parse_body, plain_numbers, read_inputs

LIMITS = Limits()


def _read(body: bytes) -> np.ndarray:
    data = parse_body(body, LIMITS)
    plain = plain_numbers(body)
    a, _ = read_inputs(data, LIMITS, texts=False, plain=plain)
    b, _ = read_inputs(data, LIMITS, texts=False)  # the checked reading
    np.testing.assert_array_equal(a, b)
    return np.asarray(a)


@pytest.mark.parametrize(
    "text",
    [
        "1e999",  # overflows a float
        "-1E400",
        "123456789012345678901234567890",  # an integer past 64 bits
        "9223372036854775808",  # 2**63
        "1" + "0" * 308 + ".5",  # a float past the largest one, written out
        "0.00000000000000000001",  # many digits in a row: not plain, still fine
        "1.5e3",
    ],
)
def test_what_plain_numbers_refuses(text: str) -> None:
    body = ('{"inputs": [[0.5, ' + text + "]]}").encode()
    assert not plain_numbers(body)


def test_plain_bodies_read_as_the_checked_reading_does() -> None:
    body = json.dumps({"inputs": [[0.37353822588920593, -12, 999999999999999999]]})
    assert plain_numbers(body.encode())
    assert _read(body.encode()).dtype == np.float64
    ints = json.dumps({"inputs": [[1, -2, 999999999999999999]]}).encode()
    assert plain_numbers(ints) and _read(ints).dtype == np.int64
    assert not plain_numbers(b'{"inputs": [[true, 1]]}')  # an "e": the checked reading


@pytest.mark.parametrize(
    ("text", "status"),
    [("1e999", 422), ("123456789012345678901234567890", 422), ("-1E400", 422)],
)
def test_numbers_out_of_range_are_still_refused(text: str, status: int) -> None:
    body = ('{"inputs": [[0.5, ' + text + "]]}").encode()
    with pytest.raises(ClientError) as e:
        data = parse_body(body, LIMITS)
        read_inputs(data, LIMITS, texts=False, plain=plain_numbers(body))
    assert e.value.status == status


numbers = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.booleans(),
)


@settings(max_examples=400, deadline=None)
@given(st.lists(numbers, min_size=1, max_size=8))
def test_a_plain_body_holds_only_finite_numbers_under_2_63(row: list[float | int | bool]) -> None:
    body = json.dumps({"inputs": [row]}).encode()
    if not plain_numbers(body):
        return
    for v in row:
        assert math.isfinite(v) and abs(v) < 2**63
    _read(body)
