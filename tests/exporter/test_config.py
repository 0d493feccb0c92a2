from pathlib import Path

import pytest

from dlcourse_exporter import config as exporter_config
from dlcourse_exporter.config import ConfigError

DEFAULTS = {"gpu": True, "processes": True, "extra": False}
TOKEN_FILE: Path


@pytest.fixture(autouse=True)
def token_file(tmp_path):
    """The exporter requires its bearer token: load() below passes one."""
    global TOKEN_FILE
    TOKEN_FILE = tmp_path / "web-token"
    TOKEN_FILE.write_text("t0ken\n")


def load(argv, defaults, environ=None):
    return exporter_config.load([*argv, f"--web.token-file={TOKEN_FILE}"], defaults, environ)


def test_the_bearer_token_is_required():
    with pytest.raises(ConfigError, match="no bearer token: set --web.token-file"):
        exporter_config.load([], DEFAULTS, environ={})
    config, _ = load([], DEFAULTS, environ={})
    assert config.web_token == "t0ken" and "t0ken" not in repr(config)


def test_defaults_bind_localhost_and_run_gpu_only():
    config, check = load([], DEFAULTS, environ={})
    assert (config.listen_host, config.listen_port) == ("127.0.0.1", 9945)
    assert config.collectors == {"gpu", "processes"}
    assert not config.hub_configured and not check


def test_flag_beats_env_beats_file(tmp_path):
    toml = tmp_path / "c.toml"
    toml.write_text('[collection]\ninterval = 9\n[hub]\ninterval = 30\n[log]\nlevel = "debug"\n')
    env = {"DLCOURSE_COLLECTION_INTERVAL": "7", "DLCOURSE_LOG_LEVEL": "warning"}
    config, _ = load(["--config.file", str(toml), "--collection.interval=3"], DEFAULTS, env)
    assert config.interval == 3.0
    assert config.log_level == "warning"
    assert config.hub_interval == 30.0


def test_collector_switches_from_flags_env_and_file(tmp_path):
    toml = tmp_path / "c.toml"
    toml.write_text("[collectors]\nextra = true\n")
    config, _ = load(
        ["--config.file", str(toml), "--no-collector.gpu"],
        DEFAULTS,
        {"DLCOURSE_COLLECTOR_PROCESSES": "false"},
    )
    assert config.collectors == {"extra"}


def test_hub_from_jupyterhub_service_environment():
    env = {"JUPYTERHUB_API_URL": "http://127.0.0.1:8081/hub/api/", "JUPYTERHUB_API_TOKEN": "s3"}
    config, _ = load([], DEFAULTS, env)
    assert config.hub_url == "http://127.0.0.1:8081/hub/api"
    assert config.hub_token == "s3"
    assert "s3" not in repr(config)  # secrets never reach logs through repr


