"""A deterministic generator of natural-looking Korean text for synthetic models.

The demo's stand-in models and the provenance calibration controls are trained,
and their held-out quality measured, on text that must exist without any download.
We therefore generate it: word lists and sentence templates in four registers
(news, conversation, legal and administrative, technical), filled by a seeded
``random.Random``. Particles are
chosen by the final consonant (받침) of the word they attach to (은/는, 이/가,
을/를, 과/와, 으로/로), and verbs carry register-appropriate endings, so the text
has the morphological variety a Korean tokenizer must cope with and is not a
handful of repeated strings. The tokenizer-efficiency audit reuses it for the
same reason.

The train and held-out splits draw from the same distribution with disjoint
seed streams (``"train:<seed>"`` vs ``"heldout:<seed>"``), and a longer request
is always an extension of a shorter one with the same arguments.
"""

from __future__ import annotations

import functools
import random
import re
from collections.abc import Callable
from typing import Literal

Split = Literal["train", "heldout"]
CORPUS_VERSION = 1  # bump on any change that alters generated text (stand-ins rebuild)

_HANGUL_FIRST, _HANGUL_LAST = 0xAC00, 0xD7A3


def _words(text: str) -> tuple[str, ...]:
    return tuple(text.split())


# --- nouns, by role ------------------------------------------------------------------------
_ORGS = _words("""
    정부 과학기술정보통신부 행정안전부 교육부 국회 위원회 연구원 대학교 지방자치단체 공공기관
    컨소시엄 스타트업 중소기업 대기업 통신사 연구소 협회 시민단체 평가단 전문가위원회
    데이터센터 개발팀 운영팀 사업단 재단 법원 검찰 경찰청 보건소 소방서
""")
_PLACES = _words("""
    서울 부산 대구 인천 광주 대전 울산 세종 수원 성남 판교 제주 강릉 전주 청주 포항 창원
    여의도 강남 광화문 해운대 송도
""")
_PEOPLE = _words("""
    장관 차관 위원장 대표 연구원 교수 학생 기자 시민 주민 개발자 심사위원 담당자 관계자
    전문가 사용자 소비자 의원 대변인 책임자 엄마 아빠 친구 선배 후배 동생 언니 형 선생님
""")
_TOPICS = _words("""
    인공지능 파운데이션모델 언어모델 데이터 반도체 클라우드 오픈소스 생태계 일자리 물가 금리
    부동산 수출 예산 교육 의료 복지 교통 환경 기후 에너지 안전 보안 개인정보 저작권 규제
    투자 경쟁력 성능 평가 기술 서비스 플랫폼 인프라 정책 제도 산업 시장 연구 인재 표준
    지원금 세금 연금 일정 계획 전략 협력 성과 결과 기준 절차
""")
_THINGS = _words("""
    점심 저녁 커피 영화 책 노래 사진 여행 주말 회의 약속 숙제 시험 운동 날씨 가방 휴대폰
    노트북 버스 지하철 택시 식당 카페 공원 도서관 병원 시장 편의점 생일 선물 계절 봄 여름
    가을 겨울 아침 밤 오후 내일 어제 오늘
""")
_FOODS = _words("김치찌개 된장찌개 비빔밥 불고기 떡볶이 냉면 라면 치킨 삼겹살 김밥 칼국수 순두부")
_TECH = _words("""
    모델 가중치 토크나이저 어휘 임베딩 어텐션 레이어 파라미터 학습률 배치 손실함수 옵티마이저
    체크포인트 추론 서버 메모리 그래디언트 정규화 인코더 디코더 데이터셋 벤치마크 지표 정확도
    재현성 시드 로그 파이프라인 컨테이너 라이선스 저장소 함수 변수 알고리즘 행렬 벡터 확률
""")
_LAW = _words("""
    법률 조항 시행령 시행규칙 고시 공고 신청서 증빙서류 계약 의무 권리 책임 처분 허가 신고
    보조금 협약 위반 제재 심사 이의신청 청문 감사 예외 기한 당사자 신청인 수급자 대리인
""")
_ADJ_NOUNS = _words("""
    중요 필요 가능 충분 부족 확실 다양 유리 불리 적절 투명 공정 안정 복잡 간단 편리 유용
""")

