"""Settings module for the `rq` command line: `rq <command> -c tasks.rqconfig ...`.

RQ reads UPPERCASE names from this module (rq/cli/helpers.py, `read_config_file`), so
`rq info`, `rq requeue` and `rq worker` see the same Redis as postal.
Add `--serializer json` to commands that read jobs: RQ takes the serializer only as a flag.

With Sentinel, `REDIS_URL` here is None and `SENTINEL` is set: RQ uses `REDIS_URL` first if
it is not None, then `SENTINEL` (rq/cli/helpers.py, `get_redis_from_config`). A `--url` flag or
`RQ_REDIS_URL` in the environment beats this module altogether (rq/cli/helpers.py,
`CliConfig.connection`), so neither may be given with Sentinel.
"""

from typing import Any

from tasks.connection import HEALTH_CHECK_INTERVAL_S, master_kwargs, sentinel_kwargs
from tasks.settings import Settings

_settings = Settings.from_env()

REDIS_URL: str | None = None if _settings.sentinel else _settings.redis_url
SENTINEL: dict[str, Any] | None = None
if _settings.sentinel:
    _master = master_kwargs(_settings)
    SENTINEL = {
        "INSTANCES": list(_settings.redis_sentinels),
        "MASTER_NAME": _settings.redis_sentinel_master,
        "DB": _master.pop("db"),
        "USERNAME": _master.pop("username", None),
        "PASSWORD": _master.pop("password", None),
        "SOCKET_TIMEOUT": _master.pop("socket_timeout"),
        "SSL": _master.pop("ssl"),
        # the rest (connect timeout, TLS files) goes to the master connections as is
        "CONNECTION_KWARGS": {**_master, "health_check_interval": HEALTH_CHECK_INTERVAL_S},
        # RQ passes {} when this is missing, which would leave sentinel sockets unbounded
        "SENTINEL_KWARGS": sentinel_kwargs(_settings),
    }
QUEUES = list(_settings.queues)
