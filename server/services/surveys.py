"""Satisfaction surveys (社会公众满意度测评): questionnaires, one response per citizen, results by question and by
district, Excel export, and the half-year satisfaction figure for the dashboard.

Satisfaction is the share of 1–5 answers that are 4 (满意) or 5 (很满意), over every scale question.
"""

from __future__ import annotations

import io
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from models import AuditKind, QuestionKind, Survey, SurveyAnswer, SurveyQuestion, SurveyResponse, utcnow
from server.extensions import db
from server.services import ServiceError, audit, sheets

LOCAL_TZ = ZoneInfo("Asia/Shanghai")
KIND_NAMES = {
    "单选": QuestionKind.SINGLE,
    "多选": QuestionKind.MULTIPLE,
    "打分": QuestionKind.SCALE,
    "填空": QuestionKind.TEXT,
}
SCALE_LABELS = {1: "很不满意", 2: "不满意", 3: "一般", 4: "满意", 5: "很满意"}
TEXT_MAX = 500
_HEADER = re.compile(r"^\[(单选|多选|打分|填空)((?:\s+(?:区|选填))*)\]\s*(.+)$")


@dataclass
class QuestionSpec:
    kind: QuestionKind
    text: str
    options: list[str] = field(default_factory=list)
    required: bool = True
    is_district: bool = False


def parse_questions(source: str) -> list[QuestionSpec]:
    """The editor's plain-text questionnaire: a header line per question, then its options one per line.

    [单选 区] 您所在的区        ← 区: its answer is the respondent's district
    浦东新区
    黄浦区
    [打分] 您对市容环境是否满意
    [多选] 您希望加强哪些方面
    [填空 选填] 其他意见和建议   ← 选填: may be left empty
    """
    specs: list[QuestionSpec] = []
    for n, raw in enumerate((source or "").splitlines(), 1):
        line = raw.strip()
        if not line:
            continue
        if match := _HEADER.match(line):
            flags = match.group(2).split()
            text = match.group(3).strip()
            if len(text) > 200:
                raise ServiceError(f"第 {n} 行：题目最多 200 字")
            specs.append(
                QuestionSpec(KIND_NAMES[match.group(1)], text, required="选填" not in flags, is_district="区" in flags)
            )
        elif not specs:
            raise ServiceError(f"第 {n} 行：请以「[单选] 题目」这样的题目行开始")
        elif specs[-1].kind in (QuestionKind.SINGLE, QuestionKind.MULTIPLE):
            if len(line) > 64:
                raise ServiceError(f"第 {n} 行：选项最多 64 字")
            specs[-1].options.append(line)
        else:
            raise ServiceError(f"第 {n} 行：打分题和填空题没有选项")
    if not specs:
        raise ServiceError("请至少填写一道题")
    if len(specs) > 50:
        raise ServiceError("最多 50 道题")
    for spec in specs:
        if spec.kind in (QuestionKind.SINGLE, QuestionKind.MULTIPLE) and not 2 <= len(spec.options) <= 20:
            raise ServiceError(f"「{spec.text}」需要 2 到 20 个选项")
        if len(set(spec.options)) != len(spec.options):
            raise ServiceError(f"「{spec.text}」有重复的选项")
        if spec.is_district and spec.kind is not QuestionKind.SINGLE:
            raise ServiceError("「区」只能标在单选题上")
    if sum(s.is_district for s in specs) > 1:
        raise ServiceError("只能有一道题标为「区」")
    return specs


def questions_text(survey: Survey | None) -> str:
    if survey is None:
        return ""
    names = {v: k for k, v in KIND_NAMES.items()}
    lines = []
    for q in survey.questions:
        flags = (" 区" if q.is_district else "") + ("" if q.required else " 选填")
        lines.append(f"[{names[q.kind]}{flags}] {q.text}")
        lines.extend(q.options or [])
    return "\n".join(lines)


def response_count(survey_id: int) -> int:
    return db.session.scalar(sa.select(sa.func.count()).select_from(SurveyResponse).filter_by(survey_id=survey_id)) or 0


