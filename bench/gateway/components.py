"""CPU and wall time of each step of POST /wechat, measured alone (one thread, bench database and Redis).

    .venv/bin/python -m bench.gateway.components [--n 2000]

Each line is what one message pays for that step; compare with the floor's CPU per request under gunicorn (printed
by bench/gateway/run.sh as cpu-seconds / requests). Run `bash bench/gateway/run.sh` once first (it seeds the bench
database). Rows written here carry dedupe keys starting with "x:" and are deleted at the end.
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
from bench.gateway.__main__ import DATABASE, REDIS_DB, Messages


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

    os.environ.update(common.app_env(DATABASE, REDIS_DB))
    import sqlalchemy as sa
    from flask import Flask

    from handlers import router
    from models import InboundMessage, MessageStatus
    from server import create_app
    from server.extensions import db, get_redis
    from server.services import inbound
    from server.wechat.protocol import parse_xml, render_reply, signature

    app = create_app()
    no_ping = create_app({"SQLALCHEMY_ENGINE_OPTIONS": {}})
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

    def orm_record_finish(application: Any, prefix: str) -> Callable[[int], None]:
        def step(i: int) -> None:
            with application.app_context():
                row = inbound.record(data, f"x:{run}:{prefix}:{i}")
                inbound.finish(row, "<xml>reply</xml>", MessageStatus.OK)

        return step

    measure("inbound.record + finish (ORM INSERT, UPDATE, COMMIT; pre-ping)", n, orm_record_finish(app, "a"), results)
    measure("  same without pool_pre_ping", n, orm_record_finish(no_ping, "b"), results)
    table = InboundMessage.__table__

    def core_insert(i: int) -> None:
        with no_ping.app_context():
            db.session.execute(
                sa.insert(table),
                {
                    "dedupe_key": f"x:{run}:c:{i}",
                    "openid": data["FromUserName"],
                    "msg_type": "text",
                    "payload": {},
                    "sent_at": inbound.datetime.now(inbound.UTC),
                    "received_at": inbound.datetime.now(inbound.UTC),
                    "status": MessageStatus.OK,
                    "reply": "<xml>reply</xml>",
                },
            )
            db.session.commit()

    measure("  one Core INSERT with the reply + COMMIT, no ping (comparison)", n, core_insert, results)
    batch: list[dict[str, Any]] = []

    def batched_insert(i: int) -> None:
        batch.append(
            {
                "dedupe_key": f"x:{run}:d:{i}",
                "openid": data["FromUserName"],
                "msg_type": "text",
                "payload": {},
                "sent_at": inbound.datetime.now(inbound.UTC),
                "received_at": inbound.datetime.now(inbound.UTC),
                "status": MessageStatus.OK,
                "reply": "<xml>reply</xml>",
            }
        )
        if len(batch) == 50:
            with no_ping.app_context():
                db.session.execute(sa.insert(table), batch)
                db.session.commit()
            batch.clear()

    measure("  batched Core INSERT, 50 rows per COMMIT (comparison)", n, batched_insert, results)

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

    measure("app_context push/pop (Gateway._process)", n, app_context, results)
    pool = ThreadPoolExecutor(max_workers=32)
    measure(
        "ThreadPoolExecutor submit + result (Gateway.handle's hop)",
        n,
        lambda i: pool.submit(lambda: None).result(),
        results,
    )
    pool.shutdown()

    with app.app_context():
        db.session.execute(sa.delete(table).where(table.c.dedupe_key.like(f"x:{run}:%")))
        db.session.commit()
        get_redis().delete(*[f"x:{run}:{i}" for i in range(n + 50)])
        for k in range(0, next(pipe_keys), 1000):
            get_redis().delete(*[f"y:{run}:{j}" for j in range(k, k + 1000)])


if __name__ == "__main__":
    main()