def test_token_file(tmp_path):
    token = tmp_path / "token"
    token.write_text("abc\n")
    config, _ = load(["--hub.url=http://h/hub/api", f"--hub.token-file={token}"], DEFAULTS, {})
    assert config.hub_token == "abc"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--collector.nope"], "unknown collector 'nope'"),
        (["--web.listen-address=nohost"], "must be HOST:PORT"),
        (["--collection.interval=0"], "must be a number of seconds from 0.1 to 3600"),
        # Why 7: nan busy-looped, inf froze the data, 1e-9 was a busy loop too.
        (["--collection.interval=nan"], "must be a number of seconds"),
        (["--collection.interval=inf"], "must be a number of seconds"),
        (["--collection.interval=1e-9"], "must be a number of seconds"),
        (["--hub.interval=-inf"], "must be a number of seconds"),
        (["--hub.timeout=1e400"], "must be a number of seconds"),
        (["--hub.max-users=0"], "must be a whole number from 1"),
        (["--hub.max-users=2.5"], "must be a whole number"),
        (["--web.max-connections=1"], "must be a whole number from 8"),
        (["--web.listen-address=notahost.invalid:9945"], "does not resolve"),
        (["--web.listen-address= 127.0.0.1:9945"], "the host an IP address or a name"),
        (["--web.listen-address=[::1:9945"], "the host an IP address or a name"),
        (["--hub.url=http://"], "has no host"),
        (["--hub.url=http://[bad"], "is not a valid URL"),
        (["--hub.url=http://h:99999/hub/api"], "is not a valid URL"),
        (["--hub.url= http://h/hub/api"], "must not contain spaces"),
        (
            ["--hub.url=http://h", "--hub.token-file=/nonexistent/t"],
            "hub token file /nonexistent/t",
        ),
        (["--hub.url=ftp://h"], "must start with http"),
        (["--log.level=loud"], "log level 'loud'"),
        (["--path.procfs=/nonexistent"], "is not a directory"),
        (["--bogus"], "unrecognized arguments"),
    ],
)
def test_bad_input_is_one_line_error(argv, message):
    with pytest.raises(ConfigError) as error:
        load(argv, DEFAULTS, {"JUPYTERHUB_API_TOKEN": "t"} if "hub.url" in str(argv) else {})
    assert message in str(error.value)
    assert "\n" not in str(error.value)


def test_all_errors_reported_at_once():
    with pytest.raises(ConfigError) as error:
        load(["--collection.interval=-1", "--log.level=x", "--hub.url=x"], DEFAULTS, {})
    assert str(error.value).count(";") >= 2


def test_bad_toml_and_unknown_keys(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[web\n")
    with pytest.raises(ConfigError, match="config file"):
        load(["--config.file", str(bad)], DEFAULTS, {})
    unknown = tmp_path / "unknown.toml"
    unknown.write_text("[web]\nlisten = 1\n")
    with pytest.raises(ConfigError, match="unknown setting 'web.listen'"):
        load(["--config.file", str(unknown)], DEFAULTS, {})


def test_numbers_in_range_and_listen_addresses_pass():
    config, _ = load(
        ["--collection.interval=0.1", "--hub.max-users=5", "--web.listen-address=[::1]:9"],
        DEFAULTS,
        {},
    )
    assert (config.interval, config.hub_max_users) == (0.1, 5)
    assert (config.listen_host, config.listen_port) == ("::1", 9)
    config, _ = load(["--web.listen-address=localhost:9945"], DEFAULTS, {})
    assert config.listen_host == "localhost"


def test_token_from_the_environment_is_stripped():
    # Why 7: a trailing newline was sent to the hub and reported as "unreachable".
    env = {"JUPYTERHUB_API_URL": "http://h/hub/api", "JUPYTERHUB_API_TOKEN": "s3cret\n"}
    config, _ = load([], DEFAULTS, env)
    assert config.hub_token == "s3cret"
    with pytest.raises(ConfigError, match="no token"):
        load([], DEFAULTS, {**env, "JUPYTERHUB_API_TOKEN": " \n"})


def test_credentials_in_a_bad_hub_url_are_not_repeated():
    with pytest.raises(ConfigError) as error:
        load(["--hub.url=http://me:s3cret@[bad"], DEFAULTS, {"JUPYTERHUB_API_TOKEN": "t"})
    assert "s3cret" not in str(error.value)


def test_toml_that_is_not_utf8_is_one_line(tmp_path):
    # Why 7: a non-UTF-8 file gave a traceback.
    bad = tmp_path / "latin1.toml"
    bad.write_bytes(b'[log]\nlevel = "d\xe9bug"\n')
    with pytest.raises(ConfigError, match="not UTF-8 text") as error:
        load(["--config.file", str(bad)], DEFAULTS, {})
    assert "\n" not in str(error.value)


def test_toml_numbers_are_checked_too(tmp_path):
    toml = tmp_path / "c.toml"
    toml.write_text("[collection]\ninterval = nan\n")
    with pytest.raises(ConfigError, match="config file collection.interval"):
        load(["--config.file", str(toml)], DEFAULTS, {})
