"""Stats bench: the leaders' dashboard and the monthly report over 3 years of synthetic data, against /readyz.

    bash bench/stats/run.sh          # or: .venv/bin/python -m bench.stats [--requests 100]

Data (PostgreSQL generate_series, a few seconds): 3 years of daily figures ending yesterday (followers growing to
about 1,000,000), 10 user sources per day, 5,000 articles (about 1 % over 100,000 reads) with a week of daily reads
each, 20 units, 2,000 manual records, 1,000,000 subscribe/scan events in the message log, this year's plan.
The app runs under gunicorn with the production settings (bench/common.py); requests are sent one at a time over a
kept-alive connection with an admin's session cookie. /readyz is the floor: a `SELECT 1` and a Redis PING through the
same stack. Targets: dashboard p95 < 300 ms, monthly report (built on demand) < 5 s.
"""

from __future__ import annotations

import argparse
import http.client
import json
import re
import statistics
import sys
import time
from datetime import date, timedelta
from urllib.parse import urlencode

from bench import common
from bench.common import log

DATABASE, REDIS_DB = "bench_stats", 12
TARGETS = {"dashboard_p95_ms": 300.0, "report_s": 5.0}
PASSWORD = "Bench-passw0rd-1234"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.stats", description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=100, help="measured requests per page (default 100)")
    parser.add_argument("--reports", type=int, default=5, help="monthly reports built (default 5)")
    parser.add_argument("--gunicorn", default=" ".join(common.GUNICORN_ARGS))
    parser.add_argument("--out", default="stats.json")
    return parser.parse_args()


def seed_sql(today: date) -> str:
    first = date(today.year - 3, today.month, today.day)
    yesterday = today - timedelta(days=1)
    days = (yesterday - first).days + 1
    return f"""
BEGIN;
INSERT INTO unit (name, kind, parent_id, sort)
SELECT '第' || g || '执法分局', 'DISTRICT', NULL, g FROM generate_series(1, 20) g;

-- Followers: 1,000,000 three years ago minus a little, +~140 a day net; reads with a weekly rhythm.
INSERT INTO stat_daily (ref_date, cumulate_user, new_user, cancel_user, read_user, share_user, like_user,
                        zaikan_user, comment_count, collection_user)
SELECT d::date, 850000 + i * 140 + (hashint(i) % 50), 180 + hashint(i) % 60, 40 + hashint(i + 7) % 20,
       20000 + hashint(i + 3) % 15000 + CASE WHEN extract(dow FROM d) IN (0, 6) THEN -5000 ELSE 0 END,
       1500 + hashint(i) % 500, 300 + hashint(i) % 80, 120, 40, 200
FROM generate_series(0, {days - 1}) i, LATERAL (SELECT '{first}'::date + i AS d) x;

INSERT INTO stat_user_source_daily (ref_date, user_source, new_user, cancel_user)
SELECT '{first}'::date + i, s, 5 + hashint(i * 11 + s) % 40, hashint(i * 13 + s) % 8
FROM generate_series(0, {days - 1}) i, unnest(ARRAY[0, 1, 17, 30, 51, 57, 100, 149, 161, 200]) s;

INSERT INTO stat_article (msgid, title, publish_date, stat_date, read_user, share_user, like_user, zaikan_user,
                          comment_count, collection_user)
SELECT (2247400000 + n) || '_1', '城市管理专题报道第' || n || '期', '{first}'::date + (n * {days - 1} / 5000),
       '{first}'::date + (n * {days - 1} / 5000) + 6,
       CASE WHEN n % 97 = 0 THEN 100000 + hashint(n) % 200000 ELSE 500 + hashint(n) % 30000 END,
       hashint(n) % 900, hashint(n) % 300, hashint(n) % 100, hashint(n) % 50, hashint(n) % 80
FROM generate_series(1, 5000) n;

INSERT INTO stat_article_daily (ref_date, msgid, read_user, share_user)
SELECT a.publish_date + k, a.msgid, a.read_user / (k + 2), a.share_user / (k + 2)
FROM stat_article a, generate_series(0, 6) k;

INSERT INTO datacube_sync_state (endpoint, start_date, cursor)
SELECT e, '{first}', '{yesterday}' FROM unnest(ARRAY['getusercumulate', 'getusersummary', 'getbizsummary',
  'getarticleread', 'getarticletotaldetail', 'getarticleshare']) e;
INSERT INTO datacube_day (endpoint, ref_date, is_delay, source, fetched_at)
SELECT e, '{first}'::date + i, false, e, now()
FROM generate_series(0, {days - 1}) i, unnest(ARRAY['getusercumulate', 'getusersummary', 'getbizsummary',
  'getarticleread', 'getarticletotaldetail', 'getarticleshare']) e;

INSERT INTO stat_record (kind, title, outlet, happened_on, link, unit_id, note, submit_key, created_at)
SELECT (ARRAY['MEDIA_REPORT', 'MEDIA_REPORT', 'MEDIA_REPORT', 'ACTIVITY', 'LIVESTREAM', 'PRODUCT'])[1 + n % 6],
       '登记' || n, '新华网', '{first}'::date + (n * {days - 1} / 2000), '', (SELECT min(id) FROM unit) + n % 20,
       '', 'bench-' || n, now()
FROM generate_series(1, 2000) n;

-- The message log: 1,000,000 subscribe/scan events over the three years, a quarter from parametric QR codes.
INSERT INTO inbound_message (dedupe_key, openid, msg_type, event, event_key, payload, sent_at, received_at,
                             status)
SELECT 'e:bench' || n, 'o' || n, 'event', CASE WHEN n % 5 = 0 THEN 'scan' ELSE 'subscribe' END,
       CASE WHEN n % 4 = 0 THEN 'qrscene_poster' || (n % 12) WHEN n % 5 = 0 THEN 'poster' || (n % 12) END,
       '{{}}', t, t, 'OK'
FROM generate_series(1, 1000000) n,
     LATERAL (SELECT '{first}'::timestamptz + (n::float / 1000000) * interval '{days} days' AS t) x;

INSERT INTO stat_plan (year, follower_growth_pct, read_growth_pct, articles_100k, positive_reports, activities,
                       livestreams, products, updated_at)
VALUES ({today.year}, 20, 20, 10, 500, 80, 5, 10, now());
COMMIT;
ANALYZE;
"""


