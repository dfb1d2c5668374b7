"""/admin/votes, /admin/surveys: vote campaigns and candidates, the brushing review with voids, results and export;
satisfaction surveys with results by question and district, and export. Every change, void and export is audited."""

from __future__ import annotations

from datetime import datetime

from flask import Response, abort, flash, redirect, render_template, request, url_for

from models import ResultsPolicy, Role, Survey, VoteCampaign, VoteCandidate, utcnow
from server.console import bp
from server.console.access import CONSOLE_ROLES, require_roles
from server.console.charts import bar_chart
from server.console.once import once_per_submit, submitted
from server.extensions import db
from server.filters import LOCAL_TZ
from server.inputs import to_ids, to_int
from server.services import ServiceError, surveys, votes

MANAGERS = (Role.ADMIN, Role.EDITOR)
REVIEWERS = (Role.ADMIN, Role.EDITOR, Role.REVIEWER)
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
FOLLOW_WARNING = (
    "微信公众平台运营规范禁止以关注为投票前提等诱导关注行为，违规可能导致公众号被限制功能或封号。"
    "除非确有必要并经审核同意，请勿开启「仅限粉丝投票」。"
)


def _campaign_or_404(campaign_id: int) -> VoteCampaign:
    return db.session.get(VoteCampaign, campaign_id) or abort(404)


def _local_input(value: datetime | None) -> str:
    return value.astimezone(LOCAL_TZ).strftime("%Y-%m-%dT%H:%M") if value else ""


def _xlsx(data: bytes, name: str) -> Response:
    filename = f"{name}-{datetime.now(LOCAL_TZ):%Y%m%d-%H%M}.xlsx"
    return Response(
        data,
        mimetype=XLSX,
        headers={"Content-Disposition": f'attachment; filename="{filename}"', "Cache-Control": "no-store"},
    )


@bp.get("/votes")
@require_roles(*CONSOLE_ROLES)
def vote_list():  # type: ignore[no-untyped-def]
    return render_template(
        "console/vote_list.html", campaigns=votes.campaigns(), surveys=surveys.surveys(), now=utcnow()
    )


@bp.route("/votes/new", methods=["GET", "POST"], defaults={"campaign_id": None})
@bp.route("/votes/<int:campaign_id>/edit", methods=["GET", "POST"])
@require_roles(*MANAGERS)
@once_per_submit
def vote_edit(campaign_id: int | None):  # type: ignore[no-untyped-def]
    campaign = _campaign_or_404(campaign_id) if campaign_id else None
    error = None
    if request.method == "POST":
        form = request.form
        was_followers_only = bool(campaign and campaign.followers_only)
        try:
            campaign = votes.save_campaign(
                title=form.get("title", ""),
                description=form.get("description", ""),
                starts_at=votes.parse_local_minute(form.get("starts_at")),
                ends_at=votes.parse_local_minute(form.get("ends_at")),
                votes_per_day=to_int(form.get("votes_per_day")),
                per_candidate_per_day=to_int(form.get("per_candidate_per_day")),
                followers_only=form.get("followers_only") == "on",
                results_policy=form.get("results_policy", ""),
                campaign=campaign,
            )
        except ServiceError as exc:
            error = str(exc)
        else:
            flash(f"已保存：{campaign.title}", "success")
            if campaign.followers_only and not was_followers_only:
                flash("已开启「仅限粉丝投票」。" + FOLLOW_WARNING, "error")
            submitted(url := url_for("console.vote_detail", campaign_id=campaign.id))
            return redirect(url)
    values = (
        request.form
        if request.method == "POST"
        else {
            "title": campaign.title if campaign else "",
            "description": campaign.description if campaign else "",
            "starts_at": _local_input(campaign.starts_at) if campaign else "",
            "ends_at": _local_input(campaign.ends_at) if campaign else "",
            "votes_per_day": campaign.votes_per_day if campaign else 1,
            "per_candidate_per_day": campaign.per_candidate_per_day if campaign else 1,
            "followers_only": "on" if campaign and campaign.followers_only else "",
            "results_policy": campaign.results_policy.value if campaign else "live",
        }
    )
    return render_template(
        "console/vote_form.html",
        campaign=campaign,
        values=values,
        error=error,
        policies=list(ResultsPolicy),
        follow_warning=FOLLOW_WARNING,
    ), 400 if error else 200


