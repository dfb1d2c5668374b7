#!/usr/bin/env bash
# Install with dev dependencies, make sure PostgreSQL and Redis are up, run the whole suite against them,
# then a smoke pass on the embedded SQLite default. pytest's "no tests ran" (exit 5) fails the run.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/_venv.sh" dev

if ! pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then
  echo "starting PostgreSQL"
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql)" main start
  for _ in $(seq 30); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 1; done
fi
if ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
  echo "starting Redis"
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no
  for _ in $(seq 30); do redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1 && break; sleep 0.5; done
fi

# Browser tests drive Debian's Chromium (playwright's own browser download cannot work offline);
# the CJK fonts make the console's screenshots legible.
if ! command -v chromium >/dev/null 2>&1 || [ ! -d /usr/share/fonts/opentype/noto ]; then
  echo "installing chromium and CJK fonts"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium fonts-noto-cjk >/dev/null
fi

.venv/bin/ruff check .
.venv/bin/ruff format --check .

status=0
.venv/bin/python -m pytest "$@" || status=$?
if [ "$status" -eq 0 ]; then
  tmp=$(mktemp -d)
  TEST_DATABASE_URL="sqlite:///$tmp/smoke.db" .venv/bin/python -m pytest -m smoke -q -p no:randomly || status=$?
  rm -rf "$tmp"
fi
[ "$status" -eq 5 ] && echo "no tests ran: that is a failure" >&2
exit "$status"
