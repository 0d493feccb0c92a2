from pathlib import Path

import pytest

from dlcourse_exporter.collectors import COLLECTORS
from dlcourse_exporter.collectors.base import Collector
from dlcourse_exporter.config import ConfigError
from dlcourse_exporter.config import load as load_config
from dlcourse_exporter.options import Option
from dlcourse_testing.secret_files import REASONS, finishes_within, hostile_secret_files

TOKEN_FILE: Path


@pytest.fixture(autouse=True)
def token_file(tmp_path):
    """The exporter requires its bearer token: load() below passes one."""
    global TOKEN_FILE
    TOKEN_FILE = tmp_path / "web-token"
    TOKEN_FILE.write_text("t0ken\n")


class Extra(Collector):
    """A collector that is off unless asked for, with a setting of its own."""

    name = "extra"
    on_by_default = False
    options = (Option("extra.level", "how much", "1"),)

    def render(self, view):
        return []


def load(argv, environ):
    argv = [*argv, f"--web.token-file={TOKEN_FILE}"]
    return load_config(argv, environ, collectors=(*COLLECTORS, Extra()))


def test_the_bearer_token_is_required():
    with pytest.raises(ConfigError, match="no bearer token: set --web.token-file"):
        load_config([], environ={})
    config, _ = load([], environ={})
    assert config.web_token == "t0ken" and "t0ken" not in repr(config)


def test_defaults_bind_localhost_and_run_everything_but_the_hub():
    config, check = load([], environ={})
    assert (config.listen_host, config.listen_port) == ("127.0.0.1", 9945)
    assert config.collectors == {"gpu", "processes", "kernels", "host", "students"}
    assert config["hub.url"] is None and config["extra.level"] == "1" and not check


def test_flag_beats_env_beats_file(tmp_path):
    toml = tmp_path / "c.toml"
    toml.write_text('[collection]\ninterval = 9\n[hub]\ninterval = 30\n[log]\nlevel = "debug"\n')
    env = {"DLCOURSE_COLLECTION_INTERVAL": "7", "DLCOURSE_LOG_LEVEL": "warning"}
    config, _ = load(["--config.file", str(toml), "--collection.interval=3"], env)
    assert config["collection.interval"] == 3.0
    assert config.log_level == "warning"
    assert config["hub.interval"] == 30.0


def test_collector_switches_from_flags_env_and_file(tmp_path):
    toml = tmp_path / "c.toml"
    toml.write_text("[collectors]\nextra = true\nhost = false\n[extra]\nlevel = 3\n")
    config, _ = load(
        ["--config.file", str(toml), "--no-collector.gpu", "--no-collector.students"],
        {"DLCOURSE_COLLECTOR_PROCESSES": "false", "DLCOURSE_COLLECTOR_KERNELS": "0"},
    )
    assert config.collectors == {"extra"}
    assert config["extra.level"] == "3"  # a collector's own setting, from its declaration


def test_hub_from_jupyterhub_service_environment():
    env = {"JUPYTERHUB_API_URL": "http://127.0.0.1:8081/hub/api/", "JUPYTERHUB_API_TOKEN": "s3"}
    config, _ = load([], env)
    assert config["hub.url"] == "http://127.0.0.1:8081/hub/api/"  # HubClient drops the "/"
    assert config["hub.token"] == "s3"
    assert "hub" in config.collectors
    assert "s3" not in repr(config)  # secrets never reach logs through repr


def test_the_culler_has_a_token_of_its_own(tmp_path):
    culler = tmp_path / "culler-token"
    culler.write_text("cull\n")
    config, _ = load([f"--web.culler-token-file={culler}"], {})
    assert config.culler_token == "cull" and "cull" not in repr(config)
    assert load([], {})[0].culler_token is None  # culls are refused without one
    culler.write_text("t0ken\n")  # Prometheus's: it could forge culls
    with pytest.raises(ConfigError, match="the culler's token must be its own"):
        load([f"--web.culler-token-file={culler}"], {})


