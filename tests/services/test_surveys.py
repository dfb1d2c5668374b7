"""Surveys: the questionnaire text, validation, one response per citizen (even at once), results, half-year figure."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from models import QuestionKind, SurveyResponse
from server.extensions import db
from server.services import ServiceError, surveys

QUESTIONS = "\n".join(
    [
        "[单选 区] 您所在的区",
        "浦东新区",
        "黄浦区",
        "[打分] 总体评价",
        "[打分] 文明执法",
        "[多选] 加强",
        "占道",
        "噪声",
        "[填空 选填] 建议",
    ]
)
AT = datetime(2026, 8, 1, tzinfo=UTC)


def make(start: datetime = AT - timedelta(days=1)):
    return surveys.save_survey(
        title="下半年测评", intro="", starts_at=start, ends_at=start + timedelta(days=60), questions=QUESTIONS
    )


def answer(survey, openid, district, s1, s2, multi=("0",), text=""):
    d, q1, q2, m, t = survey.questions
    return surveys.submit_response(
        survey,
        openid,
        {d.id: [str(district)], q1.id: [str(s1)], q2.id: [str(s2)], m.id: list(multi), t.id: [text]},
        now=AT,
    )


def test_parse_questions():
    specs = surveys.parse_questions(QUESTIONS)
    assert [s.kind for s in specs] == [
        QuestionKind.SINGLE,
        QuestionKind.SCALE,
        QuestionKind.SCALE,
        QuestionKind.MULTIPLE,
        QuestionKind.TEXT,
    ]
    assert specs[0].is_district and specs[0].options == ["浦东新区", "黄浦区"] and not specs[4].required
    for bad, message in [
        ("", "至少"),
        ("浦东\n[打分] x", "题目行"),
        ("[单选] x\n一", "2 到 20"),
        ("[打分] x\n一", "没有选项"),
        ("[多选 区] x\na\nb", "单选"),
    ]:
        with pytest.raises(ServiceError, match=message):
            surveys.parse_questions(bad)


def test_validation_and_results(db_session):
    survey = make()
    with pytest.raises(ServiceError, match="请重新选择"):
        answer(survey, "o-x", 0, 6, 5)
    with pytest.raises(ServiceError, match="请重新选择"):
        answer(survey, "o-x", 7, 5, 5)
    answer(survey, "o-1", 0, 5, 4, ("0", "1"), "多巡查")
    answer(survey, "o-2", 0, 3, 2)
    answer(survey, "o-3", 1, 4, 5)
    with pytest.raises(ServiceError, match="已参加过"):
        answer(survey, "o-1", 1, 1, 1)
    res = surveys.results(survey)
    assert res.responses == 3 and res.satisfied_pct == pytest.approx(66.7)
    q1 = res.questions[1]
    assert q1.mean == 4.0 and q1.satisfied_pct == pytest.approx(66.7)
    assert dict(res.questions[3].counts) == {"占道": 3, "噪声": 1}
    assert res.questions[4].texts == ["多巡查"]
    assert [(d.district, d.responses, d.satisfied_pct) for d in res.districts] == [
        ("浦东新区", 2, 50.0),
        ("黄浦区", 1, 100.0),
    ]
    half = surveys.half_year_result(2026, 2)
    assert (half.surveys, half.responses, half.satisfied_pct, half.label) == (1, 3, pytest.approx(66.7), "2026年下半年")


def test_half_year_uses_shanghai_dates(db_session):
    # starts 2026-06-30 17:00 UTC = 2026-07-01 01:00 Shanghai: second half
    survey = make(start=datetime(2026, 6, 30, 17, 0, tzinfo=UTC))
    answer(survey, "o-1", 0, 5, 5)
    assert surveys.half_year_result(2026, 2).responses == 1
    assert surveys.half_year_result(2026, 1).responses == 0


def test_one_response_per_citizen_under_concurrency(app, committed_db):
    survey = make()
    barrier = threading.Barrier(12)
    outcomes: list[str] = []

    def submit() -> None:
        with app.app_context():
            s = db.session.get(type(survey), survey.id)
            barrier.wait()
            try:
                answer(s, "o-tap", 0, 5, 5)
                outcomes.append("ok")
            except ServiceError:
                outcomes.append("refused")
            finally:
                db.session.remove()

    threads = [threading.Thread(target=submit) for _ in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["ok"] + ["refused"] * 11
    assert committed_db.scalar(sa.select(sa.func.count()).select_from(SurveyResponse)) == 1


def test_districts_come_in_the_questionnaire_order_those_nobody_answered_from_included(db_session):
    survey = surveys.save_survey(
        title="测评",
        intro="",
        starts_at=AT - timedelta(days=1),
        ends_at=AT + timedelta(days=30),
        questions="[单选 区] 您所在的区\n浦东新区\n黄浦区\n徐汇区\n[打分] 总体评价",
    )
    district, score = survey.questions
    for openid, where, value in (("o-1", 1, 5), ("o-2", 1, 2), ("o-3", 0, 4)):
        surveys.submit_response(survey, openid, {district.id: [str(where)], score.id: [str(value)]}, now=AT)
    rows = [(d.district, d.responses, d.satisfied_pct) for d in surveys.results(survey).districts]
    assert rows == [("浦东新区", 1, 100.0), ("黄浦区", 2, 50.0), ("徐汇区", 0, None)]


def test_a_text_answer_as_long_as_the_page_allows_is_kept(db_session):
    # The textarea's maxlength counts a line break as one character, but the browser sends it as CRLF: a citizen
    # who typed the full 500 over a few lines was told 「最多 500 字」.
    survey = make()
    typed = "\n".join(["多" * 99] * 5) + "\n"  # 500 characters in the textarea
    sent = typed.replace("\n", "\r\n")
    response = answer(survey, "o-1", 0, 5, 4, text=sent)
    assert [a.text for a in response.answers if a.text] == [typed.strip()]


def test_a_form_open_while_the_editor_changes_the_survey_keeps_working_or_says_why(db_session):
    survey = make()
    before = [q.id for q in survey.questions]
    # Title, intro or dates only: the questions stay the rows the open form answers (they were rebuilt, new ids).
    surveys.save_survey(
        title="下半年测评（更新）", intro="说明", starts_at=survey.starts_at, ends_at=survey.ends_at,
        questions=QUESTIONS, survey=survey,
    )  # fmt: skip
    assert [q.id for q in survey.questions] == before
    old_form = {d: ["0"] for d in before}
    surveys.save_survey(
        title=survey.title, intro="", starts_at=survey.starts_at, ends_at=survey.ends_at,
        questions=QUESTIONS + "\n[打分] 新加的题", survey=survey,
    )  # fmt: skip
    # Questions changed before anyone answered: the open form's answers are to questions gone; it says so.
    with pytest.raises(ServiceError, match="题目刚刚更新"):
        surveys.submit_response(survey, "o-open", old_form, now=AT)