# --- verbs: 하다-nouns generate their forms; others are listed -------------------------------
_HADA = _words("""
    발표 추진 검토 개발 도입 확대 지원 논의 강조 공개 평가 선정 구축 운영 개선 마련 협력
    참여 제출 승인 보고 설명 준비 시작 완료 분석 측정 비교 확인 결정 요청 제안 합의 연구
    실시 적용 변경 공유 배포 학습 설계 구현 점검 조사 예측 관리 활용 추가 삭제 정리 계산
""")
_DOEDA = _words("""
    선정 발표 공개 완료 적용 변경 확인 결정 승인 배포 구축 도입 확대 마련 평가 측정 개선
""")
# past, present, polite, polite-past, formal, connective, rel-present, rel-past, rel-future
_VERBS: tuple[tuple[str, ...], ...] = tuple(tuple(v.split()) for v in (
    "봤다 본다 봐요 봤어요 봅니다 보고 보는 본 볼",
    "갔다 간다 가요 갔어요 갑니다 가고 가는 간 갈",
    "왔다 온다 와요 왔어요 옵니다 오고 오는 온 올",
    "먹었다 먹는다 먹어요 먹었어요 먹습니다 먹고 먹는 먹은 먹을",
    "읽었다 읽는다 읽어요 읽었어요 읽습니다 읽고 읽는 읽은 읽을",
    "썼다 쓴다 써요 썼어요 씁니다 쓰고 쓰는 쓴 쓸",
    "만들었다 만든다 만들어요 만들었어요 만듭니다 만들고 만드는 만든 만들",
    "받았다 받는다 받아요 받았어요 받습니다 받고 받는 받은 받을",
    "줬다 준다 줘요 줬어요 줍니다 주고 주는 준 줄",
    "찾았다 찾는다 찾아요 찾았어요 찾습니다 찾고 찾는 찾은 찾을",
    "들었다 듣는다 들어요 들었어요 듣습니다 듣고 듣는 들은 들을",
    "알았다 안다 알아요 알았어요 압니다 알고 아는 안 알",
    "바꿨다 바꾼다 바꿔요 바꿨어요 바꿉니다 바꾸고 바꾸는 바꾼 바꿀",
    "늘렸다 늘린다 늘려요 늘렸어요 늘립니다 늘리고 늘리는 늘린 늘릴",
    "줄였다 줄인다 줄여요 줄였어요 줄입니다 줄이고 줄이는 줄인 줄일",
    "열었다 연다 열어요 열었어요 엽니다 열고 여는 연 열",
    "닫았다 닫는다 닫아요 닫았어요 닫습니다 닫고 닫는 닫은 닫을",
    "기다렸다 기다린다 기다려요 기다렸어요 기다립니다 기다리고 기다리는 기다린 기다릴",
    "배웠다 배운다 배워요 배웠어요 배웁니다 배우고 배우는 배운 배울",
    "가르쳤다 가르친다 가르쳐요 가르쳤어요 가르칩니다 가르치고 가르치는 가르친 가르칠",
))
# past, present, polite, formal, connective, adnominal
_ADJS: tuple[tuple[str, ...], ...] = tuple(tuple(a.split()) for a in (
    "높았다 높다 높아요 높습니다 높고 높은", "낮았다 낮다 낮아요 낮습니다 낮고 낮은",
    "많았다 많다 많아요 많습니다 많고 많은", "적었다 적다 적어요 적습니다 적고 적은",
    "좋았다 좋다 좋아요 좋습니다 좋고 좋은", "빨랐다 빠르다 빨라요 빠릅니다 빠르고 빠른",
    "느렸다 느리다 느려요 느립니다 느리고 느린", "컸다 크다 커요 큽니다 크고 큰",
    "작았다 작다 작아요 작습니다 작고 작은", "어려웠다 어렵다 어려워요 어렵습니다 어렵고 어려운",
    "쉬웠다 쉽다 쉬워요 쉽습니다 쉽고 쉬운", "새로웠다 새롭다 새로워요 새롭습니다 새롭고 새로운",
    "바빴다 바쁘다 바빠요 바쁩니다 바쁘고 바쁜",
    "맛있었다 맛있다 맛있어요 맛있습니다 맛있고 맛있는",
    "추웠다 춥다 추워요 춥습니다 춥고 추운", "더웠다 덥다 더워요 덥습니다 덥고 더운",
))
_ADVS = _words("""
    매우 아주 조금 더 가장 특히 이미 아직 곧 다시 함께 직접 주로 점차 크게 꾸준히 빠르게
    천천히 정말 진짜 좀 계속 드디어 결국 먼저 나중에 오랜만에 새로 충분히 적극적으로
""")
_CONNECT = ("그러나", "하지만", "또한", "한편", "따라서", "그리고", "이에 따라", "다만", "특히",
            "아울러", "반면", "그래서", "그런데", "결국")
