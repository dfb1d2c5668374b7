"""Benchmark POST /wechat (plaintext and AES) against a bare-Flask floor under one gunicorn configuration.

    bash bench/gateway/run.sh                # or: .venv/bin/python -m bench.gateway [--duration 12] [--py-spy]

Every request is distinct (own MsgId, nonce and signature), so the Redis/database dedupe never short-circuits one;
after each run the message log must hold one row per 200 response.
"""

from __future__ import annotations

import argparse
import math
import os
import shlex
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from bench import common
from bench.common import log

DATABASE, REDIS_DB = "bench", 14
KEYWORD = "你好"
CONTENT = "你好，请问占道经营应该怎么举报？"
REPLY = "您好！城管执法局已收到您的留言，我们会尽快处理。[bench-ok]"
ORIGINAL_ID = "gh_bench0000000"
OPENIDS = 5000  # distinct senders in the pool
TARGETS = {"plain_ratio": 0.55, "aes_ratio": 0.45, "p99_ms": 50.0}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.gateway", description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=12, help="seconds per measured run (default 12)")
    parser.add_argument("--warmup", type=float, default=3, help="seconds of warm-up before each run (default 3)")
    parser.add_argument("--threads", type=int, default=2, help="wrk threads (default 2)")
    parser.add_argument("--connections", type=int, default=32, help="wrk connections (default 32)")
    parser.add_argument(
        "--gunicorn",
        default=" ".join(common.GUNICORN_ARGS),
        help="gunicorn arguments for the app and the floor (default: %(default)s)",
    )
    parser.add_argument("--modes", default="plain,aes", help="which /wechat runs (default plain,aes)")
    parser.add_argument(
        "--no-reference", dest="reference", action="store_false", help="skip the Flask + wechatpy reference runs"
    )
    parser.add_argument(
        "--py-spy",
        choices=("gil", "wall"),
        help="record every worker with py-spy during the measured runs into bench/out/gateway-<mode>-<view>.txt "
        "(collapsed stacks): gil = only threads holding the GIL (where CPU goes), wall = every non-idle thread",
    )
    parser.add_argument("--out", default="gateway.json", help="summary file name under bench/out")
    return parser.parse_args()


# --- setup ----------------------------------------------------------------------------------------------------------


def prepare(env: dict[str, str], *, wrk: bool = True) -> None:
    if wrk:  # the in-process tools (components, profile) need the database only
        common.ensure_wrk()
    common.ensure_services()
    common.ensure_database(DATABASE)
    common.flush_redis(REDIS_DB)
    common.migrate(env)
    common.psql(DATABASE, "TRUNCATE inbound_message, channel, reply_rule, site_setting RESTART IDENTITY")
    common.psql(
        DATABASE,
        "CREATE TABLE IF NOT EXISTS bench_reference_log (dedupe_key varchar(128) PRIMARY KEY, body text NOT NULL,"
        " received_at timestamptz NOT NULL DEFAULT now()); TRUNCATE bench_reference_log",
    )
    seed = (
        "from server import create_app\n"
        "from server.services import replies\n"
        "app = create_app()\n"
        "with app.app_context():\n"
        f"    replies.save_rule(name='bench', match_type='contains', pattern={KEYWORD!r}, reply_text={REPLY!r})\n"
    )
    common.run([str(common.VENV_BIN / "python"), "-c", seed], env=env)
    log(f"database {DATABASE} migrated and seeded (rule: contains {KEYWORD!r}), Redis db {REDIS_DB} flushed")


def account() -> Any:
    from server.wechat.simulator import Account

    env = common.app_env(DATABASE, REDIS_DB)
    return Account(env["WECHAT_TOKEN"], env["WECHAT_APPID"], env["WECHAT_AES_KEY"], ORIGINAL_ID)


class Messages:
    """Distinct signed POST /wechat requests: own MsgId, nonce and signature each, timestamp = now."""

    def __init__(self) -> None:
        self.account = account()
        self.next_id = time.time_ns() // 1000  # microseconds: a later bench run starts above this one's ids
        self.made = 0

    def one(self, aes: bool) -> tuple[str, bytes]:
        from urllib.parse import urlencode

        from server.wechat.simulator import message_xml, signed_request

        msg_id = self.next_id
        self.next_id += 1
        self.made += 1
        openid = f"o_bench_{msg_id % OPENIDS:020d}"
        xml = message_xml(openid, "text", {"Content": CONTENT}, to=ORIGINAL_ID, msg_id=msg_id)
        params, body = signed_request(self.account, xml, aes=aes, nonce=f"{msg_id:x}")
        return "/wechat?" + urlencode(params), body

    def pool(self, prefix: Path, count: int, aes: bool, threads: int) -> int:
        def requests():  # type: ignore[no-untyped-def]
            for _ in range(count):
                path, body = self.one(aes)
                yield common.raw_request("POST", path, body)

        return sum(common.write_pool(prefix, requests(), threads))


