"""Shared helpers for XML bodies from Korean sources: charset detection, safe
parsing and the clean-up that makes a broken body parseable.

Servers label EUC-KR bodies as ISO-8859-1, UTF-8 copies as EUC-KR, and leak control
characters and DOCTYPEs with entity tricks. :func:`markup_text` turns any such body
into text a parser can be trusted with; :func:`xml_parser` is that parser.
"""

from __future__ import annotations

import codecs
import re
from typing import Any

import charset_normalizer
from lxml import etree

from adapters.errors import ParseError

__all__ = [
    "DECODES_ANYTHING",
    "decode_text",
    "drop_bad_char_refs",
    "header_charset",
    "markup_text",
    "strip_doctypes",
    "xml_parser",
]

# ------------------------------------------------------------------------ decoding

_CHARSET_ALIASES = {
    # cp949 is a superset of EUC-KR (KS X 1001) that servers labelled EUC-KR really
    # send: syllables such as "똠" exist only in cp949.
    "euc-kr": "cp949",
    "euc_kr": "cp949",
    "euckr": "cp949",
    "ks_c_5601-1987": "cp949",
    "ks_c_5601": "cp949",
    "ksc5601": "cp949",
    "ksc_5601": "cp949",
    "x-windows-949": "cp949",
    "windows-949": "cp949",
    "ms949": "cp949",
    "uhc": "cp949",
    "utf8": "utf-8",
}
# Charsets that decode any byte string: a declaration of one of them proves nothing,
# so Korean bytes under such a (default, copy-pasted) label are checked for first.
DECODES_ANYTHING = frozenset({"iso8859-1", "cp1252", "ascii", "iso8859-15"})
_BOMS = (
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF32_LE, "utf-32-le"),  # before UTF-16 LE: same first two bytes
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)
_HEADER_CHARSET_RE = re.compile(r"""charset\s*=\s*["']?([\w.:\-]+)""", re.I)
_PROLOG_CHARSET_RE = re.compile(rb"""^\s*<\?xml[^>]*?encoding\s*=\s*["']([\w.:\-]+)["']""")


def _normalise_charset(name: str | None) -> str | None:
    if not name:
        return None
    key = name.strip().lower()
    if key in _CHARSET_ALIASES:
        return _CHARSET_ALIASES[key]
    try:
        codec = codecs.lookup(key).name
    except LookupError:
        return None
    return "cp949" if codec == "euc_kr" else codec


def header_charset(content_type: str | None) -> str | None:
    """The charset a Content-Type header names, as a Python codec name (EUC-KR and
    its aliases as cp949), or None when it names none or an unknown one."""
    if content_type and (m := _HEADER_CHARSET_RE.search(content_type)):
        return _normalise_charset(m.group(1))
    return None


def _try_decode(body: bytes, encoding: str) -> str | None:
    try:
        return body.decode(encoding)
    except (UnicodeDecodeError, LookupError):  # LookupError: "base64" is no text codec
        return None


def _as_korean(body: bytes) -> str | None:
    """The body as cp949 if it decodes cleanly and reads as Hangul, else None."""
    text = _try_decode(body, "cp949")
    if text is None:
        return None
    non_ascii = hangul = 0
    for ch in text:
        if ch > "\x7f":
            non_ascii += 1
            if "\uac00" <= ch <= "\ud7a3":
                hangul += 1
    # Real Korean text is mostly syllables (a few hanja and symbols); other legacy
    # encodings read as cp949 give hanja soup or fail to decode at all.
    return text if hangul and hangul * 2 >= non_ascii else None


def _as_damaged_utf8(body: bytes) -> str | None:
    """A body declared UTF-8 that is not valid UTF-8, decoded with replacement
    characters; None when it reads as Korean (an EUC-KR body under a copied label)
    or holds no valid multi-byte UTF-8 at all (a legacy charset under a wrong label).

    A stray byte in a UTF-8 feed is far likelier than a wrong label on a feed whose
    other bytes happen to be valid UTF-8, and detection would garble every Hangul.
    """
    if _as_korean(body) is not None:
        return None
    text = body.decode("utf-8", errors="replace")
    return text if any(ch > "\x7f" and ch != "\ufffd" for ch in text) else None


