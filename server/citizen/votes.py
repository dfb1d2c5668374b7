"""/m/vote, /m/survey: the network vote (list, candidate, vote button, share card) and the satisfaction survey."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from flask import (
    abort,
    current_app,
    flash,
    g,
    get_flashed_messages,
    jsonify,
    redirect,
    render_template,
    request,
    send_from_directory,
    url_for,
)
from flask_wtf.csrf import CSRFError, generate_csrf, validate_csrf
from wtforms.validators import ValidationError

from models import Survey, VoteCampaign, VoteCandidate, utcnow
from server.citizen import bp, wants_json
from server.citizen.identity import citizen_required
from server.extensions import csrf, db
from server.inputs import to_int
from server.redirects import local_path
from server.services import ServiceError, surveys, votes


def _campaign_or_404(campaign_id: int) -> VoteCampaign:
    return db.session.get(VoteCampaign, campaign_id) or abort(404)


def _candidate_or_404(campaign: VoteCampaign, candidate_id: int) -> VoteCandidate:
    candidate = db.session.get(VoteCandidate, candidate_id)
    if candidate is None or candidate.campaign_id != campaign.id:
        abort(404)
    return candidate


@bp.get("/vote/")
@citizen_required
def vote_list():  # type: ignore[no-untyped-def]
    now = utcnow()
    return render_template(
        "citizen/vote_list.html",
        campaigns=votes.open_campaigns(now),
        surveys=[s for s in surveys.surveys() if s.ends_at > now],
        now=now,
    )


@bp.get("/vote/<int:campaign_id>")
@citizen_required
def vote_campaign(campaign_id: int):  # type: ignore[no-untyped-def]
    campaign = _campaign_or_404(campaign_id)
    now = utcnow()
    visible = campaign.results_visible(now)
    live = votes.counts(campaign.id) if visible else {}
    standings = votes.ranking(campaign, live) if visible else None
    return render_template(
        "citizen/vote_campaign.html",
        campaign=campaign,
        candidates=campaign.candidates,
        counts=live,
        standings=standings,
        visible=visible,
        is_open=campaign.is_open(now),
        now=now,
        remaining=votes.remaining_today(campaign, g.openid, now),
        done=votes.done_today(campaign, g.openid, now),
        snapshot=g.snapshot,
        messages=get_flashed_messages(with_categories=True),
    )


@bp.get("/vote/<int:campaign_id>/c/<int:candidate_id>")
@citizen_required
def vote_candidate(campaign_id: int, candidate_id: int):  # type: ignore[no-untyped-def]
    campaign = _campaign_or_404(campaign_id)
    candidate = _candidate_or_404(campaign, candidate_id)
    now = utcnow()
    visible = campaign.results_visible(now)
    return render_template(
        "citizen/vote_candidate.html",
        campaign=campaign,
        candidate=candidate,
        count=votes.counts(campaign.id).get(candidate.id, 0) if visible else None,
        is_open=campaign.is_open(now),
        remaining=votes.remaining_today(campaign, g.openid, now),
        done=votes.done_today(campaign, g.openid, now),
        snapshot=g.snapshot,
        messages=get_flashed_messages(with_categories=True),
    )


@bp.post("/vote/<int:campaign_id>/cast")
@citizen_required
def vote_cast(campaign_id: int):  # type: ignore[no-untyped-def]
    if (candidate_id := to_int(request.form["candidate_id"], lo=1)) is None:
        abort(400, description="请选择要投票的候选人")
    try:
        result = votes.cast_vote(
            campaign_id,
            candidate_id,
            g.openid,
            ip=request.remote_addr or "",
            user_agent=request.user_agent.string,
            snapshot=g.snapshot,
        )
    except ServiceError as exc:
        status = 429 if isinstance(exc, votes.RateLimited) else 400
        if wants_json():
            closes = getattr(exc, "closes", None)  # the page closes its buttons as they would be on reload
            return {"ok": False, "error": str(exc), "closes": list(closes) if closes else None}, status
        flash(str(exc), "error")
        return redirect(_back(campaign_id))
    message = "投票成功！" + (
        f"今天还可以投 {result.remaining_today} 票" if result.remaining_today else "今天的票已投完"
    )
    if wants_json():
        body = {
            "ok": True,
            "message": message,
            "count": result.count,
            "remaining": result.remaining_today,
            "candidate_done": result.candidate_done,
        }
        if result.counts is not None:  # shown by the results policy: every candidate's, for the page's ranking
            body["counts"] = {str(cid): n for cid, n in result.counts.items()}
        return body
    flash(message, "success")
    return redirect(_back(campaign_id))


def _back(campaign_id: int) -> str:
    return local_path(request.form.get("back"), url_for("citizen.vote_campaign", campaign_id=campaign_id), "/m/")


@bp.get("/vote/<int:campaign_id>/c/<int:candidate_id>/share")
def vote_share(campaign_id: int, candidate_id: int):  # type: ignore[no-untyped-def]
    """The share card: public (a friend opening it sees the card, then votes through the normal page)."""
    campaign = _campaign_or_404(campaign_id)
    candidate = _candidate_or_404(campaign, candidate_id)
    return render_template("citizen/vote_share.html", campaign=campaign, candidate=candidate)


@bp.get("/media/votes/<name>")
def vote_photo(name: str):  # type: ignore[no-untyped-def]
    folder = Path(current_app.config["MEDIA_ROOT"]) / "votes"
    return send_from_directory(folder, name, mimetype="image/jpeg", max_age=86400)


@bp.route("/survey/<int:survey_id>", methods=["GET", "POST"])
@csrf.exempt  # checked below: an expired page keeps the answers given, instead of a bare error page
@citizen_required
def survey_form(survey_id: int):  # type: ignore[no-untyped-def]
    survey = db.session.get(Survey, survey_id) or abort(404)
    now = utcnow()
    error, missing = None, []
    expired = False
    if request.method == "POST":
        try:
            validate_csrf(request.form.get("csrf_token"))
        except ValidationError as exc:
            # Only this site's own page gets its answers back with a fresh token; a post from elsewhere is refused.
            source = request.headers.get("Origin") or request.headers.get("Referer") or ""
            if urlsplit(source).netloc != request.host:
                raise CSRFError(str(exc)) from None
            expired = True
            error = "页面停留太久已过期，您的答案都已保留，请再点一次「提交」"
            if wants_json():  # the page's script swaps in the fresh token; the answers never left the page
                return jsonify(error=error, csrf_token=generate_csrf()), 400
    if request.method == "POST" and not expired:
        answers = {q.id: request.form.getlist(f"q{q.id}") for q in survey.questions}
        try:
            surveys.submit_response(survey, g.openid, answers, snapshot=g.snapshot, now=now)
        except ServiceError as exc:
            # A double tap or a resend after a dropped answer: the first submit was saved, so say thank you.
            if not surveys.has_answered(survey.id, g.openid):
                error = str(exc)
                missing = getattr(exc, "question_ids", [])
                if wants_json():
                    return jsonify(error=error, missing=missing), 400
        if not error:
            if wants_json():  # the page's script goes to the thanks itself: no POST is left in history to resend
                return jsonify(url=url_for("citizen.survey_done", survey_id=survey.id))
            return render_template("citizen/survey_done.html", survey=survey)
    return render_template(
        "citizen/survey_form.html",
        survey=survey,
        is_open=survey.is_open(now),
        answered=surveys.has_answered(survey.id, g.openid),
        snapshot=g.snapshot,
        error=error,
        missing=missing,
        form=request.form,
        scale_labels=surveys.SCALE_LABELS,
    ), 400 if error else 200


@bp.get("/survey/<int:survey_id>/done")
@citizen_required
def survey_done(survey_id: int):  # type: ignore[no-untyped-def]
    """Where the page's background send lands: the thanks, once this citizen's answer is in."""
    survey = db.session.get(Survey, survey_id) or abort(404)
    if not surveys.has_answered(survey.id, g.openid):
        return redirect(url_for("citizen.survey_form", survey_id=survey.id))
    return render_template("citizen/survey_done.html", survey=survey)
