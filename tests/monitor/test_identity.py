import unicodedata

import pytest

from monitor.identity import MAX_ID_LENGTH, canonical_url, external_id, nfc


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (
            "https://www.yna.co.kr/view/AKR2025?utm_source=rss&utm_medium=x",
            "https://www.yna.co.kr/view/AKR2025",
        ),
        ("https://a.kr/v?id=7&utm_campaign=c&page=2", "https://a.kr/v?id=7&page=2"),
        ("https://a.kr/v?fbclid=abc&gclid=z", "https://a.kr/v"),
        ("HTTPS://News.Example.COM/A", "https://news.example.com/A"),
        ("https://a.kr:443/x#comments", "https://a.kr/x"),
        ("http://a.kr:80/x", "http://a.kr/x"),
        ("http://a.kr:8080/x", "http://a.kr:8080/x"),
        ("https://a.kr", "https://a.kr/"),
        (
            "https://a.kr/search?q=%EB%84%A4%EC%9D%B4%EB%B2%84",
            "https://a.kr/search?q=%EB%84%A4%EC%9D%B4%EB%B2%84",
        ),
    ],
)
def test_canonical_url_drops_tracking(url: str, expected: str) -> None:
    assert canonical_url(url) == expected


def test_identity_prefers_guid_then_link_then_text() -> None:
    assert external_id(guid="AKR1", url="https://a.kr/1", title="t", summary="s") == "g:AKR1"
    assert external_id(guid=None, url="https://a.kr/1?utm_source=x", title="t", summary="s") == (
        "l:https://a.kr/1"
    )
    by_text = external_id(guid=" ", url=None, title="t", summary="s")
    assert by_text.startswith("h:")
    assert by_text == external_id(guid=None, url="", title="t", summary="s")
    assert by_text != external_id(guid=None, url=None, title="t", summary="s2")


def test_same_link_with_tracking_is_the_same_item() -> None:
    a = external_id(guid=None, url="https://a.kr/n/1?utm_source=rss", title="x", summary="")
    b = external_id(guid=None, url="https://a.kr/n/1", title="y", summary="other")
    assert a == b


def test_long_identities_are_hashed_to_a_bounded_length() -> None:
    long_guid = "x" * 2000
    key = external_id(guid=long_guid, url=None, title="", summary="")
    assert len(key) <= MAX_ID_LENGTH
    assert key.startswith("g#:")
    assert key != external_id(guid=long_guid + "y", url=None, title="", summary="")


def test_nfc_composes_hangul_jamo() -> None:
    decomposed = unicodedata.normalize("NFD", "네이버")
    assert decomposed != "네이버"
    assert nfc(decomposed) == "네이버"
