"""gunicorn settings for production and the benches: `gunicorn -c gunicorn.conf.py wsgi:app`.

Command-line flags and GUNICORN_CMD_ARGS override these.
"""

import gc

workers = 4
worker_class = "gthread"
threads = 8  # the pool (DB_POOL_SIZE) is sized for these
backlog = 2048
# gunicorn 27's control socket is one path per user: instances side by side on a host would take it from each other,
# and nothing here uses gunicornc.
control_socket_disable = True
# Off by default (nginx logs requests); with --access-logfile - each line names the request as the app's lines do.
# The path without its query: /wechat's carries signatures and the sender's openid, OAuth callbacks a code.
access_log_format = '%(h)s "%(m)s %(U)s" %(s)s %(B)s %(M)sms [%({x-request-id}o)s]'


def post_worker_init(worker: object) -> None:  # gunicorn calls it in each worker once the app is loaded
    # The ~200k objects of the loaded app never die: freezing them keeps every full collection from walking them
    # (100-240 ms pauses per worker under load), and a higher first threshold collects 10x less often.
    # Gateway bench, 6 runs each: p99 62-183 ms before, 54-96 ms after.
    gc.collect()
    gc.freeze()
    gc.set_threshold(7000, 10, 10)
