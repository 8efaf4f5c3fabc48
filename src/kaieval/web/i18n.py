"""Interface text in Korean (the default) and English; ``/lang/en`` or ``/lang/ko`` switch.

Only the interface is translated: names, rubric titles and comments are shown as written.
"""

from __future__ import annotations

LANGS = ("ko", "en")
DEFAULT = "ko"

_COMMON: dict[str, dict[str, str]] = {
    "app_title": {"ko": "독자 AI 파운데이션 모델 평가", "en": "Sovereign AI model evaluation"},
    "leaderboard": {"ko": "순위표", "en": "Leaderboard"},
    "login": {"ko": "로그인", "en": "Log in"},
    "logout": {"ko": "로그아웃", "en": "Log out"},
    "name": {"ko": "이름", "en": "Name"},
    "password": {"ko": "비밀번호", "en": "Password"},
    "login_failed": {"ko": "이름 또는 비밀번호가 올바르지 않습니다.",
                     "en": "Wrong name or password."},
    "too_many": {"ko": "시도가 너무 많습니다. 잠시 후 다시 시도하세요.",
                 "en": "Too many attempts; try again in a minute."},
    "committee": {"ko": "전문가 평가", "en": "Expert committee"},
    "office": {"ko": "사업단", "en": "Programme office"},
    "no_results": {"ko": "확정된 결과가 아직 없습니다.", "en": "No confirmed result yet."},
    "stage": {"ko": "단계", "en": "Stage"},
    "team": {"ko": "팀", "en": "Team"},
    "total": {"ko": "총점", "en": "Total"},
    "decision": {"ko": "결과", "en": "Decision"},
    "rank": {"ko": "순위", "en": "Rank"},
    "robustness": {"ko": "결정의 견고성", "en": "Robustness of the cut"},
    "simulated": {"ko": "모의 데이터", "en": "simulated"},
    "assigned": {"ko": "배정된 팀", "en": "Assigned teams"},
    "none_assigned": {"ko": "배정된 팀이 없습니다.", "en": "No team assigned to you."},
    "draft": {"ko": "임시 저장", "en": "Save draft"},
    "submit": {"ko": "제출", "en": "Submit"},
    "submitted": {"ko": "제출됨 (수정 불가)", "en": "Submitted (locked)"},
    "saved": {"ko": "저장되었습니다.", "en": "Saved."},
    "comment": {"ko": "의견", "en": "Comment"},
    "score": {"ko": "점수", "en": "Score"},
    "status": {"ko": "상태", "en": "Status"},
    "not_started": {"ko": "미작성", "en": "not started"},
    "in_draft": {"ko": "작성 중", "en": "draft"},
    "others_sheets": {"ko": "다른 평가위원의 평가표", "en": "Other evaluators' sheets"},
    "assign": {"ko": "자동 배정", "en": "Assign automatically"},
    "per_team": {"ko": "팀당 평가위원 수", "en": "Evaluators per team"},
    "progress": {"ko": "진행 상황", "en": "Progress"},
    "evaluator": {"ko": "평가위원", "en": "Evaluator"},
    "forbidden": {"ko": "접근 권한이 없습니다.", "en": "You may not open this page."},
    "not_found": {"ko": "찾을 수 없습니다.", "en": "Not found."},
    "change_password": {"ko": "비밀번호 변경", "en": "Change password"},
    "new_password": {"ko": "새 비밀번호 (12자 이상)", "en": "New password (12+ characters)"},
    "provisional": {"ko": "잠정 결과", "en": "provisional"},
    "blind_code": {"ko": "팀 코드", "en": "Team code"},
}

