"""Typed settings read from the environment: one place, one meaning per variable.

The API, the workers, the stack launcher and the tests all build their configuration here, so
`POSTAL_FETCH_MAX_BYTES` means the same thing on the API host and on a worker host. A bad value
is a `SettingsError` naming the variable, raised at start-up rather than at the first job.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from typing import Any
from urllib.parse import urlsplit, urlunsplit

REDIS_SCHEMES = ("redis", "rediss", "unix")
QUEUE_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,39}$")


class SettingsError(ValueError):
    """Raised when an environment variable holds a value postal cannot use."""


def _positive_int(name: str, raw: str) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name} must be an integer, got {raw!r}") from None
    if value <= 0:
        raise SettingsError(f"{name} must be greater than 0, got {value}")
    return value


def _float(name: str, raw: str, *, zero_ok: bool) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a number, got {raw!r}") from None
    if zero_ok and not value >= 0:  # `not >=` also refuses nan
        raise SettingsError(f"{name} must be 0 or more, got {raw!r}")
    if not zero_ok and not value > 0:
        raise SettingsError(f"{name} must be greater than 0, got {raw!r}")
    return value


def _positive_float(name: str, raw: str) -> float:
    return _float(name, raw, zero_ok=False)


def _non_negative_float(name: str, raw: str) -> float:
    return _float(name, raw, zero_ok=True)


def _tokens(name: str, raw: str) -> tuple[str, ...]:
    tokens = tuple(part.strip() for part in raw.split(",") if part.strip())
    for token in tokens:
        if len(token) < 16:
            raise SettingsError(f"{name}: every token must be at least 16 characters (one is {len(token)})")
    return tokens


def _list(name: str, raw: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in raw.split(",") if part.strip())


def _ports(name: str, raw: str) -> tuple[int, ...]:
    return tuple(_port(name, part) for part in _list(name, raw))


def _bool(name: str, raw: str) -> bool:
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise SettingsError(f"{name} must be true or false, got {raw!r}")


def _port(name: str, raw: str) -> int:
    value = _positive_int(name, raw)
    if value > 65535:
        raise SettingsError(f"{name} must be a TCP port (1-65535), got {value}")
    return value


def _redis_url(name: str, raw: str) -> str:
    scheme = urlsplit(raw).scheme
    if scheme not in REDIS_SCHEMES:
        raise SettingsError(f"{name} must start with one of {', '.join(s + '://' for s in REDIS_SCHEMES)}")
    return raw


def _queues(name: str, raw: str) -> tuple[str, ...]:
    names = tuple(part for part in re.split(r"[,\s]+", raw) if part)
    if not names:
        raise SettingsError(f"{name} must name at least one queue")
    for queue in names:
        if not QUEUE_NAME.match(queue):
            raise SettingsError(
                f"{name}: {queue!r} is not a valid queue name (lowercase letters, digits, _ -)"
            )
    return names


def _non_negative_int(name: str, raw: str) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name} must be an integer, got {raw!r}") from None
    if value < 0:
        raise SettingsError(f"{name} must be 0 or more, got {value}")
    return value


def _host_port(name: str, raw: str) -> tuple[str, int]:
    """`host:port` or `[v6 address]:port`; the port is required (Sentinel has no single default)."""
    text = raw.strip()
    bracketed = re.fullmatch(r"\[([0-9A-Fa-f:.]+)\]:(\d+)", text)
    if bracketed:
        host, port = bracketed.groups()
    else:
        host, sep, port = text.rpartition(":")
        if not sep or not host or ":" in host or not re.fullmatch(r"[A-Za-z0-9._-]+", host):
            raise SettingsError(f"{name}: {raw!r} is not host:port (e.g. sentinel-1.internal:26379)")
    if not port.isdigit() or not 0 < int(port) <= 65535:
        raise SettingsError(f"{name}: {raw!r} does not end in a TCP port (1-65535)")
    return host, int(port)


def _sentinels(name: str, raw: str) -> tuple[tuple[str, int], ...]:
    return tuple(_host_port(name, part) for part in _list(name, raw))


def _master_name(name: str, raw: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9._-]{1,100}", raw):
        raise SettingsError(f"{name} must be a Sentinel master name (letters, digits, . _ -), got {raw!r}")
    return raw


def _text(name: str, raw: str) -> str:
    if not raw.strip():
        raise SettingsError(f"{name} must not be empty")
    return raw


# The port of the Redis `make run` starts itself; it stands for REDIS_URL when that is unset.
LOCAL_REDIS_PORT_VAR = "POSTAL_REDIS_PORT"

# environment variable -> (field, parser). Every variable postal reads is listed here, but for
# LOCAL_REDIS_PORT_VAR above (a stack setting that only supplies a default REDIS_URL).
_PARSERS: dict[str, tuple[str, Callable[[str, str], Any]]] = {
    "REDIS_URL": ("redis_url", _redis_url),
    "POSTAL_REDIS_SOCKET_TIMEOUT": ("redis_socket_timeout", _positive_float),
    "POSTAL_REDIS_CONNECT_TIMEOUT": ("redis_connect_timeout", _positive_float),
    "POSTAL_HOST": ("api_host", _text),
    "POSTAL_PORT": ("api_port", _port),
    "POSTAL_QUEUES": ("queues", _queues),
    "POSTAL_RESULT_TTL": ("result_ttl", _positive_int),
    "POSTAL_FAILURE_TTL": ("failure_ttl", _positive_int),
    "POSTAL_MAX_BATCH": ("max_batch", _positive_int),
    "POSTAL_MAX_CONTENT_LENGTH": ("max_content_length", _positive_int),
    "POSTAL_FETCH_CONNECT_TIMEOUT": ("fetch_connect_timeout", _positive_float),
    "POSTAL_FETCH_READ_TIMEOUT": ("fetch_read_timeout", _positive_float),
    "POSTAL_FETCH_TOTAL_TIMEOUT": ("fetch_total_timeout", _positive_float),
    "POSTAL_FETCH_MAX_BYTES": ("fetch_max_bytes", _positive_int),
    "POSTAL_FETCH_MAX_REDIRECTS": ("fetch_max_redirects", _positive_int),
    "POSTAL_FETCH_USER_AGENT": ("fetch_user_agent", _text),
    "POSTAL_PATTERN_TIMEOUT": ("pattern_timeout", _positive_float),
    "POSTAL_RETRY_DELAY_SCALE": ("retry_delay_scale", _non_negative_float),
    "POSTAL_FETCH_ALLOW": ("fetch_allow", _list),
    "POSTAL_FETCH_PORTS": ("fetch_ports", _ports),
    "POSTAL_API_TOKENS": ("api_tokens", _tokens),
    "POSTAL_PUBLIC_READS": ("public_reads", _bool),
    "POSTAL_HORSE_MAX_JOBS": ("horse_max_jobs", _positive_int),
    "POSTAL_HORSE_MAX_MEMORY_MB": ("horse_max_memory_mb", _positive_int),
    "REDIS_SENTINELS": ("redis_sentinels", _sentinels),
    "REDIS_SENTINEL_MASTER": ("redis_sentinel_master", _master_name),
    "REDIS_SENTINEL_PASSWORD": ("redis_sentinel_password", _text),
    "POSTAL_REDIS_WAIT_REPLICAS": ("redis_wait_replicas", _non_negative_int),
    "POSTAL_REDIS_WAIT_TIMEOUT": ("redis_wait_timeout", _positive_float),
}


@dataclass(frozen=True)
class Settings:
    """Everything configurable, with defaults that run on a laptop."""

    redis_url: str = "redis://127.0.0.1:6379/0"
    # Bounded so that a dead Redis turns into a quick 503, never a hung request.
    redis_socket_timeout: float = 5.0
    redis_connect_timeout: float = 2.0
    api_host: str = "127.0.0.1"
    api_port: int = 5000
    # Workers listen to these in order, so earlier queues are served first.
    queues: tuple[str, ...] = ("high", "default", "low")
    result_ttl: int = 24 * 3600
    failure_ttl: int = 7 * 24 * 3600
    max_batch: int = 1000
    max_content_length: int = 1024 * 1024
    fetch_connect_timeout: float = 5.0
    fetch_read_timeout: float = 10.0
    fetch_total_timeout: float = 30.0
    fetch_max_bytes: int = 5 * 1024 * 1024
    fetch_max_redirects: int = 5
    fetch_user_agent: str = "postal/0.1 (+https://github.com/postal/postal)"
    # SSRF guard (tasks.safe_http): internal networks/hosts a fetch may reach, public ports.
    fetch_allow: tuple[str, ...] = ()
    fetch_ports: tuple[int, ...] = (80, 443)
    pattern_timeout: float = 1.0
    # Multiplies every task's retry delays (0 = retry at once); for drills and test suites.
    retry_delay_scale: float = 1.0
    # Bearer tokens for the API and dashboard; none = open API, allowed on loopback only.
    api_tokens: tuple[str, ...] = ()
    # Let GETs of jobs, queues and workers through without a token.
    public_reads: bool = False
    # A worker replaces its warm horse (tasks.horse) after this many jobs or above this memory.
    horse_max_jobs: int = 1000
    horse_max_memory_mb: int = 1024
    # Redis Sentinel (tasks.connection): when set, the master is found through these and
    # REDIS_URL's host and port are ignored (its scheme, user, password, db and TLS options stay).
    redis_sentinels: tuple[tuple[str, int], ...] = ()
    redis_sentinel_master: str = ""
    redis_sentinel_password: str = ""
    # Replicas that must acknowledge an enqueue before the API answers 202 (Redis WAIT);
    # None = 1 with Sentinel (a failover must not lose an accepted job), 0 without.
    redis_wait_replicas: int | None = None
    redis_wait_timeout: float = 1.0

    def __post_init__(self) -> None:
        """Refuse combinations that cannot work, naming the variables (a half-configured
        Sentinel would otherwise silently fall back to REDIS_URL's host)."""
        if bool(self.redis_sentinels) != bool(self.redis_sentinel_master):
            raise SettingsError("REDIS_SENTINELS and REDIS_SENTINEL_MASTER must be set together (or neither)")
        if self.redis_sentinel_password and not self.redis_sentinels:
            raise SettingsError("REDIS_SENTINEL_PASSWORD is set but REDIS_SENTINELS is not")
        if self.redis_sentinels and urlsplit(self.redis_url).scheme == "unix":
            raise SettingsError(
                "REDIS_URL must be redis:// or rediss:// with REDIS_SENTINELS (Sentinel gives a TCP address)"
            )
        if self.wait_replicas and not self.redis_wait_timeout < self.redis_socket_timeout:
            raise SettingsError(
                "POSTAL_REDIS_WAIT_TIMEOUT must be shorter than POSTAL_REDIS_SOCKET_TIMEOUT "
                f"({self.redis_wait_timeout} >= {self.redis_socket_timeout})"
            )

    @property
    def sentinel(self) -> bool:
        """Whether Redis is reached through Sentinel."""
        return bool(self.redis_sentinels)

    @property
    def wait_replicas(self) -> int:
        """Replica acknowledgements an enqueue waits for (0 = none)."""
        if self.redis_wait_replicas is None:
            return 1 if self.sentinel else 0
        return self.redis_wait_replicas

    def __repr__(self) -> str:
        """Never print tokens or a Redis password (settings end up in logs and tracebacks)."""
        shown = {f.name: getattr(self, f.name) for f in fields(self)}
        shown["api_tokens"] = f"<{len(self.api_tokens)} token(s)>"
        shown["redis_url"] = self._redacted_url()
        shown["redis_sentinel_password"] = "***" if self.redis_sentinel_password else ""
        return "Settings(" + ", ".join(f"{k}={v!r}" for k, v in shown.items()) + ")"

    @classmethod
    def from_mapping(cls, env: Mapping[str, str]) -> Settings:
        """Build settings from a mapping shaped like the environment; unknown keys are ignored."""
        values: dict[str, Any] = {}
        for var, (field_name, parse) in _PARSERS.items():
            raw = env.get(var)
            if raw is not None and raw != "":
                values[field_name] = parse(var, str(raw))
        local_port = env.get(LOCAL_REDIS_PORT_VAR)
        if "redis_url" not in values and local_port:
            # the Redis `make run` starts on that port (postal/stack.py): the `postal` command,
            # `rq -c tasks.rqconfig` and anything else run from the same shell find it too
            values["redis_url"] = f"redis://127.0.0.1:{_port(LOCAL_REDIS_PORT_VAR, local_port)}/0"
        return cls(**values)

    @classmethod
    def from_env(cls) -> Settings:
        """Build settings from `os.environ`."""
        return cls.from_mapping(os.environ)

    @property
    def redis_url_redacted(self) -> str:
        """Where Redis is, passwords replaced by `***`, safe for logs and responses: REDIS_URL, or
        with Sentinel `redis+sentinel://[:***@]host:port,.../master/db` (rq-dashboard's form)."""
        if not self.sentinel:
            return self._redacted_url()
        parts = urlsplit(self.redis_url)
        auth = f"{parts.username or ''}:***@" if parts.password is not None else ""
        hosts = ",".join(f"[{h}]:{p}" if ":" in h else f"{h}:{p}" for h, p in self.redis_sentinels)
        db = parts.path.strip("/") or "0"
        return f"redis+sentinel://{auth}{hosts}/{self.redis_sentinel_master}/{db}"

    def _redacted_url(self) -> str:
        parts = urlsplit(self.redis_url)
        if parts.password is None:
            return self.redis_url
        user = parts.username or ""
        host = parts.hostname or ""
        netloc = f"{user}:***@{host}" + (f":{parts.port}" if parts.port else "")
        return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def environment_variables() -> dict[str, str]:
    """Each environment variable postal reads, mapped to its settings field (for docs and tests)."""
    return {var: field_name for var, (field_name, _) in _PARSERS.items()}
