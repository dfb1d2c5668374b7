#!/usr/bin/env bash
# Install and run the server on the embedded default: SQLite in instance/, Celery eager, no Redis,
# demo data, and WeChat's API emulated in-process at /wechat-emulator. Nothing else to install.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/_venv.sh"
PORT=${PORT:-5000}
export FLASK_APP=wsgi DEMO=1
export WECHAT_API_BASE=${WECHAT_API_BASE:-http://127.0.0.1:$PORT/wechat-emulator/}
# Where the menu's page buttons and the notices' links point: this demo server.
export PUBLIC_BASE_URL=${PUBLIC_BASE_URL:-http://127.0.0.1:$PORT/}
.venv/bin/flask db upgrade
.venv/bin/flask seed-demo
cat <<MSG

  城管宣传公众号后台 (demo) on http://127.0.0.1:$PORT
  Console: http://127.0.0.1:$PORT/admin/  users admin / editor / reviewer / liaison / officer,
           password Demo-2026-pass
  Send a simulated WeChat message from another terminal:
    .venv/bin/flask --app wsgi wechat send 你好 --url http://127.0.0.1:$PORT/wechat
    .venv/bin/flask --app wsgi wechat send --aes --event subscribe --key qrscene_open_day --url http://127.0.0.1:$PORT/wechat
    .venv/bin/flask --app wsgi wechat send --event CLICK --key CONTACT --url http://127.0.0.1:$PORT/wechat
    .venv/bin/flask --app wsgi wechat send --location 31.2304,121.4737 --url http://127.0.0.1:$PORT/wechat
    .venv/bin/flask --app wsgi wechat send --image /path/to/photo.jpg --url http://127.0.0.1:$PORT/wechat
    .venv/bin/flask --app wsgi wechat send --from o_demo_officer --image /path/to/photo.jpg --url http://127.0.0.1:$PORT/wechat
      (the demo officer: the photo, then a caption text, land in 素材库 at http://127.0.0.1:$PORT/admin/materials)
  What the emulated WeChat was asked to send (template messages, menu): http://127.0.0.1:$PORT/wechat-emulator/_emulator/state
  Signing requests yourself: Token, AppID and EncodingAESKey are the demo defaults in server/config.py
  (WECHAT_TOKEN=demotoken, WECHAT_APPID=wxd000000000000000, DEMO_AES_KEY), or what WECHAT_* say.

MSG
# DEMO_BEAT: this process alone runs the periodic jobs (server/demo.py), not the commands above.
DEMO_BEAT=1 exec .venv/bin/flask run --host 127.0.0.1 --port "$PORT"
