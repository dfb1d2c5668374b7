#!/usr/bin/env bash
# Publishing drill: a week of 每日一案 a minute apart, two celery workers and beat, one worker SIGKILLed mid-way.
# See bench/README.md; everything started is stopped on exit, `timeout` bounds the whole run.
set -euo pipefail
cd "$(dirname "$0")/../.."
exec timeout --kill-after=15 720 .venv/bin/python -m bench.publish "$@"
