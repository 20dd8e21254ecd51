"""The built-in source list: real public feeds on Korean AI policy and markets.

Why each is here is written in ``docs/sources.md``; keep the two in step.
"""

from __future__ import annotations

from urllib.parse import quote


def google_news_search(query: str) -> str:
    """A Google News search feed in Korean, for Korea."""
    return f"https://news.google.com/rss/search?q={quote(query)}&hl=ko&gl=KR&ceid=KR:ko"


# Google News answers searches generously but throttles eager clients: 15 minutes.
_GOOGLE_INTERVAL = 900

DEFAULT_SOURCES: list[dict[str, object]] = [
    {"name": "yonhap-news", "url": "https://www.yna.co.kr/rss/news.xml", "interval": 300},
    {"name": "yonhap-economy", "url": "https://www.yna.co.kr/rss/economy.xml", "interval": 300},
    {"name": "yonhap-industry", "url": "https://www.yna.co.kr/rss/industry.xml", "interval": 600},
    {"name": "yonhap-market", "url": "https://www.yna.co.kr/rss/market.xml", "interval": 300},
    {"name": "yonhap-en", "url": "https://en.yna.co.kr/RSS/news.xml", "interval": 600},
    {"name": "koreaherald", "url": "https://www.koreaherald.com/rss/newsAll", "interval": 600},
    {"name": "hankyung-economy", "url": "https://www.hankyung.com/feed/economy", "interval": 600},
    {"name": "mk-economy", "url": "https://www.mk.co.kr/rss/30000001/", "interval": 600},
    # The government speaking for itself: its releases come with their full text (large
    # bodies) from slow servers, so they are asked less often than the wires.
    *(
        {"name": name, "url": url, "interval": interval, "source_type": "government"}
        for name, url, interval in [
            ("korea-kr-press", "https://www.korea.kr/rss/pressrelease.xml", 900),
            ("korea-kr-policy", "https://www.korea.kr/rss/policy.xml", 900),
            ("msit-press", "https://www.msit.go.kr/user/rss/rss.do?bbsSeqNo=94", 1800),
        ]
    ),
    *(
        {"name": name, "url": google_news_search(query), "interval": _GOOGLE_INTERVAL}
        for name, query in [
            ("gnews-naver", "네이버 AI"),
            ("gnews-kakao", "카카오 AI"),
            ("gnews-sovereign-ai", "소버린 AI"),
            ("gnews-ai-basic-act", "AI 기본법"),
            ("gnews-ai-gpu", "GPU 확보 인공지능"),
            ("gnews-ai-datacenter", "AI 데이터센터"),
        ]
    ),
]

# Followed out of the box: the two platform companies Korean AI policy moves most,
# and the market they move against.
DEFAULT_TICKERS: list[dict[str, str]] = [
    {"code": "035420", "name_ko": "네이버", "name_en": "NAVER"},
    {"code": "035720", "name_ko": "카카오", "name_en": "Kakao"},
    {"code": "KOSPI", "kind": "index", "name_ko": "코스피", "name_en": "KOSPI Composite Index"},
]
