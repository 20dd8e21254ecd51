"""The shared XML and charset helpers, as tables of bodies and what they become."""

from __future__ import annotations

import pytest
from lxml import etree

from adapters.errors import ParseError
from adapters.xmltext import decode_text, header_charset, markup_text, strip_doctypes, xml_parser


@pytest.mark.parametrize(
    ("content_type", "charset"),
    [
        (None, None),
        ("text/xml", None),
        ("text/xml; charset=UTF-8", "utf-8"),
        ("text/xml; charset=utf8", "utf-8"),
        ("application/rss+xml; charset=EUC-KR", "cp949"),
        ('text/xml; charset="ks_c_5601-1987"', "cp949"),
        ("text/xml;charset=x-windows-949", "cp949"),
        ("text/html; charset=ISO-8859-1", "iso8859-1"),
        ("text/xml; charset=no-such-codec", None),
    ],
)
def test_header_charset(content_type: str | None, charset: str | None) -> None:
    assert header_charset(content_type) == charset


@pytest.mark.parametrize(
    ("body", "content_type", "text", "warnings"),
    [
        (b"<a>plain</a>", "text/xml; charset=euc-kr", "<a>plain</a>", []),  # ASCII: no fuss
        ("<a>é</a>".encode("latin-1"), "text/xml; charset=iso-8859-1", "<a>é</a>", []),
        ("<a>年</a>".encode("big5"), "text/xml; charset=big5", "<a>年</a>", []),
        ("<a>한</a>".encode("cp949"), "text/xml; charset=utf-8", "<a>한</a>", ["charset_mismatch"]),
        ("<a>한</a>".encode(), "text/xml; charset=euc-kr", "<a>한</a>", ["charset_mismatch"]),
    ],
)
def testdecode_text(body: bytes, content_type: str | None, text: str, warnings: list[str]) -> None:
    assert decode_text(body, content_type) == (text, warnings)


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        ("<a>삼성전자 반도체 \xff수출</a>", "text/xml; charset=utf-8"),
        ("<?xml version='1.0' encoding='UTF-8'?><a>삼성전자 반도체 \xff수출</a>", None),
    ],
)
def test_declared_utf8_with_a_stray_byte_stays_utf8(body: str, content_type: str | None) -> None:
    raw = body.encode("utf-8").replace("\xff".encode(), b"\xff")
    text, found = decode_text(raw, content_type)
    assert text.endswith("<a>삼성전자 반도체 \ufffd수출</a>")
    assert found == ["encoding_errors"]


def test_declared_utf8_without_any_utf8_is_detected() -> None:
    # Not one valid multi-byte sequence: the label is wrong, detection decides.
    text, found = decode_text("<a>Café crème</a>".encode("cp1252"), "text/xml; charset=utf-8")
    assert text.startswith("<a>Café cr") and "\ufffd" not in text
    assert "encoding_errors" not in found


@pytest.mark.parametrize(
    ("body", "kept"),
    [
        (b"<!-- an <!DOCTYPE in a comment --><rss/>", "<!-- an <!DOCTYPE in a comment --><rss/>"),
        (b"<rss><![CDATA[ <!DOCTYPE ]]></rss>", "<rss><![CDATA[ <!DOCTYPE ]]></rss>"),
        (b"<rss><![CDATA[ x ]]><!DOCTYPE a></rss>", "<rss><![CDATA[ x ]]></rss>"),
        (
            b"<rss><![CDATA[ <!-- ]]><!DOCTYPE a [<!ENTITY e 'x'>]>--></rss>",
            "<rss><![CDATA[ <!-- ]]>--></rss>",
        ),
        (b"<rss><![CDATA[ unclosed <!DOCTYPE a></rss>", "<rss><![CDATA[ unclosed </rss>"),
    ],
)
def test_doctype_text_in_comments_and_cdata_is_kept(body: bytes, kept: str) -> None:
    assert markup_text(body, None, error_key="x")[0] == kept


@pytest.mark.parametrize(
    "body",
    [
        b'<!DOC\x01TYPE rss [<!ENTITY e "x">]><rss>&e;</rss>',
        b'<!\x00DOCTYPE rss [<!ENTITY e "x">]><rss>&e;</rss>',
        b'<\x1f!DOCTYPE rss SYSTEM "file:///etc/passwd"><rss>&e;</rss>',
    ],
)
def test_a_control_character_cannot_hide_a_doctype(body: bytes) -> None:
    text, _ = markup_text(body, None, error_key="x")
    assert "DOCTYPE" not in text and text.startswith("<rss>")


def test_decode_garbage_still_gives_text() -> None:
    text, found = decode_text(b"<a>\xff\xfe\xfd</a>", None)
    assert text.startswith("<a>") and text.endswith("</a>")
    assert found[0] == "charset_guessed"


@pytest.mark.parametrize(
    ("body", "text", "warnings"),
    [
        (b"<a/>", "<a/>", []),
        (b"\xef\xbb\xbf \n<a/>", "<a/>", []),
        (b"<?xml version='1.0' encoding='euc-kr'?>\n<a/>", "\n<a/>", []),
        ("<?xml version='1.0' encoding='euc-kr'?><a>한</a>".encode("cp949"), "<a>한</a>", []),
        (b'<!DOCTYPE a [<!ENTITY e "x">]><a>&e;</a>', "<a>&e;</a>", ["dtd_removed"]),
        (b'<!DOCTYPE rss SYSTEM "http://x/r.dtd"><rss/>', "<rss/>", []),
        (b"<a>bell\x07 and\x0c feed</a>", "<a>bell and feed</a>", []),
    ],
)
def test_markup_text(body: bytes, text: str, warnings: list[str]) -> None:
    assert markup_text(body, None, error_key="not_x") == (text, warnings)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"", "empty body"),
        (b" \r\n\t", "empty body"),
        (b'{"json": true}', "body starts with '{', not markup"),
        (b"\xef\xbb\xbfplain text", "body starts with 'p', not markup"),
    ],
)
def test_markup_text_refuses(body: bytes, message: str) -> None:
    with pytest.raises(ParseError) as caught:
        markup_text(body, None, error_key="not_x")
    assert (caught.value.key, str(caught.value)) == ("not_x", message)


@pytest.mark.parametrize(
    ("text", "expected", "had_subset"),
    [
        ('<!DOCTYPE rss PUBLIC "-//N//DTD RSS 0.91//EN" "http://x/r.dtd"><rss/>', "<rss/>", False),
        ('<!DOCTYPE rss [<!ENTITY a "]>"><!-- it\'s ]> -->]><rss/>', "<rss/>", True),
        ('<!DOC<!DOCTYPE a>TYPE rss [<!ENTITY a "b">]><rss/>', "<rss/>", True),
        ('<!doctype rss [<!ENTITY a "b">\n<rss>&a;</rss>', "", True),  # unterminated
    ],
)
def teststrip_doctypes(text: str, expected: str, had_subset: bool) -> None:
    assert strip_doctypes(text) == (expected, had_subset)


@pytest.mark.parametrize(
    ("xml", "text"),
    [
        (b"<a>plain</a>", "plain"),
        (b"<a><![CDATA[<b>kept</b>]]></a>", "<b>kept</b>"),
        (b"<a>x<!-- dropped --></a>", "x"),
        (b'<!DOCTYPE a [<!ENTITY e "expanded">]><a>&e;</a>', None),  # never substituted
    ],
)
def test_xml_parser(xml: bytes, text: str | None) -> None:
    root = etree.fromstring(xml, xml_parser())
    assert root.text == text