def save_survey(
    *,
    title: str,
    intro: str,
    starts_at: datetime | None,
    ends_at: datetime | None,
    questions: str,
    survey: Survey | None = None,
) -> Survey:
    title, intro = (title or "").strip(), (intro or "").strip()
    if not 2 <= len(title) <= 64:
        raise ServiceError("标题需 2 到 64 个字")
    if len(intro) > 2000:
        raise ServiceError("说明最多 2000 字")
    if starts_at is None or ends_at is None or ends_at <= starts_at:
        raise ServiceError("请填写开始和结束时间，结束须晚于开始")
    specs = parse_questions(questions)
    before = None
    changed = True
    if survey is not None:
        before = {"title": survey.title, "questions": questions_text(survey)}
        changed = questions_text(survey).strip() != "\n".join(_spec_lines(specs))
        if changed and response_count(survey.id):
            raise ServiceError("已有市民作答，题目不能再修改（可修改标题、说明和时间）")
    survey = survey or Survey()
    survey.title, survey.intro, survey.starts_at, survey.ends_at = title, intro, starts_at, ends_at
    if changed:  # only then: new questions are new rows, and a form open on a phone would answer the old ones
        survey.questions.clear()
        db.session.flush()
        survey.questions.extend(
            SurveyQuestion(
                position=i,
                kind=s.kind,
                text=s.text,
                options=s.options,
                required=s.required,
                is_district=s.is_district,
            )
            for i, s in enumerate(specs, 1)
        )
    db.session.add(survey)
    db.session.flush()
    audit.record(
        "survey.update" if before else "survey.create",
        target=survey,
        before=before,
        after={"title": survey.title, "questions": questions_text(survey)},
    )
    db.session.commit()
    return survey


def _spec_lines(specs: Sequence[QuestionSpec]) -> list[str]:
    names = {v: k for k, v in KIND_NAMES.items()}
    lines = []
    for s in specs:
        lines.append(f"[{names[s.kind]}{' 区' if s.is_district else ''}{'' if s.required else ' 选填'}] {s.text}")
        lines.extend(s.options)
    return lines


# --- answering ------------------------------------------------------------------------------------------------------


class Unanswered(ServiceError):
    """Required questions left blank: all of them at once, so the page can mark each."""

    def __init__(self, questions: list[SurveyQuestion]) -> None:
        self.question_ids = [q.id for q in questions]
        numbers = "、".join(str(q.position) for q in questions)
        super().__init__(f"还有 {len(questions)} 道题未回答：第 {numbers} 题，请补充后再提交")


def has_answered(survey_id: int, openid: str) -> bool:
    return bool(db.session.scalar(sa.select(SurveyResponse.id).filter_by(survey_id=survey_id, openid=openid)))


def submit_response(
    survey: Survey,
    openid: str,
    answers: Mapping[int, Sequence[str]],
    *,
    snapshot: bool = False,
    now: datetime | None = None,
) -> SurveyResponse:
    """One response per citizen per survey (the unique key decides); `answers` maps question id to raw values."""
    if snapshot:
        raise ServiceError("朋友圈快照页面不能作答，请在完整页面中参与测评")
    now = now or utcnow()
    if now < survey.starts_at:
        raise ServiceError("测评尚未开始")
    if now >= survey.ends_at:
        raise ServiceError("测评已结束，感谢关注")
    response = SurveyResponse(survey_id=survey.id, openid=openid, submitted_at=now)
    if answers and not set(answers) & {q.id for q in survey.questions}:
        # Answers to questions replaced while the form was open: say so, rather than 「N 道题未回答」 over a blank form
        raise ServiceError("问卷题目刚刚更新，请刷新页面后按新题目作答")
    blank = [q for q in survey.questions if q.required and not any(v and v.strip() for v in answers.get(q.id, ()))]
    if blank:
        raise Unanswered(blank)
    for q in survey.questions:
        # CRLF as one break: the page's maxlength counts a line break once, the browser sends two characters
        values = [v.replace("\r\n", "\n").strip() for v in answers.get(q.id, ()) if v and v.strip()]
        if not values:
            continue
        if q.kind is QuestionKind.TEXT:
            if len(values[0]) > TEXT_MAX:
                raise ServiceError(f"「{q.text}」最多 {TEXT_MAX} 字")
            response.answers.append(SurveyAnswer(question_id=q.id, text=values[0]))
            continue
        try:
            numbers = sorted({int(v) for v in values})
        except ValueError:
            raise ServiceError(f"请重新选择：{q.text}") from None
        if q.kind is QuestionKind.SCALE:
            valid = len(numbers) == 1 and 1 <= numbers[0] <= 5
        else:
            valid = all(0 <= n < len(q.options) for n in numbers) and (
                q.kind is QuestionKind.MULTIPLE or len(numbers) == 1
            )
        if not valid:
            raise ServiceError(f"请重新选择：{q.text}")
        response.answers.extend(SurveyAnswer(question_id=q.id, value=n) for n in numbers)
        if q.is_district:
            response.district = q.options[numbers[0]][:32]
    db.session.add(response)
    try:
        db.session.commit()
    except IntegrityError:  # the unique (survey, openid) key: a second response or a double tap
        db.session.rollback()
        raise ServiceError("您已参加过本次测评，感谢您的支持") from None
    return response


# --- results --------------------------------------------------------------------------------------------------------


@dataclass
class QuestionResult:
    question: SurveyQuestion
    answered: int = 0
    counts: list[tuple[str, int]] = field(default_factory=list)  # option (or score label) → answers
    mean: float | None = None
    satisfied_pct: float | None = None  # scale: share of 4–5
    texts: list[str] = field(default_factory=list)


