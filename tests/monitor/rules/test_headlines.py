"""The default ruleset on headlines: which themes and entities each one names, and
which news rules fire. The headlines are written for these tests."""

from __future__ import annotations

import pytest

from monitor.rules.match import tag
from monitor.rules.model import Ruleset, load_rules


@pytest.fixture(scope="module")
def ruleset() -> Ruleset:
    return load_rules(None)


def row(text: str, themes: str = "", entities: str = "") -> tuple[str, set[str], set[str]]:
    return text, set(themes.split()), set(entities.split())


HEADLINES = [
    # --- the themes that the rules above only name beside others ----------------------
    row("과기정통부, 울산 AI 데이터센터 특구 지정", "ai-datacenter ai-general ai-word", "msit"),
    row("AWS builds a data centre in Ohio"),
    row("데이터센터 리츠 상장", "not-an-ai-stock property", ""),
    row("공정위, 카카오모빌리티에 과징금 724억", "enforcement", "kftc kakao-mobility"),
    row("공정위, 하도급 대금 조사", "enforcement", "kftc"),
    row("AI 수요에 구리값 급등", "ai-word not-an-ai-stock price-move"),
    row("수도권 첫눈…내일 아침 영하 5도"),
    row("Subway fares rise by 150 won"),
    row("보이스피싱 총책 검거"),
    # Bird flu is 고병원성 AI: no rule fires beside it.
    row("고병원성 AI 확산에 정부 방역 비상", "ai-general ai-word avian-flu", "korean-government"),
    # --- sovereign AI -------------------------------------------------------------------
    row("정부, 소버린 AI 전략 발표", "ai-general ai-word sovereign-ai", "korean-government"),
    row("소버린AI 경쟁 본격화…네이버 '한국형 AI' 강조", "ai-word", "naver"),
    row("소버린 인공지능이 답이다", "ai-word", ""),
    row("AI 주권 지키려면 데이터부터", "ai-word", ""),
    row("Naver pitches sovereign AI to Gulf governments", "ai-word", "naver"),
    row("AI sovereignty becomes a goal for middle powers", "ai-word", ""),
    row("소버린 골드 채권 발행", "", ""),
    row("AI 주권자 교육 확대", "ai-word", ""),
    # --- AI Basic Act and regulation ----------------------------------------------------
    row("AI기본법 시행령 입법예고", "ai-basic-act ai-general ai-word", ""),
    row(
        "인공지능 기본법 국회 본회의 통과",
        "ai-basic-act ai-general ai-word",
        "national-assembly political-parties",
    ),
    row("인공지능기본법, 내년 1월 시행", "ai-basic-act"),
    row("고영향 AI 기준 마련한다", "ai-basic-act ai-word", ""),
    row("EU AI법 따라가지 말아야", "ai-word", ""),
    row("EU AI Act enters into force", "ai-word", ""),
    row("Korea's AI Basic Act takes effect in January 2026", "ai-basic-act ai-general ai-word", ""),
    row("Lawmakers debate a basic AI law", "ai-basic-act ai-general ai-word", "political-parties"),
    row("기본법 개정안 발의"),
    row("The AI acted strangely, users said", "ai-word", ""),
    # --- AI investment pledges and budgets ----------------------------------------------
    row("이재명 정부, AI에 100조 원 투자", "ai-general ai-investment ai-word", "lee-jae-myung"),
    row("AI 100조 시대 연다", "ai-investment ai-word", ""),
    row("AI 예산 두 배로 늘린다", "ai-general ai-investment ai-word", ""),
    row("국민성장펀드 출범", "ai-investment"),
    row("President pledges 100 trillion won for AI", "ai-general ai-investment ai-word", ""),
    row("AI investment pledge draws praise", "ai-general ai-investment ai-word", ""),
    row("투자자 보호 강화"),
    row("100조원대 시장 열린다"),
    # --- GPUs and national compute ------------------------------------------------------
    row("정부, GPU 1만장 확보 추진", "gpu-compute", "korean-government"),
    row("GPU를 확보하라", "", ""),
    row("국가AI컴퓨팅센터 입지 선정", "ai-general ai-word gpu-compute", "ai-institutes"),
    row("국가 AI 컴퓨팅 센터 공모", "ai-general ai-word gpu-compute", "ai-institutes"),
    row("Korea to secure 18,000 GPUs by next year", "gpu-compute"),
    row("삼성전자, AI 반도체 생산 확대", "ai-word", "samsung-electronics"),
    row("SK hynix ships memory for AI chips", "ai-word", "sk-hynix"),
    row("국산 NPU 실증 사업", "ai-word gpu-compute", ""),
    row("GPUDirect 기술 소개"),
    # --- AI data centres ----------------------------------------------------------------
    row("SK·AWS, 울산에 AI 데이터센터 건립", "ai-word", ""),
    row("KT, 데이터 센터 증설", "", "kt"),
    row("LG유플러스 데이터센터에 1조 투입", "", "lg-uplus"),
    row("SK Group and AWS to build an AI data center in Ulsan", "ai-word", "sk-inc"),
    row("Hyperscale data centres need power", "", ""),
    row("빅데이터 센터 개소"),
    # --- national AI committee and strategy meetings ------------------------------------
    row("국가인공지능위원회 출범", "ai-committee", "national-ai-committee"),
    row("국가AI전략위원회 첫 회의", "ai-committee ai-general ai-word", "national-ai-committee"),
    row(
        "과기정통부, 네이버·카카오와 AI 최고위 전략대화",
        "ai-committee ai-general ai-word",
        "kakao msit naver",
    ),
    row("Science ministry holds AI strategy talks", "ai-committee ai-general ai-word", "msit"),
    row(
        "National AI Committee to launch next month",
        "ai-committee ai-general ai-word",
        "national-ai-committee",
    ),
    row("First AI strategy roundtable with telecom CEOs", "ai-committee ai-word", ""),
    row("전략회의 일정 조율"),
    # --- AI officials and appointments --------------------------------------------------
    row(
        "하정우 AI미래기획수석 임명",
        "ai-appointment ai-general ai-word appointment",
        "ai-officials ha-jung-woo",
    ),
    row(
        "대통령실, AI 수석에 하정우 발탁",
        "ai-appointment ai-general ai-word appointment",
        "ai-officials presidential-office ha-jung-woo",
    ),
    row(
        "Lee appoints Naver's Ha Jung-woo as first AI secretary",
        "ai-appointment ai-general ai-word appointment",
        "ai-officials naver ha-jung-woo",
    ),
    row(
        "Ha Jung-woo named senior presidential secretary for AI",
        "ai-appointment ai-general ai-word",
        "ai-officials ha-jung-woo presidential-office",
    ),
    row("하정우 수석, 이공계 인재 지원 강조", "ai-talent", "ha-jung-woo"),
    row("신임 장관 임명", "appointment"),
    row("AI 수석연구원 채용", "ai-word", ""),
    # --- national foundation models -----------------------------------------------------
    row("국가대표 AI 5개 팀 선정", "ai-general ai-word foundation-model", ""),
    row("독자 AI 파운데이션 모델 프로젝트 착수", "ai-word foundation-model", ""),
    row("독자AI 파운데이션모델 1차 평가", "ai-word foundation-model", ""),
    row("LG AI연구원, 엑사원 공개…초거대 AI 경쟁", "ai-word", "lg-corp"),
    row(
        "Government picks national AI champions",
        "ai-general ai-word foundation-model",
        "korean-government",
    ),
    row("Korea’s push for the world’s best LLM", "", ""),
    row("Startups build foundation models", "", ""),
    row("모델하우스 분양"),
    # --- talent and brain drain ---------------------------------------------------------
    row("AI 인재 유출 심각", "ai-talent ai-word", ""),
    row("이공계 인재 지원 시행령 개정", "ai-talent"),
    row("두뇌유출 막으려면", "ai-talent"),
    row("Korea's brain drain worsens", "", ""),
    row("Firms fight over AI talent", "ai-word", ""),
    row("인재 채용 박람회", "commentary", ""),
    # --- DeepSeek and China -------------------------------------------------------------
    row("딥시크 충격…국내 AI 업계 비상", "ai-word", ""),
    row("딥시크발 AI 패권 경쟁", "ai-word", ""),
    row("DeepSeek rattles Korean tech stocks", "", ""),
    row("Chinese AI models gain ground", "ai-word", ""),
    row("China’s AI push worries Seoul", "ai-word", ""),
    row("알리바바 큐원 신모델", "foreign-company", ""),
    row("중국 여행객 증가"),
    # --- platform regulation ------------------------------------------------------------
    row("공정위, 플랫폼법 재추진", "platform-regulation", "kftc"),
    row("온플법 제정 논란", "platform-regulation"),
    row("플랫폼 규제가 AI 발목", "ai-word platform-regulation", ""),
    row(
        "Platform regulation could hurt AI, startups warn",
        "ai-general ai-word platform-regulation",
        "",
    ),
    row("플랫폼 노동자 보호"),
    # --- target prices and ratings ------------------------------------------------------
    row("JP모건, 네이버 목표주가 27만원으로 상향", "target-price", "naver"),
    row("씨티, 네이버 톱픽 제시", "target-price", "naver"),
    row("카카오 목표가 하향", "target-price", "kakao"),
    row("Citi raises Naver price target, names it top pick", "target-price", "naver"),
    row("JPMorgan keeps overweight rating on Naver", "target-price", "naver"),
    row("목표가격 설정 논의"),
    # --- foreign net buying -------------------------------------------------------------
    row("외국인 순매수에 코스피 상승", "foreign-buying market-index", ""),
    row("외국인 매수세 유입…네이버 강세", "foreign-buying price-move", "naver"),
    row("Foreigners were net buyers of 81 billion won", "foreign-buying"),
    row("기관 순매수 지속", "foreign-buying", ""),
    # --- 52-week highs ------------------------------------------------------------------
    row("네이버, 52주 신고가 경신", "new-high", "naver"),
    row("카카오 신고가", "new-high", "kakao"),
    row("Kakao hits 52-week high", "new-high", "kakao"),
    row("Naver shares at an all-time high", "new-high", "naver"),
    row("신고가격 조작 의혹"),
    # --- entities: particles and suffixes -----------------------------------------------
    row("네이버가 웃었다", "", "naver"),
    row("카카오는 하락", "", "kakao"),
    row("네이버의 반격", "", "naver"),
    row("카카오와 네이버", "", "kakao naver"),
    row("네이버에서 일하는 개발자", "", "naver"),
    row("네이버에서도 신중론", "", "naver"),
    row("카카오조차 못했다", "", "kakao"),
    row("네이버랑 협력", "", "naver"),
    row("카카오로부터 투자 유치", "", "kakao"),
    row("네이버측 입장", "", "naver"),
    row("하정우씨 인터뷰", "commentary", ""),
    row("이재명표 정책", "", "lee-jae-myung"),
    row("과학기술정보통신부는 밝혔다", "", "msit"),
    row("국회에서 논의", "", "national-assembly"),
    row("국회의원 발의", "", "political-parties"),
    # --- entities: aliases, the longest name wins, look-alikes --------------------------
    row("NAVER와 협력", "", "naver"),
    row("ＮＡＶＥＲ 주가", "", "naver"),
    row("Naver's shares", "", "naver"),
    row("Naver’s cloud unit", "", "naver"),
    row("NAVERZ 출시", "vendor", ""),
    row("하이퍼클로바X 공개", "ai-word", "naver"),
    row("HyperCLOVA X update", "ai-word", "naver"),
    row("카카오톡 개편", "", "kakao"),
    row("카카오뱅크 대출 금리 인하", "", "kakaobank"),
    row("카카오페이 결제 장애", "", "kakaopay"),
    row("카카오게임즈 신작", "", "kakao-games"),
    row("Kakao Bank shares fall", "", "kakaobank"),
    row("KakaoBank results", "", "kakaobank"),
    row("카카오모빌리티 택시", "", "kakao-mobility"),
    row("네이버웹툰 흥행", "", "naver-others"),
    row("LG전자 실적", "", "lg-electronics"),
    row("엘지전자 신제품", "vendor", "lg-electronics"),
    row("LG에너지솔루션 하락", "", "lg-energy-solution"),
    row("LG가 공개한 엑사원", "ai-word", "lg-corp"),
    row("LG AI Research releases EXAONE", "ai-word", "lg-corp"),
    row("LG 트윈스 우승"),
    row("LG트윈스 우승"),
    row("KT&G 배당 확대", "", "ktng"),
    row("KT 위즈 승리"),
    row("SKT와 KT, LG U+ 3사", "", "sk-telecom kt lg-uplus"),
    row("SK 텔레콤 실적", "", "sk-telecom"),
    row("SK하이닉스와 삼성전자", "", "sk-hynix samsung-electronics"),
    row("삼성바이오로직스 상승"),
    row("Samsung BioLogics fell"),
    row("Samsung Electronics rose 2%", "", "samsung-electronics"),
    row("배우 하정우 주연 영화", "commentary", ""),
    row("네이버후드 스토어 오픈"),
    row("카카오프렌즈 굿즈 출시", "vendor", ""),
    row("삼성 라이온즈 승리"),
    row("AIR 항공권 특가"),
    row("GPT 구독료 인상"),
    row("actor Ha Jung-woo stars in a thriller", "commentary", ""),
    row("Ha Jung-woo speaks", "", ""),
    row("과기정통부 장관 간담회", "", "ai-officials"),
    row("SK㈜ 지분 매각", "property", "sk-inc"),
    row("㈜LG 배당", "", "lg-corp"),
    # --- several at once ----------------------------------------------------------------
    row(
        "[속보] 이재명 대통령, 네이버 출신 하정우 AI 수석 임명…AI 100조 투자 탄력",
        "ai-appointment ai-general ai-investment ai-word appointment",
        "ai-officials lee-jae-myung naver ha-jung-woo presidential-office",
    ),
    row(
        "딥시크 이후 GPU 확보 경쟁…국가AI컴퓨팅센터 속도",
        "ai-general ai-word china-ai gpu-compute",
        "ai-institutes",
    ),
    row(
        # Generic terms all, with no Korean actor: an agenda, not policy news.
        "Sovereign AI, data centers and the AI Basic Act top the agenda",
        "ai-word",
    ),
]