_ARTICLES = _words("제1조 제2조 제3조 제5조 제7조 제12조 제15조 제21조 제30조")


# --- particles ------------------------------------------------------------------------------
_DIGIT_BATCHIM = {"0": True, "1": True, "2": False, "3": True, "4": False, "5": False,
                  "6": True, "7": True, "8": True, "9": False}
_PAIRS = {"은": ("은", "는"), "는": ("은", "는"), "이": ("이", "가"), "가": ("이", "가"),
          "을": ("을", "를"), "를": ("을", "를"), "과": ("과", "와"), "와": ("과", "와"),
          "이다": ("이다", "다"), "이나": ("이나", "나"), "이라고": ("이라고", "라고"),
          "아": ("아", "야"), "이랑": ("이랑", "랑")}


def _final(word: str) -> int | None:
    """Index of the final consonant of the last syllable (0 = none), or None if unknown."""
    last = word[-1]
    if _HANGUL_FIRST <= ord(last) <= _HANGUL_LAST:
        return (ord(last) - _HANGUL_FIRST) % 28
    if last in _DIGIT_BATCHIM:
        return 1 if _DIGIT_BATCHIM[last] else 0
    return 0  # %, Latin letters: read with a vowel ending (퍼센트, 에이, ...)


def attach(word: str, particle: str) -> str:
    """``word`` + the right allomorph of ``particle`` (사과를, 책을, 서울로, 부산으로)."""
    final = _final(word)
    if particle in ("으로", "로"):
        return word + ("로" if final in (0, 8) else "으로")
    if particle in _PAIRS:
        with_batchim, without = _PAIRS[particle]
        return word + (with_batchim if final else without)
    return word + particle


# --- slot fillers ---------------------------------------------------------------------------
def _year(r: random.Random) -> str:
    return f"{r.randint(2018, 2027)}년"


def _date(r: random.Random) -> str:
    return f"{r.randint(2019, 2026)}년 {r.randint(1, 12)}월 {r.randint(1, 28)}일"


def _money(r: random.Random) -> str:
    unit, low, high = r.choice((("억 원", 2, 999), ("조 원", 1, 30), ("만 원", 10, 9999),
                                ("천만 원", 1, 9), ("백억 원", 1, 9)))
    return f"{r.randint(low, high)}{unit}"


def _percent(r: random.Random) -> str:
    return f"{r.randint(1, 99)}.{r.randint(0, 9)}%" if r.random() < 0.5 else f"{r.randint(1, 95)}%"


def _count(r: random.Random) -> str:
    return f"{r.randint(2, 60)}{r.choice(('개', '명', '곳', '건', '차례', '가지'))}"


def _hada(r: random.Random) -> str:
    return r.choice(_HADA)


def _suggest(forms: tuple[str, ...], r: random.Random) -> str:
    """A suggestion: the stem (connective form minus 고) with 자/죠, or the polite form."""
    stem = forms[5][:-1]
    return r.choice((stem + "자", stem + "죠", forms[2]))


