"""The vote and survey pages on a phone: a vote redraws the counts and 「当前排名」 and answers beside the tapped
button (the box at the top is off-screen on a long list); the survey's submit button cannot be tapped twice."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from models import SurveyResponse
from server.services import surveys, votes
from tests.browser.test_events import open_as
from tests.citizen.test_votes import campaign_now

NAMES = ["赵敏", "钱进", "孙立", "周航", "吴迪", "郑伟"]  # after campaign_now's 王芳 and 李强


def in_viewport(locator) -> bool:
    return locator.evaluate(
        "el => { const r = el.getBoundingClientRect(); return r.top >= 0 && r.bottom <= innerHeight; }"
    )


def test_a_vote_redraws_the_ranking_and_answers_beside_the_button(phone_page, live_server, emulator):
    phone = phone_page
    campaign = campaign_now(per_day=3)
    for name in NAMES:
        votes.save_candidate(campaign, name=name, unit_name="黄浦分局", story="")
    last = campaign.candidates[-1]
    open_as(phone, emulator, "o-phone-voter", f"/m/vote/{campaign.id}")
    assert phone.inner_text(".ranking li:first-child") == "王芳 0 票"

    card = phone.locator(f"#c{last.id}")
    card.locator("button").click()
    note = card.locator(".vote-note")
    note.wait_for(state="visible")
    assert note.inner_text() == "投票成功！今天还可以投 2 票" and in_viewport(note)
    assert phone.inner_text(".vote-message") == "投票成功！今天还可以投 2 票"  # the live region, read out once
    assert not in_viewport(phone.locator(".vote-message"))
    assert phone.locator(".vote-message").evaluate("el => el.getBoundingClientRect().height") <= 1  # shown once
    assert card.locator(f'[data-count="{last.id}"]').inner_text() == "1"
    assert phone.inner_text(".ranking li:first-child") == "郑伟 1 票"  # no reload needed
    assert phone.inner_text(".ranking li:nth-child(2)") == "王芳 0 票"  # ties keep the page's order

    # One vote a candidate a day: the button says so at once, not after another tap (and after a reload too).
    again = card.locator("button")
    assert again.inner_text() == "今天已投过 TA" and again.is_disabled()
    first = phone.locator(f"#c{campaign.candidates[0].id}")
    first.locator("button").click()
    first.locator(".vote-note").wait_for(state="visible")
    assert note.is_hidden()  # one answer on screen at a time
    ranking = phone.locator(".ranking li").all_inner_texts()[:2]
    assert ranking == ["王芳 1 票", "郑伟 1 票"]  # a tie: the campaign's order, as the server ranks
    places = "els => els.slice(0, 3).map(e => e.value)"
    assert phone.locator(".ranking li").evaluate_all(places) == [1, 1, 3]  # a tie shares its place, as the console
    phone.reload()
    assert phone.locator(".ranking li").evaluate_all(places) == [1, 1, 3]  # the server's page numbers it alike
    assert phone.locator(f"#c{last.id} button").inner_text() == "今天已投过 TA"
    phone.locator(f"#c{campaign.candidates[1].id} button").click()  # the third and last vote of the day
    phone.wait_for_function("document.querySelector('.remaining').textContent === '0'")
    buttons = phone.locator(".vote-btn").all_inner_texts()
    assert set(buttons) == {"今天已投过 TA", "今日票已投完"} and phone.locator(".vote-btn:enabled").count() == 0


def test_hidden_results_stay_hidden_after_a_vote(phone_page, live_server, emulator):
    phone = phone_page
    campaign = campaign_now(results_policy="hidden")
    open_as(phone, emulator, "o-phone-hidden", f"/m/vote/{campaign.id}")
    card = phone.locator(f"#c{campaign.candidates[0].id}")
    card.locator("button").click()
    card.locator(".vote-note").wait_for(state="visible")
    assert phone.locator(".ranking").count() == 0 and phone.locator("[data-count]").count() == 0


def _survey():
    now = datetime.now(UTC)
    return surveys.save_survey(
        title="2026年下半年满意度测评",
        intro="",
        starts_at=now - timedelta(days=1),
        ends_at=now + timedelta(days=1),
        questions="[单选] 您对市容环境是否满意\n满意\n不满意\n[填空 选填] 您的建议",
    )


def test_the_survey_button_sends_once(phone_page, live_server, emulator, committed_db):
    phone = phone_page
    survey = _survey()
    open_as(phone, emulator, "o-phone-survey", f"/m/survey/{survey.id}")
    phone.click("button[type=submit]")  # nothing answered: marked on the page, nothing sent
    assert phone.inner_text("#survey-error") == "还有 1 道题未回答：第 1 题，请补充后再提交"
    assert phone.locator("fieldset.missing .missing-note").is_visible()
    assert phone.inner_text("button[type=submit]") == "提交" and phone.is_enabled("button[type=submit]")
    phone.get_by_label("满意", exact=True).check()
    assert phone.locator("fieldset.missing").count() == 0
    phone.get_by_label("2. 您的建议").fill("多设几个垃圾桶")  # the free text is named by its question
    # a double tap: the first tap disables the button at once, the second sends nothing
    state = phone.evaluate(
        """() => { const b = document.querySelector('button[type=submit]'); b.click();
                   const seen = [b.disabled, b.textContent]; b.click(); return seen; }"""
    )
    assert state == [True, "提交中…"]
    phone.wait_for_selector("text=提交成功")
    assert committed_db.scalar(sa.select(sa.func.count()).select_from(SurveyResponse)) == 1


def _open_survey_answered(phone, emulator, openid):
    survey = _survey()
    open_as(phone, emulator, openid, f"/m/survey/{survey.id}")
    phone.get_by_label("满意", exact=True).check()
    phone.get_by_label("2. 您的建议").fill("多设几个垃圾桶")
    return survey


def _answers_kept(phone) -> bool:
    return phone.input_value("textarea") == "多设几个垃圾桶" and phone.get_by_label("满意", exact=True).is_checked()


def test_a_survey_sent_on_a_hanging_network_gives_the_button_back_with_the_answers(phone_page, live_server, emulator):
    phone = phone_page
    survey = _open_survey_answered(phone, emulator, "o-phone-slow")
    held = []  # a send whose answer never comes; 1 s of patience instead of a phone's 20 s
    phone.route(f"**/m/survey/{survey.id}", lambda route: held.append(route))
    phone.eval_on_selector("form.survey", "form => { form.dataset.patience = 1000; }")
    phone.click("button[type=submit]")
    assert phone.is_disabled("button[type=submit]")
    phone.wait_for_selector("#survey-error:visible")
    assert "网络较慢，暂未收到结果" in phone.inner_text("#survey-error") and len(held) == 1
    assert phone.is_enabled("button[type=submit]") and phone.inner_text("button[type=submit]") == "提交"
    assert _answers_kept(phone)
    held[0].abort()  # the hung send dies late: the citizen was already told, not told again
    phone.wait_for_timeout(300)
    assert "网络较慢，暂未收到结果" in phone.inner_text("#survey-error") and phone.is_enabled("button[type=submit]")
    phone.unroute(f"**/m/survey/{survey.id}")
    phone.click("button[type=submit]")  # the signal is back
    phone.wait_for_selector("text=提交成功")


def test_a_survey_send_that_fails_is_told_on_the_page_with_the_answers_kept(
    phone_page, live_server, emulator, committed_db
):
    phone = phone_page
    survey = _open_survey_answered(phone, emulator, "o-phone-reset")
    failures = iter(["reset", "502"])
    posts = []

    def flaky(route):
        posts.append(route.request.method)
        if (failure := next(failures, None)) == "reset":
            route.abort("connectionreset")
        elif failure == "502":  # the proxy's own page, not the app's JSON
            route.fulfill(status=502, content_type="text/html", body="<html>502 Bad Gateway</html>")
        else:
            route.continue_()

    phone.route(f"**/m/survey/{survey.id}", flaky)
    for _ in range(2):
        phone.click("button[type=submit]")
        phone.wait_for_selector("#survey-error:visible")
        assert "提交未送达" in phone.inner_text("#survey-error") and "您填写的内容都还在" in phone.inner_text(
            "#survey-error"
        )
        assert phone.is_enabled("button[type=submit]") and phone.inner_text("button[type=submit]") == "提交"
        assert _answers_kept(phone) and f"/m/survey/{survey.id}" in phone.url
        phone.evaluate("document.getElementById('survey-error').hidden = true")
    phone.click("button[type=submit]")
    phone.wait_for_url(f"**/m/survey/{survey.id}/done")
    assert "提交成功" in phone.inner_text("body") and posts == ["POST"] * 3
    assert committed_db.scalar(sa.select(sa.func.count()).select_from(SurveyResponse)) == 1
    phone.go_back()  # no POST in the history for the back button to resend: the page says it was answered
    phone.wait_for_selector("text=您已参加过本次测评")