@dataclass
class DistrictResult:
    district: str
    responses: int
    satisfied_pct: float | None
    means: dict[int, float | None]  # scale question id → mean score


@dataclass
class SurveyResults:
    survey: Survey
    responses: int
    satisfied_pct: float | None
    questions: list[QuestionResult]
    districts: list[DistrictResult]


def _pct(satisfied: int, total: int) -> float | None:
    return round(100 * satisfied / total, 1) if total else None


def results(survey: Survey) -> SurveyResults:
    responses = response_count(survey.id)
    # (question, value) → answers, over the whole survey
    tallies: dict[tuple[int, int], int] = {
        (qid, value): n
        for qid, value, n in db.session.execute(
            sa.select(SurveyAnswer.question_id, SurveyAnswer.value, sa.func.count())
            .join(SurveyResponse)
            .where(SurveyResponse.survey_id == survey.id, SurveyAnswer.value.is_not(None))
            .group_by(SurveyAnswer.question_id, SurveyAnswer.value)
        )
    }
    answered = dict(
        db.session.execute(
            sa.select(SurveyAnswer.question_id, sa.func.count(sa.distinct(SurveyAnswer.response_id)))
            .join(SurveyResponse)
            .where(SurveyResponse.survey_id == survey.id)
            .group_by(SurveyAnswer.question_id)
        ).all()
    )
    out: list[QuestionResult] = []
    all_sat = all_scale = 0
    for q in survey.questions:
        r = QuestionResult(q, answered=answered.get(q.id, 0))
        if q.kind is QuestionKind.SCALE:
            dist = {v: tallies.get((q.id, v), 0) for v in range(1, 6)}
            total = sum(dist.values())
            sat = dist[4] + dist[5]
            all_sat, all_scale = all_sat + sat, all_scale + total
            r.counts = [(f"{v} {SCALE_LABELS[v]}", dist[v]) for v in range(1, 6)]
            r.mean = round(sum(v * n for v, n in dist.items()) / total, 2) if total else None
            r.satisfied_pct = _pct(sat, total)
        elif q.kind is QuestionKind.TEXT:
            r.texts = list(
                db.session.scalars(
                    sa.select(SurveyAnswer.text)
                    .where(SurveyAnswer.question_id == q.id)
                    .order_by(SurveyAnswer.id.desc())
                    .limit(100)
                )
            )
        else:
            r.counts = [(opt, tallies.get((q.id, i), 0)) for i, opt in enumerate(q.options)]
        out.append(r)
    return SurveyResults(survey, responses, _pct(all_sat, all_scale), out, by_district(survey))


def by_district(survey: Survey) -> list[DistrictResult]:
    district = sa.func.coalesce(SurveyResponse.district, "未填写")
    scale_ids = [q.id for q in survey.questions if q.kind is QuestionKind.SCALE]
    responses = dict(
        db.session.execute(
            sa.select(district, sa.func.count()).where(SurveyResponse.survey_id == survey.id).group_by(district)
        ).all()
    )
    stats: dict[str, dict[int, tuple[int, int, int]]] = {}
    if scale_ids:
        for name, qid, total, score_sum, sat in db.session.execute(
            sa.select(
                district,
                SurveyAnswer.question_id,
                sa.func.count(),
                sa.func.sum(SurveyAnswer.value),
                sa.func.count().filter(SurveyAnswer.value >= 4),
            )
            .join(SurveyResponse)
            .where(SurveyResponse.survey_id == survey.id, SurveyAnswer.question_id.in_(scale_ids))
            .group_by(district, SurveyAnswer.question_id)
        ):
            stats.setdefault(name, {})[qid] = (total, int(score_sum or 0), sat)
    # Every district of the questionnaire in its order (one nobody answered from is a finding too), then any other
    # recorded (an option renamed later), then 未填写.
    listed = next((list(q.options) for q in survey.questions if q.is_district), [])
    names = listed + sorted(n for n in responses if n not in listed and n != "未填写")
    names += ["未填写"] if "未填写" in responses else []
    out = []
    for name in names:
        n = responses.get(name, 0)
        per_q = stats.get(name, {})
        total = sum(t for t, _, _ in per_q.values())
        sat = sum(s for _, _, s in per_q.values())
        means = {qid: (round(per_q[qid][1] / per_q[qid][0], 2) if qid in per_q else None) for qid in scale_ids}
        out.append(DistrictResult(name, n, _pct(sat, total), means))
    return out