_SLOTS: dict[str, Callable[[random.Random], str]] = {
    "org": lambda r: r.choice(_ORGS), "place": lambda r: r.choice(_PLACES),
    "person": lambda r: r.choice(_PEOPLE), "topic": lambda r: r.choice(_TOPICS),
    "thing": lambda r: r.choice(_THINGS), "food": lambda r: r.choice(_FOODS),
    "tech": lambda r: r.choice(_TECH), "law": lambda r: r.choice(_LAW),
    "adjn": lambda r: r.choice(_ADJ_NOUNS), "adv": lambda r: r.choice(_ADVS),
    "conn": lambda r: r.choice(_CONNECT), "article": lambda r: r.choice(_ARTICLES),
    "year": _year, "date": _date, "money": _money, "percent": _percent, "count": _count,
    "months": lambda r: f"{r.randint(1, 24)}개월",
    "hada": _hada, "doeda": lambda r: r.choice(_DOEDA),
}
_VERB_FORMS = {"past": 0, "pres": 1, "pol": 2, "polpast": 3, "formal": 4, "conn": 5,
               "relpres": 6, "relpast": 7, "relfut": 8}
_HADA_FORMS = ("했다", "한다", "해요", "했어요", "합니다", "하고", "하는", "한", "할")
_ADJ_FORMS = {"past": 0, "pres": 1, "pol": 2, "formal": 3, "conn": 4, "rel": 5}

# --- templates: {slot}, {slot/particle}; {v.form} verbs; {a.form} adjectives; {h.form} 하다 --
_NEWS = (
    "{org/은} {date} {topic} 관련 {law/을} {h.past}.",
    "{person/은} \"{topic/은} {adv} {adjn}하다\"고 {h.past}.",
    "{place}에서 열린 {thing}에서 {org/은} {topic} 분야 {money} 규모의 투자를 {h.past}.",
    "이번 {topic} 사업에는 {count}의 기관이 {h.relpres} 것으로 알려졌다.",
    "{topic} 부문 {percent} 증가는 {year} 이후 {a.rel} 수준이다.",
    "{conn} {org/은} {topic}의 {adjn}성을 {adv} {h.fut} 계획이다.",
    "업계에서는 {topic} 수요가 {year}까지 {adv} 늘어날 것으로 전망한다.",
    "{org/과} {org/은} {topic} {tech} 공동 {h.noun}에 {h.past}.",
    "{place} 지역의 {topic} 지표가 {percent} {a.past}.",
    "{person} 측은 {topic} 예산 {money/을} 추가로 {h.fut} 방침이라고 전했다.",
    "{org} 관계자는 \"{topic}에 대한 {h.noun/이} {adv} 필요하다\"고 말했다.",
    "{date} 기준 {topic} 신청 건수는 {count/으로} 집계됐다.",
    "{person/은} \"{topic} 분야에서 {adv} {h.formal}\"라고 강조했다.",
    "{org/이} {h.relpast} {topic} 계획은 {year} 상반기에 {doeda}될 예정이다.",
)
_CHAT = (
    "{person}{/아}, 오늘 {thing} 어땠어?",
    "나 어제 {place}에서 {food} {v.past_casual}.",
    "{thing/은} {adv} {a.pol}.",
    "혹시 {thing} 시간 {h.fut_ok}?",
    "{food/이} {adv} {a.pol}. 다음에 같이 {v.suggest}.",
    "{person/이} 그러는데 {place}에 새로 생긴 카페가 {a.pol}.",
    "이번 {thing}에는 {person/이랑} {place}에 {v.plan}.",
    "아 진짜? 나는 {thing/을} {adv} {v.neg}.",
    "그럼 {thing} 끝나고 {food} {v.suggest}!",
    "{conn} {thing/이} 너무 {a.conn} 좀 피곤해요.",
    "요즘 {topic} 얘기가 {adv} 많더라고요.",
    "{person}한테 {thing} 사진 {v.past_casual}.",
    "내일 {thing/은} 몇 시에 {v.ask}?",
    "안녕하세요, {org}입니다. {thing} 관련 문의는 {place} 창구에서 {h.formal}.",
    "고객님, {thing/은} {adv} {a.formal}. {v.formal}.",
)
_LEGAL = (
    "{article}({law}) ① {person/은} {law/을} {h.obl}.",
    "② 제1항에도 불구하고 {org/은} {law/을} {h.may}.",
    "{org/은} {law}에 따른 {topic/을} {count} 이내에 {h.obl}.",
    "{law/을} 위반한 자에게는 {money} 이하의 과태료를 부과한다.",
    "신청인은 {law/과} {law/을} {date}까지 {org}에 제출하여야 한다.",
    "{org}의 장은 {topic}에 관한 {law/을} {h.pres}.",
    "이 법은 공포 후 {months/이} 경과한 날부터 시행한다.",
    "{law}의 기간은 {date}부터 {year} 말까지로 한다.",
    "다만, {topic}에 해당하는 경우에는 {law/을} {h.neg_formal}.",
    "{person/은} {law}의 내용이 {adjn}하다고 인정되는 때에는 이를 {h.may}.",
    "{org/은} {topic}의 {adjn}성을 확보하기 위하여 필요한 조치를 {h.obl}.",
)
_TECHS = (
    "{tech/은} {tech}의 {adjn}성을 높이기 위해 {h.passive_formal}.",
    "{tech/을} {count} 단위로 나누어 {h.pres}.",
    "먼저 {tech/을} {h.conn} {tech}에 {h.result}.",
    "{tech/이} {a.conn} {tech/은} {a.pres}.",
    "{tech}의 크기를 {percent} 줄이면 {tech/이} {adv} {a.past}.",
    "이 {tech/은} {tech/과} {tech/을} 입력으로 받아 {tech/을} {h.pres}.",
    "{conn} {tech}에 따라 {tech/이} {h.can}.",
    "{tech/을} 고정하면 같은 {tech/으로} 같은 결과를 {h.can}.",
    "{tech} 값이 {a.rel} 경우 {tech/을} 다시 {h.obl}.",
    "{year} 기준 {tech} 성능은 {percent} 향상되었다.",
    "실험에서는 {tech}, {tech}, {tech/을} 각각 {h.past}.",
    "{tech/은} {tech/으로} 저장되며 {tech/은} 별도로 {h.fut}.",
)
_REGISTERS = (_NEWS, _CHAT, _LEGAL, _TECHS)
_REGISTER_WEIGHTS = (0.35, 0.25, 0.2, 0.2)

