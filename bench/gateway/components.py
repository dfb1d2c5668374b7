"""CPU and wall time of each step of POST /wechat, measured alone (one thread, bench database and Redis).

    .venv/bin/python -m bench.gateway.components [--n 2000]

Each line is what one message pays for that step; compare with the floor's CPU per request under gunicorn (printed
by bench/gateway/run.sh as cpu-seconds / requests). The bench database is (re)created, migrated and seeded first, as
run.sh does. Rows written here carry dedupe keys starting with "x:" and are deleted at the end.
"""

from __future__ import annotations

import argparse
import os
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from bench import common
from bench.gateway.__main__ import DATABASE, REDIS_DB, Messages, prepare


def measure(name: str, n: int, step: Callable[[int], Any], results: list[tuple[str, float, float]]) -> None:
    for i in range(n, n + 50):  # warm-up, on items the measured loop does not use
        step(i)
    wall, cpu = time.perf_counter(), time.process_time()
    for i in range(n):
        step(i)
    wall, cpu = (time.perf_counter() - wall) / n * 1000, (time.process_time() - cpu) / n * 1000
    results.append((name, cpu, wall))
    print(f"  {name:<62} {cpu:7.3f} ms CPU {wall:7.3f} ms wall", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.gateway.components", description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=2000)
    n = parser.parse_args().n

    env = common.app_env(DATABASE, REDIS_DB)
    prepare(env, wrk=False)
    os.environ.update(env)
    import sqlalchemy as sa
    from flask import Flask

    from handlers import router
    from models import InboundMessage
    from server import create_app
    from server.extensions import db, get_redis
    from server.services import inbound
    from server.wechat import msglog
    from server.wechat.protocol import parse_xml, render_reply, signature

    app = create_app()
    messages = Messages()
    plain = [messages.one(False) for _ in range(n + 50)]
    aes = [messages.one(True) for _ in range(n + 50)]
    results: list[tuple[str, float, float]] = []
    run = str(uuid.uuid4())[:8]

    print("whole requests (Flask test client, handler on the gateway's pool):")
    floor = Flask("floor")
    floor.add_url_rule("/", "hello", lambda: "hello", methods=["POST"])
    floor_client, client = floor.test_client(), app.test_client()
    measure("floor app, same client", n, lambda i: floor_client.post("/", data=plain[i][1]), results)
    measure("POST /wechat plaintext", n, lambda i: client.post(plain[i][0], data=plain[i][1]), results)
    measure("POST /wechat AES", n, lambda i: client.post(aes[i][0], data=aes[i][1]), results)

    print("steps:")
    data = parse_xml(plain[0][1])
    with app.app_context():
        redis = get_redis()
        measure(
            "Redis SET NX EX (Gateway._claim)", n, lambda i: redis.set(f"x:{run}:{i}", b"", nx=True, ex=60), results
        )
        measure(
            "Redis SET EX (Gateway._publish)", n, lambda i: redis.set(f"x:{run}:{i}", b"reply" * 60, ex=60), results
        )
        pipe_keys = iter(range(10**9))

        def claim_and_publish_pipelined(i: int) -> None:
            k = next(pipe_keys)
            redis.pipeline(transaction=False).set(f"y:{run}:{k}", b"", nx=True, ex=60).set(
                f"y:{run}:{k}", b"reply" * 60, ex=60
            ).execute()

        measure("  both in one pipeline (for comparison)", n, claim_and_publish_pipelined, results)

    with app.app_context():
        engine = db.engine
    conn = engine.connect().execution_options(isolation_level="AUTOCOMMIT")  # as the writer thread holds it
    batches = iter(range(10**9))

    def write_batch(size: int) -> Callable[[int], None]:
        def step(i: int) -> None:
            if i % size:
                return  # the batch's first row writes the whole batch: the loop's n rows cost n / size writes
            b = next(batches)
            rows = [
                msglog._Insert({**inbound.row_for(data, f"x:{run}:w{size}:{b}:{k}"), "reply": "<xml>reply</xml>"})
                for k in range(size)
            ]
            msglog.write(conn, rows, [])

        return step

    measure("message log, batch of 1 (one autocommit INSERT)", n, write_batch(1), results)
    measure("  per row in batches of 8", n, write_batch(8), results)
    measure("  per row in batches of 32", n, write_batch(32), results)
    writer = msglog.MessageLog(app)
    measure(
        "MessageLog.insert through the writer thread (one at a time)",
        n,
        lambda i: writer.insert({**inbound.row_for(data, f"x:{run}:t:{i}"), "reply": "<xml>reply</xml>"}),
        results,
    )
    conn.close()

    with app.app_context():
        message = router.parse(data)
        measure("parse_xml (plaintext body)", n, lambda i: parse_xml(plain[i][1]), results)
        measure("signature (sha1 of sorted parts)", n, lambda i: signature("benchtoken", "1", "2"), results)
        measure(
            "router.parse + dispatch (keyword match, cached rules)",
            n,
            lambda i: router.dispatch(router.parse(data)),
            results,
        )
        measure("render_reply (wechatpy create_reply)", n, lambda i: render_reply("hello", message), results)
        cipher = app.extensions["wechat_cipher"]
        envelopes = [parse_xml(body) for _, body in aes]
        from urllib.parse import parse_qs, urlsplit

        qs = [{k: v[0] for k, v in parse_qs(urlsplit(path).query).items()} for path, _ in aes]
        measure(
            "Cipher.decrypt (AES + msg_signature)",
            n,
            lambda i: cipher.decrypt(envelopes[i], qs[i]["msg_signature"], qs[i]["timestamp"], qs[i]["nonce"]),
            results,
        )
        reply_xml = render_reply("您好！" * 10, message)
        measure("Cipher.encrypt (reply)", n, lambda i: cipher.encrypt(reply_xml, "nonce"), results)

    def app_context(i: int) -> None:
        with app.app_context():
            pass

    measure("app_context push/pop", n, app_context, results)
    pool = ThreadPoolExecutor(max_workers=32)
    measure(
        "ThreadPoolExecutor submit + result (Gateway.handle's hop)",
        n,
        lambda i: pool.submit(lambda: None).result(),
        results,
    )
    pool.shutdown()

    with app.app_context():
        table = InboundMessage.__table__
        db.session.execute(sa.delete(table).where(table.c.dedupe_key.like(f"x:{run}:%")))
        db.session.commit()
        get_redis().delete(*[f"x:{run}:{i}" for i in range(n + 50)])
        for k in range(0, next(pipe_keys), 1000):
            get_redis().delete(*[f"y:{run}:{j}" for j in range(k, k + 1000)])


if __name__ == "__main__":
    main()
