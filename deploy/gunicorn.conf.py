"""gunicorn settings for postal's API (`gunicorn -c deploy/gunicorn.conf.py 'web:create_app()'`).

Threads, not more processes: a request spends its time waiting on Redis, so a few processes
with several threads each serve many concurrent clients on few cores.
"""

import os

from tasks.settings import Settings

_settings = Settings.from_env()
bind = f"{_settings.api_host}:{_settings.api_port}"
workers = int(os.environ.get("POSTAL_API_PROCESSES", "2"))
worker_class = "gthread"
threads = int(os.environ.get("POSTAL_API_THREADS", "8"))
# A request never waits on a job, only on Redis (bounded socket timeouts), so 30 s is generous.
timeout = 30
graceful_timeout = 20
keepalive = 5
accesslog = "-"
errorlog = "-"
# The request id (web/request_id.py) is read from the response header the app echoes.
access_log_format = '%(h)s "%(r)s" %(s)s %(b)s %(M)sms request_id=%({x-request-id}o)s'
