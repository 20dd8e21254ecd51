from __future__ import annotations

from typing import Any

import pytest

from adapters.errors import ParseError
from adapters.jsonbody import load_json


@pytest.mark.parametrize(
    ("text", "document"),
    [
        ('{"a": 1}', {"a": 1}),
        ("\ufeff \r\n[1, 2]", [1, 2]),
        ("  null", None),
    ],
)
def test_load_json(text: str, document: Any) -> None:
    assert load_json(text, error_key="not_x", expected="x") == document


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty body"),
        ("\ufeff \n", "empty body"),
        ("<html><body>busy</body></html>", "an HTML page, not x"),
        ("{broken", "not JSON (JSONDecodeError)"),
    ],
)
def test_load_json_refuses(text: str, message: str) -> None:
    with pytest.raises(ParseError) as caught:
        load_json(text, error_key="not_x", expected="x")
    assert (caught.value.key, str(caught.value)) == ("not_x", message)
