"""Publishing drill: a week of 每日一案 a minute apart, two celery workers and beat, one worker SIGKILLed mid-way.

    bash bench/publish/run.sh          # or: .venv/bin/python -m bench.publish [--pushes 7] [--kill-at 3]

Issue #8's check with real processes: the WeChat emulator as its own HTTP server (bench/publish/emulator.py), the
app under gunicorn (for the PUBLISHJOBFINISH events, which the drill relays from the emulator to /wechat, signed and
encrypted, as WeChat's servers push them), two `celery worker --concurrency 2` and one `celery beat`, all with
production settings on their own database (bench_publish) and Redis db (7). Seven approved articles of 每日一案 are
scheduled one a minute from the full minute after next. When the push before the `--kill-at`th has been submitted,
the emulator is told to answer the next freepublish/submit late (after doing it); while that answer is on its way
the worker waiting for it (found by the client port the emulator recorded) is SIGKILLed with its children.

Checks: each article got exactly one draft/add and one freepublish/submit and was published once, in scheduled
order, each within ±30 s of its minute; every push is published in the database - the one whose worker was killed
too, settled from WeChat's PUBLISHJOBFINISH by its titles (publishing.settle_orphan), as the worker never learnt its
publish_id; anything not published shows its message, is in the console's red list and was sent to the duty editor;
no traceback in the logs of the processes that were not killed. Results: bench/out/publish.json and the logs
bench/out/publish-*.log.
"""

from __future__ import annotations

import argparse
import atexit
import io
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import unicodedata
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import requests

from bench import common
from bench.common import log

DATABASE = "bench_publish"
REDIS_DB = 7
SUBMIT = "cgi-bin/freepublish/submit"
DRAFT_ADD = "cgi-bin/draft/add"
TOLERANCE_S = 30
SUBMIT_DELAY_S = 6.0  # under the client's 10 s timeout: the answer would have come, had the worker lived
KILL_AFTER_S = 1.5  # into that delay: the request is at WeChat, the worker is waiting for the answer
SETTLE_S = 100  # after the last push's minute
EDITOR_OPENID = "o-bench-duty-editor-000000000"
TOPICS = ("占道经营", "违规广告牌", "渣土车抛洒", "违章搭建", "油烟扰民", "共享单车乱停", "夜间施工噪声")
SETTLED = {"published", "failed", "uncertain", "cancelled"}
SHORT = {"scheduled": "sched", "publishing": "PUBLISHING", "submitted": "subm", "published": "ok", "failed": "FAILED"}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.publish", description=__doc__.split("\n\n")[0])
    parser.add_argument("--pushes", type=int, default=7)
    parser.add_argument("--kill-at", type=int, default=3, help="the push whose worker is killed (1-based)")
    parser.add_argument("--out", default="publish.json")
    return parser.parse_args()


def recreate_database() -> None:
    pg = ["-h", common.PG_HOST, "-U", common.PG_USER]
    common.run(["dropdb", *pg, "--if-exists", "--force", DATABASE])
    common.run(["createdb", *pg, DATABASE])


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.loads(response.read())


def jpeg(colour: tuple[int, int, int]) -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (1200, 700), colour).save(out, "JPEG")
    return out.getvalue()


# -- seeding: through the services, as the tests and the console do ----------------------------------------------------


def seed(app: Any, start: datetime, count: int) -> list[dict[str, Any]]:
    from models import AlertDuty
    from server.extensions import db
    from server.services import articles, columns
    from server.services import staff as staff_service

    with app.app_context():
        unit = staff_service.save_unit(name="浦东分局", kind="district", parent_id=None)
        password = "Bench-Passw0rd-1234"
        editor = staff_service.save_staff(
            username="duty-ed", name="值班编辑", role="editor", unit_id=None, password=password
        )
        reviewer = staff_service.save_staff(
            username="reviewer", name="审核", role="reviewer", unit_id=None, password=password
        )
        liaison = staff_service.save_staff(
            username="liaison", name="联络员", role="liaison", unit_id=unit.id, password=password
        )
        editor.openid = EDITOR_OPENID  # bound: failure notices go to this editor's WeChat
        db.session.add(AlertDuty(staff_id=editor.id))
        db.session.commit()
        column = next(c for c in columns.ensure_default_columns() if c.name == "每日一案")
        pushes = []
        for i in range(count):
            topic = TOPICS[i % len(TOPICS)]
            title = f"第{i + 1}案：{topic}"
            article = articles.save_article(
                liaison,
                title=title,
                body_html=f"<p>{topic}案情、处理依据和整改结果（演练第 {i + 1} 篇）。</p>",
                column_id=column.id,
                author="城管执法",
            )
            articles.set_cover(liaison, article.id, jpeg((30 + 30 * i, 120, 200 - 20 * i)))
            articles.submit(liaison, article.id)
            articles.review(reviewer, article.id, approve=True)
            push = articles.schedule_push(editor, [article.id], start + timedelta(minutes=i), column.id)
            pushes.append(
                {
                    "push_id": push.id,
                    "title": articles.display_title(article),
                    "scheduled_at": push.scheduled_at.isoformat(),
                    "scheduled_ts": push.scheduled_at.timestamp(),
                }
            )
        return pushes


