from __future__ import annotations

import pytest

from adapters.text import one_line, reason_of


@pytest.mark.parametrize(
    ("text", "limit", "expected"),
    [
        ("plain", None, "plain"),
        ("  two\r\n lines\t", None, "two lines"),
        ("esc\x1b[31mred", None, "esc [31mred"),
        ("bidi\u202eevil\u2069", None, "bidi evil"),
        ("line\u2028separator", None, "line separator"),
        ("c1\x85\x9bcontrols", None, "c1 controls"),
        ("abcdef", 6, "abcdef"),
        ("abcdefg", 6, "abcde…"),
        ("abc defg", 5, "abc…"),  # no space before the ellipsis
        ("한국어 제목", 3, "한국…"),
    ],
)
def test_one_line(text: str, limit: int | None, expected: str) -> None:
    assert one_line(text, limit) == expected


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (None, "unknown error"),
        (ConnectionRefusedError(111, "Connection refused"), "Connection refused"),
        (ValueError("bad\nvalue"), "bad value"),
        (ValueError(), "ValueError"),
        (OSError(5, "x" * 50), "x" * 9 + "…"),
    ],
)
def test_reason_of(exc: BaseException | None, expected: str) -> None:
    assert reason_of(exc, 10 if expected.endswith("…") else 80) == expected