_SPECIAL: dict[str, Callable[[random.Random], str]] = {
    "h.past": lambda r: r.choice((_hada(r) + "했다", _hada(r) + "했다고 밝혔다",
                                  _hada(r) + "하였다", _hada(r) + "하기로 했다")),
    "h.pres": lambda r: _hada(r) + r.choice(("한다", "할 수 있다", "하도록 한다")),
    "h.fut": lambda r: _hada(r) + r.choice(("할", "하기로 할", "해 나갈")),
    "h.noun": _hada,
    "h.relpres": lambda r: _hada(r) + "하는",
    "h.relpast": lambda r: _hada(r) + "한",
    "h.conn": lambda r: _hada(r) + r.choice(("하고", "한 뒤", "하여", "해서")),
    "h.result": lambda r: _hada(r) + r.choice(("한다", "하였다", "해야 한다", "된다")),
    "h.obl": lambda r: _hada(r) + r.choice(("하여야 한다", "해야 한다")),
    "h.may": lambda r: _hada(r) + r.choice(("할 수 있다", "하게 할 수 있다")),
    "h.can": lambda r: _hada(r) + r.choice(("할 수 있다", "될 수 있다", "하기 어렵다")),
    "h.neg_formal": lambda r: _hada(r) + r.choice(("하지 아니한다", "하지 않을 수 있다")),
    "h.passive_formal": lambda r: r.choice(_DOEDA) + r.choice(("된다", "되었다", "되어야 한다")),
    "h.fut_ok": lambda r: _hada(r) + r.choice(("할 수 있어", "해도 돼", "할까요")),
    "v.past_casual": lambda r: r.choice(_VERBS)[r.choice((0, 3))],
    "v.suggest": lambda r: _suggest(r.choice(_VERBS), r),
    "v.plan": lambda r: r.choice(_VERBS)[8] + r.choice((" 거예요", " 생각이야", " 예정이에요")),
    "v.neg": lambda r: "잘 안 " + r.choice(_VERBS)[r.choice((1, 2))],
    "v.ask": lambda r: r.choice(_VERBS)[2],
}