def push_rows(app: Any, ids: list[int]) -> dict[int, dict[str, Any]]:
    from models import ArticlePush
    from server.extensions import db

    with app.app_context():
        rows = {}
        for push in db.session.query(ArticlePush).filter(ArticlePush.id.in_(ids)).populate_existing():
            rows[push.id] = {
                "status": push.status.value,
                "label": push.status.label,
                "attempts": push.attempts,
                "error_message": push.error_message,
                "published_at": push.published_at.isoformat() if push.published_at else None,
                "article_status": [a.status.value for a in push.articles],
                "url": push.articles[0].url if push.articles else None,
            }
        db.session.remove()
        return rows


def red_list(app: Any) -> list[int]:
    from server.extensions import db
    from server.services import publishing

    with app.app_context():
        ids = [p.id for p in publishing.recent_failures()]
        db.session.remove()
        return ids


# -- the processes --------------------------------------------------------------------------------------------------


def wait_for_line(server: common.Server, pattern: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"{server.name} exited ({server.process.returncode}); see {server.log_path}")
        if re.search(pattern, server.log_path.read_text(errors="replace")):
            return
        time.sleep(0.25)
    raise RuntimeError(f"{server.name} did not log {pattern!r} within {timeout:.0f}s; see {server.log_path}")


def celery_worker(name: str, env: dict[str, str]) -> common.Server:
    cmd = [str(common.VENV_BIN / "celery"), "-A", "wsgi.celery", "worker", "--concurrency", "2", "-n", f"{name}@%h"]
    return common.spawn(f"publish-{name}", [*cmd, "--loglevel", "INFO"], env)


def pid_of_client_port(port: int) -> int | None:
    """The process whose TCP connection has this local port (the emulator saw it as the client's port)."""
    out = subprocess.run(
        ["ss", "-tnpH", "state", "established", f"( sport = :{port} )"], capture_output=True, text=True
    ).stdout
    match = re.search(r"pid=(\d+)", out)
    return int(match.group(1)) if match else None


class Relay:
    """WeChat's side of the push events: each event the emulator queued, POSTed once to /wechat as WeChat does."""

    def __init__(self, app_url: str, env: dict[str, str], gh_id: str) -> None:
        from server.wechat import simulator

        self.simulator = simulator
        self.account = simulator.Account(env["WECHAT_TOKEN"], env["WECHAT_APPID"], env["WECHAT_AES_KEY"], gh_id)
        self.url = app_url + "/wechat"
        self.sent = 0
        self.answers: list[dict[str, Any]] = []
        self.http = requests.Session()

    def deliver(self, events: list[dict[str, Any]]) -> None:
        for item in events[self.sent :]:
            params, body = self.simulator.signed_request(self.account, item["xml"], aes=True)
            try:
                status = self.http.post(self.url, params=params, data=body, timeout=10).status_code
            except requests.RequestException as exc:
                status = f"{type(exc).__name__}"
            event = item["event"]
            info = event.get("PublishEventInfo") or {}
            self.answers.append({"event": event["Event"], "publish_id": info.get("publish_id"), "status": status})
            self.sent += 1


# -- the drill ------------------------------------------------------------------------------------------------------


