"""Headlines and descriptions for the feed farm: Korean AI policy news, and everyday news.

On-topic items are what the default rules are written to tag: sovereign AI, the AI
Basic Act, GPU and data-centre build-out, the national AI models, Naver and Kakao in
AI policy, AI-tied moves of their shares. Everyday items are the rest of a news day
(weather, prices, sports, courts, local news, markets without AI), in Korean and in
English. Both come from templates with slots, so that a farm of 50,000 items holds
many distinct headlines, as a day of real feeds does, rather than a few repeated ones.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

# ----------------------------------------------------------------- on topic

_AUTHORITIES_KO = (
    "과학기술정보통신부",
    "과기정통부",
    "정부",
    "국가AI전략위원회",
    "산업통상자원부",
    "기획재정부",
    "금융위원회",
    "국회 과방위",
    "대통령실",
)
_AUTHORITIES_EN = (
    "Science ministry",
    "MSIT",
    "Seoul",
    "Korea's presidential AI committee",
    "Finance ministry",
    "The National Assembly",
    "Industry ministry",
)
_POLICY_KO = (
    "소버린 AI",
    "인공지능 기본법 시행령",
    "AI 기본법",
    "GPU 1만장 확보",
    "국가 AI 컴퓨팅 센터",
    "AI 데이터센터 특구",
    "독자 AI 파운데이션 모델",
    "AI 반도체 실증",
    "AI 인재 양성",
    "공공 AI 전환",
)
_POLICY_EN = (
    "sovereign AI strategy",
    "AI Basic Act enforcement decree",
    "national AI computing centre",
    "GPU procurement plan",
    "AI data centre special zone",
    "sovereign foundation model project",
    "AI chip testbed",
)
_COMPANIES_KO = ("네이버", "카카오", "LG AI연구원", "SK텔레콤", "KT", "업스테이지", "NC AI")
_COMPANIES_EN = ("Naver", "Kakao", "LG AI Research", "SK Telecom", "KT", "Upstage")
_POLICY_VERBS_KO = ("발표", "확정", "착수", "의결", "추진", "공개", "확대")
_POLICY_VERBS_EN = ("unveils", "finalises", "expands", "launches", "approves")

_ON_TOPIC_KO = (
    "{auth}, {policy} {verb}…{co} 등 참여",
    "[속보] {auth} '{policy}' {n}조원 투입 {verb}",
    "{co}, 정부 '{policy}' 사업 선정…{n}00억 지원",
    "{policy} 기대감에 {co} 주가 {n}% 급등",
    '{auth} "{policy} 속도"…{co}·{co2} GPU 공동 확보',
    "[단독] {co}, {policy} 컨소시엄 주관사로…{auth} 협의",
    "{auth}, {policy} 예산 {n}00억 증액…{co} 수혜 전망",
    '국회, {policy} 개정안 처리…{co}·{co2} "규제 불확실성 해소"',
)
_ON_TOPIC_EN = (
    "{auth} {verb_en} {policy_en}, {co_en} to take part",
    "Korea's {policy_en}: {auth} earmarks {n} trillion won",
    "{co_en} shares jump {n}% on {policy_en} hopes",
    "{co_en} picked for Seoul's {policy_en}, {n}00 billion won in support",
    "{auth} {verb_en} {policy_en} as {co_en} and {co2_en} seek more GPUs",
)

# ----------------------------------------------------------------- everyday news

_PLACES_KO = ("서울", "부산", "대구", "인천", "광주", "대전", "울산", "제주", "강원", "전북")
_TEAMS_KO = ("LG 트윈스", "KIA 타이거즈", "삼성 라이온즈", "두산 베어스", "울산 HD", "전북 현대")
_GOODS_KO = ("배추", "계란", "사과", "한우", "고등어", "휘발유", "전셋값", "라면")
_EVERYDAY_KO = (
    "{place} 내일 아침 영하 {n}도…출근길 빙판 주의",
    "{team}, 연장 접전 끝 {n}대{m} 승리…3연승",
    "{goods} 가격 {n}% 올라…장바구니 물가 부담",
    "{place}시, 시내버스 노선 {n}개 개편…다음 달 시행",
    "[마감시황] 코스피, 외국인 매도에 {n}.{m}% 하락 마감",
    "검찰, '{place} 전세사기' 일당 {n}명 기소",
    "{place} 아파트 화재로 {n}명 대피…인명 피해 없어",
    '한국은행 기준금리 연 {n}.{m}% 동결…"물가 안정 우선"',
    "{place} 축제 개막…주말 {n}만명 방문 예상",
    "수능 D-{n}…수험생 건강관리 요령",
)
_PLACES_EN = ("Seoul", "Busan", "Incheon", "Daegu", "Jeju", "Gwangju")
_EVERYDAY_EN = (
    "{place_en} braces for cold snap, lows of minus {n} degrees",
    "Consumer prices rise {n}.{m}% on year as food costs climb",
    "{place_en} subway line extension delayed to next year",
    "KOSPI ends {n}.{m}% lower as foreign investors sell",
    "Police arrest {n} over voice phishing ring in {place_en}",
    "Bank of Korea holds rate at {n}.{m}% for third straight meeting",
    "Korean Air adds {n} weekly flights to Southeast Asia",
    "{place_en} festival expects {n}0,000 visitors this weekend",
)
_OUTLETS = ("연합뉴스", "한국경제", "매일경제", "서울경제", "The Korea Herald", "Yonhap")


@dataclass(frozen=True)
class Text:
    title: str
    description: str  # HTML, as feeds carry it
    on_topic: bool


def _slots(rng: random.Random) -> dict[str, object]:
    co, co2 = rng.sample(_COMPANIES_KO, 2)
    co_en, co2_en = rng.sample(_COMPANIES_EN, 2)
    return {
        "auth": rng.choice(_AUTHORITIES_KO),
        "policy": rng.choice(_POLICY_KO),
        "verb": rng.choice(_POLICY_VERBS_KO),
        "co": co,
        "co2": co2,
        "co_en": co_en,
        "co2_en": co2_en,
        "policy_en": rng.choice(_POLICY_EN),
        "verb_en": rng.choice(_POLICY_VERBS_EN),
        "place": rng.choice(_PLACES_KO),
        "place_en": rng.choice(_PLACES_EN),
        "team": rng.choice(_TEAMS_KO),
        "goods": rng.choice(_GOODS_KO),
        "n": rng.randint(2, 19),
        "m": rng.randint(1, 9),
    }


def news_text(rng: random.Random, on_topic: bool, article: int) -> Text:
    """One item's headline and HTML description, Korean three times in four."""
    slots = _slots(rng)
    korean = rng.random() < 0.75
    if on_topic:
        pool = _ON_TOPIC_KO if korean else _ON_TOPIC_EN
        slots["auth"] = slots["auth"] if korean else rng.choice(_AUTHORITIES_EN)
    else:
        pool = _EVERYDAY_KO if korean else _EVERYDAY_EN
    title = rng.choice(pool).format(**slots)
    if rng.random() < 0.3:  # Google News titles end with the outlet
        title = f"{title} - {rng.choice(_OUTLETS)}"
    link = f"<a href='https://news.example.kr/tag/{article % 97}'>"
    if korean:
        body = (
            f"<p>{title.split('…')[0]}. 관계자는 {rng.randint(1, 28)}일 &quot;세부 내용을 "
            f"순차적으로 공개하겠다&quot;고 밝혔다.&nbsp;업계와 시민들의 반응은 엇갈렸다.</p>"
            f"<p>{link}관련 기사</a></p>"
        )
    else:
        body = (
            f"<p>{title}. Officials said on the {rng.randint(1, 28)}th that details "
            f"would follow &quot;in stages&quot;.&nbsp;Reactions were mixed.</p>"
            f"<p>{link}Related</a></p>"
        )
    return Text(title, f'{body}<img src="https://img.example.kr/{article}.jpg">', on_topic)
