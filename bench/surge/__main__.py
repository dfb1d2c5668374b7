"""Registration surge: 2,000 distinct citizens register at the same moment for a session with 300 places.

    bash bench/surge/run.sh          # or: .venv/bin/python -m bench.surge [--citizens 2000] [--quota 300]

gunicorn (bench/common.py's configuration) on PostgreSQL and a private redis-server started on a free port (so that
it can really be restarted mid-surge without touching the shared one). Every citizen has a real signed session
cookie (openid + CSRF token, signed with the app's SECRET_KEY as Flask and Flask-WTF sign them) and posts the real
registration form. Two runs: a plain surge, then one with redis-server stopped and restarted after a quarter of the
answers. After each run PostgreSQL must hold exactly `quota` confirmed registrations, the rest on the waiting list,
the session's `taken` equal to the quota, one registration per citizen, and no 5xx or timeouts.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from typing import Any
from urllib.parse import urlencode

from bench import common, minimal
from bench.common import log
from bench.surge.driver import DriverResult, drive

DATABASE = "bench_surge"
TARGETS = {"ratio": 0.35, "p99_ms": 300.0}
SIGNING_KEY = "YmVuY2gtY2hlY2tpbi1rZXktMDEyMzQ1Njc4OWFiY2Q="  # 32 bytes, urlsafe base64


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.surge", description=__doc__.split("\n\n")[0])
    parser.add_argument("--citizens", type=int, default=2000)
    parser.add_argument("--quota", type=int, default=300)
    parser.add_argument("--connections", type=int, default=200)
    parser.add_argument("--gunicorn", default=" ".join(common.GUNICORN_ARGS))
    parser.add_argument("--out", default="surge.json")
    return parser.parse_args()


# -- a private redis-server that can be restarted ---------------------------------------------------------------------


class PrivateRedis:
    def __init__(self) -> None:
        self.port = common.free_port()
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        for _ in range(100):
            done = subprocess.run(["redis-cli", "-p", str(self.port), "ping"], capture_output=True, text=True)
            if done.stdout.strip() == "PONG":
                return
            time.sleep(0.05)
        raise RuntimeError("private redis-server did not start")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()  # our own process, by its pid
            self.process.wait(10)
        self.process = None

    def restart(self, down_for: float = 0.5) -> None:
        self.stop()
        time.sleep(down_for)
        self.start()


# -- data and requests ------------------------------------------------------------------------------------------------


def seed(env: dict[str, str], quota: int) -> tuple[int, int]:
    code = f"""
from datetime import timedelta
from server import create_app
from server.services import events
from models import utcnow
app = create_app()
with app.app_context():
    now = utcnow()
    e = events.save_event(title="7·15 公众开放日（压测）", kind="offline",
        registration_opens_at=now - timedelta(minutes=1), registration_closes_at=now + timedelta(days=1),
        max_companions=0, published=True)
    s = events.save_session(e, starts_at=now + timedelta(days=2), ends_at=now + timedelta(days=2, hours=2),
        quota={quota}, venue="城管执法局")
    print(e.id, s.id)