HASHINT = """
CREATE OR REPLACE FUNCTION hashint(i bigint) RETURNS int LANGUAGE sql IMMUTABLE AS
$$ SELECT abs(hashtext(i::text)) $$;
"""


def prepare(env: dict[str, str]) -> date:
    common.ensure_services()
    common.ensure_database(DATABASE)
    common.psql(DATABASE, "DROP SCHEMA public CASCADE; CREATE SCHEMA public")
    common.flush_redis(REDIS_DB)
    common.run([str(common.VENV_BIN / "flask"), "--app", "wsgi", "db", "upgrade", "heads"], env=env, timeout=120)
    seed = (
        "from server import create_app\n"
        "from server.services import staff\n"
        "from server.services.datacube import beijing_today\n"
        "from server.extensions import db\n"
        "app = create_app()\n"
        "with app.app_context():\n"
        f"    s = staff.save_staff(username='benchadmin', name='测试管理员', role='admin', unit_id=None,"
        f" password='{PASSWORD}')\n"
        "    s.must_change_password = False\n"
        "    db.session.commit()\n"
        "    print(beijing_today().isoformat())\n"
    )
    today = date.fromisoformat(common.run([str(common.VENV_BIN / "python"), "-c", seed], env=env).split()[-1])
    started = time.perf_counter()
    common.psql(DATABASE, HASHINT)
    _psql_script(seed_sql(today))
    counts = common.psql(
        DATABASE,
        "SELECT (SELECT count(*) FROM stat_daily) || ' days, ' || (SELECT count(*) FROM stat_article) || "
        "' articles, ' || (SELECT count(*) FROM inbound_message) || ' events, ' || "
        "(SELECT max(cumulate_user) FROM stat_daily) || ' followers'",
    )
    log(f"seeded in {time.perf_counter() - started:.1f}s: {counts}")
    return today


def _psql_script(sql: str) -> None:
    import subprocess

    done = subprocess.run(
        ["psql", "-h", common.PG_HOST, "-U", common.PG_USER, "-d", DATABASE, "-v", "ON_ERROR_STOP=1", "-q"],
        input=sql,
        capture_output=True,
        text=True,
        timeout=600,
    )
    if done.returncode != 0:
        raise RuntimeError(f"seed failed:\n{done.stderr}")


