"""Vote bench: 1,000 distinct citizens cast 5,000 votes over 200 connections against gunicorn (PostgreSQL + Redis),
compared with the bare-Flask floor in the same run.

    bash bench/vote/run.sh          # or: .venv/bin/python -m bench.vote [--citizens 1000 --votes-each 5 -c 200]

Identities: each citizen gets a session cookie signed with the bench's SECRET_KEY, as the app itself issues after
WeChat OAuth, plus the matching CSRF form token; no login shortcut exists in the app. Addresses: the app runs with
TRUSTED_PROXIES=1 (as behind nginx) and every citizen sends its own X-Forwarded-For (10 citizens per /24), so the
per-IP and per-subnet rate limits see 1,000 phones rather than one loopback address. After the run the database rows,
the Redis ranking and the 200 responses must all be equal.
"""

from __future__ import annotations

import argparse
import os
import secrets
import sys
import time
from typing import Any
from urllib.parse import urlencode

from bench import common, minimal
from bench.common import log
from bench.surge.driver import DriverResult, drive

DATABASE, REDIS_DB = "bench_vote", 13
TARGETS = {"ratio": 0.35, "p99_ms": 200.0}
CANDIDATES = 10
EXPECTED = '"ok":true'


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.vote", description=__doc__.split("\n\n")[0])
    parser.add_argument("--citizens", type=int, default=1000)
    parser.add_argument("--votes-each", type=int, default=5)
    parser.add_argument("--connections", "-c", type=int, default=200)
    # The shared configuration plus a longer keep-alive: with 200 connections on 32 threads a connection can wait
    # over gunicorn's default 2 s in the poller, and gthread then closes it with its next request unread.
    parser.add_argument("--gunicorn", default=" ".join((*common.GUNICORN_ARGS, "--keep-alive", "30")))
    parser.add_argument("--out", default="vote.json")
    return parser.parse_args()


def env() -> dict[str, str]:
    return common.app_env(DATABASE, REDIS_DB, TRUSTED_PROXIES="1")


def prepare(app_env: dict[str, str], votes_each: int) -> tuple[int, int]:
    """Fresh database and Redis db; a measured campaign and a warm-up one, both open now. Returns their ids."""
    common.ensure_services()
    common.ensure_database(DATABASE)
    common.psql(DATABASE, "DROP SCHEMA public CASCADE; CREATE SCHEMA public")
    common.flush_redis(REDIS_DB)
    common.run([str(common.VENV_BIN / "flask"), "--app", "wsgi", "db", "upgrade", "heads"], env=app_env, timeout=120)
    seed = (
        "import sys\n"
        "from datetime import UTC, datetime, timedelta\n"
        "from server import create_app\n"
        "from server.services import votes\n"
        "app = create_app()\n"
        "with app.app_context():\n"
        "    now = datetime.now(UTC)\n"
        "    ids = []\n"
        "    for title in ('最美城管人（测量）', '最美城管人（预热）'):\n"
        "        c = votes.save_campaign(title=title, description='', starts_at=now - timedelta(hours=1),\n"
        "            ends_at=now + timedelta(days=1), votes_per_day=int(sys.argv[1]),\n"
        "            per_candidate_per_day=int(sys.argv[1]),\n"
        "            followers_only=False, results_policy='live')\n"
        "        for i in range(int(sys.argv[2])):\n"
        "            votes.save_candidate(c, name=f'候选人{i + 1}', unit_name='城管执法局', story='')\n"
        "        ids.append(c.id)\n"
        "    print(ids[0], ids[1])\n"
    )
    measured, warm = map(
        int,
        common.run(
            [str(common.VENV_BIN / "python"), "-c", seed, str(votes_each), str(CANDIDATES)], env=app_env
        ).split()[-2:],
    )
    log(f"database {DATABASE} migrated, campaigns {measured} (measured) and {warm} (warm-up) seeded")
    return measured, warm


class Identities:
    """Signed session cookies and CSRF tokens, made with the app's own session interface and Flask-WTF's salt."""

    def __init__(self, secret_key: str) -> None:
        from flask import Flask
        from itsdangerous import URLSafeTimedSerializer

        signer = Flask("bench-vote")
        signer.secret_key = secret_key
        self.session = signer.session_interface.get_signing_serializer(signer)
        self.csrf = URLSafeTimedSerializer(secret_key, salt="wtf-csrf-token")

    def make(self, openid: str) -> tuple[str, str]:
        raw = secrets.token_hex(20)
        cookie = self.session.dumps({"openid": openid, "snapshot": False, "csrf_token": raw})
        return cookie, self.csrf.dumps(raw)


def client_ip(n: int) -> str:
    block = n // 10  # 10 citizens per /24
    return f"10.{block // 256}.{block % 256}.{n % 10 + 1}"