@pytest.mark.parametrize(("text", "themes", "entities"), HEADLINES)
def test_headline_themes_and_entities(
    ruleset: Ruleset, text: str, themes: set[str], entities: set[str]
) -> None:
    tagging = tag(text, "", ruleset)
    assert set(tagging.themes) == themes
    assert set(tagging.entities) == entities


def test_the_table_covers_every_default_theme_with_positives_and_negatives(
    ruleset: Ruleset,
) -> None:
    seen = {theme for _, themes, _ in HEADLINES for theme in themes}
    assert seen == set(ruleset.themes)
    assert sum(1 for _, themes, entities in HEADLINES if not themes and not entities) >= 30
    assert len(HEADLINES) >= 150


RULES = [
    # title, summary, rules that fire
    ("하정우 AI미래기획수석 임명", "", "ai-policy ai-policy-platform ai-appointment ai-post"),
    ("Naver's Ha Jung-woo named first AI secretary", "", "ai-policy ai-policy-platform"),
    ("정부, 소버린 AI 전략 발표", "", "ai-policy"),
    # A company's own data centre, sovereign-AI sale or model: no Korean policy acts.
    ("KT, AI 데이터센터 증설", "", ""),
    ("네이버, 소버린 AI 수출", "", ""),
    ("카카오, 딥시크 대응 모델 공개", "", ""),
    ("정부, 딥시크 접속 차단", "", "ai-policy"),
    (
        "Naver shares surge on AI optimism, hit 52-week high",
        "",
        "ai-platform-market ai-stock-market ai-stock-named",
    ),
    ("JP모건, 네이버 목표주가 상향", "", "ai-platform-market"),
    ("삼성전자 52주 신고가", "", ""),
    ("신임 장관 임명", "", ""),
    ("네이버가 웃었다", "", ""),
    ("카카오뱅크, 인공지능 기본법 대응", "", ""),
    ("카카오뱅크, 인공지능 기본법 시행령 대응", "", "ai-policy"),
    ("배우 하정우 AI 영화 출연", "", ""),
    # The summary counts too: the title alone says nothing.
    (
        "네이버 주가 급등",
        "하정우 AI 수석 임명 영향",
        "ai-policy ai-policy-platform ai-appointment ai-platform-market ai-stock-market "
        "ai-stock-named ai-post",
    ),
]


