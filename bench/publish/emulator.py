"""The WeChat API emulator as its own HTTP server, as WeChat is to the app: another process, over real HTTP.

    .venv/bin/python -m bench.publish.emulator --port 8900 --appid wx... --secret ...

tests/conftest.py serves the same app (server.wechat.emulator.create_emulator) from a thread of the test process.
"""

from __future__ import annotations

import argparse
import logging

from werkzeug.serving import make_server

from server.wechat.emulator import create_emulator


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.publish.emulator", description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--appid", required=True)
    parser.add_argument("--secret", required=True)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # not a line per call: the drill polls the state
    server = make_server(args.host, args.port, create_emulator(args.appid, args.secret), threaded=True)
    print(f"WeChat emulator for {args.appid} on http://{args.host}:{args.port}/", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
