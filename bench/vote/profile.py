"""In-process profile of POST /m/vote/<id>/cast: one thread, no HTTP server, against a freshly seeded bench database.

    .venv/bin/python -m bench.vote.profile [--n 2000] [--top 40] [--sort tottime]

Prints wall and CPU time per vote (this process only: PostgreSQL's and Redis's share is what wall minus CPU leaves),
then cProfile's view (CPU time) of a second batch.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import time

from bench.vote.__main__ import Identities, candidate_ids, client_ip, env, prepare


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.vote.profile", description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=2000, help="votes per batch (default 2000)")
    parser.add_argument("--top", type=int, default=40)
    parser.add_argument("--sort", default="tottime")
    args = parser.parse_args()

    app_env = env()
    measured, _ = prepare(app_env, votes_each=5)
    os.environ.update(app_env)
    from server import create_app

    app = create_app()
    ids = Identities(app_env["SECRET_KEY"])
    candidates = candidate_ids(measured)
    client = app.test_client()
    counter = iter(range(10**9))

    def vote() -> None:
        n = next(counter)
        cookie, token = ids.make(f"o_profile_{n:07d}")
        client.set_cookie("session", cookie)
        response = client.post(
            f"/m/vote/{measured}/cast",
            data={"csrf_token": token, "candidate_id": candidates[n % len(candidates)]},
            headers={"Accept": "application/json", "X-Forwarded-For": client_ip(n), "User-Agent": "Mozilla/5.0 bench"},
        )
        if response.status_code != 200 or b'"ok":true' not in response.data:
            raise RuntimeError(f"unexpected reply {response.status_code}: {response.data[:200]!r}")

    for _ in range(200):  # warm-up: connections, compiled statements
        vote()
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(args.n):
        vote()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    print(f"{args.n} votes in-process: {1000 * wall / args.n:.3f} ms wall, {1000 * cpu / args.n:.3f} ms CPU per vote")

    profiler = cProfile.Profile(time.process_time)  # CPU, not waiting on PostgreSQL/Redis
    profiler.enable()
    for _ in range(args.n):
        vote()
    profiler.disable()
    pstats.Stats(profiler).sort_stats(args.sort).print_stats(args.top)


if __name__ == "__main__":
    main()