def drill(args: argparse.Namespace) -> dict[str, Any]:
    common.ensure_services()
    recreate_database()
    common.flush_redis(REDIS_DB)
    tmp = Path(tempfile.mkdtemp(prefix="bench-publish-"))
    atexit.register(shutil.rmtree, tmp, ignore_errors=True)  # media and beat's schedule file
    port = common.free_port()
    env = common.app_env(DATABASE, REDIS_DB, WECHAT_API_BASE=f"http://127.0.0.1:{port}/", MEDIA_ROOT=str(tmp / "media"))
    # "heads": parallel feature branches each add a revision until the lead merges them
    common.run([str(common.VENV_BIN / "flask"), "--app", "wsgi", "db", "upgrade", "heads"], env=env, timeout=120)
    log(f"database {DATABASE} (re)created and migrated; Redis db {REDIS_DB} flushed; media in {tmp}")

    emulator_cmd = [str(common.VENV_BIN / "python"), "-m", "bench.publish.emulator", "--port", str(port)]
    emulator = common.spawn(
        "publish-emulator",
        [*emulator_cmd, "--appid", env["WECHAT_APPID"], "--secret", env["WECHAT_SECRET"]],
        env,
        port=port,
    )
    common.wait_http(emulator.url + "/", process=emulator.process)
    emu = emulator.url + "/_emulator/"
    requests.post(emu + "users", json={"users": [{"openid": EDITOR_OPENID, "subscribe": 1}]}, timeout=5)
    gh_id = get_json(emu + "state")["gh_id"]
    log(f"WeChat emulator on :{port} (pid {emulator.process.pid})")

    os.environ.update(env)  # this process seeds and checks through the app's own services
    from server import create_app

    app = create_app()
    now = datetime.now(UTC)
    start = now.replace(second=0, microsecond=0) + timedelta(minutes=2)  # the full minute after next
    pushes = seed(app, start, args.pushes)
    ids = [p["push_id"] for p in pushes]
    log(f"seeded {args.pushes} approved 每日一案 articles, one push a minute from {start:%H:%M} UTC")

    gunicorn_args = ("--workers", "2", "--worker-class", "gthread", "--threads", "4")
    with common.gunicorn("publish-app", "wsgi:app", env, args=gunicorn_args) as web:
        workers = [celery_worker("w1", env), celery_worker("w2", env)]
        beat = common.spawn(
            "publish-beat",
            [
                str(common.VENV_BIN / "celery"),
                "-A",
                "wsgi.celery",
                "beat",
                "--schedule",
                str(tmp / "beat-schedule"),
                "--pidfile",
                str(tmp / "beat.pid"),
                "--loglevel",
                "INFO",
            ],
            env,
        )
        for worker in workers:
            wait_for_line(worker, r"ready\.", 60)
        wait_for_line(beat, r"beat: Starting", 30)
        log(f"workers w1 (pid {workers[0].process.pid}), w2 (pid {workers[1].process.pid}) and beat up")
        relay = Relay(web.url, env, gh_id)
        kill: dict[str, Any] = {}
        delay_set = False
        delayed_seen_at: float | None = None
        deadline = pushes[-1]["scheduled_ts"] + SETTLE_S
        rows: dict[int, dict[str, Any]] = {}
        last_report = ""
        while time.time() < deadline:
            state = get_json(emu + "state")
            relay.deliver(state["push_events"])
            submits = [c for c in state["calls"] if c["path"] == SUBMIT]
            if not delay_set and len(submits) >= args.kill_at - 1:
                requests.post(emu + "delay", json={"path": SUBMIT, "seconds": SUBMIT_DELAY_S}, timeout=5)
                delay_set = True
                log(
                    f"emulator: the next freepublish/submit (push {args.kill_at}) "
                    f"will be answered {SUBMIT_DELAY_S:g}s late"
                )
            delayed = next((c for c in submits if c.get("delayed_s")), None)
            if delayed and not kill:
                delayed_seen_at = delayed_seen_at or time.monotonic()
                if time.monotonic() - delayed_seen_at >= KILL_AFTER_S:
                    kill = kill_busy_worker(workers, delayed, app)
            rows = push_rows(app, ids)
            report = " ".join(SHORT.get(rows[i]["status"], rows[i]["status"].upper()) for i in ids)
            if report != last_report:
                log(f"pushes: {report}")
                last_report = report
            if kill and all(rows[i]["status"] in SETTLED for i in ids):
                break
            time.sleep(0.5)
        time.sleep(1.0)  # the last events and notices
        state = get_json(emu + "state")
        relay.deliver(state["push_events"])
        time.sleep(0.5)
        rows = push_rows(app, ids)
        red = red_list(app)
        state = get_json(emu + "state")
        survivors = [w for w in workers if w.process.poll() is None] + [beat, web, emulator]
        logs = {s.name: s.log_path for s in survivors}
        for server in [*workers, beat]:
            common.stop(server)
    return check(args, pushes, rows, red, state, relay, kill, logs, start)


