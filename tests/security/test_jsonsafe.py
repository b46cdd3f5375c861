"""The one JSON reader refuses what json.loads lets through or crashes on."""

from __future__ import annotations

import pytest

from modelstore.errors import FormatError
from modelstore.security.jsonsafe import dumps, loads


@pytest.mark.parametrize(
    "text",
    [
        "[1e999]",
        '{"size": Infinity}',
        '{"size": -Infinity}',
        "[NaN]",
        "[" * 50_000 + "]" * 50_000,
        "[" * 300 + "]" * 300,
        "1" * 5000,
        '{"a": ',
        b"\xff\xfe",
    ],
    ids=[
        "overflow",
        "inf",
        "-inf",
        "nan",
        "deep-50k",
        "deep-300",
        "5000-digits",
        "truncated",
        "not-utf8",
    ],
)
def test_refused_with_a_format_error_naming_the_source(text: str | bytes) -> None:
    """Each hostile text raises FormatError naming where it came from, never a foreign error."""
    with pytest.raises(FormatError) as e:
        loads(text, where="m.modelstore.json")
    assert "m.modelstore.json" in str(e.value)


def test_plain_json_and_size_limit() -> None:
    """Ordinary JSON parses; text over the caller's size bound is refused before parsing."""
    assert loads('{"a": [1, 2.5, "x", null, true]}', where="f") == {"a": [1, 2.5, "x", None, True]}
    with pytest.raises(FormatError, match="more than the 10 accepted"):
        loads("[" + "1," * 20 + "1]", where="f", max_bytes=10)


def test_dumps_refuses_nan() -> None:
    """What modelstore writes it can read back: NaN is refused on the way out."""
    with pytest.raises(ValueError):
        dumps({"x": float("nan")})
