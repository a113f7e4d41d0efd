"""Settings come from BARK_* variables and are validated at start-up."""

import pytest
from pydantic import ValidationError

from app.core.settings import Settings


def test_defaults_are_valid(monkeypatch):
    for name in ("BARK_REDIS_URL", "BARK_MODEL", "BARK_API_KEYS"):
        monkeypatch.delenv(name, raising=False)
    s = Settings()
    assert s.redis_url is None and s.port == 8000 and s.api_keys == []
    assert s.redis_prefix == "bark"


def test_env_lists_are_comma_separated(monkeypatch):
    monkeypatch.setenv("BARK_API_KEYS", "alpha, beta,,gamma ")
    monkeypatch.setenv("BARK_WS_ORIGINS", "https://a.example")
    monkeypatch.setenv("BARK_LOG_LEVEL", "debug")
    s = Settings()
    assert s.api_keys == ["alpha", "beta", "gamma"]
    assert s.ws_origins == ["https://a.example"]
    assert s.log_level == "DEBUG"


@pytest.mark.parametrize(
    "env",
    [
        {"BARK_PORT": "70000"},
        {"BARK_DTYPE": "float64"},
        {"BARK_QUEUE_MAX": "0"},
        {"BARK_REDIS_PREFIX": "bad prefix"},
        # a claim must be refreshed more than twice per idle window
        {"BARK_HEARTBEAT_INTERVAL_S": "5", "BARK_CLAIM_IDLE_S": "9"},
        {"BARK_HEARTBEAT_INTERVAL_S": "5", "BARK_HEARTBEAT_TTL_S": "4"},
    ],
)
def test_invalid_settings_fail_at_start_up(monkeypatch, env):
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(ValidationError):
        Settings()


def test_every_field_is_documented():
    for name, field in Settings.model_fields.items():
        assert field.description, f"{name} lacks a description"