def kill_busy_worker(workers: list[common.Server], call: dict[str, Any], app: Any) -> dict[str, Any]:
    """SIGKILL the worker (its whole process group) whose process is waiting for the delayed submit's answer."""
    pid = pid_of_client_port(int(call["client_port"])) if call.get("client_port") else None
    busy = next((w for w in workers if pid is not None and os.getpgid(pid) == w.process.pid), None)
    victim = busy or random.choice(workers)
    in_flight = sorted(push_rows_by_status(app, "publishing"))
    os.killpg(victim.process.pid, signal.SIGKILL)
    victim.process.wait(10)
    found = f"its process {pid} waits for the answer" if busy else "busy worker not found: a random one"
    log(f"SIGKILL {victim.name} (process group {victim.process.pid}; {found}); push(es) in flight: {in_flight}")
    return {
        "worker": victim.name,
        "pgid": victim.process.pid,
        "waiting_pid": pid,
        "busy_found": busy is not None,
        "client_port": call.get("client_port"),
        "pushes_in_flight": in_flight,
        "at": datetime.now(UTC).isoformat(),
    }


def push_rows_by_status(app: Any, status: str) -> dict[int, Any]:
    import sqlalchemy as sa

    from models import ArticlePush
    from server.extensions import db

    with app.app_context():
        found = dict(
            db.session.execute(
                sa.select(ArticlePush.id, ArticlePush.attempts).where(ArticlePush.status == status)
            ).all()
        )
        db.session.remove()
        return found


# -- checks ---------------------------------------------------------------------------------------------------------


def pad(text: str, width: int) -> str:
    """Left-align in a terminal column: CJK characters take two cells."""
    cells = sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)
    return text + " " * max(width - cells, 0)


def tracebacks(path: Path) -> int:
    return path.read_text(errors="replace").count("Traceback (most recent call last)")


