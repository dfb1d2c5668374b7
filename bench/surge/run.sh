#!/usr/bin/env bash
# Registration surge: 2,000 citizens at once for 300 places, then again with Redis restarted mid-surge.
# See bench/README.md; everything started is stopped on exit, `timeout` bounds the whole run.
set -euo pipefail
cd "$(dirname "$0")/../.."
exec timeout --kill-after=15 170 .venv/bin/python -m bench.surge "$@"
