"""In-process profile of POST /wechat: one thread, no HTTP server, no client, against the bench database and Redis.

    .venv/bin/python -m bench.gateway.profile [--n 3000] [--aes] [--inline] [--top 40]

Prints wall and CPU time per message, then cProfile's view. The handler normally runs on the gateway's thread pool,
which cProfile cannot see; --inline swaps the pool for one that runs the work in the calling thread (the handoff's
own cost is the difference between a run with and without --inline). The bench database is (re)created, migrated
and seeded first, as run.sh does.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import time
from concurrent.futures import Future
from typing import Any

from bench import common
from bench.gateway.__main__ import DATABASE, REDIS_DB, REPLY, Messages, prepare


class InlineExecutor:
    """Runs submitted work at once in the caller's thread (only for profiling)."""

    def submit(self, fn: Any, *args: Any) -> Future[Any]:
        future: Future[Any] = Future()
        try:
            future.set_result(fn(*args))
        except BaseException as exc:  # noqa: BLE001  (handed to the caller like the real pool does)
            future.set_exception(exc)
        return future


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.gateway.profile", description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=3000, help="messages to profile (default 3000)")
    parser.add_argument("--aes", action="store_true", help="safe mode (AES) messages")
    parser.add_argument("--inline", action="store_true", help="run the handler in the request thread (see above)")
    parser.add_argument("--top", type=int, default=40, help="rows of the profile to print")
    parser.add_argument("--sort", default="tottime", help="pstats sort key (default tottime; e.g. cumulative)")
    parser.add_argument("--save", help="also dump the raw profile here (for pstats, snakeviz ...)")
    args = parser.parse_args()

    env = common.app_env(DATABASE, REDIS_DB)
    prepare(env, wrk=False)
    os.environ.update(env)
    from server import create_app

    app = create_app()
    gateway = app.extensions["wechat_gateway"]
    if args.inline:
        inline = InlineExecutor()
        gateway._pool = lambda: inline  # type: ignore[method-assign]
    messages = Messages()
    requests = [messages.one(args.aes) for _ in range(args.n + 200)]
    client = app.test_client()

    def send(path: str, body: bytes) -> None:
        response = client.post(path, data=body, content_type="text/xml")
        if response.status_code != 200 or (not args.aes and REPLY.encode() not in response.data):
            raise RuntimeError(f"unexpected reply {response.status_code}: {response.data[:200]!r}")

    for path, body in requests[:200]:  # warm-up: connections, caches, compiled statements
        send(path, body)
    timed = requests[200:]
    wall, cpu = time.perf_counter(), time.process_time()
    for path, body in timed:
        send(path, body)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    mode = ("AES" if args.aes else "plaintext") + (", handler inline" if args.inline else ", handler on the pool")
    print(
        f"{args.n} {mode} messages in-process: {1000 * wall / args.n:.3f} ms wall, "
        f"{1000 * cpu / args.n:.3f} ms CPU per message (all threads of this process)"
    )

    more = [messages.one(args.aes) for _ in range(args.n)]
    profiler = cProfile.Profile()
    profiler.enable()
    for path, body in more:
        send(path, body)
    profiler.disable()
    if args.save:
        profiler.dump_stats(args.save)
    stats = pstats.Stats(profiler)
    stats.sort_stats(args.sort).print_stats(args.top)


if __name__ == "__main__":
    main()