_SUBMIT: dict[str, dict[str, str]] = {
    "my_team": {"ko": "우리 팀", "en": "My team"},
    "objections": {"ko": "이의신청", "en": "Objections"},
    "deadline": {"ko": "제출 마감", "en": "Submission deadline"},
    "no_deadline": {"ko": "마감 없음", "en": "no deadline"},
    "uploads_closed": {"ko": "마감되었습니다. 제출할 수 없습니다.",
                       "en": "The deadline has passed: uploads are closed."},
    "dossier": {"ko": "신청서 (dossier)", "en": "Dossier"},
    "upload_dossier": {"ko": "신청서 올리기", "en": "Upload dossier"},
    "upload_file": {"ko": "파일 올리기", "en": "Upload file"},
    "files": {"ko": "제출 파일", "en": "Files"},
    "no_files": {"ko": "제출한 파일이 없습니다.", "en": "No files uploaded."},
    "not_uploaded": {"ko": "아직 올리지 않았습니다.", "en": "Not uploaded yet."},
    "uploaded": {"ko": "올렸습니다.", "en": "Uploaded."},
    "size": {"ko": "크기", "en": "Size"},
    "when": {"ko": "시각", "en": "When"},
    "result_state": {"ko": "결과 상태", "en": "Result"},
    "state_none": {"ko": "결정된 결과 없음", "en": "no decided result yet"},
    "state_open": {"ko": "결정됨, 이의신청 기간 중 (확정 아님)",
                   "en": "decided, open for objections (not final)"},
    "state_closed": {"ko": "결정됨, 이의신청 마감, 확정 대기 (확정 아님)",
                     "en": "decided, objections closed, awaiting confirmation (not final)"},
    "state_final": {"ko": "최종 확정", "en": "final (confirmed)"},
    "until": {"ko": "마감", "en": "until"},
    "my_result": {"ko": "우리 팀 결과", "en": "Our result"},
    "file_objection": {"ko": "이의신청 제출", "en": "File an objection"},
    "objection_text": {"ko": "이의신청 내용", "en": "Objection"},
    "answer": {"ko": "답변", "en": "Answer"},
    "send_answer": {"ko": "답변 저장", "en": "Save answer"},
    "unanswered": {"ko": "답변 대기", "en": "awaiting an answer"},
    "confirm": {"ko": "최종 확정", "en": "Confirm as final"},
    "confirmed": {"ko": "확정됨", "en": "Confirmed"},
    "no_objections": {"ko": "이의신청이 없습니다.", "en": "No objections."},
    "history": {"ko": "단계별 결과", "en": "Results by stage"},
    "final_result": {"ko": "최종 결과", "en": "final result"},
    "charts": {"ko": "그래프", "en": "Charts"},
}

_ARENA: dict[str, dict[str, str]] = {
    "rate": {"ko": "사용자 평가", "en": "Rate the models"},
    "arena": {"ko": "블라인드 비교", "en": "Blind arena"},
    "nothing_to_rate": {"ko": "평가할 항목이 없습니다.", "en": "Nothing to rate."},
    "scale_help": {"ko": "1 매우 미흡 · 2 미흡 · 3 보통 · 4 우수 · 5 매우 우수",
                   "en": "1 very poor · 2 poor · 3 fair · 4 good · 5 very good"},
    "votes_so_far": {"ko": "투표 수", "en": "Your votes"},
    "no_battle": {"ko": "지금은 비교할 응답이 없습니다.", "en": "No battle to show now."},
    "prompt": {"ko": "질문", "en": "Prompt"},
    "a_better": {"ko": "A가 더 좋음", "en": "A is better"},
    "b_better": {"ko": "B가 더 좋음", "en": "B is better"},
    "tie": {"ko": "비슷함", "en": "Tie"},
    "both_bad": {"ko": "둘 다 나쁨", "en": "Both bad"},
    "votes": {"ko": "표", "en": "votes"},
    "voters": {"ko": "명 투표", "en": "voters"},
    "prompts": {"ko": "질문", "en": "prompts"},
    "responses": {"ko": "응답", "en": "responses"},
    "cap": {"ko": "1인당 상한", "en": "cap per user"},
    "save": {"ko": "저장", "en": "Save"},
    "rating": {"ko": "레이팅", "en": "Rating"},
    "battles": {"ko": "비교 수", "en": "Battles"},
    "position_bias": {"ko": "위치 편향 점검", "en": "Position-bias check"},
    "left_won": {"ko": "왼쪽(먼저 보인) 응답 승률", "en": "Left (first-shown) side won"},
    "withheld": {"ko": "제외된 응답 (모델·팀 이름 노출)",
                 "en": "Withheld responses (name their model or team)"},
}

# Each part of the app keeps its text in a dict of its own above; they meet here.
MESSAGES: dict[str, dict[str, str]] = {**_COMMON, **_SUBMIT, **_ARENA}


def translate(key: str, lang: str) -> str:
    """The text for ``key`` in ``lang``; the key itself if none (visible, never blank)."""
    entry = MESSAGES.get(key)
    if entry is None:
        return key
    return entry.get(lang) or entry[DEFAULT]
