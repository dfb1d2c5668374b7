"""Console writes raced for real: threads released together, each with its own app context and connection.

Each race runs a few rounds; every round must end in a state one serial order of the same calls could have left.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
import sqlalchemy as sa

from models import MenuKind, MenuVersion, Staff, Tip, TipStatus, TipStatusChange, Unit
from server.extensions import db
from server.services import ServiceError, menus, tips
from server.services import staff as staff_service
from tests import factories
from tests.conftest import SQLITE
from tests.services.test_images import jpeg_bytes
from tests.services.test_tips import _threads

pytestmark = pytest.mark.skipif(SQLITE, reason="races need a database that runs writers side by side")
ROUNDS = 4


def race(app, n: int, work: Callable[[int], Any]) -> list[Any]:
    """work(i) in n threads released together, each in its own app context; results or the exceptions raised."""

    def in_context(i: int) -> Any:
        with app.app_context():
            try:
                return work(i)
            finally:
                db.session.remove()

    return _threads(n, in_context)


def test_an_editor_who_loaded_a_tip_before_another_acted_is_checked_against_what_is_now(app, committed_db, emulator):
    """Two editors open the tip; one accepts; the other's accept, locked after the first commit, must see it."""
    editors = [factories.staff(f"ed{i}", "editor").id for i in range(2)]
    tip_id = tips.submit_tip(
        "o-race", category="占道经营", description="小区门口有人占道摆摊，影响通行", photos=[jpeg_bytes()],
        latitude=31.23, longitude=121.47, submit_key=secrets.token_urlsafe(24),
    ).id  # fmt: skip
    db.session.remove()
    loaded, first_done = threading.Barrier(2), threading.Event()
    outcome: dict[int, str] = {}

    def editor(i: int) -> None:
        with app.app_context():
            # Held, as the console's view holds it while the service locks the row (the identity map is weak).
            opened = db.session.get(Tip, tip_id)
            me = db.session.get(Staff, editors[i])
            loaded.wait(timeout=10)
            if i == 1:
                first_done.wait(timeout=10)
            try:
                tips.transition(tip_id, "accept", me)
                outcome[i] = "accepted"
            except ServiceError as exc:
                outcome[i] = str(exc)
            finally:
                first_done.set()
                assert opened.id == tip_id
                db.session.remove()

    threads = [threading.Thread(target=editor, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert outcome == {0: "accepted", 1: "线索当前为「已受理」，不能受理"}
    history = db.session.scalars(sa.select(TipStatusChange).filter_by(tip_id=tip_id).order_by(TipStatusChange.id)).all()
    assert [h.to_status for h in history] == [TipStatus.SUBMITTED, TipStatus.ACCEPTED]


def test_menu_saves_on_one_base_let_exactly_one_through(app, committed_db, emulator):
    tips_button = {"type": "click", "name": "随手拍", "key": "TIP_HOWTO"}
    for r in range(ROUNDS):
        menus.discard_draft("default")
        base = menus.draft_token(
            menus.save_draft("default", [tips_button, {"type": "click", "name": f"r{r}", "key": "R"}])
        )
        db.session.remove()

        def save(i: int, base: str = base) -> int:
            buttons = [tips_button, {"type": "click", "name": f"e{i}", "key": f"E{i}"}]
            return menus.save_draft("default", buttons, base=base).id

        results = race(app, 6, save)
        assert len([x for x in results if isinstance(x, int)]) == 1, results
        assert all(isinstance(x, (int, menus.MenuError)) for x in results), results
        drafts = db.session.scalars(
            sa.select(MenuVersion).where(MenuVersion.kind == MenuKind.DEFAULT, MenuVersion.published_at.is_(None))
        ).all()
        assert len(drafts) == 1


def test_two_units_moved_under_each_other_at_once_never_loop(app, committed_db):
    for r in range(ROUNDS):
        ids = (factories.unit(f"甲{r}").id, factories.unit(f"乙{r}").id)
        db.session.remove()

        def move(i: int, ids: tuple[int, int] = ids) -> int:
            unit = db.session.get(Unit, ids[i])
            return staff_service.save_unit(name=unit.name, kind=unit.kind.value, parent_id=ids[1 - i], unit=unit).id

        results = race(app, 2, move)
        assert all(isinstance(x, (int, ServiceError)) for x in results), results
        first, second = (db.session.get(Unit, i, populate_existing=True) for i in ids)
        assert not (first.parent_id == second.id and second.parent_id == first.id)
        assert staff_service.unit_and_descendants(first.id)  # and the reach query ends


def test_two_tips_marked_duplicates_of_each_other_at_once_never_deadlock_or_loop(app, committed_db, emulator):
    editor_id = factories.staff("ed-dup", "editor").id
    for _ in range(ROUNDS):
        made = [
            tips.submit_tip(
                f"o-dup-{i}", category="占道经营", description="小区门口有人占道摆摊，影响通行", photos=[jpeg_bytes()],
                latitude=31.23, longitude=121.47, submit_key=secrets.token_urlsafe(24),
            )
            for i in range(2)
        ]  # fmt: skip
        ids, numbers = [t.id for t in made], [t.display_no for t in made]
        db.session.remove()

        def mark(i: int, ids: list[int] = ids, numbers: list[str] = numbers) -> str:
            # Each tip locked, then the other: without one-at-a-time marks, PostgreSQL kills one as a deadlock.
            tips.transition(ids[i], "duplicate", db.session.get(Staff, editor_id), duplicate_of=numbers[1 - i])
            return "marked"

        outcomes = race(app, 2, mark)
        assert sorted(o if isinstance(o, str) else type(o).__name__ for o in outcomes) == ["ServiceError", "marked"]
        db.session.expire_all()
        a, b = (db.session.get(Tip, i) for i in ids)
        assert {a.status, b.status} == {TipStatus.DUPLICATE, TipStatus.SUBMITTED}  # one points at the other, no loop


def test_guesses_sent_at_once_get_no_more_tries_than_the_lockout_allows(app, committed_db, monkeypatch):
    """A guess read the failure count, ran the password KDF and only then counted itself: guesses sent together all
    found the count under the limit, so a burst got as many tries as it had requests, not five."""
    factories.staff("target1", "editor")
    db.session.remove()
    checked: list[str] = []
    kdf = staff_service.check_password_hash

    def slow_kdf(hashed: str, password: str) -> bool:
        checked.append(password)
        time.sleep(0.2)  # the KDF's time, in which the other guesses arrive
        return kdf(hashed, password)

    monkeypatch.setattr(staff_service, "check_password_hash", slow_kdf)
    results = race(app, 12, lambda i: staff_service.authenticate("target1", f"guess-{i}-x1", f"10.0.0.{i}"))
    assert all(isinstance(r, ServiceError) for r in results), results
    assert len(checked) == staff_service.MAX_FAILURES_PER_ACCOUNT
    assert sum("锁定" in str(r) for r in results) == 12 - staff_service.MAX_FAILURES_PER_ACCOUNT