def sanity_check(server: common.Server, messages: Messages) -> None:
    """One plaintext and one AES message by urllib, replies decoded: the figures below measure a working path."""
    from server.wechat.simulator import decode_reply

    for aes in (False, True):
        path, body = messages.one(aes)
        request = urllib.request.Request(
            server.url + path, data=body, method="POST", headers={"Content-Type": "text/xml"}
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            reply = decode_reply(messages.account, response.read().decode(), aes=aes)
        if not reply or reply.get("Content") != REPLY:
            raise RuntimeError(f"/wechat ({'aes' if aes else 'plain'}) replied {reply!r}, not the keyword reply")
    log("sanity check: plaintext and AES replies decode to the keyword reply")


# --- runs -----------------------------------------------------------------------------------------------------------


def log_rows() -> tuple[int, int]:
    count, max_id = common.psql(DATABASE, "SELECT count(*), coalesce(max(id), 0) FROM inbound_message").split("|")
    return int(count), int(max_id)


def verify_rows(after_id: int, result: common.WrkResult) -> dict[str, Any]:
    """Rows logged by this run: every 200 must have one; at most the requests still in flight at wrk's stop extra."""
    time.sleep(0.5)  # requests in flight when wrk stopped finish (or not) within their handler budget
    sql = f"""SELECT count(*), count(*) FILTER (WHERE status = 'OK' AND reply LIKE '%[bench-ok]%'),
                     count(DISTINCT dedupe_key)
              FROM inbound_message WHERE id > {after_id}"""
    row = common.psql(DATABASE, sql).split("|")
    rows, good, distinct = map(int, row)
    pool_sent = result.sent - result.error_detail["pool_exhausted"]
    ok = result.ok200 <= rows <= pool_sent and distinct == rows and good == rows
    check = {
        "rows": rows,
        "rows_with_keyword_reply": good,
        "distinct_keys": distinct,
        "ok200": result.ok200,
        "sent": pool_sent,
        "in_flight_at_stop": rows - result.ok200,
        "ok": ok,
    }
    verdict = "OK" if ok else "MISMATCH"
    log(
        f"  message log: {rows} new rows ({good} with the keyword reply, status ok) for {result.ok200} 200s; "
        f"{pool_sent} requests sent, {rows - result.ok200} completed server-side after wrk stopped -> {verdict}"
    )
    return check


def print_result(result: common.WrkResult) -> None:
    lat = result.latency_ms
    errors = ", ".join(f"{k}={v}" for k, v in result.error_detail.items() if v) or "none"
    log(
        f"  {result.label}: {result.rps:,.0f} req/s ({result.completed} in {result.duration_s}s), "
        f"p50 {lat['p50']} ms, p90 {lat['p90']} ms, p99 {lat['p99']} ms, max {lat['max']} ms; errors {result.errors}"
        f" ({errors})"
    )
    if result.first_bad:
        log(f"  first bad reply: {result.first_bad}")


class Runner:
    """One mode's warm-up and measured run against a server, each with its own distinct messages.

    Warm-up: enough messages for a server as fast as the floor (it cannot be faster). Measured run: twice the
    warm-up's rate (a pool that still runs dry shows up as pool_exhausted errors), at most the floor's.
    """

    def __init__(self, messages: Messages, args: argparse.Namespace, pools: Path, wrk: dict, floor_rps: float) -> None:
        self.messages, self.args, self.pools, self.wrk = messages, args, pools, wrk
        self.floor_per_second = floor_rps * 1.25 + 200

    @staticmethod
    def check(mode: str) -> dict[str, str]:
        if mode == "aes":
            return {"check": "contains", "expected": "<Encrypt><![CDATA["}
        return {"check": "contains", "expected": f"<Content><![CDATA[{REPLY}]]></Content>"}

    def warm(self, server: common.Server, mode: str, label: str) -> None:
        """The warm-up, then the measured run's messages made."""
        args, pools, aes = self.args, self.pools, mode == "aes"
        t0 = time.monotonic()
        made = self.messages.pool(
            pools / f"{label}-warmup", int(self.floor_per_second * args.warmup), aes, args.threads
        )
        warm = common.run_wrk(
            f"{label} warm-up",
            server.url,
            pools / f"{label}-warmup",
            duration=args.warmup,
            **self.check(mode),
            **self.wrk,
        )
        if warm.errors:
            print_result(warm)
        per_second = min(self.floor_per_second, warm.rps * 2 + 500)
        made += self.messages.pool(pools / label, int(per_second * args.duration), aes, args.threads)
        log(
            f"{label}: {made} distinct signed requests generated in {time.monotonic() - t0 - warm.duration_s:.1f}s"
            f" (warm-up {warm.rps:,.0f} req/s)"
        )
        time.sleep(0.3)

    def measure(self, server: common.Server, mode: str, label: str) -> tuple[common.WrkResult, common.CpuSampler]:
        args = self.args
        profiler = Profiler(server, label, args.duration, args.py_spy) if args.py_spy else None
        with common.CpuSampler([server]) as cpu:
            result = common.run_wrk(
                label, server.url, self.pools / label, duration=args.duration, **self.check(mode), **self.wrk
            )
        if profiler:
            profiler.finish()
        print_result(result)
        log(f"  {cpu.describe()}; wrk {result.wrk_cpu_s}")
        return result, cpu


class Profiler:
    """py-spy over every worker of a server for one run (optional: pip install py-spy)."""

    def __init__(self, server: common.Server, name: str, duration: float, view: str) -> None:
        self.process: subprocess.Popen[bytes] | None = None
        exe = common.VENV_BIN / "py-spy"
        if not exe.exists():
            log("  py-spy not installed in .venv; skipping the profile")
            return
        self.path = common.OUT / f"gateway-{name}-{view}.txt"
        options = f"--subprocesses --nonblocking --threads --format raw --rate 100 --duration {math.ceil(duration)}"
        if view == "gil":
            options += " --gil"
        cmd = [str(exe), "record", "--pid", str(server.process.pid), *options.split(), "-o", str(self.path)]
        self.process = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def finish(self) -> None:
        if self.process is not None:
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
            log(f"  py-spy profile: {self.path}")


def main() -> int:
    args = parse_args()
    started = time.monotonic()
    common.install_cleanup()
    gunicorn_args = tuple(shlex.split(args.gunicorn))
    env = common.app_env(DATABASE, REDIS_DB)
    prepare(env)
    pools = common.OUT / "pools"
    wrk = {"threads": args.threads, "connections": args.connections}

    messages = Messages()
    # The floor: the same request bytes (size, headers, query) as a plaintext message, to a route that says hello.
    path, body = messages.one(aes=False)
    common.write_pool(
        pools / "floor", [common.raw_request("POST", "/" + path[len("/wechat") :], body)] * args.threads, args.threads
    )
    with common.gunicorn("floor", "bench.gateway.floor:app", env, args=gunicorn_args, ready_path="/") as floor:
        common.run_wrk("floor warm-up", floor.url, pools / "floor", duration=args.warmup, cycle=True, **wrk)
        with common.CpuSampler([floor]) as floor_cpu:
            floor_result = common.run_wrk(
                "floor",
                floor.url,
                pools / "floor",
                duration=args.duration,
                cycle=True,
                check="equals",
                expected="hello",
                **wrk,
            )
    print_result(floor_result)
    log(f"  {floor_cpu.describe()}; wrk {floor_result.wrk_cpu_s}")

    modes = args.modes.split(",")
    run = Runner(messages, args, pools, wrk, floor_result.rps)
    references: dict[str, Any] = {}
    # Flask + wechatpy alone, then with a Redis claim and a durable row: same gunicorn configuration, same kind of
    # requests. What the first leaves is the budget for our own work; the second is the least that work can be.
    for name, app_name in (("ref", "app"), ("ref+db", "stored")) if args.reference else ():
        ref_env = {**env, "BENCH_REPLY": REPLY}
        with common.gunicorn(
            name, f"bench.gateway.reference:{app_name}", ref_env, args=gunicorn_args, ready_path="/"
        ) as ref:
            for mode in modes:
                run.warm(ref, mode, f"{name}-{mode}")
                result, cpu = run.measure(ref, mode, f"{name}-{mode}")
                references[f"{name}-{mode}"] = {**result.summary(), "cpu": cpu.result}
    results: dict[str, Any] = {}
    with common.gunicorn("app", "wsgi:app", env, args=gunicorn_args) as app:
        sanity_check(app, messages)
        for mode in modes:
            run.warm(app, mode, mode)
            _, max_id = log_rows()
            result, cpu = run.measure(app, mode, mode)
            results[mode] = {**result.summary(), "cpu": cpu.result, "message_log": verify_rows(max_id, result)}
        tail = app.log_path.read_text(errors="replace").count("Traceback")
        if tail:
            log(f"app log has {tail} tracebacks: {app.log_path}")

    floor_rps = floor_result.rps
    verdicts = []
    print()
    print(
        f"gunicorn {' '.join(gunicorn_args)}; wrk -t{args.threads} -c{args.connections} -d{args.duration:g}s "
        f"(+{args.warmup:g}s warm-up); {os.cpu_count()} cores"
    )
    print(f"{'run':<13} {'msg/s':>9} {'ratio':>7} {'of ref':>7} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7}  log rows")
    print(
        f"{'floor':<13} {floor_rps:>9,.0f} {1:>7.2f} {'':>7} {floor_result.latency_ms['p50']:>8} "
        f"{floor_result.latency_ms['p99']:>8} {floor_result.errors:>7}"
    )
    what = {"ref": "Flask + wechatpy", "ref+db": "Flask + wechatpy + SET NX + INSERT"}
    for label, res in references.items():
        res["ratio_to_floor"] = round(res["rps"] / floor_rps if floor_rps else 0.0, 3)
        print(
            f"{label:<13} {res['rps']:>9,.0f} {res['ratio_to_floor']:>7.2f} {'':>7} "
            f"{res['latency_ms']['p50']:>8} {res['latency_ms']['p99']:>8} {res['errors']:>7}  "
            f"({what[label.rsplit('-', 1)[0]]})"
        )
    for mode, res in results.items():
        ratio = res["rps"] / floor_rps if floor_rps else 0.0
        res["ratio_to_floor"] = round(ratio, 3)
        of_reference = ""
        if references.get(f"ref-{mode}", {}).get("rps"):
            res["ratio_to_reference"] = round(res["rps"] / references[f"ref-{mode}"]["rps"], 3)
            of_reference = f"{res['ratio_to_reference']:.2f}"
        log_check = res["message_log"]
        print(
            f"{mode:<13} {res['rps']:>9,.0f} {ratio:>7.2f} {of_reference:>7} {res['latency_ms']['p50']:>8} "
            f"{res['latency_ms']['p99']:>8} {res['errors']:>7}  {log_check['rows']} rows / {res['ok200']} 200s "
            f"({'ok' if log_check['ok'] else 'MISMATCH'})"
        )
        target = TARGETS["aes_ratio" if mode == "aes" else "plain_ratio"]
        verdicts += [
            (f"{mode}/floor >= {target}", ratio >= target, f"{ratio:.2f}"),
            (
                f"{mode} p99 < {TARGETS['p99_ms']:g} ms",
                res["latency_ms"]["p99"] < TARGETS["p99_ms"],
                f"{res['latency_ms']['p99']} ms",
            ),
            (f"{mode} zero errors", res["errors"] == 0, str(res["errors"])),
            (f"{mode} one log row per 200", log_check["ok"], f"{log_check['rows']} rows / {res['ok200']} 200s"),
        ]
    print()
    for name, passed, value in verdicts:
        print(f"  {'PASS' if passed else 'FAIL'}  {name:<28} {value}")
    summary = {
        "bench": "gateway",
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "commit": common.run(["git", "rev-parse", "--short", "HEAD"]).strip() if _has_head() else None,
        "cores": os.cpu_count(),
        "gunicorn": list(gunicorn_args),
        "wrk": {**wrk, "duration_s": args.duration, "warmup_s": args.warmup},
        "targets": TARGETS,
        "floor": {**floor_result.summary(), "cpu": floor_cpu.result},
        "reference": references,
        "runs": results,
        "verdicts": [{"check": n, "pass": p, "value": v} for n, p, v in verdicts],
        "all_pass": all(p for _, p, _ in verdicts),
        "elapsed_s": round(time.monotonic() - started, 1),
    }
    path = common.write_json(args.out, summary)
    print(f"\nsummary: {path.relative_to(common.ROOT)} (whole run {summary['elapsed_s']}s)")
    return 0


def _has_head() -> bool:
    return (
        subprocess.run(["git", "rev-parse", "--verify", "-q", "HEAD"], cwd=common.ROOT, capture_output=True).returncode
        == 0
    )


if __name__ == "__main__":
    sys.exit(main())
