#!/usr/bin/env bash
# Benchmark the statistics dashboard and the monthly report over 3 years of synthetic data, against /readyz.
set -euo pipefail
cd "$(dirname "$0")/../.."
exec timeout --kill-after=15 170 .venv/bin/python -m bench.stats "$@"
