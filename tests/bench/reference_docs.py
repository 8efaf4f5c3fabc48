"""Documents in each public dataset's column layout, written here, for the reference tests.

The reference-identity test feeds the *same* rows to lm-evaluation-harness's task
objects and to kaieval's catalogue. Rows are generated from a seeded RNG and
deliberately carry what the reference's processing touches: surrounding blanks
(``question.strip()``), quotes and brackets inside options (templated choice
lists), HellaSwag's ``[title]`` and bracket artefacts, empty and non-empty CLIcK
paragraphs, five-option CSAT ids, boxed and plain HRM8K answers.
"""

from __future__ import annotations

import random
from typing import Any

Rows = list[dict[str, Any]]
Splits = dict[str, Rows]

_KO = ["조선", "고려", "세종", "한글", "김치", "태극기", "수학", "물리", "화학", "경제", "법률",
       "의학", "간호", "약학", "치과", "지리", "역사", "문화", "사회", "정치"]
_EN = ["energy", "cell", "market", "river", "law", "theorem", "atom", "poem", "graph", "tax",
       "enzyme", "orbit", "voltage", "contract", "protein"]


def _ko(rnd: random.Random, n: int = 6) -> str:
    return " ".join(rnd.choice(_KO) + rnd.choice(["은", "는", "이", "가", "을", "를", "의"])
                    for _ in range(n))


def _en(rnd: random.Random, n: int = 6) -> str:
    return " ".join(rnd.choice(_EN) for _ in range(n))


def _opt(rnd: random.Random, ko: bool, i: int) -> str:
    """An option text, now and then with a quote, an apostrophe or brackets in it."""
    base = (_ko(rnd, 2) if ko else _en(rnd, 2)) + f" {i}"
    return base + rnd.choice(["", "", " (주)", " 'x'", ' "y"', " [z]"])


def kmmlu(subject: str, seed: int, n_test: int = 3, n_dev: int = 5) -> Splits:
    rnd = random.Random(f"kmmlu/{subject}/{seed}")

    def row(i: int) -> dict[str, Any]:
        lead, trail = rnd.choice(["", " ", "\n"]), rnd.choice(["", " "])
        return {"question": f"{lead}{_ko(rnd)} {i}?{trail}",
                "answer": rnd.randint(1, 4), "A": _opt(rnd, True, 1), "B": _opt(rnd, True, 2),
                "C": _opt(rnd, True, 3), "D": _opt(rnd, True, 4), "Category": subject,
                "Human Accuracy": round(rnd.random(), 3)}
    return {"test": [row(i) for i in range(n_test)], "dev": [row(100 + i) for i in range(n_dev)]}


def mmlu(subject: str, seed: int, n_test: int = 3, n_dev: int = 5) -> Splits:
    rnd = random.Random(f"mmlu/{subject}/{seed}")

    def row(i: int) -> dict[str, Any]:
        return {"question": f" {_en(rnd)} {i}? ", "subject": subject,
                "choices": [_opt(rnd, False, k) for k in range(4)], "answer": rnd.randint(0, 3)}
    return {"test": [row(i) for i in range(n_test)], "dev": [row(100 + i) for i in range(n_dev)]}


def haerae(subset: str, seed: int, n: int = 6) -> Splits:
    rnd = random.Random(f"haerae/{subset}/{seed}")
    rows = []
    for i in range(n):
        k = rnd.choice([4, 5])
        opts = "\n".join(f"({'ABCDE'[j]}) {_opt(rnd, True, j)}" for j in range(k))
        rows.append({"query": f"### 질문: {_ko(rnd)} {i}?\n### 선택지:\n{opts}\n### 정답:",
                     "answer": f"({'ABCDE'[rnd.randrange(k)]})", "options": None})
    return {"test": rows}


def kormedmcqa(exam: str, seed: int, n_test: int = 5, n_shot: int = 5) -> Splits:
    rnd = random.Random(f"kormedmcqa/{exam}/{seed}")

    def row(i: int) -> dict[str, Any]:
        return {"subject": exam, "year": 2020 + i % 4, "period": 1, "q_number": i,
                "question": f" {_ko(rnd)} {i}? ", **{c: _opt(rnd, True, j)
                                                    for j, c in enumerate("ABCDE")},
                "answer": rnd.randint(1, 5), "cot": "", "exam_type": exam}
    return {"test": [row(i) for i in range(n_test)],
            "fewshot": [row(100 + i) for i in range(n_shot)]}