def _fill(token: str, r: random.Random) -> str:
    """Expand one ``{...}`` token: a slot, a slot with particle, or a verb/adjective form."""
    name, _, particle = token.partition("/")
    if token in _SPECIAL:
        return _SPECIAL[token](r)
    if name in _SPECIAL:
        return attach(_SPECIAL[name](r), particle) if particle else _SPECIAL[name](r)
    if name.startswith("v."):
        return r.choice(_VERBS)[_VERB_FORMS[name[2:]]]
    if name.startswith("a."):
        return r.choice(_ADJS)[_ADJ_FORMS[name[2:]]]
    if name.startswith("h."):
        return _hada(r) + _HADA_FORMS[_VERB_FORMS[name[2:]]]
    word = _SLOTS[name](r)
    return attach(word, particle) if particle else word


_TOKEN = re.compile(r"\{([^{}]*)\}")


def sentence(r: random.Random, register: int | None = None) -> str:
    """One sentence from a template of ``register`` (or a weighted random register)."""
    if register is None:
        register = r.choices(range(len(_REGISTERS)), weights=_REGISTER_WEIGHTS)[0]
    template = r.choice(_REGISTERS[register])
    out: list[str] = []
    pos = 0
    for m in _TOKEN.finditer(template):
        out.append(template[pos:m.start()])
        token = m.group(1)
        if token == "/아":  # vocative attaches to the word just emitted
            while out and not out[-1]:
                out.pop()
            out.append(attach(out.pop(), "아"))
        else:
            out.append(_fill(token, r))
        pos = m.end()
    out.append(template[pos:])
    text = "".join(out)
    return re.sub(r" {2,}", " ", text)


def paragraph(r: random.Random) -> str:
    """Three to six sentences in one register, as a real document would have."""
    register = r.choices(range(len(_REGISTERS)), weights=_REGISTER_WEIGHTS)[0]
    n = r.randint(3, 6)
    sep = "\n" if register == 1 else " "
    return sep.join(sentence(r, register) for _ in range(n))


def corpus_text(split: Split, n_chars: int, seed: int = 0) -> str:
    """Exactly ``n_chars`` characters of generated Korean text for ``split``.

    Deterministic in ``(split, seed)``; the two splits use disjoint seed streams, and a
    longer request extends a shorter one (the same prefix).
    """
    if split not in ("train", "heldout"):
        raise ValueError(f"split must be 'train' or 'heldout', got {split!r}")
    if n_chars < 0:
        raise ValueError(f"n_chars must be >= 0, got {n_chars}")
    r = random.Random(f"kaieval-corpus:{split}:{seed}")
    parts: list[str] = []
    total = 0
    while total < n_chars:
        para = paragraph(r) + "\n\n"
        parts.append(para)
        total += len(para)
    return "".join(parts)[:n_chars]


@functools.lru_cache(maxsize=4)
def train_text(n_chars: int, seed: int) -> str:
    """``corpus_text("train", n_chars, seed)``, memoised: builds reuse the same samples."""
    return corpus_text("train", n_chars, seed=seed)


def vocabulary() -> frozenset[str]:
    """Every base word the generator can emit (for audits that want the lexicon size)."""
    words: set[str] = set()
    for group in (_ORGS, _PLACES, _PEOPLE, _TOPICS, _THINGS, _FOODS, _TECH, _LAW, _ADJ_NOUNS,
                  _HADA, _ADVS, _CONNECT, _ARTICLES):
        words.update(group)
    for forms in (*_VERBS, *_ADJS):
        words.update(forms)
    return frozenset(words)


def hangul_ratio(text: str) -> float:
    """Share of non-space characters that are Hangul syllables."""
    chars = [c for c in text if not c.isspace()]
    if not chars:
        return 0.0
    return sum(_HANGUL_FIRST <= ord(c) <= _HANGUL_LAST for c in chars) / len(chars)
