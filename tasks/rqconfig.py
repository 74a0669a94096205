"""Settings module for the `rq` command line: `rq <command> -c tasks.rqconfig ...`.

RQ reads UPPERCASE names from this module (rq/cli/helpers.py, `read_config_file`), so
`rq info`, `rq requeue` and `rq worker` see the same Redis URL and queue list as postal.
Add `--serializer json` to commands that read jobs: RQ takes the serializer only as a flag.
"""

from tasks.settings import Settings

_settings = Settings.from_env()

REDIS_URL = _settings.redis_url
QUEUES = list(_settings.queues)
