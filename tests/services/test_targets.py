"""Targets against the straight line to 31 December, on a scenario computed by hand."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
import sqlalchemy as sa

from models import PublicityRecord, RecordKind, StatArticle, StatDaily, Tip, TipSource, TipStatus, TipStatusChange
from server.extensions import db
from server.services import ServiceError, datacube, targets
from tests import factories

AS_OF = date(2026, 3, 14)  # day 73 of 365: exactly 20 % of the year


def _record(kind: RecordKind, n: int, day: date = date(2026, 2, 1), unit=None) -> PublicityRecord:
    return PublicityRecord(
        kind=kind,
        title=f"{kind.value}-{n}",
        outlet="人民日报",
        happened_on=day,
        unit_id=unit.id if unit else None,
        submit_key=f"{kind.value}-{n}-{day}",
    )


@pytest.fixture
def scenario(db_session):
    """Followers 1,000,000 → 1,030,000 (+3 %); reads 300,000 of last year's 1,000,000; 100 reports; 10 activities;
    one livestream from a registered provider; one 10W+ article."""
    db_session.add_all(
        [
            StatDaily(ref_date=date(2025, 12, 31), cumulate_user=1_000_000),
            StatDaily(ref_date=date(2026, 2, 1), cumulate_user=1_010_000, read_user=300_000),
            StatDaily(ref_date=date(2026, 3, 14), cumulate_user=1_030_000),
            StatDaily(ref_date=date(2026, 3, 20), cumulate_user=2_000_000, read_user=9_999_999),  # after as_of
            StatArticle(
                msgid="1_1",
                title="十万加",
                publish_date=date(2026, 1, 5),
                stat_date=date(2026, 2, 4),
                read_user=100_000,
            ),
            StatArticle(
                msgid="1_2", title="差一点", publish_date=date(2026, 1, 6), stat_date=date(2026, 2, 5), read_user=99_999
            ),
            StatArticle(
                msgid="0_1",
                title="去年的",
                publish_date=date(2025, 12, 6),
                stat_date=date(2026, 1, 5),
                read_user=500_000,
            ),
        ]
    )
    db_session.add_all([_record(RecordKind.MEDIA_REPORT, i) for i in range(100)])
    db_session.add(_record(RecordKind.MEDIA_REPORT, 999, day=date(2026, 3, 15)))  # after as_of: not counted
    db_session.add_all([_record(RecordKind.ACTIVITY, i) for i in range(10)])
    db_session.commit()
    targets.save_plan(2026, {"baseline_reads": "1000000"})  # the other targets keep the plan's defaults

    def livestreams(start: date, end: date) -> dict[int | None, float]:
        return {None: 1} if start <= date(2026, 2, 10) <= end else {}

    targets.register_counter("livestreams", livestreams)
    yield
    targets.unregister_counter("livestreams", livestreams)


def test_year_fraction_is_inclusive_of_as_of():
    assert targets.year_fraction(2026, AS_OF)[0] == pytest.approx(0.2)
    assert targets.year_fraction(2026, date(2027, 5, 1)) == (1.0, date(2026, 12, 31))


def test_progress_matches_the_hand_computed_scenario(scenario):
    p = {item.key: item for item in targets.progress(2026, AS_OF)}

    followers = p["followers"]
    assert followers.baseline == 1_000_000  # followers at the end of 31 December, from the datacube
    assert followers.actual == pytest.approx(3.0)  # +3 %
    assert followers.percent_of_target == pytest.approx(15.0)  # 3 of 20
    assert followers.expected == pytest.approx(4.0)  # 20 % × 0.2
    assert followers.projected == pytest.approx(15.0)  # 3 / 0.2
    assert followers.summary == "按当前进度：年底 +15.0 % — 落后"

    reads = p["reads"]
    assert reads.target == pytest.approx(1_200_000)
    assert reads.actual == 300_000
    assert reads.percent_of_target == pytest.approx(25.0)
    assert reads.expected_percent == pytest.approx(20.0)
    assert reads.projected == pytest.approx(1_500_000)
    assert reads.summary == "按当前进度：年底 +50.0 %（目标 +20 %）— 领先"

    reports = p["positive_reports"]
    assert (reports.actual, reports.expected, reports.projected) == (100, pytest.approx(100), pytest.approx(500))
    assert reports.status == "正常"
    assert p["activities"].percent_of_target == pytest.approx(12.5)
    assert p["activities"].summary == "按当前进度：年底约 50 场 — 落后"
    assert p["livestreams"].actual == 1  # from the registered provider
    assert p["livestreams"].status == "正常"
    assert p["articles_100k"].actual == 1  # 100,000 counts, 99,999 and last year's do not
    assert p["articles_100k"].projected == pytest.approx(5)


def test_todays_records_count_today_while_wechats_figures_stop_at_yesterday(scenario, monkeypatch):
    from server.services import datacube

    monkeypatch.setattr(datacube, "beijing_today", lambda: date(2026, 3, 15))
    p = {item.key: item for item in targets.progress(2026)}
    assert p["positive_reports"].actual == 101  # the report filed today counts at once
    assert p["positive_reports"].expected == pytest.approx(500 * 74 / 365)
    assert p["followers"].actual == pytest.approx(3.0)  # 14 March's figure, the last WeChat has
    assert p["followers"].expected == pytest.approx(20 * 73 / 365)


def test_no_reads_yet_is_no_forecast(db_session):
    targets.save_plan(2026, {"baseline_reads": "1000000"})
    reads = {item.key: item for item in targets.progress(2026, AS_OF)}["reads"]
    assert reads.projected is None and reads.summary == "本年尚无阅读数据（同步微信统计后显示）"


def test_missing_baseline_says_so(db_session):
    p = {item.key: item for item in targets.progress(2026, AS_OF)}
    assert p["followers"].actual is None and p["followers"].summary == "缺少 1 月 1 日粉丝量基线"
    assert p["reads"].summary == "缺少上年阅读量基线"


def test_a_broken_provider_does_not_break_the_count(db_session):
    def broken(start, end):
        raise RuntimeError("boom")

    targets.register_counter("products", broken)
    try:
        assert targets.count("products", date(2026, 1, 1), AS_OF) == 0
    finally:
        targets.unregister_counter("products", broken)


def test_plan_validation_and_projects(db_session):
    with pytest.raises(ServiceError):
        targets.save_plan(2026, {"activities": "很多"})
    plan = targets.save_plan(2026, {"activities": "90", "baseline_followers": ""})
    assert plan.activities == 90 and plan.baseline_followers is None
    unit = factories.unit("宣传处", "department")
    project = targets.save_project(plan, name="7·15 城管开放日", months="6-7, 9月", unit_id=unit.id)
    assert project.months == [6, 7, 9]
    with pytest.raises(ServiceError):
        targets.save_project(plan, name="x", months="13", unit_id=None)


def test_record_double_submit_records_once(db_session):
    first = targets.add_record(
        kind="media_report", title="城管开放日", happened_on="2026-03-01", outlet="新华网", submit_key="k1"
    )
    again = targets.add_record(
        kind="media_report", title="城管开放日", happened_on="2026-03-01", outlet="新华网", submit_key="k1"
    )
    assert again.id == first.id
    with pytest.raises(ServiceError):
        targets.add_record(kind="media_report", title="无媒体", happened_on="2026-03-01", submit_key="k2")


def test_a_record_is_of_work_done_not_of_a_future_date(db_session):
    tomorrow = datacube.beijing_today() + timedelta(days=1)
    with pytest.raises(ServiceError, match="不能晚于今天"):
        targets.add_record(kind="activity", title="明天的活动", happened_on=tomorrow, submit_key="k-future")
    assert db_session.scalar(sa.select(sa.func.count()).select_from(PublicityRecord)) == 0
    today = targets.add_record(
        kind="activity", title="今天的活动", happened_on=tomorrow - timedelta(days=1), submit_key="k-today"
    )
    assert today.id


def test_someone_elses_form_key_does_not_return_their_record(db_session):
    ed1, ed2 = factories.staff("ed1", "editor"), factories.staff("ed2", "editor")
    kwargs = {"kind": "activity", "title": "乙的活动", "happened_on": "2026-03-01", "submit_key": "k-shared"}
    targets.add_record(**kwargs, created_by_id=ed1.id)
    with pytest.raises(ServiceError, match="表单已失效"):
        targets.add_record(**{**kwargs, "title": "甲的活动"}, created_by_id=ed2.id)


def test_scoreboard_weights_and_ranks(db_session):
    a, b, c = factories.unit("一分局"), factories.unit("二分局"), factories.unit("三分局")
    db_session.add_all([_record(RecordKind.MEDIA_REPORT, i, date(2026, 3, 2), a) for i in range(2)])  # 2 × 5
    db_session.add_all([_record(RecordKind.ACTIVITY, i, date(2026, 3, 3), b) for i in range(3)])  # 3 × 3
    db_session.add(_record(RecordKind.ACTIVITY, 9, date(2026, 4, 3), c))  # another month
    db_session.commit()

    def photos(start, end):
        return {c.id: 10} if start <= date(2026, 3, 10) <= end else {}

    targets.register_counter("photos_used", photos)
    try:
        march = targets.scoreboard(2026, 3)
        assert [(r.unit_name, r.score, r.rank) for r in march] == [
            ("一分局", 10.0, 1),
            ("二分局", 9.0, 2),
            ("三分局", 5.0, 3),
        ]
        targets.save_weights({"activities": "4", "photos_used": "1"})
        march = targets.scoreboard(2026, 3)
        assert [(r.unit_name, r.score) for r in march] == [("二分局", 12.0), ("一分局", 10.0), ("三分局", 10.0)]
        assert [r.rank for r in march] == [1, 2, 2]  # ties share a rank
        year = {r.unit_name: r.values["activities"] for r in targets.scoreboard(2026)}
        assert year["三分局"] == 1
        assert {r.values["tip_handling_hours"] for r in march} == {None}  # no tip closed: no average
        with pytest.raises(ServiceError):
            targets.save_weights({"activities": "abc"})
    finally:
        targets.unregister_counter("photos_used", photos)


def test_events_feed_the_plan(db_session):  # tips' handling hours: tests/test_datetimes.py, on both backends
    from datetime import timedelta

    from models import utcnow
    from server.services import targets
    from tests.services.test_events import make_event

    make_event(starts_in=timedelta(days=2))
    make_event(kind="livestream", starts_in=timedelta(days=2))
    make_event(kind="livestream", starts_in=timedelta(days=3))
    today = utcnow().date()
    window = (today - timedelta(days=1), today + timedelta(days=10))
    assert targets.count("activities", *window) == 1
    assert targets.count("livestreams", *window) == 2


def test_a_unit_with_no_closed_tip_is_scored_at_the_mean_handling_time(db_session):
    slow, fast = factories.unit("慢分局"), factories.unit("快分局")
    factories.unit("闲分局")  # nothing closed

    def hours(start, end):
        return {slow.id: 30.0, fast.id: 10.0}

    targets.register_counter("tip_handling_hours", hours)
    try:
        rows = {r.unit_name: r for r in targets.scoreboard(2026, 3)}
    finally:
        targets.unregister_counter("tip_handling_hours", hours)
    assert rows["闲分局"].values["tip_handling_hours"] is None
    assert (rows["快分局"].score, rows["闲分局"].score, rows["慢分局"].score) == (-1.0, -2.0, -3.0)


def test_a_district_counts_its_squads_and_squads_rank_among_themselves(db_session):
    pudong, huangpu = factories.unit("浦东分局"), factories.unit("黄浦分局")
    lujiazui = factories.unit("陆家嘴中队", "squad", parent=pudong)
    factories.unit("花木中队", "squad", parent=pudong)
    day = date(2026, 3, 5)
    db_session.add_all([_record(RecordKind.ACTIVITY, i, day, lujiazui) for i in range(2)])  # an officer's squad
    db_session.add(_record(RecordKind.ACTIVITY, 9, day, pudong))
    db_session.add(_record(RecordKind.MEDIA_REPORT, 1, day, huangpu))
    db_session.commit()

    def hours(start, end):
        return {lujiazui.id: 10.0, pudong.id: 40.0}

    def tips(start, end):
        return {lujiazui.id: 1.0, pudong.id: 3.0}

    targets.register_counter(targets.AVERAGED, hours)
    targets.register_counter(targets.AVERAGED_WEIGHT, tips)
    try:
        rows = targets.scoreboard(2026, 3)
    finally:
        targets.unregister_counter(targets.AVERAGED, hours)
        targets.unregister_counter(targets.AVERAGED_WEIGHT, tips)
    # 浦东: 3 activities (its own and its squad's) × 3 points, 4 tips averaging (10 + 3 × 40) / 4 = 32.5 hours × -0.1.
    # 黄浦 and 花木 closed none: scored at the same overall mean. Each squad is listed under its district.
    assert [(r.unit_name, r.depth, r.rank, r.score) for r in rows] == [
        ("浦东分局", 0, 1, 5.75),
        ("陆家嘴中队", 1, 1, 5.0),
        ("花木中队", 1, 2, -3.25),
        ("黄浦分局", 0, 2, 1.75),
    ]
    assert rows[0].values["activities"] == 3 and rows[0].values[targets.AVERAGED] == 32.5
    assert rows[2].values[targets.AVERAGED] is None


def test_material_photos_feed_the_scoreboard(db_session):
    from datetime import timedelta

    from models import MaterialItem, MaterialSource, MaterialState, utcnow
    from server.services import targets
    from tests.factories import staff, unit

    district = unit("黄浦分局")
    officer = staff("officer7", "officer", unit=district)
    now = utcnow()
    for i, used in enumerate((True, False, False)):
        db_session.add(
            MaterialItem(
                key=f"upload:{i}",
                source=list(MaterialSource)[0],
                uploader_id=officer.id,
                unit_id=district.id,
                received_at=now,
                used_in_article=used,
                used_at=now if used else None,
            )
        )
    # Not in the library, so no contribution: a photo refused (not an image, expired in WeChat), or one resent
    # (refused as a copy of the one kept: counted twice before).
    for i, error in enumerate(("文件不是有效的图片", "与素材 #1 是同一张照片")):
        db_session.add(
            MaterialItem(
                key=f"chat:refused-{i}",
                source=MaterialSource.CHAT,
                state=MaterialState.FAILED,
                error=error,
                uploader_id=officer.id,
                unit_id=district.id,
                received_at=now,
            )
        )
    db_session.flush()
    window = (now.date() - timedelta(days=1), now.date() + timedelta(days=1))
    assert targets.count_by_unit("photos_contributed", *window) == {district.id: 3.0}
    assert targets.count_by_unit("photos_used", *window) == {district.id: 1.0}


def test_a_day_wechat_has_not_published_yet_is_not_projected_as_a_day_without_growth(db_session, monkeypatch):
    """Before ~10:00 Beijing (or while the sync is down) the datacube ends a day or more short of yesterday: the
    projection divides by the share of the year the figures cover, not by one that counts days with no figure."""
    from server.services import datacube

    db_session.add_all(
        [
            StatDaily(ref_date=date(2025, 12, 31), cumulate_user=1_000_000),
            StatDaily(ref_date=date(2026, 1, 1), cumulate_user=1_001_000, read_user=10_000),  # 2 January not in
        ]
    )
    db_session.commit()
    targets.save_plan(2026, {"baseline_reads": "1000000"})
    monkeypatch.setattr(datacube, "beijing_today", lambda: date(2026, 1, 3))
    p = {item.key: item for item in targets.progress(2026)}
    assert p["followers"].actual == pytest.approx(0.1)
    assert p["followers"].projected == pytest.approx(0.1 * 365)  # one day's growth, not spread over two
    assert p["followers"].expected == pytest.approx(20 / 365)
    assert p["reads"].projected == pytest.approx(10_000 * 365)
    assert p["reads"].expected == pytest.approx(1_200_000 / 365)

    # On 2 January nothing of this year is in yet: no forecast, not "+0.0 % — 落后".
    monkeypatch.setattr(datacube, "beijing_today", lambda: date(2026, 1, 2))
    db_session.delete(db_session.get(StatDaily, date(2026, 1, 1)))
    db_session.commit()
    followers = {item.key: item for item in targets.progress(2026)}["followers"]
    assert followers.projected is None and followers.summary == "本年尚无粉丝数据（同步微信统计后显示）"


def test_the_scoreboard_reads_the_closed_tips_once(db_session):
    pudong = factories.unit("浦东分局")
    lujiazui = factories.unit("陆家嘴中队", "squad", parent=pudong)
    closed = datetime(2026, 3, 10, 4, 0, tzinfo=UTC)
    for i, (unit, hours) in enumerate([(lujiazui, 10), (pudong, 40), (pudong, 40)]):
        tip = Tip(
            tracking_no=f"SCORE{i:03d}",
            submit_key=f"score-{i}",
            openid="o-1",
            category="其他",
            description="占道经营五天了",
            source=TipSource.H5,
            unit_id=unit.id,
            created_at=closed - timedelta(hours=hours),
        )
        tip.history.append(TipStatusChange(to_status=TipStatus.RESOLVED, at=closed))
        db.session.add(tip)
    db.session.flush()
    statements: list[str] = []

    def seen(conn, cursor, statement, *args):  # type: ignore[no-untyped-def]
        statements.append(statement)

    conn = db.session.connection()
    sa.event.listen(conn, "before_cursor_execute", seen)
    try:
        rows = {r.unit_name: r for r in targets.scoreboard(2026, 3)}
    finally:
        sa.event.remove(conn, "before_cursor_execute", seen)
    # The handling time and the number of tips it averages come from one query, not one each.
    assert sum("tip_status_change" in s for s in statements) == 1
    assert rows["陆家嘴中队"].values[targets.AVERAGED] == 10.0
    assert rows["浦东分局"].values[targets.AVERAGED] == 30.0  # (10 + 2 × 40) / 3: its squad's tip counts once


def test_a_broken_joint_provider_leaves_the_rest_of_the_board(db_session):
    factories.unit("浦东分局")
    names = (targets.AVERAGED, targets.AVERAGED_WEIGHT)

    def broken(start, end):
        raise RuntimeError("a provider's bug")

    targets.register_counters(names, broken)
    try:
        (row,) = targets.scoreboard(2026, 3)
    finally:
        targets.unregister_counters(names, broken)
    assert row.unit_name == "浦东分局" and row.values[targets.AVERAGED] is None and row.score == 0


def test_a_count_is_projected_in_whole_ones_with_its_word():
    one_early = targets.Progress("positive_reports", "正面报道", "篇", 500, 1, 464.0, 1.08)
    assert one_early.summary == "按当前进度：年底约 1 篇 — 落后"
