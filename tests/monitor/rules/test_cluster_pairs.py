"""One story or two: pairs of headlines, Korean, English and mixed, clustered with
what the default ruleset's matcher finds in them (as the engine passes it)."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from monitor.rules.cluster import StoryClusters
from monitor.rules.engine import story_tags
from monitor.rules.match import tag
from monitor.rules.model import Ruleset, load_rules
from monitor.timefmt import KST

T0 = datetime(2025, 6, 16, 10, 30, tzinfo=KST)

SAME = [
    # Korean: the wire copy reordered, particles changed, tags and outlets added.
    (
        "네이버 하정우 센터장, 대통령실 AI미래기획수석 임명",
        "대통령실 AI미래기획수석에 하정우 네이버 센터장 임명",
    ),
    (
        "[속보] 하정우 네이버 센터장, 초대 AI수석 발탁",
        "하정우 네이버 센터장 초대 AI수석으로 발탁돼 - 연합뉴스",
    ),
    ("하정우, AI수석 발탁", "네이버 하정우 센터장, 대통령실 첫 AI미래기획수석 임명"),
    (
        "네이버 하정우, AI수석 발탁…'소버린 AI' 속도(종합)",
        "[속보] 네이버 하정우 센터장, 대통령실 AI수석에 발탁",
    ),
    ("네이버가 소버린 AI 전략 발표", "네이버는 소버린 AI 전략 발표했다"),
    (
        '"AI 기본법 시행령, 내년 1월 시행"…과기정통부 입법예고',
        "과기정통부, AI 기본법 시행령 입법예고…내년 1월 시행 | 한국경제",
    ),
    (
        "[단독] 카카오, 오픈AI와 손잡고 AI 에이전트 출시",
        "카카오 오픈AI 손잡고 AI 에이전트 출시한다(2보)",
    ),
    ("[포토] 코스피 3,000 돌파", "코스피, 3000 돌파 - 매일경제"),
    (
        "SK하이닉스, 엔비디아와 HBM 공급 계약 체결",
        "엔비디아와 HBM 공급 계약 체결한 SK하이닉스 … 주가 강세",
    ),
    ("삼성전자, 사상 최고가 경신", "【종합】삼성전자 사상 최고가 경신…외국인 순매수"),
    (
        "이재명 대통령 \u201cAI 100조 투자\u201d…국민성장펀드 출범",
        "국민성장펀드 출범, 이재명 대통령 \u2018AI 100조 투자\u2019 - 조선비즈",
    ),
    ("과기정통부, 국가AI컴퓨팅센터 공모 착수", "[단독] 과기정통부 국가 AI 컴퓨팅 센터 공모 착수"),
    # English: reordered, inflected, an outlet after a dash or a colon.
    (
        "Naver names Ha Jung-woo presidential AI secretary",
        "Ha Jung-woo of Naver named presidential AI secretary - Reuters",
    ),
    (
        "South Korea to secure 10,000 GPUs for national AI computing center by 2026",
        "National AI computing center: Korea to secure 10,000 GPUs by 2026 | Yonhap",
    ),
    (
        "Naver shares surge 15% on AI policy bets",
        "Naver shares surge 15% as AI policy bets grow: Korea Herald",
    ),
    (
        "Kakao partners with OpenAI on AI agents",
        "OpenAI, Kakao partner on AI agents: The Korea Times",
    ),
    (
        "UPDATE 2-Samsung Electronics hits record high as foreigners buy",
        "Samsung Electronics hits a record high as foreign investors buy",
    ),
    # Korean and English reports of one event.
    ("네이버 하정우, 대통령실 AI수석 발탁", "Naver's Ha Jung-woo named presidential AI secretary"),
    (
        "네이버 하정우, 대통령실 AI수석 발탁",
        "Naver's Ha Jung-woo appointed presidential AI secretary",
    ),
    (
        "[속보] 하정우 네이버 센터장, AI미래기획수석 임명",
        "Ha Jung-woo, head of Naver's AI center, appointed Korea's first AI secretary",
    ),
    ("이재명, AI 100조 투자 공약", "Lee Jae-myung pledges 100 trillion won AI investment"),
    ("카카오 52주 신고가 경신", "Kakao hits 52-week high"),
    (
        "삼성전자·SK하이닉스, 엔비디아에 HBM 공급",
        "Samsung Electronics, SK hynix to supply HBM to Nvidia",
    ),
    (
        "JP모건, 네이버 목표주가 27만원으로 상향",
        "JP Morgan raises Naver target price to 270,000 won",
    ),
]

DIFFERENT = [
    # Korean: one entity, one theme, a different event.
    (
        "네이버 하정우 센터장, 대통령실 첫 AI미래기획수석 임명",
        "대통령실, 첫 AI미래기획수석 후보군 검토",
    ),
    ("네이버, 소버린 AI 파운데이션 모델 공개", "네이버, 소버린 AI 데이터센터 착공"),
    ("네이버, 소버린 AI 전략 발표", "네이버, 소버린 AI 컨퍼런스 개최"),
    ("과기정통부, AI 기본법 시행령 입법예고", "과기정통부, GPU 1만장 확보 계획 발표"),
    ("과기정통부, AI 기본법 시행령 입법예고", "과기정통부, AI 기본법 하위법령 설명회 개최"),
    ("네이버·카카오, 소버린 AI 협의체 출범", "네이버·카카오, 소버린 AI 공동 투자 발표"),
    ("하정우 AI수석, 네이버 방문해 스타트업 간담회", "하정우 네이버 센터장, AI수석 임명"),
    # Korean: the same words about someone else.
    ("네이버, 소버린 AI 파운데이션 모델 공개", "카카오, 소버린 AI 파운데이션 모델 공개"),
    ("카카오 52주 신고가 경신", "네이버 52주 신고가 경신"),
    ("삼성전자, 엔비디아에 HBM 공급 확대", "SK하이닉스, 엔비디아에 HBM 공급 확대"),
    ("JP모건, 네이버 목표주가 27만원으로 상향", "네이버 주가 15% 급등…외국인 순매수"),
    ("하정우 네이버 센터장, AI수석 임명", "하정우 주연 영화 개봉 첫 주 흥행 1위"),
    # English.
    (
        "Naver unveils sovereign AI foundation model",
        "Naver breaks ground on sovereign AI data center",
    ),
    (
        "Science ministry announces AI Basic Act enforcement decree",
        "Science ministry to secure 10,000 GPUs next year",
    ),
    ("Naver shares surge 15% on AI bets", "Kakao shares surge 15% on AI bets"),
    ("JP Morgan raises Naver target price", "Naver hosts sovereign AI conference in Seoul"),
    (
        "Naver's Ha Jung-woo appointed presidential AI secretary",
        "Naver's Ha Jung-woo speaks at sovereign AI forum",
    ),
    # Korean against English.
    (
        "하정우 AI수석, 네이버 방문해 스타트업 간담회",
        "Naver's Ha Jung-woo appointed presidential AI secretary",
    ),
    ("네이버 하정우, 대통령실 AI수석 발탁", "Naver's Ha Jung-woo speaks at sovereign AI forum"),
    ("네이버, 소버린 AI 파운데이션 모델 공개", "Naver breaks ground on sovereign AI data center"),
    ("네이버, 소버린 AI 전략 발표", "Naver hosts sovereign AI conference in Seoul"),
    ("네이버 하정우, 대통령실 AI수석 발탁", "Kakao appoints new AI chief"),
    ("이재명, AI 100조 투자 공약", "Lee Jae-myung meets Nvidia's Jensen Huang"),
    ("카카오 52주 신고가 경신", "Naver hits 52-week high"),
    ("JP모건, 네이버 목표주가 27만원으로 상향", "Naver shares surge 15% on AI bets"),
]


@pytest.fixture(scope="module")
def ruleset() -> Ruleset:
    return load_rules(None)


def clustered(ruleset: Ruleset, first: str, second: str) -> tuple[str, str]:
    clusters = StoryClusters()
    a = clusters.assign(first, T0, story_tags(tag(first, "", ruleset)))
    b = clusters.assign(second, T0 + timedelta(hours=1), story_tags(tag(second, "", ruleset)))
    return a, b


@pytest.mark.parametrize(("first", "second"), SAME)
def test_one_story(ruleset: Ruleset, first: str, second: str) -> None:
    for one, other in ((first, second), (second, first)):
        a, b = clustered(ruleset, one, other)
        assert a == b, f"{one!r} and {other!r} are one story"


@pytest.mark.parametrize(("first", "second"), DIFFERENT)
def test_two_stories(ruleset: Ruleset, first: str, second: str) -> None:
    for one, other in ((first, second), (second, first)):
        a, b = clustered(ruleset, one, other)
        assert a != b, f"{one!r} and {other!r} are two stories"


def test_the_table_is_wide() -> None:
    pairs = SAME + DIFFERENT
    assert len(pairs) >= 40
    hangul = [any("\uac00" <= ch <= "\ud7a3" for ch in a + b) for a, b in pairs]
    mixed = [
        any("\uac00" <= ch <= "\ud7a3" for ch in a) != any("\uac00" <= ch <= "\ud7a3" for ch in b)
        for a, b in pairs
    ]
    assert sum(mixed) >= 10 and hangul.count(False) >= 8


def test_in_a_busy_window_what_most_headlines_say_is_no_evidence(ruleset: Ruleset) -> None:
    clusters = StoryClusters()

    def assign(title: str, when: datetime) -> str:
        return clusters.assign(title, when, story_tags(tag(title, "", ruleset)))

    # A day of AI-policy news: "AI" in every headline, the government in many.
    for n in range(120):
        assign(f"정부, AI 인재 {n + 2}만명 양성 계획 {n}차 점검", T0 - timedelta(minutes=n))
    # Two data-center stories that share only "AI", the government and the theme …
    kangwon = assign("강원 AI 데이터센터 클러스터, 정부 공모 최종 선정", T0)
    ulsan = assign("Korea, AWS sign deal on government-supported AI data centre in Ulsan", T0)
    assert kangwon != ulsan
    # … while one event in two languages still shares enough.
    korean = assign("네이버 하정우, 대통령실 AI수석 발탁", T0)
    assert assign("Naver's Ha Jung-woo named presidential AI secretary", T0) == korean