def test_token_file(tmp_path):
    token = tmp_path / "token"
    token.write_text("abc\n")
    config, _ = load(["--hub.url=http://h/hub/api", f"--hub.token-file={token}"], {})
    assert config["hub.token"] == "abc"


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
        # Digits str.isdigit() knows but int() refuses ('²') or reads as others ('١٠٠' = 100).
        (["--web.max-connections=²"], "must be a whole number from 8"),
        (["--web.max-connections=١٠٠"], "must be a whole number from 8"),
        (["--web.listen-address=127.0.0.1:²"], "must be HOST:PORT"),
        (["--web.listen-address=127.0.0.1:٩٩٤٥"], "must be HOST:PORT"),
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
        (["--log.level=loud"], "--log.level='loud': must be debug or info"),
        (["--path.procfs=/nonexistent"], "is not a directory"),
        (["--attribution=kubernetes", "--kubernetes.namespace=A_B"], "a Kubernetes namespace"),
        (["--bogus"], "unrecognized arguments"),
    ],
)
def test_bad_input_is_one_line_error(argv, message):
    with pytest.raises(ConfigError) as error:
        load(argv, {"JUPYTERHUB_API_TOKEN": "t"} if "hub.url" in str(argv) else {})
    assert message in str(error.value)
    assert "\n" not in str(error.value)


@pytest.mark.parametrize("what", sorted(REASONS))
@pytest.mark.parametrize(("option", "name"), [("web", "web token file"), ("hub", "hub token file")])
def test_a_token_file_that_would_hang_or_flood_is_one_line(tmp_path, option, name, what):
    path = hostile_secret_files(tmp_path / "hostile")[what]
    tokens = {"web": TOKEN_FILE, "hub": TOKEN_FILE, option: path}
    argv = ["--hub.url=http://h/hub/api", *(f"--{o}.token-file={p}" for o, p in tokens.items())]
    with pytest.raises(ConfigError) as error:
        finishes_within(10, lambda: load_config(argv, environ={}))
    assert f"{name} {path}: {REASONS[what]}" in str(error.value)
    assert "\n" not in str(error.value)


def test_all_errors_reported_at_once():
    with pytest.raises(ConfigError) as error:
        load(["--collection.interval=-1", "--log.level=x", "--hub.url=x"], {})
    assert str(error.value).count(";") >= 2


