"""In-process CPU profile of a bench's own requests: the raw HTTP bytes a bench sends, replayed one at a time through
the WSGI app (no server, no client sockets), against that bench's freshly prepared database.

    .venv/bin/python -m bench.profile vote  [--n 2000] [--top 40] [--sort tottime]
    .venv/bin/python -m bench.profile surge [--n 2000] ...

Prints wall and CPU time per request (this process only: what PostgreSQL and Redis spend is in wall minus CPU), then
cProfile's view, in CPU time, of a second batch.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import time
from collections.abc import Callable
from pathlib import Path

from werkzeug.test import EnvironBuilder


def environ_of(raw: bytes) -> dict:
    """The WSGI environ of one raw HTTP/1.1 request (as the bench drivers send it)."""
    head, _, body = raw.partition(b"\r\n\r\n")
    request_line, *lines = head.decode("latin-1").split("\r\n")
    method, target, _ = request_line.split(" ")
    headers = [tuple(part.strip() for part in line.split(":", 1)) for line in lines]
    forwarded = dict(headers).get("X-Forwarded-For")
    builder = EnvironBuilder(path=target, method=method, headers=headers, data=body)
    try:
        environ = builder.get_environ()
    finally:
        builder.close()
    environ["REMOTE_ADDR"] = "127.0.0.1" if forwarded else environ.get("REMOTE_ADDR", "127.0.0.1")
    return environ


def vote(n: int) -> tuple[list[bytes], bytes]:
    from bench.vote.__main__ import EXPECTED, build_requests, candidate_ids, env, prepare

    app_env = env()
    measured, _ = prepare(app_env, votes_each=5)
    os.environ.update(app_env)
    citizens = (2 * n + 199) // 5 + 1
    return build_requests(measured, candidate_ids(measured), range(citizens), 5), EXPECTED.encode()


def surge(n: int) -> tuple[list[bytes], bytes]:
    from bench import common
    from bench.surge.__main__ import DATABASE, SIGNING_KEY, citizen_requests, seed

    common.ensure_services()
    common.ensure_database(DATABASE)
    app_env = common.app_env(DATABASE, 12, CHECKIN_SIGNING_KEY=SIGNING_KEY)
    common.run([str(common.VENV_BIN / "flask"), "--app", "wsgi", "db", "upgrade", "heads"], env=app_env, timeout=120)
    common.psql(
        DATABASE, "TRUNCATE event_notice, registration, event_session, event, audit_log RESTART IDENTITY CASCADE"
    )
    common.flush_redis(12)
    total = 2 * n + 200
    event_id, session_id = seed(app_env, total // 7)  # like the bench: most land on the waiting list
    os.environ.update(app_env)
    return citizen_requests(app_env, event_id, session_id, total, "profile"), b'"created":true'


BENCHES: dict[str, Callable[[int], tuple[list[bytes], bytes]]] = {"vote": vote, "surge": surge}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__.split("\n\n")[0])
    parser.add_argument("bench", choices=sorted(BENCHES))
    parser.add_argument("--n", type=int, default=2000, help="requests per batch (default 2000)")
    parser.add_argument("--top", type=int, default=40)
    parser.add_argument("--sort", default="tottime", help="pstats sort key (default tottime; e.g. cumulative)")
    parser.add_argument("--by-package", action="store_true", help="also sum own time per top-level package")
    args = parser.parse_args()

    requests, expected = BENCHES[args.bench](args.n)
    from server import create_app

    app = create_app()
    environs = iter([environ_of(raw) for raw in requests])

    def one() -> None:
        chunks: list[bytes] = []
        status: list[str] = []
        chunks.extend(app(next(environs), lambda s, h, exc=None: status.append(s)))
        body = b"".join(chunks)
        if not status[0].startswith("200") or expected not in body:
            raise RuntimeError(f"unexpected reply {status[0]}: {body[:200]!r}")

    for _ in range(200):  # warm-up: connections, compiled statements
        one()
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(args.n):
        one()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    print(
        f"{args.n} {args.bench} requests in-process: {1000 * wall / args.n:.3f} ms wall,"
        f" {1000 * cpu / args.n:.3f} ms CPU each"
    )

    profiler = cProfile.Profile(time.process_time)  # CPU, not waiting on PostgreSQL/Redis
    profiler.enable()
    for _ in range(args.n):
        one()
    profiler.disable()
    stats = pstats.Stats(profiler)
    stats.sort_stats(args.sort).print_stats(args.top)
    if args.by_package:
        print_by_package(stats, args.n)


def print_by_package(stats: pstats.Stats, n: int) -> None:
    """Own CPU time per top-level package (site-packages name, stdlib, builtins, or this repository's folder)."""
    root = str(Path(__file__).resolve().parent.parent) + "/"
    totals: dict[str, float] = {}
    for (filename, _, _), (_, _, tottime, _, _) in stats.stats.items():  # type: ignore[attr-defined]
        if "site-packages/" in filename:
            package = filename.split("site-packages/", 1)[1].split("/", 1)[0]
        elif filename.startswith(root):
            package = "ours: " + filename[len(root) :].split("/", 1)[0]
        elif filename == "~":
            package = "builtins (C)"
        else:
            package = "stdlib"
        totals[package] = totals.get(package, 0.0) + tottime
    everything = sum(totals.values())
    print(f"own CPU per package, ms per request (all {1000 * everything / n:.3f} ms):")
    for package, seconds in sorted(totals.items(), key=lambda item: -item[1]):
        print(f"  {package:<28} {1000 * seconds / n:7.3f}  {100 * seconds / everything:5.1f} %")


if __name__ == "__main__":
    main()