@bp.get("/votes/<int:campaign_id>")
@require_roles(*CONSOLE_ROLES)
def vote_detail(campaign_id: int):  # type: ignore[no-untyped-def]
    campaign = _campaign_or_404(campaign_id)
    standings = votes.ranking(campaign)
    chart = bar_chart([(s.candidate.name, s.votes) for s in standings[:20]], title="得票")
    return render_template(
        "console/vote_detail.html",
        campaign=campaign,
        standings=standings,
        chart=chart,
        now=utcnow(),
        follow_warning=FOLLOW_WARNING,
    )


@bp.route("/votes/<int:campaign_id>/candidates/new", methods=["GET", "POST"], defaults={"candidate_id": None})
@bp.route("/votes/<int:campaign_id>/candidates/<int:candidate_id>", methods=["GET", "POST"])
@require_roles(*MANAGERS)
@once_per_submit
def vote_candidate_edit(campaign_id: int, candidate_id: int | None):  # type: ignore[no-untyped-def]
    campaign = _campaign_or_404(campaign_id)
    candidate = db.session.get(VoteCandidate, candidate_id) if candidate_id else None
    if candidate_id and (candidate is None or candidate.campaign_id != campaign.id):
        abort(404)
    error = None
    if request.method == "POST":
        form = request.form
        upload = request.files.get("photo")
        try:
            candidate = votes.save_candidate(
                campaign,
                name=form.get("name", ""),
                unit_name=form.get("unit_name", ""),
                story=form.get("story", ""),
                photo=upload.read(votes.PHOTO_MAX_BYTES + 1) if upload and upload.filename else None,
                photo_url=form.get("photo_url"),
                sort=to_int(form.get("sort"), 0),
                candidate=candidate,
            )
        except ServiceError as exc:
            error = str(exc)
        else:
            flash(f"已保存候选人：{candidate.name}", "success")
            submitted(url := url_for("console.vote_detail", campaign_id=campaign.id))
            return redirect(url)
    values = (
        request.form
        if request.method == "POST"
        else {
            "name": candidate.name if candidate else "",
            "unit_name": candidate.unit_name if candidate else "",
            "story": candidate.story if candidate else "",
            "photo_url": (candidate.photo_url or "") if candidate else "",
            "sort": candidate.sort if candidate else 0,
        }
    )
    return render_template(
        "console/vote_candidate_form.html", campaign=campaign, candidate=candidate, values=values, error=error
    ), 400 if error else 200


@bp.post("/votes/<int:campaign_id>/candidates/<int:candidate_id>/delete")
@require_roles(*MANAGERS)
def vote_candidate_delete(campaign_id: int, candidate_id: int):  # type: ignore[no-untyped-def]
    candidate = db.session.get(VoteCandidate, candidate_id)
    if candidate is None or candidate.campaign_id != campaign_id:
        abort(404)
    try:
        votes.delete_candidate(candidate)
    except ServiceError as exc:
        flash(str(exc), "error")
    else:
        flash(f"已删除候选人：{candidate.name}", "success")
    return redirect(url_for("console.vote_detail", campaign_id=campaign_id))


@bp.get("/votes/<int:campaign_id>/review")
@require_roles(*REVIEWERS)
def vote_review(campaign_id: int):  # type: ignore[no-untyped-def]
    campaign = _campaign_or_404(campaign_id)
    names = {c.id: c.name for c in campaign.candidates}
    return render_template(
        "console/vote_review.html",
        campaign=campaign,
        review=votes.review(campaign.id, fresh=request.args.get("fresh") == "1"),
        names=names,
        kinds=votes.CLUSTER_KINDS,
        flag_score=votes.FLAG_SCORE,
        new_minutes=votes.NEW_FOLLOWER_MINUTES,
        review_minutes=votes.REVIEW_TTL // 60,
        analysable=db.engine.dialect.name == "postgresql",  # the analysis is PostgreSQL SQL: the demo says so
    )


@bp.get("/votes/<int:campaign_id>/review/<kind>")
@require_roles(*REVIEWERS)
def vote_cluster(campaign_id: int, kind: str):  # type: ignore[no-untyped-def]
    campaign = _campaign_or_404(campaign_id)
    key = request.args.get("key", "")
    if kind not in votes.CLUSTER_KINDS or not key:
        abort(404)
    return render_template(
        "console/vote_cluster.html",
        campaign=campaign,
        kind=kind,
        key=key,
        kind_label=votes.CLUSTER_KINDS[kind],
        rows=votes.cluster_votes(campaign.id, kind, key),
        names={c.id: c.name for c in campaign.candidates},
    )