def vote_request(campaign_id: int, candidate_id: int, cookie: str, token: str, ip: str, n: int) -> bytes:
    body = urlencode({"csrf_token": token, "candidate_id": candidate_id}).encode()
    head = (
        f"POST /m/vote/{campaign_id}/cast HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {len(body)}\r\n"
        f"Accept: application/json\r\nX-Forwarded-For: {ip}\r\n"
        f"User-Agent: Mozilla/5.0 (iPhone; CPU iPhone OS 17_{n % 7} like Mac OS X) MicroMessenger/8.0.{n % 50}\r\n"
        f"Cookie: session={cookie}\r\n\r\n"
    )
    return head.encode() + body


def build_requests(campaign_id: int, candidate_ids: list[int], citizens: range, votes_each: int) -> list[bytes]:
    """Each citizen votes `votes_each` times for different candidates; a citizen's votes are spread over the run."""
    ids = Identities(env()["SECRET_KEY"])
    people = [(n, *ids.make(f"o_bench_{campaign_id}_{n:06d}")) for n in citizens]
    return [
        vote_request(campaign_id, candidate_ids[(n + k) % len(candidate_ids)], cookie, token, client_ip(n), n)
        for k in range(votes_each)
        for n, cookie, token in people
    ]


def candidate_ids(campaign_id: int) -> list[int]:
    out = common.psql(DATABASE, f"SELECT id FROM vote_candidate WHERE campaign_id = {campaign_id} ORDER BY id")
    return [int(x) for x in out.split()]


def redis_total(campaign_id: int) -> int:
    out = common.run(
        [
            "redis-cli",
            "-h",
            common.REDIS_HOST,
            "-n",
            str(REDIS_DB),
            "ZRANGE",
            f"vote:rank:{campaign_id}",
            "0",
            "-1",
            "WITHSCORES",
        ]
    ).split()
    return int(sum(float(score) for score in out[1::2]))


def db_totals(campaign_id: int) -> tuple[int, int, int]:
    row = common.psql(
        DATABASE,
        f"SELECT count(*), count(DISTINCT openid), (SELECT count(*) FROM (SELECT 1 FROM vote WHERE campaign_id = "
        f"{campaign_id} GROUP BY campaign_id, openid, day, seq HAVING count(*) > 1) d) FROM vote "
        f"WHERE campaign_id = {campaign_id} AND voided_at IS NULL",
    )
    rows, voters, dup = map(int, row.split("|"))
    return rows, voters, dup


def show(label: str, result: DriverResult) -> dict[str, int]:
    """Log one run; returns its answers by kind (ok, refused, errors: 5xx, socket errors and timeouts)."""
    kinds = {"ok": 0, "refused": 0, "errors": 0}
    first_bad = ""
    for o in result.outcomes:
        kind = "ok" if o.status == 200 else "refused" if 400 <= o.status < 500 else "errors"
        kinds[kind] += 1
        if kind != "ok" and not first_bad:
            first_bad = f"{o.status}: {o.body[:200]!r}"
    log(
        f"  {label}: {result.rps:,.0f} req/s ({len(result.outcomes)} in {result.wall_s:.2f}s), p50"
        f" {result.percentile(50)} ms, p99 {result.percentile(99)} ms, max {result.percentile(100)} ms; {kinds}"
    )
    if first_bad:
        log(f"  first answer that was not 200: {first_bad}")
    return kinds