def hrm8k(subset: str, seed: int, n: int = 5) -> Splits:
    rnd = random.Random(f"hrm8k/{subset}/{seed}")
    rows = []
    for i in range(n):
        answer: Any = rnd.choice([rnd.randint(1, 500), rnd.randint(1, 9) + 0.5, "\\frac{1}{3}"])
        rows.append({"question": f" {_ko(rnd)} {i}은 얼마인가? ", "answer": str(answer),
                     "original": f"{_en(rnd)} {i}", "solution": ""})
    return {"test": rows}


MMLU_PRO_CATEGORIES = ["biology", "business", "chemistry", "computer science", "economics",
                       "engineering", "health", "history", "law", "math", "other",
                       "philosophy", "physics", "psychology"]


def mmlu_pro(seed: int, per_category: int = 2, shots: int = 5) -> Splits:
    rnd = random.Random(f"mmlu_pro/{seed}")

    def row(i: int, cat: str) -> dict[str, Any]:
        n = rnd.choice([4, 9, 10])
        idx = rnd.randrange(n)
        return {"question_id": i, "question": f"{_en(rnd)} {i}?",
                "options": [f" {_opt(rnd, False, k)} " for k in range(n)],
                "answer": "ABCDEFGHIJ"[idx], "answer_index": idx,
                "cot_content": f"A: Let's think step by step. {_en(rnd, 4)}. "
                               f"The answer is ({'ABCDEFGHIJ'[idx]}).",
                "category": cat, "src": f"ori_mmlu-{cat}"}
    test, val = [], []
    for c, cat in enumerate(MMLU_PRO_CATEGORIES):
        test += [row(1000 * c + i, cat) for i in range(per_category)]
        val += [row(1000 * c + 500 + i, cat) for i in range(shots)]
    rnd.shuffle(test)
    return {"test": test, "validation": val}


def click(seed: int) -> Splits:
    """Ids chosen to land in every CLIcK subset (and a few in none or in two)."""
    rnd = random.Random(f"click/{seed}")
    ids = ["Economy_1", "Economy_2", "Geography_3", "Geography_4", "KHB_5", "History_6",
           "Popular_7", "Popular_8", "Law_9", "PSAT_10", "Politics_11", "Politics_12",
           "Society_13", "Society_14", "Tradition_15", "Tradition_16",
           "CSAT_korean_22_3", "CSAT_korean_23_12", "CSAT_korean_23_40", "CSAT_korean_19_15",
           "CSAT_korean_20_5", "Kedu_1_3", "Kedu_16_2", "Kedu_16_9", "PSE_korean_4",
           "TK_2", "TK_7"]
    rows = []
    for i, doc_id in enumerate(ids):
        n = 5 if "CSAT" in doc_id else 4
        choices = [_opt(rnd, True, k) for k in range(n)]
        question = _ko(rnd) + rnd.choice(["", " 대화", " 발화"]) + f" {i}?"
        if doc_id == "Kedu_16_9":
            question = "다음 대화에서 " + question
        rows.append({"id": doc_id, "paragraph": rnd.choice(["", _ko(rnd, 8)]),
                     "question": question, "choices": choices,
                     "answer": rnd.choice(choices)})
    return {"train": rows}


def kobest(task: str, seed: int, n_test: int = 20, n_train: int = 6) -> Splits:
    rnd = random.Random(f"kobest/{task}/{seed}")

    def row(i: int) -> dict[str, Any]:
        if task == "boolq":
            return {"paragraph": _ko(rnd, 10) + ".", "question": _ko(rnd) + "?",
                    "label": rnd.randint(0, 1)}
        if task == "copa":
            return {"premise": _ko(rnd) + ".", "question": rnd.choice(["원인", "결과"]),
                    "alternative_1": _opt(rnd, True, 1) + ".",
                    "alternative_2": _opt(rnd, True, 2) + ".", "label": rnd.randint(0, 1)}
        if task == "hellaswag":
            return {"context": _ko(rnd, 8), **{f"ending_{k}": _opt(rnd, True, k) + "."
                                                for k in range(1, 5)},
                    "label": rnd.randint(0, 3)}
        if task == "sentineg":
            return {"sentence": _ko(rnd) + ".", "label": rnd.randint(0, 1)}
        word = rnd.choice(["배", "눈", "말", "밤"])
        return {"ID": f"wic-{i}", "word": word, "context_1": f"{_ko(rnd)} {word} 1.",
                "context_2": f"{_ko(rnd)} {word} 2.", "label": rnd.randint(0, 1)}
    return {"test": [row(i) for i in range(n_test)],
            "train": [row(100 + i) for i in range(n_train)],
            "validation": [row(200 + i) for i in range(3)]}