def check(
    args: argparse.Namespace,
    pushes: list[dict[str, Any]],
    rows: dict[int, dict[str, Any]],
    red: list[int],
    state: dict[str, Any],
    relay: Relay,
    kill: dict[str, Any],
    logs: dict[str, Path],
    start: datetime,
) -> dict[str, Any]:
    titles = [p["title"] for p in pushes]
    drafts = {t: 0 for t in titles}
    for call in state["calls"]:
        if call["path"] == DRAFT_ADD and call["errcode"] == 0:
            for article in call["body"]["articles"]:
                drafts[article["title"]] = drafts.get(article["title"], 0) + 1
    jobs = sorted(state["publishes"], key=lambda j: int(j["publish_id"]))
    submits = {t: 0 for t in titles}
    for job in jobs:
        for article in job["articles"]:
            submits[article["title"]] = submits.get(article["title"], 0) + 1
    submit_calls = [c for c in state["calls"] if c["path"] == SUBMIT]
    published = {t: 0 for t in titles}
    for article in state["articles"]:
        for news in article["news_item"]:
            published[news["title"]] = published.get(news["title"], 0) + 1
    order = [a["title"] for job in jobs if job["publish_status"] == 0 for a in job["articles"]]
    scheduled = {p["title"]: p["scheduled_ts"] for p in pushes}
    offsets = {
        a["title"]: round(job["submitted_at"] - scheduled[a["title"]])
        for job in jobs
        for a in job["articles"]
        if a["title"] in scheduled
    }
    notices = {t["data"]["character_string5"]["value"]: t for t in state["templates_sent"]}

    table = []
    for p in pushes:
        row = rows[p["push_id"]]
        t = p["title"]
        table.append(
            {
                "push": p["push_id"],
                "title": t,
                "scheduled": p["scheduled_at"],
                "draft_add": drafts.get(t, 0),
                "submit": submits.get(t, 0),
                "published_on_wechat": published.get(t, 0),
                "offset_s": offsets.get(t),
                "status": row["status"],
                "attempts": row["attempts"],
                "message": row["error_message"],
                "in_red_list": p["push_id"] in red,
                "notice_sent": f"P{p['push_id']}" in notices,
            }
        )

    killed_push = pushes[args.kill_at - 1]["push_id"] if kill else None
    not_published = [r for r in table if r["status"] != "published"]
    failures_show = all(
        r["status"] in ("failed", "uncertain") and r["message"] and r["in_red_list"] and r["notice_sent"]
        for r in not_published
    )
    killed = next((r for r in table if r["push"] == killed_push), None)
    survivor_tracebacks = {name: tracebacks(path) for name, path in logs.items()}
    relay_bad = [a for a in relay.answers if a["status"] != 200]
    late = {r["title"]: r["offset_s"] for r in table if r["offset_s"] is None or abs(r["offset_s"]) > TOLERANCE_S}
    verdicts = [
        (
            "a worker was SIGKILLed mid-publish",
            bool(kill) and kill["busy_found"],
            f"{kill['worker']}, waiting on the submit of push {', '.join(map(str, kill['pushes_in_flight']))}"
            if kill
            else "no kill",
        ),
        ("each article: exactly 1 draft/add", all(v == 1 for v in drafts.values()), str(list(drafts.values()))),
        (
            "each article: exactly 1 freepublish/submit",
            all(v == 1 for v in submits.values()),
            str(list(submits.values())),
        ),
        (
            "each article published once on WeChat",
            all(v == 1 for v in published.values()),
            str(list(published.values())),
        ),
        ("published in scheduled order", order == titles, "ok" if order == titles else str(order)),
        (f"each at its minute (±{TOLERANCE_S}s)", not late, str([r["offset_s"] for r in table])),
        (
            "every push settled in the database",
            all(r["status"] in SETTLED for r in table),
            " ".join(r["status"] for r in table),
        ),
        (
            "the killed push published, from WeChat's event",
            killed is not None and killed["status"] == "published",
            killed["status"] if killed else "no kill",
        ),
        ("failures show (message, red list, notice)", failures_show, f"{len(not_published)} not published"),
        ("push events delivered to /wechat", not relay_bad, f"{len(relay.answers)} sent, {len(relay_bad)} not 200"),
        ("no tracebacks in surviving logs", not any(survivor_tracebacks.values()), str(survivor_tracebacks)),
    ]

    print()
    print(f"{'push':>4} {pad('title', 30)} {'sched UTC':>9} {'draft':>5} {'subm':>4} {'pub':>3} {'off s':>5}  status")
    for r in table:
        off = "-" if r["offset_s"] is None else f"{r['offset_s']:+d}"
        status = r["status"] + (f"  {r['message']}" if r["message"] else "")
        print(
            f"{r['push']:>4} {pad(r['title'], 30)} {r['scheduled'][11:16]:>9} {r['draft_add']:>5} {r['submit']:>4} "
            f"{r['published_on_wechat']:>3} {off:>5}  {status}"
        )
    print(f"freepublish/submit calls: {len(submit_calls)}; publish jobs: {len(jobs)}; template notices: {len(notices)}")
    print()
    for name, passed, value in verdicts:
        print(f"  {'PASS' if passed else 'FAIL'}  {name:<44} {value}")
    return {
        "bench": "publish",
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "start": start.isoformat(),
        "kill": kill,
        "pushes": table,
        "publish_order": order,
        "relay": relay.answers,
        "tracebacks": survivor_tracebacks,
        "verdicts": [{"check": n, "pass": p, "value": v} for n, p, v in verdicts],
        "all_pass": all(p for _, p, _ in verdicts),
    }


def main() -> int:
    args = parse_args()
    if not 1 < args.kill_at < args.pushes:
        raise SystemExit("--kill-at must name a push after the first and before the last")
    started = time.monotonic()
    common.install_cleanup()
    summary = drill(args)
    summary["elapsed_s"] = round(time.monotonic() - started, 1)
    path = common.write_json(args.out, summary)
    print(
        f"\nsummary: {path.relative_to(common.ROOT)} (whole run {summary['elapsed_s']}s); logs bench/out/publish-*.log"
    )
    return 0 if summary["all_pass"] else 1


if __name__ == "__main__":
    sys.exit(main())
