"""Articles in the console: the calendar (month/week, gaps), columns, editing and review, pushes and failures."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import sqlalchemy as sa
from flask import Response, abort, flash, jsonify, redirect, render_template, request, send_file, url_for
from flask_login import current_user
from sqlalchemy.orm import selectinload

from models import (
    Article,
    ArticlePush,
    ArticleStatus,
    Cadence,
    MaterialItem,
    NewsColumn,
    PublishMode,
    PushStatus,
    Role,
    Unit,
)
from server.console import bp
from server.console.access import CONSOLE_ROLES, require_roles, require_unit, visible_unit_ids
from server.console.once import once_per_submit, submitted
from server.extensions import db
from server.filters import LOCAL_TZ, local_dt
from server.inputs import to_ids, to_int
from server.paging import paginate
from server.services import ServiceError, articles, columns, images, materials, publishing
from server.services import staff as staff_service
from server.services.htmlclean import clean_html

EDITORS = (Role.ADMIN, Role.EDITOR)
WRITERS = (Role.ADMIN, Role.EDITOR, Role.LIAISON)


def _me():  # type: ignore[no-untyped-def]
    return current_user._get_current_object()  # type: ignore[attr-defined]


def _article_or_404(article_id: int) -> Article:
    article = db.session.get(Article, article_id) or abort(404)
    if visible_unit_ids() is not None:
        require_unit(article.unit_id)
    return article


@bp.get("/articles")
@require_roles(*CONSOLE_ROLES)
def article_calendar():  # type: ignore[no-untyped-def]
    columns.ensure_default_columns()
    today = columns.local_day(datetime.now(UTC))
    view = "week" if request.args.get("view") == "week" else "month"
    try:
        anchor = date.fromisoformat(request.args.get("d", "")) if request.args.get("d") else today
    except ValueError:
        anchor = today
    if view == "week":
        start = anchor - timedelta(days=anchor.weekday())
        end, prev, nxt = start + timedelta(days=6), start - timedelta(days=7), start + timedelta(days=7)
    else:
        first = anchor.replace(day=1)
        start = first - timedelta(days=first.weekday())
        last = (first + timedelta(days=32)).replace(day=1) - timedelta(days=1)
        end = last + timedelta(days=6 - last.weekday())
        prev, nxt = (first - timedelta(days=1)).replace(day=1), last + timedelta(days=1)
    now = datetime.now(LOCAL_TZ)

    def slot_input(day: date, column: NewsColumn) -> str:
        """The push form's time for a gap: the column's, or the first 5-minute mark past 10 minutes from now when that
        has passed (today's 08:00 at noon would only be refused as 发布时间须晚于现在)."""
        at = datetime.combine(day, column.publish_time, LOCAL_TZ)
        if at < now + SLOT_LEAD:
            soon = now + SLOT_LEAD
            at = soon.replace(second=0, microsecond=0) + timedelta(minutes=5 - soon.minute % 5)
        return at.strftime("%Y-%m-%dT%H:%M")

    return render_template(
        "console/article_calendar.html",
        slot_input=slot_input,
        days=columns.calendar(start, end),
        view=view,
        anchor=anchor,
        today=today,
        prev=prev,
        nxt=nxt,
        # Every one of the next three days: the units are asked 3 and 1 days ahead, but a banner that skipped a
        # day read like a day without a gap.
        reminders=columns.upcoming_gaps(today, ahead=(1, 2, 3)) if current_user.role in EDITORS else [],
        can_schedule=current_user.role in EDITORS,
        requests=columns.requests_for(_me(), today),
        failures=publishing.recent_failures(),
    )


ARTICLES_PER_PAGE = 100
SLOT_LEAD = timedelta(minutes=10)  # a gap's slot already past is offered this far ahead at least


@bp.get("/articles/list")
@require_roles(*CONSOLE_ROLES)
def article_list():  # type: ignore[no-untyped-def]
    where = []
    if (ids := visible_unit_ids()) is not None:
        where.append(Article.unit_id.in_(ids))
    status = request.args.get("status")
    if status in {s.value for s in ArticleStatus}:
        where.append(Article.status == ArticleStatus(status))
    stmt = (
        sa.select(Article)
        .options(selectinload(Article.column))
        .where(*where)
        .order_by(Article.updated_at.desc(), Article.id.desc())
    )
    listing = paginate(stmt, to_int(request.args.get("page"), 1, lo=1), ARTICLES_PER_PAGE)
    return render_template(
        "console/article_list.html",
        listing=listing,
        statuses=list(ArticleStatus),
        status=status,
    )


@bp.route("/articles/new", methods=["GET", "POST"], endpoint="article_new")
@bp.route("/articles/<int:article_id>/edit", methods=["GET", "POST"])
@require_roles(*WRITERS)
@once_per_submit
def article_edit(article_id: int | None = None):  # type: ignore[no-untyped-def]
    article = _article_or_404(article_id) if article_id else None
    form = request.form if request.method == "POST" else None
    if form is not None:
        try:
            upload = request.files.get("cover")
            cover = upload.read() if upload and upload.filename else None
            fields = {name: form[name] for name in articles.FORM_FIELDS if name in form}
            cover_item_id = to_int(form.get("cover_item"), lo=1)  # a library photo picked as the cover
            push = article.push if article else None
            article = articles.save_article(_me(), article_id, cover=cover, cover_item_id=cover_item_id, **fields)
        except ServiceError as exc:
            return _edit_page(article, form, str(exc)), 400
        flash("已保存", "success")
        if warning := articles.title_pattern_dropped(article):
            flash(warning, "warning")
        if push is not None and article.push_id is None:  # the slot is empty again: say so, or nobody refills it
            flash(f"已撤出 {local_dt(push.scheduled_at)} 的推送：请提交审核，通过后重新排期", "warning")
        submitted(url := url_for("console.article_detail", article_id=article.id))
        return redirect(url)
    return _edit_page(article, None, None)


def _edit_page(article: Article | None, form, error: str | None) -> str:  # type: ignore[no-untyped-def]
    if form is not None:  # a refused save shows what was typed, as the save would have cleaned it
        body_html = clean_html(form.get("body_html", ""))
    else:
        body_html = article.body_html if article else ""
    return render_template(
        "console/article_form.html",
        article=article,
        form=form,
        body_html=body_html,
        error=error,
        columns=columns.list_columns(active_only=True),
        units=staff_service.units_tree(),
        cover_item_id=to_int(form.get("cover_item"), lo=1) if form is not None else None,
    )


@bp.get("/articles/<int:article_id>")
@require_roles(*CONSOLE_ROLES)
def article_detail(article_id: int):  # type: ignore[no-untyped-def]
    article = _article_or_404(article_id)
    return render_template(
        "console/article_detail.html",
        article=article,
        diff=articles.review_diff(article),
        title=articles.display_title(article),
    )


@bp.get("/articles/<int:article_id>/preview")
@require_roles(*CONSOLE_ROLES)  # whoever may read the article page, with the same unit check
def article_preview(article_id: int):  # type: ignore[no-untyped-def]
    article = _article_or_404(article_id)
    return render_template(
        "console/article_preview.html",
        article=article,
        title=articles.display_title(article),
        content=articles.sent_content(article),
        char_count=articles.body_char_count(article),
    )


@bp.post("/articles/<int:article_id>/<any(submit, approve, reject):action>")
@require_roles(*CONSOLE_ROLES)
def article_action(article_id: int, action: str):  # type: ignore[no-untyped-def]
    _article_or_404(article_id)
    try:
        if action == "submit":
            articles.submit(_me(), article_id)
        else:
            articles.review(_me(), article_id, approve=action == "approve", comment=request.form.get("comment", ""))
    except ServiceError as exc:
        flash(str(exc), "error")
    else:
        done = {
            "submit": "已提交审核，审核人员会在「待审核」中看到",
            "approve": "已审核通过，可以排期发布",
            "reject": "已退回修改，作者会在推文页看到修改意见",
        }
        flash(done[action], "success")
    return redirect(url_for("console.article_detail", article_id=article_id))


@bp.post("/articles/media")
@require_roles(*WRITERS)
def article_media_upload():  # type: ignore[no-untyped-def]
    upload = request.files.get("image")
    if upload is None:
        return {"error": "请选择图片"}, 400
    try:
        return {"url": articles.store_body_image(upload.read())}
    except ServiceError as exc:
        return {"error": str(exc)}, 400


@bp.get("/articles/library")
@require_roles(*WRITERS)
def article_library():  # type: ignore[no-untyped-def]
    """The editor's picker: processed library photos this writer may use, newest first, a page at a time."""
    f = materials.parse_filter(request.args)  # the library's own filters: tag, starred, unused, unit, dates
    rows, next_before = materials.pickable_page(
        f, visible_unit_ids(), before_id=to_int(request.args.get("before"), lo=1)
    )
    items = [
        {
            "id": item.id,
            "thumb": url_for("console.material_file", item_id=item.id, which="thumb"),
            "caption": item.caption or "",
            "unit": item.unit.name if item.unit else "",
            "date": item.received_at.astimezone(LOCAL_TZ).strftime("%Y-%m-%d %H:%M"),
            "tags": item.tags or [],
            "starred": item.starred,
            "used": item.used_in_article,
        }
        for item in rows
    ]
    return jsonify({"items": items, "next_before": next_before})


@bp.post("/articles/library/<int:item_id>/body")
@require_roles(*WRITERS)
def article_library_body(item_id: int):  # type: ignore[no-untyped-def]
    """A library photo's in-article rendition, copied among the articles' files for the body."""
    item = db.session.get(MaterialItem, item_id) or abort(404)
    require_unit(item.unit_id)
    try:
        return {"url": articles.store_library_image(_me(), item.id)}
    except ServiceError as exc:
        return {"error": str(exc)}, 400


@bp.get("/articles/media/<path:relative>")
@require_roles(*CONSOLE_ROLES)
def article_media(relative: str):  # type: ignore[no-untyped-def]
    try:
        path = images.media_path(relative, under="articles")  # not the tips' or the materials' files
    except ValueError:
        abort(404)
    if not path.is_file():
        abort(404)
    return send_file(path, mimetype="image/jpeg")


def _picked_ids() -> list[int]:
    """The ticked articles in the order they were ticked (the page's script fills `order`), else as listed."""
    ticked = to_ids(request.form.getlist("article_id"))[: articles.PUSH_MAX + 1]
    order = to_ids(request.form.get("order", "").split(","))
    if sorted(order) == sorted(ticked):
        return order
    return ticked


@bp.route("/articles/pushes/new", methods=["GET", "POST"])
@require_roles(*EDITORS)
@once_per_submit  # a double click's second copy found the articles scheduled, and said they were not approved
def article_push_new():  # type: ignore[no-untyped-def]
    pool = db.session.scalars(
        sa.select(Article).where(Article.status == ArticleStatus.APPROVED).order_by(Article.updated_at)
    ).all()
    error = None
    if request.method == "POST":
        try:
            ids = _picked_ids()
            local = datetime.fromisoformat(request.form.get("scheduled_at", ""))
            at = local.replace(tzinfo=columns.LOCAL_TZ).astimezone(UTC)
            column_id = None
            if raw_column := request.form.get("column_id"):
                if (column_id := to_int(raw_column, lo=1)) is None:
                    raise ServiceError(articles.NO_SUCH_COLUMN)
            push = articles.schedule_push(_me(), ids, at, column_id)
            flash("已排期", "success")
            submitted(url := url_for("console.article_push_detail", push_id=push.id))
            return redirect(url)
        except (ValueError, OverflowError):  # not a time, or one out of any calendar's range (year 1, in UTC)
            error = "请填写有效的发布时间"
        except ServiceError as exc:
            error = str(exc)
    return render_template(
        "console/article_push_form.html",
        pool=pool,
        columns=columns.list_columns(active_only=True),
        error=error,
        form=request.form if request.method == "POST" else request.args,  # a calendar gap links here prefilled
    ), (400 if error else 200)


PUSHES_PER_PAGE = 50


@bp.get("/articles/pushes")
@require_roles(*CONSOLE_ROLES)
def article_push_list():  # type: ignore[no-untyped-def]
    """Every push, newest first: what is coming, what went out (links), what failed and why."""
    status = request.args.get("status") or None
    column_id = to_int(request.args.get("column_id"), lo=1)
    stmt = publishing.push_listing(status, column_id)
    listing = paginate(stmt, to_int(request.args.get("page"), 1, lo=1), PUSHES_PER_PAGE)
    return render_template(
        "console/article_push_list.html",
        listing=listing,
        statuses=list(PushStatus),
        status=status,
        column_id=column_id,
        columns=db.session.scalars(sa.select(NewsColumn).order_by(NewsColumn.id)).all(),
        visible=visible_unit_ids(),  # a liaison reads only their units' titles, as on a push's own page
        can_act=current_user.role in EDITORS,
    )


@bp.get("/articles/pushes/<int:push_id>")
@require_roles(*CONSOLE_ROLES)
def article_push_detail(push_id: int):  # type: ignore[no-untyped-def]
    push = db.session.get(ArticlePush, push_id) or abort(404)
    for article in push.articles:  # a liaison sees the calendar's slots, not other units' titles before they go out
        require_unit(article.unit_id)
    return render_template("console/article_push.html", push=push)


@bp.get("/articles/pushes/<int:push_id>/export.html")
@require_roles(*EDITORS)
def article_push_export(push_id: int):  # type: ignore[no-untyped-def]
    push = db.session.get(ArticlePush, push_id) or abort(404)
    if not push.articles:  # cancelled or given back: its articles have left it, the file would be empty
        flash("这次推送已没有文章（已取消或已退回），无需导出", "error")
        return redirect(url_for("console.article_push_detail", push_id=push.id))
    return Response(
        articles.export_html(push),
        mimetype="text/html",
        headers={"Content-Disposition": f'attachment; filename="push-{push.id}.html"'},
    )


@bp.post("/articles/pushes/<int:push_id>/<any(cancel, manual, release, retry):action>")
@require_roles(*EDITORS)
def article_push_action(push_id: int, action: str):  # type: ignore[no-untyped-def]
    try:
        if action in ("cancel", "release"):
            push = db.session.get(ArticlePush, push_id) or abort(404)
            ids, column_id = [a.id for a in push.articles], push.column_id  # the articles leave the push below
            if action == "cancel":
                articles.cancel_push(_me(), push_id)
                flash("已取消排期，文章已退回「已通过」；如需改期，选择新的发布时间后排期", "success")
            else:
                publishing.release_failed(_me(), push_id)
                flash("文章已退回「已通过」，请选择新的发布时间重新排期", "success")
            # On to the push form with the same articles and column ticked: only a new time is missing (the push
            # page left behind only said 已取消, listed no articles, and they had to be found and ticked again).
            order = ",".join(map(str, ids))
            return redirect(url_for("console.article_push_new", column_id=column_id, article_id=ids, order=order))
        elif action == "retry":
            if not request.form.get("checked"):
                raise ServiceError("请先在公众平台核对，确认这次推送没有发布，再勾选确认")
            publishing.retry_uncertain(_me(), push_id)
            flash("已重新加入发布队列，下一分钟内提交微信", "success")
        else:
            publishing.mark_published_manually(_me(), push_id, request.form.get("urls", "").splitlines())
            flash("已标记为已发布", "success")
    except ServiceError as exc:
        flash(str(exc), "error")
    return redirect(url_for("console.article_push_detail", push_id=push_id))


@bp.get("/articles/numbers")
@require_roles(*CONSOLE_ROLES)
def article_numbers():  # type: ignore[no-untyped-def]
    today = columns.local_day(datetime.now(UTC))
    try:
        year, month = (int(x) for x in request.args.get("month", "").split("-"))
        date(year, month, 1)
    except ValueError:
        year, month = today.year, today.month
    first = date(year, month, 1)
    stats = columns.column_stats(year, month)
    published, submitted = stats["per_unit"], stats["submitted_per_unit"]
    unit_rows = [
        (name, int(submitted.get(unit_id, 0)), int(published.get(unit_id, 0)))
        for unit_id, name in db.session.execute(sa.select(Unit.id, Unit.name).order_by(Unit.sort, Unit.id))
        if unit_id in published or unit_id in submitted
    ]
    return render_template(
        "console/article_numbers.html",
        first=first,
        prev=(first - timedelta(days=1)).replace(day=1),
        nxt=(first + timedelta(days=32)).replace(day=1),
        stats=stats,
        unit_rows=unit_rows,
        columns_by_id={c.id: c for c in columns.list_columns()},
    )


@bp.get("/articles/columns")
@require_roles(*EDITORS)
def article_columns():  # type: ignore[no-untyped-def]
    items = columns.ensure_default_columns()
    today = columns.local_day(datetime.now(UTC))
    stats = columns.column_stats(today.year, today.month)
    return render_template("console/article_columns.html", items=items, stats=stats, month=today.strftime("%Y-%m"))


@bp.route("/articles/columns/new", methods=["GET", "POST"], endpoint="article_column_new")
@bp.route("/articles/columns/<int:column_id>", methods=["GET", "POST"])
@require_roles(*EDITORS)
def article_column_edit(column_id: int | None = None):  # type: ignore[no-untyped-def]
    column = db.session.get(NewsColumn, column_id) or abort(404) if column_id else None
    error = None
    if request.method == "POST":
        form = request.form
        try:
            columns.save_column(
                column_id,
                **{k: form.get(k) for k in ("name", "cadence", "weekday", "publish_time", "publish_mode")},
                **{k: form.get(k, "") for k in ("title_pattern", "header_html", "footer_html", "body_template")},
                feeder_unit_ids=form.getlist("feeder_unit_ids"),
                active=bool(form.get("active")),
            )
            flash("栏目已保存", "success")
            return redirect(url_for("console.article_columns"))
        except ServiceError as exc:
            error = str(exc)
    return render_template(
        "console/article_column_form.html",
        column=column,
        form=request.form if request.method == "POST" else None,  # a refused form shows what was typed
        error=error,
        cadences=list(Cadence),
        modes=list(PublishMode),
        units=staff_service.units_tree(),
    ), (400 if error else 200)