"""
    out = common.run([str(common.VENV_BIN / "python"), "-c", code], env=env).split()
    return int(out[-2]), int(out[-1])


def reset(env: dict[str, str], redis: PrivateRedis) -> None:
    common.psql(
        DATABASE, "TRUNCATE event_notice, registration, event_session, event, audit_log RESTART IDENTITY CASCADE"
    )
    subprocess.run(["redis-cli", "-p", str(redis.port), "FLUSHALL"], capture_output=True, check=True)


def citizen_requests(env: dict[str, str], event_id: int, session_id: int, count: int, run: str) -> list[bytes]:
    """One POST per citizen, each with its own signed session cookie (openid, CSRF secret) and form token."""
    os.environ.update(env)
    from itsdangerous import URLSafeTimedSerializer

    from server import create_app

    app = create_app()
    cookie_signer = app.session_interface.get_signing_serializer(app)  # type: ignore[attr-defined]
    csrf_signer = URLSafeTimedSerializer(app.secret_key, salt="wtf-csrf-token")  # what Flask-WTF signs
    out = []
    for i in range(count):
        raw = hashlib.sha1(f"{run}-{i}".encode()).hexdigest()
        cookie = cookie_signer.dumps(
            {"openid": f"o_surge_{run}_{i:05d}", "snapshot": False, "_permanent": True, "csrf_token": raw}
        )
        body = urlencode({"csrf_token": csrf_signer.dumps(raw), "session_id": session_id, "waitlist": "1"}).encode()
        head = (
            f"POST /m/events/{event_id}/register HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Cookie: session={cookie}\r\nAccept: application/json\r\n"
            f"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        out.append(head.encode() + body)
    return out


def floor_requests(sample: list[bytes]) -> list[bytes]:
    """The same bytes (cookie, body) to the floor's hello route."""
    return [r.replace(b"POST /m/events/", b"POST /?e=", 1) for r in sample]


# -- checks -----------------------------------------------------------------------------------------------------------


def classify(result: DriverResult) -> dict[str, int]:
    counts = {"confirmed": 0, "waiting": 0, "other_4xx": 0, "5xx": 0, "socket_or_timeout": 0}
    for o in result.outcomes:
        if o.status == 0:
            counts["socket_or_timeout"] += 1
        elif o.status >= 500:
            counts["5xx"] += 1
        elif o.status == 200:
            status = json.loads(o.body).get("status")
            counts[status if status in counts else "other_4xx"] += 1
        else:
            counts["other_4xx"] += 1
    return counts


def database_check(session_id: int, quota: int, citizens: int) -> dict[str, Any]:
    row = common.psql(
        DATABASE,
        f"""SELECT (SELECT taken FROM event_session WHERE id = {session_id}),
                   count(*) FILTER (WHERE status = 'CONFIRMED'),
                   count(*) FILTER (WHERE status = 'WAITING'),
                   count(*), count(DISTINCT openid)
            FROM registration WHERE session_id = {session_id}""",
    ).split("|")
    taken, confirmed, waiting, rows, distinct = map(int, row)
    check = {
        "taken": taken,
        "confirmed": confirmed,
        "waiting": waiting,
        "rows": rows,
        "distinct_citizens": distinct,
        "oversold": max(confirmed - quota, 0),
    }
    check["ok"] = confirmed == quota == taken and waiting == citizens - quota and rows == distinct == citizens
    return check


def report(label: str, result: DriverResult, counts: dict[str, int] | None = None) -> None:
    extra = f"; {counts}" if counts else ""
    log(
        f"  {label}: {len(result.outcomes)} requests in {result.wall_s:.2f}s = {result.rps:,.0f}/s, "
        f"p50 {result.percentile(50)} ms, p99 {result.percentile(99)} ms, max {result.percentile(100)} ms{extra}"
    )


def surge_run(
    label: str,
    server: common.Server,
    env: dict[str, str],
    redis: PrivateRedis,
    args: argparse.Namespace,
    *,
    restart_redis: bool,
) -> dict[str, Any]:
    reset(env, redis)
    event_id, session_id = seed(env, args.quota)
    requests = citizen_requests(env, event_id, session_id, args.citizens, label)
    restarted: dict[str, Any] = {}

    def on_progress(done: int) -> None:
        if restart_redis and not restarted and done >= args.citizens // 4:
            restarted["at_response"] = done

            def bounce() -> None:
                t0 = time.monotonic()
                redis.restart()
                restarted["down_s"] = round(time.monotonic() - t0, 2)

            threading.Thread(target=bounce, daemon=True).start()

    with common.CpuSampler([server]) as cpu:
        result = drive("127.0.0.1", server.port, requests, connections=args.connections, on_progress=on_progress)
    time.sleep(0.5 if not restart_redis else 1.0)
    counts = classify(result)
    report(label, result, counts)
    log(f"  {cpu.describe()}")
    if restart_redis:
        log(f"  redis-server restarted after {restarted.get('at_response')} answers (down {restarted.get('down_s')}s)")
    db = database_check(session_id, args.quota, args.citizens)
    log(f"  PostgreSQL: {db}")
    return {
        "requests": len(result.outcomes),
        "wall_s": round(result.wall_s, 3),
        "rps": result.rps,
        "latency_ms": {"p50": result.percentile(50), "p99": result.percentile(99), "max": result.percentile(100)},
        "answers": counts,
        "database": db,
        "redis_restart": restarted or None,
        "cpu": cpu.result,
    }


