from pathlib import Path

import pytest

from rrr.config import Rate, Secret, Settings, parse_rate
from rrr.errors import ConfigError


def settings(tmp_path: Path, **env: str) -> Settings:
    return Settings.from_env({"RRR_HOME": str(tmp_path), **env})


def test_defaults(tmp_path: Path) -> None:
    s = settings(tmp_path)
    assert s.tickers == ("X:BTCUSD", "X:ETHUSD")
    assert s.polygon_ws_url == "wss://socket.massive.com/crypto"
    assert s.polygon_rate_limit == Rate(5, 60.0)
    assert (s.sentiment_interval_s, s.quality_interval_s) == (900, 300)
    assert s.redis_url is None and s.simulated
    assert s.resolved_database_url == f"sqlite:///{tmp_path}/var/rrr.db"
    assert s.log_path == tmp_path / "data_pipeline.log"


@pytest.mark.parametrize(
    ("env", "names"),
    [
        ({"DATABASE_URL": "mysql://db"}, "DATABASE_URL"),
        ({"REDIS_URL": "localhost:6379"}, "REDIS_URL"),
        ({"POLYGON_WS_URL": "https://socket.massive.com"}, "POLYGON_WS_URL"),
        ({"SENTIMENT_INTERVAL": "-5"}, "SENTIMENT_INTERVAL"),
        ({"QUALITY_INTERVAL": "soon"}, "QUALITY_INTERVAL"),
        ({"RRR_TICKERS": "BTC-USD"}, "RRR_TICKERS"),
        ({"RRR_TICKERS": "X:BTCUSD,X:btcusd"}, "RRR_TICKERS"),
        ({"POLYGON_RATE_LIMIT": "fast"}, "POLYGON_RATE_LIMIT"),
        ({"PERPLEXITY_API": "gpt"}, "PERPLEXITY_API"),
        ({"LOG_LEVEL": "LOUD"}, "LOG_LEVEL"),
        ({"QUALITY_AUTO_REPAIR": "maybe"}, "QUALITY_AUTO_REPAIR"),
    ],
)
def test_malformed_values_name_the_variable(
    tmp_path: Path, env: dict[str, str], names: str
) -> None:
    with pytest.raises(ConfigError, match=names):
        settings(tmp_path, **env)


def test_ticker_error_says_the_expected_form(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="X:BTCUSD"):
        settings(tmp_path, RRR_TICKERS="BTC-USD")


def test_rates() -> None:
    assert parse_rate("5/min") == Rate(5, 60.0)
    assert parse_rate("100/s") == Rate(100, 1.0)
    assert parse_rate("10/2s") == Rate(10, 2.0)
    assert parse_rate("off") is None
    assert parse_rate("100/s").per_second == 100  # type: ignore[union-attr]


def test_massive_key_is_accepted_and_secrets_never_show(tmp_path: Path) -> None:
    s = settings(tmp_path, MASSIVE_API_KEY="pk_live_123456", PERPLEXITY_API_KEY="pplx-abcdef")
    assert s.polygon_api_key == Secret("pk_live_123456")
    assert not s.simulated
    text = repr(s) + str(s) + f"{s.polygon_api_key}"
    assert "pk_live_123456" not in text and "pplx-abcdef" not in text
    assert "***" in repr(s.polygon_api_key)


def test_environment_wins_over_dotenv(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("RRR_TICKERS=X:SOLUSD\nQUALITY_INTERVAL=60\n")
    s = settings(tmp_path, QUALITY_INTERVAL="120")
    assert s.tickers == ("X:SOLUSD",)
    assert s.quality_interval_s == 120


def test_relative_sqlite_path_resolves_against_home(tmp_path: Path) -> None:
    s = settings(tmp_path, DATABASE_URL="sqlite:///data/x.db")
    assert s.resolved_database_url == f"sqlite:///{tmp_path}/data/x.db"
    s = settings(tmp_path, DATABASE_URL="sqlite:////abs/x.db")
    assert s.resolved_database_url == "sqlite:////abs/x.db"


@pytest.mark.parametrize("bad", ["5/0min", "5/.min", "0/s", "5/fortnight", "five/min"])
def test_bad_rates_are_config_errors(bad: str) -> None:
    with pytest.raises(ConfigError, match="POLYGON_RATE_LIMIT"):
        parse_rate(bad)


def test_passwords_in_urls_never_show(tmp_path: Path) -> None:
    s = settings(
        tmp_path,
        DATABASE_URL="postgresql://app:hunter2@db.example:5432/market?sslmode=require",
        REDIS_URL="redis://:r3dis-pass@127.0.0.1:6379/0",
    )
    assert "hunter2" not in repr(s) and "r3dis-pass" not in repr(s)
    assert "postgresql://app:***@db.example:5432/market?sslmode=require" in repr(s)
    with pytest.raises(ConfigError) as caught:
        settings(tmp_path, DATABASE_URL="postgress://u:hunter2@h/db")
    assert "hunter2" not in str(caught.value) and "DATABASE_URL" in str(caught.value)


def test_redact_url_covers_user_info_and_password_parameter() -> None:
    from rrr.config import redact_url

    assert redact_url("postgresql://u:p%40ss@h/db?password=x&sslmode=require") == (
        "postgresql://u:***@h/db?password=***&sslmode=require"
    )
    assert redact_url("redis://127.0.0.1:6379/0") == "redis://127.0.0.1:6379/0"


def test_unix_socket_redis_needs_no_host(tmp_path: Path) -> None:
    assert settings(tmp_path, REDIS_URL="unix:///tmp/redis.sock").redis_url == (
        "unix:///tmp/redis.sock"
    )


def test_time_limits_are_their_own_settings_and_stay_under_the_visibility_timeout(
    tmp_path: Path,
) -> None:
    s = settings(tmp_path)
    assert (s.task_soft_time_limit_s, s.task_time_limit_s, s.visibility_timeout_s) == (
        300,
        330,
        600,
    )
    # A short visibility timeout no longer shrinks the limits behind a user's back ...
    short = settings(tmp_path, RRR_VISIBILITY_TIMEOUT="30", RRR_TASK_SOFT_TIME_LIMIT="20",
                     RRR_TASK_TIME_LIMIT="25")  # fmt: skip
    assert (short.task_soft_time_limit_s, short.task_time_limit_s) == (20, 25)
    # ... and limits that would outlive it, or a soft limit past the hard one, are refused.
    for env in (
        {"RRR_VISIBILITY_TIMEOUT": "12"},
        {"RRR_TASK_SOFT_TIME_LIMIT": "330"},
        {"RRR_TASK_TIME_LIMIT": "600"},
    ):
        with pytest.raises(ConfigError, match=r"RRR_TASK_SOFT_TIME_LIMIT=.* < RRR_TASK_TIME_LIMIT"):
            settings(tmp_path, **env)


@pytest.mark.parametrize(
    ("env", "key"),
    [
        ({"POLYGON_API_KEY": "pk_1"}, "pk_1"),
        ({"POLYGON_REST_URL": "http://127.0.0.1:8766"}, "sim-key"),  # the simulator's key
        ({}, None),  # never a made-up key to the vendor
    ],
)
def test_the_rest_key(tmp_path: Path, env: dict[str, str], key: str | None) -> None:
    rest_key = settings(tmp_path, **env).polygon_rest_key
    assert (rest_key.reveal() if rest_key else None) == key