class Browser:
    """One kept-alive connection with the admin's session cookie (sent by hand: production cookies are Secure)."""

    def __init__(self, port: int) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        self.cookie = ""

    def request(self, method: str, path: str, body: str | None = None) -> tuple[int, bytes, http.client.HTTPMessage]:
        headers = {"Cookie": self.cookie} if self.cookie else {}
        if body is not None:
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        self.conn.request(method, path, body=body, headers=headers)
        res = self.conn.getresponse()
        data = res.read()
        for value in res.headers.get_all("Set-Cookie") or []:
            if value.startswith("session="):
                self.cookie = value.split(";", 1)[0]
        return res.status, data, res.headers

    def login(self) -> None:
        _, page, _ = self.request("GET", "/admin/login")
        token = re.search(rb'name="csrf_token" value="([^"]+)"', page)
        assert token, "no CSRF token on the login page"
        body = urlencode({"csrf_token": token.group(1).decode(), "username": "benchadmin", "password": PASSWORD})
        status, _, _ = self.request("POST", "/admin/login", body)
        if status != 302:
            raise RuntimeError(f"login failed ({status})")

    def time(self, path: str, n: int, check: bytes | None = None) -> list[float]:
        times = []
        for _ in range(n):
            started = time.perf_counter()
            status, data, _ = self.request("GET", path)
            times.append((time.perf_counter() - started) * 1000)
            if status != 200 or (check is not None and check not in data):
                raise RuntimeError(f"GET {path} answered {status}: {data[:300]!r}")
        return times


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def main() -> int:
    args = parse_args()
    common.install_cleanup()
    env = common.app_env(DATABASE, REDIS_DB)
    today = prepare(env)
    last_month = (today.replace(day=1) - timedelta(days=1)).strftime("%Y-%m")
    with common.gunicorn("stats", "wsgi:app", env, args=args.gunicorn.split(), ready_path="/readyz") as server:
        browser = Browser(server.port)
        browser.login()
        dashboard = f"/admin/stats?year={today.year}"
        browser.time(dashboard, 20, check="年度目标进度".encode())  # warm every worker
        browser.time("/readyz", 20)
        dash, ready = [], []
        for _ in range(args.requests):  # interleaved: both see the same machine load
            dash += browser.time(dashboard, 1)
            ready += browser.time("/readyz", 1)
        weekly = browser.time(f"/admin/stats?year={today.year}&grain=day", max(10, args.requests // 5))
        report_path = f"/admin/stats/reports/export?kind=monthly&period={last_month}"
        report = [t / 1000 for t in browser.time(report_path, args.reports, check=b"PK")]
        yearly = [t / 1000 for t in browser.time(f"/admin/stats/reports/export?kind=yearly&period={today.year}", 2)]
    result = {
        "dashboard_ms": {"p50": statistics.median(dash), "p95": pct(dash, 0.95), "max": max(dash)},
        "dashboard_daily_grain_ms": {"p50": statistics.median(weekly), "p95": pct(weekly, 0.95)},
        "readyz_ms": {"p50": statistics.median(ready), "p95": pct(ready, 0.95)},
        "ratio_p50": statistics.median(dash) / statistics.median(ready),
        "ratio_p95": pct(dash, 0.95) / pct(ready, 0.95),
        "monthly_report_s": {"p50": statistics.median(report), "max": max(report)},
        "yearly_report_s": {"max": max(yearly)},
    }
    print()
    print(f"dashboard        p50 {result['dashboard_ms']['p50']:7.1f} ms   p95 {result['dashboard_ms']['p95']:7.1f} ms")
    print(
        f"dashboard (day)  p50 {result['dashboard_daily_grain_ms']['p50']:7.1f} ms   "
        f"p95 {result['dashboard_daily_grain_ms']['p95']:7.1f} ms"
    )
    print(f"/readyz floor    p50 {result['readyz_ms']['p50']:7.1f} ms   p95 {result['readyz_ms']['p95']:7.1f} ms")
    print(f"ratio dashboard ÷ /readyz: p50 {result['ratio_p50']:.1f}×, p95 {result['ratio_p95']:.1f}×")
    report_s = result["monthly_report_s"]
    print(f"monthly report   p50 {report_s['p50']:.2f} s   max {report_s['max']:.2f} s")
    print(f"yearly report    max {result['yearly_report_s']['max']:.2f} s")
    ok = (
        result["dashboard_ms"]["p95"] < TARGETS["dashboard_p95_ms"]
        and result["monthly_report_s"]["max"] < TARGETS["report_s"]
    )
    print(f"targets (dashboard p95 < 300 ms, monthly report < 5 s): {'met' if ok else 'MISSED'}")
    common.OUT.mkdir(parents=True, exist_ok=True)
    (common.OUT / args.out).write_text(json.dumps(result, indent=2))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
