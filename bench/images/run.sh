#!/usr/bin/env bash
# Image processing: 200 synthetic 12 MP JPEGs → cover, thumbnail and in-article versions with watermark,
# against a bare Pillow loop (open + draft + thumbnail + save) on the same files in the same run.
set -euo pipefail
cd "$(dirname "$0")/../.."
exec timeout --kill-after=15 600 .venv/bin/python bench/images/run.py "$@"