def export_xlsx(survey: Survey) -> bytes:
    """Summary by question, by district, and every response (no openids); audited as an export."""
    from openpyxl import Workbook

    res = results(survey)
    wb = Workbook(write_only=True)  # rows go to disk as they are appended: memory stays flat at any size
    ws = wb.create_sheet("按题目")
    ws.append([survey.title])
    ws.append(["有效答卷", res.responses, "总体满意度(%)", res.satisfied_pct])
    ws.append([])
    ws.append(["序号", "题目", "类型", "选项/分值", "人次", "平均分", "满意度(%)"])
    for qr in res.questions:
        q = qr.question
        if q.kind is QuestionKind.TEXT:
            ws.append([q.position, sheets.text(q.text), q.kind.label, "（填空）", qr.answered])
            continue
        for i, (label, n) in enumerate(qr.counts):
            ws.append(
                [q.position, sheets.text(q.text), q.kind.label, sheets.text(label), n]
                + ([qr.mean, qr.satisfied_pct] if i == 0 and q.kind is QuestionKind.SCALE else [])
            )
    scale_qs = [q for q in survey.questions if q.kind is QuestionKind.SCALE]
    wd = wb.create_sheet("按区")
    wd.append(["区", "答卷数", "满意度(%)"] + [f"{q.position}. {sheets.text(q.text)}（平均分）" for q in scale_qs])
    for d in res.districts:
        wd.append([sheets.text(d.district), d.responses, d.satisfied_pct] + [d.means.get(q.id) for q in scale_qs])
    wr = wb.create_sheet("答卷明细")
    wr.append(
        ["答卷编号", "提交时间（北京时间）", "区"] + [f"{q.position}. {sheets.text(q.text)}" for q in survey.questions]
    )
    rows = db.session.scalars(
        sa.select(SurveyResponse)
        .where(SurveyResponse.survey_id == survey.id)
        .order_by(SurveyResponse.id)
        .options(sa.orm.selectinload(SurveyResponse.answers))
        .execution_options(yield_per=500)  # answers loaded per batch of responses
    )
    for resp in rows:
        by_q: dict[int, list[SurveyAnswer]] = {}
        for a in resp.answers:
            by_q.setdefault(a.question_id, []).append(a)
        cells: list[Any] = [
            resp.id,
            resp.submitted_at.astimezone(LOCAL_TZ).strftime("%Y-%m-%d %H:%M:%S"),
            resp.district,
        ]
        for q in survey.questions:
            got = by_q.get(q.id, [])
            if q.kind is QuestionKind.TEXT:
                cells.append(sheets.text(got[0].text or "") if got else None)
            elif q.kind is QuestionKind.SCALE:
                cells.append(got[0].value if got else None)
            else:
                chosen = sorted(got, key=lambda a: a.value or 0)
                cells.append(sheets.text("；".join(q.options[a.value] for a in chosen)))
        wr.append(cells)
    audit.record("survey.export", kind=AuditKind.EXPORT, target=survey, after={"responses": res.responses})
    db.session.commit()
    out = io.BytesIO()
    wb.save(out)
    return out.getvalue()


# --- dashboard ------------------------------------------------------------------------------------------------------


@dataclass
class HalfYearResult:
    year: int
    half: int  # 1: January–June, 2: July–December
    surveys: int
    responses: int
    satisfied_pct: float | None

    @property
    def label(self) -> str:
        return f"{self.year}年{'上' if self.half == 1 else '下'}半年"


def half_year_result(year: int, half: int) -> HalfYearResult:
    """Overall satisfaction of the surveys that started in that half-year (Shanghai time), for the dashboard."""
    if half not in (1, 2):
        raise ValueError("half is 1 or 2")
    start = datetime(year, 1 if half == 1 else 7, 1, tzinfo=LOCAL_TZ).astimezone(UTC)
    end = datetime(year if half == 1 else year + 1, 7 if half == 1 else 1, 1, tzinfo=LOCAL_TZ).astimezone(UTC)
    in_period = sa.and_(Survey.starts_at >= start, Survey.starts_at < end)
    surveys = db.session.scalar(sa.select(sa.func.count()).select_from(Survey).where(in_period)) or 0
    responses = (
        db.session.scalar(sa.select(sa.func.count()).select_from(SurveyResponse).join(Survey).where(in_period)) or 0
    )
    total, sat = db.session.execute(
        sa.select(sa.func.count(), sa.func.count().filter(SurveyAnswer.value >= 4))
        .select_from(SurveyAnswer)
        .join(SurveyQuestion, SurveyQuestion.id == SurveyAnswer.question_id)
        .join(Survey, Survey.id == SurveyQuestion.survey_id)
        .where(in_period, SurveyQuestion.kind == QuestionKind.SCALE)
    ).one()
    return HalfYearResult(year, half, surveys, responses, _pct(sat, total))


def surveys() -> list[Survey]:
    return list(db.session.scalars(sa.select(Survey).order_by(Survey.starts_at.desc())))
