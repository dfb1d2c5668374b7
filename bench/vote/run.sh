#!/usr/bin/env bash
# Benchmark POST /m/vote/<id>/cast (1,000 citizens, 5,000 votes, 200 connections) against the bare-Flask floor.
set -euo pipefail
cd "$(dirname "$0")/../.."
exec timeout --kill-after=15 170 .venv/bin/python -m bench.vote "$@"