def main() -> int:
    args = parse_args()
    started = time.monotonic()
    common.install_cleanup()
    gunicorn_args = tuple(args.gunicorn.split())
    app_env = env()
    measured, warm = prepare(app_env, args.votes_each)
    total = args.citizens * args.votes_each
    requests = build_requests(measured, candidate_ids(measured), range(args.citizens), args.votes_each)
    warm_requests = build_requests(warm, candidate_ids(warm), range(100_000, 100_400), 1)
    log(f"{len(requests)} distinct vote requests from {args.citizens} citizens; {len(warm_requests)} warm-up votes")

    # The floor: the same driver, connections and request bytes (headers, cookie, body), to a route that says hello.
    floor_requests = [r.replace(f"POST /m/vote/{measured}/cast ".encode(), b"POST / ", 1) for r in requests]
    with common.gunicorn("vote-floor", "bench.gateway.floor:app", app_env, args=gunicorn_args, ready_path="/") as fl:
        drive("127.0.0.1", fl.port, floor_requests[:400], connections=args.connections)  # warm-up
        with common.CpuSampler([fl]) as floor_cpu:
            floor = drive("127.0.0.1", fl.port, floor_requests, connections=args.connections)
    floor_kinds = show("floor", floor)
    log(f"  {floor_cpu.describe()}")

    # The least a vote can be (bench/minimal.py): same driver, connections and request bytes.
    common.psql(DATABASE, minimal.TABLES)
    with common.gunicorn("vote-minimal", "bench.minimal:vote", app_env, args=gunicorn_args, ready_path="/") as least:
        drive("127.0.0.1", least.port, warm_requests, connections=args.connections)
        with common.CpuSampler([least]) as least_cpu:
            least_result = drive("127.0.0.1", least.port, requests, connections=args.connections)
    least_kinds = show("minimal", least_result)
    log(f"  {least_cpu.describe()}")

    with common.gunicorn("vote-app", "wsgi:app", app_env, args=gunicorn_args) as app:
        show("warm-up", drive("127.0.0.1", app.port, warm_requests, connections=args.connections))
        time.sleep(0.5)
        with common.CpuSampler([app]) as cpu:
            result = drive("127.0.0.1", app.port, requests, connections=args.connections)
        kinds = show("vote", result)
        log(f"  {cpu.describe()}")
        time.sleep(0.5)
        tracebacks = app.log_path.read_text(errors="replace").count("Traceback")
    accepted = sum(1 for o in result.outcomes if o.status == 200 and EXPECTED.encode() in o.body)
    rows, voters, duplicate_slots = db_totals(measured)
    ranking = redis_total(measured)
    ratio = result.rps / floor.rps if floor.rps else 0.0
    p99 = result.percentile(99)

    print()
    print(
        f"gunicorn {' '.join(gunicorn_args)}; {args.connections} connections; {os.cpu_count()} cores;"
        f" TRUSTED_PROXIES=1 with one X-Forwarded-For per citizen"
    )
    print(f"{'run':<7} {'req/s':>9} {'ratio':>6} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7}")
    print(
        f"{'floor':<7} {floor.rps:>9,.0f} {1:>6.2f} {floor.percentile(50):>8} {floor.percentile(99):>8}"
        f" {floor_kinds['errors']:>7}"
    )
    print(
        f"{'minimal':<7} {least_result.rps:>9,.0f} {least_result.rps / floor.rps:>6.2f} "
        f"{least_result.percentile(50):>8} {least_result.percentile(99):>8} {least_kinds['errors']:>7}"
        "  (Flask + session + form token + INSERT + ZINCRBY)"
    )
    print(f"{'vote':<7} {result.rps:>9,.0f} {ratio:>6.2f} {result.percentile(50):>8} {p99:>8} {kinds['errors']:>7}")
    print("\n" + common.latency_bound(args.connections, TARGETS["p99_ms"], floor.rps))
    print(
        f"\ntotals: sent {len(requests)}, accepted {accepted}, refused {kinds['refused']}, database rows {rows}"
        f" from {voters} citizens, Redis ranking {ranking}"
    )
    verdicts = [
        (f"accepted = sent = {total}", accepted == len(result.outcomes) == total, f"{accepted}/{len(result.outcomes)}"),
        ("database rows = accepted", rows == accepted, f"{rows}"),
        ("Redis ranking = database", ranking == rows, f"{ranking}"),
        ("no daily slot used twice", duplicate_slots == 0, str(duplicate_slots)),
        ("zero errors", kinds["errors"] == 0 and not tracebacks, f"{kinds['errors']} errors, {tracebacks} tracebacks"),
        (f"p99 < {TARGETS['p99_ms']:g} ms", p99 < TARGETS["p99_ms"], f"{p99}"),
        (f"vote/floor >= {TARGETS['ratio']}", ratio >= TARGETS["ratio"], f"{ratio:.2f}"),
    ]
    print()
    for name, passed, value in verdicts:
        print(f"  {'PASS' if passed else 'FAIL'}  {name:<28} {value}")

    def summary_of(r: DriverResult, k: dict[str, int]) -> dict[str, Any]:
        return {"rps": r.rps, "wall_s": round(r.wall_s, 3), "p50": r.percentile(50), "p99": r.percentile(99), **k}

    summary = {
        "bench": "vote",
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "cores": os.cpu_count(),
        "gunicorn": list(gunicorn_args),
        "connections": args.connections,
        "citizens": args.citizens,
        "votes": total,
        "targets": TARGETS,
        "floor": {**summary_of(floor, floor_kinds), "cpu": floor_cpu.result},
        "minimal": {**summary_of(least_result, least_kinds), "cpu": least_cpu.result},
        "vote": {**summary_of(result, kinds), "cpu": cpu.result, "ratio_to_floor": round(ratio, 3)},
        "totals": {"accepted": accepted, "db_rows": rows, "voters": voters, "redis": ranking},
        "verdicts": [{"check": n, "pass": p, "value": v} for n, p, v in verdicts],
        "all_pass": all(p for _, p, _ in verdicts),
        "elapsed_s": round(time.monotonic() - started, 1),
    }
    path = common.write_json(args.out, summary)
    print(f"\nsummary: {path.relative_to(common.ROOT)} (whole run {summary['elapsed_s']}s)")
    return 0 if summary["all_pass"] else 1


if __name__ == "__main__":
    sys.exit(main())