@bp.post("/votes/<int:campaign_id>/void")
@require_roles(*REVIEWERS)
def vote_void(campaign_id: int):  # type: ignore[no-untyped-def]
    campaign = _campaign_or_404(campaign_id)
    form = request.form
    ids = to_ids(form.getlist("vote_id"))
    try:
        n = votes.void_votes(
            campaign,
            form.get("reason", ""),
            kind=form.get("kind") or None,
            key=form.get("key") or None,
            candidate_id=to_int(form.get("candidate_id")),
            vote_ids=ids,
        )
    except ServiceError as exc:
        flash(str(exc), "error")
    else:
        flash(f"已作废 {n} 票，排名已更新", "success")
    return redirect(url_for("console.vote_review", campaign_id=campaign.id))


@bp.post("/votes/<int:campaign_id>/rebuild")
@require_roles(*REVIEWERS)
def vote_rebuild(campaign_id: int):  # type: ignore[no-untyped-def]
    campaign = _campaign_or_404(campaign_id)
    votes.rebuild_ranking(campaign.id)
    flash("已按投票记录重新统计排名", "success")
    return redirect(url_for("console.vote_detail", campaign_id=campaign.id))


@bp.get("/votes/<int:campaign_id>/export.xlsx")
@require_roles(*REVIEWERS)
def vote_export(campaign_id: int):  # type: ignore[no-untyped-def]
    campaign = _campaign_or_404(campaign_id)
    return _xlsx(votes.export_results(campaign), f"vote-{campaign.id}")


# --- surveys --------------------------------------------------------------------------------------------------------


@bp.route("/surveys/new", methods=["GET", "POST"], defaults={"survey_id": None})
@bp.route("/surveys/<int:survey_id>/edit", methods=["GET", "POST"])
@require_roles(*MANAGERS)
@once_per_submit
def survey_edit(survey_id: int | None):  # type: ignore[no-untyped-def]
    survey = (db.session.get(Survey, survey_id) or abort(404)) if survey_id else None
    error = None
    if request.method == "POST":
        form = request.form
        try:
            survey = surveys.save_survey(
                title=form.get("title", ""),
                intro=form.get("intro", ""),
                starts_at=votes.parse_local_minute(form.get("starts_at")),
                ends_at=votes.parse_local_minute(form.get("ends_at")),
                questions=form.get("questions", ""),
                survey=survey,
            )
        except ServiceError as exc:
            error = str(exc)
        else:
            flash(f"已保存：{survey.title}", "success")
            submitted(url := url_for("console.survey_results", survey_id=survey.id))
            return redirect(url)
    values = (
        request.form
        if request.method == "POST"
        else {
            "title": survey.title if survey else "",
            "intro": survey.intro if survey else "",
            "starts_at": _local_input(survey.starts_at) if survey else "",
            "ends_at": _local_input(survey.ends_at) if survey else "",
            "questions": surveys.questions_text(survey) if survey else SURVEY_TEMPLATE,
        }
    )
    return render_template(
        "console/survey_form.html",
        survey=survey,
        values=values,
        error=error,
        locked=bool(survey and surveys.response_count(survey.id)),
    ), 400 if error else 200


SURVEY_TEMPLATE = """[单选 区] 您所在的区
浦东新区
黄浦区
静安区
徐汇区
[打分] 您对城管执法工作的总体评价
[打分] 您对市容环境秩序是否满意
[打分] 城管执法人员文明执法情况
[多选] 您希望城管重点加强哪些方面
占道经营治理
违法建筑整治
油烟噪声扰民
共享单车停放
[填空 选填] 您对城管工作的意见和建议"""


@bp.get("/surveys/<int:survey_id>")
@require_roles(*CONSOLE_ROLES)
def survey_results(survey_id: int):  # type: ignore[no-untyped-def]
    survey = db.session.get(Survey, survey_id) or abort(404)
    res = surveys.results(survey)
    charts = {
        qr.question.id: bar_chart(qr.counts, width=560, height=180, title=qr.question.text)
        for qr in res.questions
        if qr.counts
    }
    district_chart = bar_chart(
        [(d.district, int(round(d.satisfied_pct or 0))) for d in res.districts], title="各区满意度（%）"
    )
    return render_template(
        "console/survey_results.html", survey=survey, res=res, charts=charts, district_chart=district_chart
    )


@bp.get("/surveys/<int:survey_id>/export.xlsx")
@require_roles(*REVIEWERS)
def survey_export(survey_id: int):  # type: ignore[no-untyped-def]
    survey = db.session.get(Survey, survey_id) or abort(404)
    return _xlsx(surveys.export_xlsx(survey), f"survey-{survey.id}")