def test_bad_toml_and_unknown_keys(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[web\n")
    with pytest.raises(ConfigError, match="config file"):
        load(["--config.file", str(bad)], {})
    unknown = tmp_path / "unknown.toml"
    unknown.write_text("[web]\nlisten = 1\n")
    with pytest.raises(ConfigError, match="unknown setting 'web.listen'"):
        load(["--config.file", str(unknown)], {})


def test_numbers_in_range_and_listen_addresses_pass():
    config, _ = load(
        ["--collection.interval=0.1", "--hub.max-users=5", "--web.listen-address=[::1]:9"], {}
    )
    assert (config["collection.interval"], config["hub.max-users"]) == (0.1, 5)
    assert (config.listen_host, config.listen_port) == ("::1", 9)
    config, _ = load(["--web.listen-address=localhost:9945"], {})
    assert config.listen_host == "localhost"


def test_token_from_the_environment_is_stripped():
    # Why 7: a trailing newline was sent to the hub and reported as "unreachable".
    env = {"JUPYTERHUB_API_URL": "http://h/hub/api", "JUPYTERHUB_API_TOKEN": "s3cret\n"}
    config, _ = load([], env)
    assert config["hub.token"] == "s3cret"
    with pytest.raises(ConfigError, match="no token"):
        load([], {**env, "JUPYTERHUB_API_TOKEN": " \n"})


def test_credentials_in_a_bad_hub_url_are_not_repeated():
    with pytest.raises(ConfigError) as error:
        load(["--hub.url=http://me:s3cret@[bad"], {"JUPYTERHUB_API_TOKEN": "t"})
    assert "s3cret" not in str(error.value)


def test_toml_that_is_not_utf8_is_one_line(tmp_path):
    # Why 7: a non-UTF-8 file gave a traceback.
    bad = tmp_path / "latin1.toml"
    bad.write_bytes(b'[log]\nlevel = "d\xe9bug"\n')
    with pytest.raises(ConfigError, match="not UTF-8 text") as error:
        load(["--config.file", str(bad)], {})
    assert "\n" not in str(error.value)


def test_toml_numbers_are_checked_too(tmp_path):
    toml = tmp_path / "c.toml"
    toml.write_text("[collection]\ninterval = nan\n")
    with pytest.raises(ConfigError, match="config file collection.interval"):
        load(["--config.file", str(toml)], {})


KUBERNETES = ["--attribution=kubernetes", "--kubernetes.api-url=http://127.0.0.1:6443"]


def test_kubernetes_attribution_takes_the_chart_s_flags(tmp_path):
    token = tmp_path / "token"
    token.write_text("t")
    config, _ = load(
        [*KUBERNETES, f"--kubernetes.token-file={token}", "--kubernetes.namespace=jhub"],
        environ={"NODE_NAME": "gpu-node-3"},
    )
    assert "kubernetes" in config.collectors
    assert config["kubernetes.node-name"] == "gpu-node-3"
    assert config["kubernetes.namespace"] == "jhub"
    assert config["kubernetes.token-file"] == token  # a path: read again for every request


def test_in_a_pod_the_api_server_is_found_the_standard_way(tmp_path):
    token = tmp_path / "token"
    token.write_text("t")
    (tmp_path / "ca.crt").write_text("")
    environ = {
        "NODE_NAME": "n",
        "KUBERNETES_SERVICE_HOST": "fd00::1",
        "KUBERNETES_SERVICE_PORT": "443",
    }
    argv = ["--attribution=kubernetes", "--kubernetes.namespace=j"]
    argv += [f"--kubernetes.token-file={token}"]
    config, _ = load([*argv, f"--kubernetes.ca-file={tmp_path / 'ca.crt'}"], environ)
    assert config["kubernetes.api-url"] == "https://[fd00::1]:443"


def test_kubernetes_settings_are_checked_at_start():
    with pytest.raises(ConfigError) as error:
        load(["--attribution=kubernetes", "--kubernetes.user-namespaces=true"], environ={})
    message = str(error.value)
    assert "\n" not in message
    for part in (
        "needs --kubernetes.node-name",
        "needs --kubernetes.api-url outside a pod",
        "needs --kubernetes.namespace",
        "--kubernetes.token-file /var/run/secrets/kubernetes.io/serviceaccount/token is no file",
    ):
        assert part in message
    with pytest.raises(ConfigError, match="go together"):
        load(["--collector.kubernetes"], environ={})
    with pytest.raises(ConfigError, match="go together"):
        load([*KUBERNETES, "--no-collector.kubernetes"], environ={"NODE_NAME": "n"})
    with pytest.raises(ConfigError, match="attribution"):
        load(["--attribution=pods"], environ={})


@pytest.mark.parametrize(
    ("where", "argv", "environ"),
    [
        ("--kubernetes.api-url", ["--kubernetes.api-url=http://127.0.0.1:6443"], {}),
        ("--kubernetes.namespace", ["--kubernetes.namespace=jhub"], {}),
        ("--kubernetes.user-namespaces", ["--kubernetes.user-namespaces=true"], {}),
        ("--kubernetes.node-name", [], {"DLCOURSE_KUBERNETES_NODE_NAME": "gpu-1"}),
        ("--kubernetes.token-file", [], {"DLCOURSE_KUBERNETES_TOKEN_FILE": "/t"}),
    ],
)
def test_kubernetes_settings_without_kubernetes_attribution_are_refused(where, argv, environ):
    """Old behaviour: ignored, and --check-config said ok."""
    with pytest.raises(ConfigError) as error:
        load(argv, environ)
    message = str(error.value)
    assert f"{where} is set but applies only with --attribution=kubernetes" in message
    assert "\n" not in message


def test_kubernetes_settings_in_the_config_file_without_the_attribution_are_refused(tmp_path):
    file = tmp_path / "exporter.toml"
    file.write_text('[kubernetes]\nca-file = "/ca.crt"\n')
    with pytest.raises(ConfigError, match="--kubernetes.ca-file is set but applies only with"):
        load([f"--config.file={file}"], {})


def test_what_a_pod_always_has_is_no_kubernetes_setting():
    """NODE_NAME and the in-cluster API address are in every pod's environment: not set by
    the lecturer, so no error without --attribution=kubernetes."""
    environ = {"NODE_NAME": "n", "KUBERNETES_SERVICE_HOST": "10.0.0.1"}
    config, _ = load([], environ)
    assert config["attribution"] == "host"


def test_check_config_refuses_a_stray_kubernetes_flag_with_exit_2(capsys):
    from dlcourse_exporter import cli

    argv = ["--check-config", f"--web.token-file={TOKEN_FILE}", "--kubernetes.namespace=jhub"]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "applies only with --attribution=kubernetes" in err
