#!/usr/bin/env bash
# Benchmark POST /wechat (plaintext, AES) against a bare-Flask floor; see bench/README.md.
# Everything it starts is stopped on exit; `timeout` bounds the whole run (SIGTERM -> cleanup in Python).
set -euo pipefail
cd "$(dirname "$0")/../.."
exec timeout --kill-after=15 170 .venv/bin/python -m bench.gateway "$@"
