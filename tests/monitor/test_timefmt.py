from datetime import UTC, datetime

import pytest

from monitor.timefmt import kst, parse_when

NOW = datetime(2025, 6, 18, 3, 0, tzinfo=UTC)  # 12:00 KST


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2d", datetime(2025, 6, 16, 3, 0, tzinfo=UTC)),
        ("36h", datetime(2025, 6, 16, 15, 0, tzinfo=UTC)),
        ("90m", datetime(2025, 6, 18, 1, 30, tzinfo=UTC)),
        ("1w", datetime(2025, 6, 11, 3, 0, tzinfo=UTC)),
        ("today", datetime(2025, 6, 17, 15, 0, tzinfo=UTC)),  # midnight in Seoul
        ("yesterday", datetime(2025, 6, 16, 15, 0, tzinfo=UTC)),
        ("2025-06-18", datetime(2025, 6, 17, 15, 0, tzinfo=UTC)),
        ("2025-06-18T09:30", datetime(2025, 6, 18, 0, 30, tzinfo=UTC)),
        ("2025-06-18T09:30:00+00:00", datetime(2025, 6, 18, 9, 30, tzinfo=UTC)),
        ("now", NOW),
    ],
)
def test_parse_when(text: str, expected: datetime) -> None:
    assert parse_when(text, now=NOW) == expected


@pytest.mark.parametrize("text", ["banana", "", "2x", "-3d", "2025-13-01", "yesterdays"])
def test_parse_when_rejects_with_a_hint(text: str) -> None:
    with pytest.raises(ValueError, match="not a time"):
        parse_when(text, now=NOW)


def test_kst_display() -> None:
    assert kst(datetime(2025, 6, 18, 0, 30, tzinfo=UTC)) == "2025-06-18 09:30"
    assert kst(None) == ""