def decode_text(body: bytes, content_type: str | None) -> tuple[str, list[str]]:
    """Decode a body to text; returns the text and any charset warnings.

    In order: a BOM, UTF-16 without one, valid UTF-8 (whatever the labels say),
    declared UTF-8 with a few bad bytes (replaced), the charset of ``content_type``
    and of the XML prolog, then detection (Korean first). Warnings:
    ``charset_mismatch``, ``charset_guessed``, ``encoding_errors``.
    """
    for bom, encoding in _BOMS:
        if body.startswith(bom):
            raw = body[len(bom) :]
            text = _try_decode(raw, encoding)
            if text is None:
                return raw.decode(encoding, errors="replace"), ["encoding_errors"]
            return text, []
    # UTF-16 without a BOM: "<" followed or preceded by a NUL byte.
    if body[:2] in (b"<\x00", b"\x00<"):
        encoding = "utf-16-le" if body[0] == 0x3C else "utf-16-be"
        return body.decode(encoding, errors="replace"), []

    header = header_charset(content_type)
    prolog = None
    if m2 := _PROLOG_CHARSET_RE.match(body[:512]):
        prolog = _normalise_charset(m2.group(1).decode("ascii"))
    declared = [c for c in (header, prolog) if c]

    # Valid UTF-8 is UTF-8 whatever the labels say: random legacy bytes are almost
    # never valid UTF-8, while wrong labels are common (saved-as-UTF-8 copies).
    text = _try_decode(body, "utf-8")
    if text is not None:
        mismatch = not body.isascii() and any(c != "utf-8" for c in declared)
        return text, ["charset_mismatch"] if mismatch else []

    if "utf-8" in declared and (text := _as_damaged_utf8(body)) is not None:
        return text, ["encoding_errors"]

    for encoding in declared:
        if encoding in DECODES_ANYTHING and (korean := _as_korean(body)) is not None:
            return korean, ["charset_mismatch"]
        text = _try_decode(body, encoding)
        if text is not None:
            return text, [] if encoding == declared[0] else ["charset_mismatch"]

    found: list[str] = ["charset_mismatch"] if declared else ["charset_guessed"]
    korean = _as_korean(body)
    if korean is not None:
        return korean, found
    best = charset_normalizer.from_bytes(body).best()
    if best is not None and best.encoding:
        encoding = _normalise_charset(best.encoding) or best.encoding
        text = _try_decode(body, encoding)
        if text is not None:
            return text, found
    return body.decode("utf-8", errors="replace"), [*found, "encoding_errors"]


# --------------------------------------------------------------------- clean-up

_XML_DECL_RE = re.compile(r"<\?xml\b[^>]*?\?>")
_DOCTYPE_START_RE = re.compile(r"<!DOCTYPE", re.I)
_DOCTYPE_OR_SECTION_RE = re.compile(r"(<!\[CDATA\[|<!--)|<!DOCTYPE", re.I)
# A DOCTYPE with an optional internal subset. Quoted strings and comments are matched
# whole so that a "]>" inside an entity value cannot end the subset early; the
# alternatives never overlap, so a failed match cannot backtrack exponentially.
_DOCTYPE_RE = re.compile(
    r"""<!DOCTYPE(?:[^\[>"']|"[^"]*"|'[^']*')*"""
    r"""(?:\[(?:<!--.*?-->|"[^"]*"|'[^']*'|[^\]"'<]|<(?!!--))*\])?\s*>""",
    re.I | re.S,
)
# Characters XML 1.0 forbids; CMS exports leak them and they would break lxml.
_CONTROL_RE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
# A numeric character reference; the digit runs are bounded so that int() stays cheap.
_CHAR_REF_RE = re.compile(r"&#(?:[xX]([0-9A-Fa-f]{1,16})|([0-9]{1,16}));")


def _xml_char(code: int) -> bool:
    return (
        code in (0x9, 0xA, 0xD)
        or 0x20 <= code <= 0xD7FF
        or 0xE000 <= code <= 0xFFFD
        or 0x10000 <= code <= 0x10FFFF
    )


def _keep_char_ref(m: re.Match[str]) -> str:
    code = int(m.group(1), 16) if m.group(1) is not None else int(m.group(2))
    return m.group(0) if _xml_char(code) else ""


def drop_bad_char_refs(text: str) -> str:
    """Remove character references to what XML forbids (NUL, surrogates, U+FFFE,
    numbers past U+10FFFF …): one such reference would make the whole body, and with
    it every neighbouring item, unreadable."""
    return _CHAR_REF_RE.sub(_keep_char_ref, text) if "&#" in text else text