def main() -> int:
    args = parse_args()
    started = time.monotonic()
    common.install_cleanup()
    if not shutil.which("redis-server"):
        raise SystemExit("redis-server is needed")
    common.ensure_services()
    common.ensure_database(DATABASE)
    redis = PrivateRedis()
    redis.start()
    try:
        env = common.app_env(
            DATABASE, 0, REDIS_URL=f"redis://127.0.0.1:{redis.port}/0", CHECKIN_SIGNING_KEY=SIGNING_KEY
        )
        # "heads": parallel feature branches each add a revision until the lead merges them
        common.run([str(common.VENV_BIN / "flask"), "--app", "wsgi", "db", "upgrade", "heads"], env=env, timeout=120)
        log(f"database {DATABASE} migrated; private redis-server on :{redis.port}")
        gunicorn_args = tuple(args.gunicorn.split())

        # The floor: same driver, same connections, same request bytes, to a route that says hello.
        reset(env, redis)
        event_id, session_id = seed(env, args.quota)
        sample = floor_requests(citizen_requests(env, event_id, session_id, args.citizens, "floor"))
        with common.gunicorn(
            "surge-floor", "bench.gateway.floor:app", env, args=gunicorn_args, ready_path="/"
        ) as floor:
            drive("127.0.0.1", floor.port, sample[:400], connections=args.connections)  # warm-up
            with common.CpuSampler([floor]) as floor_cpu:
                floor_result = drive("127.0.0.1", floor.port, sample, connections=args.connections)
        report("floor", floor_result)
        log(f"  {floor_cpu.describe()}")

        # The least a registration can be (bench/minimal.py): same driver, connections and kind of requests.
        common.psql(DATABASE, minimal.TABLES)
        least_env = {**env, "BENCH_QUOTA": str(args.quota)}
        with common.gunicorn(
            "surge-minimal", "bench.minimal:register", least_env, args=gunicorn_args, ready_path="/"
        ) as least:
            drive("127.0.0.1", least.port, citizen_requests(env, 0, 0, 400, "least-warm"), connections=args.connections)
            with common.CpuSampler([least]) as least_cpu:
                least_result = drive(
                    "127.0.0.1",
                    least.port,
                    citizen_requests(env, 0, 1, args.citizens, "least"),
                    connections=args.connections,
                )
        least_counts = classify(least_result)
        report("minimal", least_result, least_counts)
        log(f"  {least_cpu.describe()}")

        runs: dict[str, Any] = {}
        with common.gunicorn("surge-app", "wsgi:app", env, args=gunicorn_args) as app:
            # Warm-up: workers import, connect and fill their pools on another event (not measured).
            reset(env, redis)
            wid, wsid = seed(env, 50)
            drive("127.0.0.1", app.port, citizen_requests(env, wid, wsid, 400, "warm"), connections=args.connections)
            log(f"surge: {args.citizens} citizens, {args.quota} places, {args.connections} connections at once")
            runs["surge"] = surge_run("surge", app, env, redis, args, restart_redis=False)
            log("surge with redis-server restarted mid-way")
            runs["surge_redis_restart"] = surge_run("redis-restart", app, env, redis, args, restart_redis=True)
            tracebacks = app.log_path.read_text(errors="replace").count("Traceback")
            if tracebacks:
                log(f"app log has {tracebacks} tracebacks: {app.log_path}")
    finally:
        redis.stop()

    verdicts = []
    print()
    print(
        f"gunicorn {args.gunicorn}; {args.citizens} citizens, {args.quota} places, {args.connections} connections; "
        f"{os.cpu_count()} cores"
    )
    print(
        f"{'run':<16} {'req/s':>8} {'ratio':>6} {'p50 ms':>8} {'p99 ms':>8} "
        f"{'conf':>5} {'wait':>5} {'over':>5} {'err':>4}"
    )
    print(
        f"{'floor':<16} {floor_result.rps:>8,.0f} {1:>6.2f} {floor_result.percentile(50):>8} "
        f"{floor_result.percentile(99):>8}"
    )
    least_errors = sum(least_counts[k] for k in ("5xx", "socket_or_timeout", "other_4xx"))
    print(
        f"{'minimal':<16} {least_result.rps:>8,.0f} {least_result.rps / floor_result.rps:>6.2f} "
        f"{least_result.percentile(50):>8} {least_result.percentile(99):>8} {least_counts['confirmed']:>5} "
        f"{least_counts['waiting']:>5} {max(least_counts['confirmed'] - args.quota, 0):>5} {least_errors:>4}"
        "  (Flask + session + form token + Lua + INSERT)"
    )
    for name, res in runs.items():
        ratio = res["rps"] / floor_result.rps if floor_result.rps else 0.0
        res["ratio_to_floor"] = round(ratio, 3)
        errors = res["answers"]["5xx"] + res["answers"]["socket_or_timeout"] + res["answers"]["other_4xx"]
        db = res["database"]
        print(
            f"{name:<16} {res['rps']:>8,.0f} {ratio:>6.2f} {res['latency_ms']['p50']:>8} {res['latency_ms']['p99']:>8} "
            f"{db['confirmed']:>5} {db['waiting']:>5} {db['oversold']:>5} {errors:>4}"
        )
        verdicts += [
            (f"{name}: confirmed == {args.quota}", db["confirmed"] == args.quota, str(db["confirmed"])),
            (f"{name}: waiting == rest", db["waiting"] == args.citizens - args.quota, str(db["waiting"])),
            (f"{name}: 0 oversold, db consistent", db["ok"], f"taken {db['taken']}, rows {db['rows']}"),
            (f"{name}: 0 errors", errors == 0, str(errors)),
        ]
        if name == "surge":
            verdicts += [
                (
                    f"{name}: p99 < {TARGETS['p99_ms']:g} ms",
                    res["latency_ms"]["p99"] < TARGETS["p99_ms"],
                    f"{res['latency_ms']['p99']} ms",
                ),
                (f"{name}: ratio >= {TARGETS['ratio']}", ratio >= TARGETS["ratio"], f"{ratio:.2f}"),
            ]
    print("\n" + common.latency_bound(args.connections, TARGETS["p99_ms"], floor_result.rps))
    print()
    for name, passed, value in verdicts:
        print(f"  {'PASS' if passed else 'FAIL'}  {name:<40} {value}")
    summary = {
        "bench": "surge",
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "cores": os.cpu_count(),
        "gunicorn": args.gunicorn,
        "citizens": args.citizens,
        "quota": args.quota,
        "connections": args.connections,
        "targets": TARGETS,
        "floor": {
            "rps": floor_result.rps,
            "p50": floor_result.percentile(50),
            "p99": floor_result.percentile(99),
            "cpu": floor_cpu.result,
        },
        "minimal": {
            "rps": least_result.rps,
            "p50": least_result.percentile(50),
            "p99": least_result.percentile(99),
            "answers": least_counts,
            "cpu": least_cpu.result,
        },
        "runs": runs,
        "verdicts": [{"check": n, "pass": p, "value": v} for n, p, v in verdicts],
        "all_pass": all(p for _, p, _ in verdicts),
        "elapsed_s": round(time.monotonic() - started, 1),
    }
    path = common.write_json(args.out, summary)
    print(f"\nsummary: {path.relative_to(common.ROOT)} (whole run {summary['elapsed_s']}s)")
    return 0 if summary["all_pass"] else 1


if __name__ == "__main__":
    sys.exit(main())