@pytest.mark.parametrize(("title", "summary", "fired"), RULES)
def test_news_rules_that_fire(ruleset: Ruleset, title: str, summary: str, fired: str) -> None:
    tagging = tag(title, summary, ruleset)
    assert [f.rule_id for f in tagging.news_rules_fired] == fired.split()


def test_the_appointment_is_policy_news_about_naver_and_the_ai_sector(ruleset: Ruleset) -> None:
    tagging = tag(
        "이재명 대통령, 하정우 네이버 퓨처AI센터장을 AI미래기획수석에 임명",
        "초대 AI 수석으로 발탁된 하정우 센터장은 소버린 AI를 강조해 왔다.",
        ruleset,
    )
    assert tagging.tickers == {"035420"}
    assert tagging.sectors == {"ai-platform", "ai-stock", "platform"}
    fired = dict(tagging.news_rules_fired)
    assert set(fired) == {"ai-policy", "ai-policy-platform", "ai-appointment", "ai-post"}
    assert "'AI미래기획수석' in title" in fired["ai-appointment"]
    assert "'임명' in title" in fired["ai-appointment"]
    assert "sector:ai-platform ('하정우' in title" in fired["ai-policy-platform"]
    hits = tagging.entities["ha-jung-woo"]
    assert [(h.field, h.surface) for h in hits] == [("title", "하정우"), ("summary", "하정우")]
    assert hits[1].start == 15


def test_an_entity_mention_alone_resolves_tickers_but_fires_nothing(ruleset: Ruleset) -> None:
    tagging = tag("카카오와 네이버, 나란히 하락", "", ruleset)
    assert tagging.tickers == {"035420", "035720"}
    assert tagging.sectors == {"ai-platform", "ai-stock", "platform"}
    assert tagging.themes == {}
    assert tagging.news_rules_fired == []