def markup_text(body: bytes, content_type: str | None, *, error_key: str) -> tuple[str, list[str]]:
    """A body as markup text that is safe to parse: decoded (:func:`decode_text`),
    without BOM, XML declaration (its charset no longer applies), DOCTYPE or the
    characters XML 1.0 forbids, nor references to them. Returns the text and its warnings (those of
    :func:`decode_text`, and ``dtd_removed`` when a DOCTYPE declared entities).

    Raises ``ParseError(error_key)`` for an empty body or one that is not markup.
    """
    if not body or body.isspace():
        raise ParseError(error_key, "empty body")
    text, found = decode_text(body, content_type)
    text = text.lstrip("\ufeff \t\r\n")
    if not text.startswith("<"):
        raise ParseError(error_key, f"body starts with {text[:1]!r}, not markup")
    if m := _XML_DECL_RE.match(text):
        text = text[m.end() :]
    # Forbidden characters first: removing one ("<!DOC\x01TYPE") could otherwise
    # assemble a DOCTYPE after the strip has looked for it.
    if _CONTROL_RE.search(text):
        text = _CONTROL_RE.sub("", text)
    if _DOCTYPE_START_RE.search(text):
        text, had_subset = strip_doctypes(text)
        if had_subset:
            found.append("dtd_removed")
    return drop_bad_char_refs(text), found


def strip_doctypes(text: str) -> tuple[str, bool]:
    """Remove every DOCTYPE; True when one had an internal subset (entities).

    Repeats until none is left, so that removing one cannot splice a new one
    together ("<!DOC<!DOCTYPE a>TYPE …"); each round shortens the text.
    """
    had_subset = False
    while True:
        shorter, subset = _strip_doctypes_once(text)
        had_subset = had_subset or subset
        if shorter == text:  # none left outside CDATA sections
            return text, had_subset
        text = shorter


def _strip_doctypes_once(text: str) -> tuple[str, bool]:
    had_subset = False
    pos = 0
    parts: list[str] = []
    while m := _DOCTYPE_OR_SECTION_RE.search(text, pos):
        if m.group(1):
            # "<!DOCTYPE" inside a CDATA section or a comment is text, no declaration;
            # an unclosed one is no section, and what follows it is searched as well.
            close = text.find("]]>" if m.group(1) == "<![CDATA[" else "-->", m.end())
            end = m.end() if close < 0 else close + 3
            parts.append(text[pos:end])
            pos = end
            continue
        parts.append(text[pos : m.start()])
        full = _DOCTYPE_RE.match(text, m.start())
        if full is not None:
            had_subset = had_subset or "[" in full.group(0)
            pos = full.end()
            continue
        # Unterminated or garbled: cut generously rather than hand it to a parser.
        had_subset = True
        gt = text.find(">", m.start())
        bracket = text.find("[", m.start())
        if 0 <= bracket < gt or (gt < 0 <= bracket):
            end = text.find("]>", bracket)
            pos = len(text) if end < 0 else end + 2
        else:
            pos = len(text) if gt < 0 else gt + 1
    parts.append(text[pos:])
    return "".join(parts), had_subset


# ----------------------------------------------------------------------- parsing


class _NoExternalResolver(etree.Resolver):  # type: ignore[misc]
    """Answers every request for an external DTD or entity with nothing."""

    def resolve(self, system_url: str | None, public_id: str | None, context: Any) -> Any:
        return self.resolve_string("", context)


def xml_parser(*, recover: bool = False) -> Any:
    """A new lxml parser that loads no DTD, substitutes no entity and reads nothing
    from the network or the disk; with ``recover``, libxml2 reads past errors."""
    # The DOCTYPE is already gone; this is the second lock. No DTD, no entity
    # substitution, no network, and a resolver that reads no file: libxml2 still
    # fetches external *parameter* entities under some option sets (it does with
    # collect_ids=False, so that option is left alone). huge_tree stays off so
    # libxml2 keeps its size and amplification limits.
    parser = etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        huge_tree=False,
        remove_comments=True,
        remove_pis=True,
        strip_cdata=True,
        recover=recover,
    )
    parser.resolvers.add(_NoExternalResolver())
    return parser