def gpqa(seed: int, n: int = 20) -> Splits:
    rnd = random.Random(f"gpqa/{seed}")
    rows = []
    for i in range(n):
        rows.append({"Record ID": f"rec{i:04d}", "High-level domain": rnd.choice(
                         ["Physics", "Chemistry", "Biology"]),
                     "Question": f" {_en(rnd, 9)} {i}? ",
                     "Correct Answer": f" right  {_en(rnd, 2)} [title]{i} ",
                     "Incorrect Answer 1": f"wrong a {_en(rnd, 2)} {i}",
                     "Incorrect Answer 2": f"wrong  b {_en(rnd, 2)} {i} ",
                     "Incorrect Answer 3": f" wrong c [title] {_en(rnd, 2)}"})
    return {"train": rows}


def gsm8k(seed: int, n_test: int = 20, n_train: int = 12) -> Splits:
    rnd = random.Random(f"gsm8k/{seed}")

    def row(i: int) -> dict[str, Any]:
        a, b = rnd.randint(2, 99), rnd.randint(2, 99)
        return {"question": f"{_en(rnd)}: {a} and {b} {i}?",
                "answer": f"{a} + {b} = <<{a}+{b}={a + b}>>{a + b}\n#### {a + b:,}"}
    return {"test": [row(i) for i in range(n_test)],
            "train": [row(100 + i) for i in range(n_train)]}


def hellaswag(seed: int, n_val: int = 20, n_train: int = 6) -> Splits:
    rnd = random.Random(f"hellaswag/{seed}")

    def row(i: int) -> dict[str, Any]:
        a = f"{_en(rnd, 7)} [title] {_en(rnd, 3)}."
        b = rnd.choice(["", f"the {_en(rnd, 3)}", f"then [step] {_en(rnd, 2)}"])
        return {"ind": i, "activity_label": rnd.choice(["Making tea", "Running", "Baking"]),
                "ctx_a": a, "ctx_b": b, "ctx": f"{a} {b}", "split": "val",
                "split_type": "indomain", "source_id": f"src-{i}",
                "endings": [f"{_en(rnd, 5)}  [x] {k}." for k in range(4)],
                "label": str(rnd.randint(0, 3))}
    return {"validation": [row(i) for i in range(n_val)],
            "train": [row(100 + i) for i in range(n_train)]}


def arc(seed: int, n_test: int = 20, n_train: int = 6) -> Splits:
    rnd = random.Random(f"arc/{seed}")

    def row(i: int) -> dict[str, Any]:
        k = rnd.choice([3, 4, 5])
        labels = list("ABCDE"[:k]) if rnd.random() < 0.8 else [str(j + 1) for j in range(k)]
        return {"id": f"arc-{i}", "question": f"{_en(rnd)} {i}?",
                "choices": {"text": [_opt(rnd, False, j) for j in range(k)], "label": labels},
                "answerKey": rnd.choice(labels)}
    return {"test": [row(i) for i in range(n_test)],
            "train": [row(100 + i) for i in range(n_train)],
            "validation": [row(200 + i) for i in range(3)]}


_IFEVAL_SETS: list[tuple[str, list[str], list[dict[str, Any]]]] = [
    ("Do not use commas.", ["punctuation:no_comma"], [{}]),
    ("Answer in Korean, in fewer than 40 words.",
     ["language:response_language", "length_constraints:number_words"],
     [{"language": "ko"}, {"num_words": 40, "relation": "less than"}]),
    ("Write at least 3 sentences in lowercase English.",
     ["length_constraints:number_sentences", "change_case:english_lowercase"],
     [{"num_sentences": 3, "relation": "at least"}, {}]),
    ("Use the letter e at least 5 times and add a P.S.",
     ["keywords:letter_frequency", "detectable_content:postscript"],
     [{"letter": "e", "let_frequency": 5, "let_relation": "at least"},
      {"postscript_marker": "P.S."}]),
    ("Do not say 'water'; use fewer than 3 capitalised words.",
     ["keywords:forbidden_words", "change_case:capital_word_frequency"],
     [{"forbidden_words": ["water"]}, {"capital_frequency": 3, "capital_relation": "less than"}]),
]


def ifeval(seed: int, n: int = 20) -> Splits:
    """google/IFEval's layout: every kwargs dict holds the hub's keys, null where unused."""
    rnd = random.Random(f"ifeval/{seed}")
    keys = sorted({k for _, _, kws in _IFEVAL_SETS for kw in kws for k in kw} | {"relation"})
    rows = []
    for i in range(n):
        ask, ids, kwargs = _IFEVAL_SETS[i % len(_IFEVAL_SETS)]
        rows.append({"key": 1000 + i, "prompt": f"Write about {_en(rnd, 3)}. {ask}\n"
                                                 f"{_ko(rnd)}",
                     "instruction_id_list": ids,
                     "kwargs": [{k: kw.get(k) for k in keys} for kw in kwargs]})
    return {"train": rows}
