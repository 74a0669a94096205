"""Settings from the environment: defaults, parsing, and clear errors for bad values."""

from __future__ import annotations

from dataclasses import fields

import pytest

from tasks.settings import Settings, SettingsError, environment_variables


def test_defaults_run_on_a_laptop() -> None:
    """With nothing set, postal talks to a local Redis and serves on 127.0.0.1:5000."""
    settings = Settings.from_mapping({})
    assert settings.redis_url == "redis://127.0.0.1:6379/0"
    assert (settings.api_host, settings.api_port) == ("127.0.0.1", 5000)
    assert settings.queues == ("high", "default", "low")


def test_every_field_has_one_variable() -> None:
    """Each setting is reachable by exactly one environment variable."""
    assert sorted(environment_variables().values()) == sorted(f.name for f in fields(Settings))


def test_values_are_parsed() -> None:
    """Numbers, queue lists and URLs are parsed into their types."""
    settings = Settings.from_mapping(
        {
            "REDIS_URL": "rediss://user:pw@redis.internal:6380/2",
            "POSTAL_PORT": "8080",
            "POSTAL_QUEUES": "urgent, default  bulk",
            "POSTAL_FETCH_MAX_BYTES": "1000",
            "POSTAL_PATTERN_TIMEOUT": "0.25",
            "POSTAL_RETRY_DELAY_SCALE": "0",
        }
    )
    assert settings.api_port == 8080
    assert settings.queues == ("urgent", "default", "bulk")
    assert settings.fetch_max_bytes == 1000
    assert settings.pattern_timeout == 0.25
    assert settings.retry_delay_scale == 0
    assert settings.redis_url_redacted == "rediss://user:***@redis.internal:6380/2"


@pytest.mark.parametrize(
    ("var", "value", "message"),
    [
        ("REDIS_URL", "http://localhost:6379", "REDIS_URL must start with"),
        ("POSTAL_PORT", "abc", "POSTAL_PORT must be an integer"),
        ("POSTAL_PORT", "70000", "TCP port"),
        ("POSTAL_FETCH_MAX_BYTES", "-1", "greater than 0"),
        ("POSTAL_PATTERN_TIMEOUT", "nan", "greater than 0"),
        ("POSTAL_QUEUES", "Default", "not a valid queue name"),
        ("POSTAL_QUEUES", " , ", "at least one queue"),
        ("POSTAL_RETRY_DELAY_SCALE", "-1", "0 or more"),
        ("POSTAL_HOST", "  ", "must not be empty"),
    ],
)
def test_bad_values_name_the_variable(var: str, value: str, message: str) -> None:
    """A bad value raises SettingsError that names the variable and the problem."""
    with pytest.raises(SettingsError, match=message) as info:
        Settings.from_mapping({var: value})
    assert var in str(info.value)


def test_empty_value_means_default() -> None:
    """An empty variable (VAR= in a unit file) falls back to the default."""
    assert Settings.from_mapping({"POSTAL_PORT": ""}).api_port == 5000


def test_readme_documents_every_variable() -> None:
    """README's configuration tables name every variable postal's code and configs read."""
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    readme = (root / "README.md").read_text()
    sources = [
        *root.glob("tasks/*.py"),
        *root.glob("web/*.py"),
        *root.glob("postal/*.py"),
        *(path for path in root.glob("deploy/*") if path.is_file()),
        root / "supervisord.conf",
    ]
    used = {"WORKERS", *environment_variables()}
    for source in sources:
        used.update(re.findall(r"\bPOSTAL_[A-Z_]+[A-Z]\b", source.read_text()))
    missing = sorted(var for var in used if f"`{var}`" not in readme)
    assert not missing, missing


def test_local_redis_port_stands_for_an_unset_redis_url() -> None:
    """POSTAL_REDIS_PORT (the Redis `make run` starts) is where everything looks when REDIS_URL
    is unset; REDIS_URL wins when both are set, and a bad port is refused by name."""
    assert Settings.from_mapping({"POSTAL_REDIS_PORT": "6391"}).redis_url == "redis://127.0.0.1:6391/0"
    both = {"POSTAL_REDIS_PORT": "6391", "REDIS_URL": "redis://example.internal:6380/2"}
    assert Settings.from_mapping(both).redis_url == "redis://example.internal:6380/2"
    with pytest.raises(SettingsError, match="POSTAL_REDIS_PORT"):
        Settings.from_mapping({"POSTAL_REDIS_PORT": "99999"})
