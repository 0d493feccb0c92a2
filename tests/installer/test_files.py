"""Writing files on the server: atomic, never through a symlink, secrets for their service only,
Grafana's links on the real name."""

import os
import stat

import pytest

from dlcourse_installer.machine import files
from dlcourse_installer.machine.host import RealHost
from dlcourse_testing.rendered import render_site

needs_root = pytest.mark.skipif(
    os.geteuid() != 0, reason="chown to root needs root (CI runs as root)"
)


@pytest.fixture
def victim(tmp_path):
    """A file elsewhere that a planted symlink points at: it must stay as it is."""
    path = tmp_path / "victim"
    path.write_text("do not touch\n")
    path.chmod(0o600)
    return path


def _unchanged(victim) -> bool:
    return victim.read_text() == "do not touch\n" and stat.S_IMODE(victim.stat().st_mode) == 0o600


@needs_root
def test_a_symlink_at_the_old_fixed_temporary_name_is_not_followed(tmp_path, victim):
    """Old behaviour: write_file wrote through `<path>.dlcourse-tmp` and chmodded its target."""
    host = RealHost(root=str(tmp_path / "root"))
    os.makedirs(host.local("/etc/dlcourse"))
    os.symlink(victim, host.local("/etc/dlcourse/x.conf.dlcourse-tmp"))
    host.write_file("/etc/dlcourse/x.conf", "new\n", mode=0o644)
    assert _unchanged(victim)
    assert host.read_text("/etc/dlcourse/x.conf") == "new\n"
    leftovers = [n for n in os.listdir(host.local("/etc/dlcourse")) if n.startswith(".dlcourse-")]
    assert leftovers == []


@needs_root
def test_a_symlink_at_the_path_is_replaced_not_written_through(tmp_path, victim):
    host = RealHost(root=str(tmp_path / "root"))
    os.makedirs(host.local("/etc/dlcourse"))
    os.symlink(victim, host.local("/etc/dlcourse/x.conf"))
    # Even when the target already has the wanted content, the link is not chmodded through.
    assert files.ensure_file(host, "/etc/dlcourse/x.conf", "do not touch\n", mode=0o644)
    assert _unchanged(victim)
    assert host.is_regular_file("/etc/dlcourse/x.conf")


@needs_root
def test_a_symlink_where_a_secret_should_be_gets_a_fresh_secret(tmp_path, victim):
    host = RealHost(root=str(tmp_path / "root"))
    os.makedirs(host.local("/etc/dlcourse"))
    os.symlink(victim, host.local("/etc/dlcourse/hub-token"))
    assert files.ensure_secret(host, "/etc/dlcourse/hub-token")
    assert _unchanged(victim)
    assert host.is_regular_file("/etc/dlcourse/hub-token")
    assert stat.S_IMODE(os.stat(host.local("/etc/dlcourse/hub-token")).st_mode) == 0o600


def test_changing_a_mode_never_goes_through_a_symlink(tmp_path, victim):
    host = RealHost(root=str(tmp_path / "root"))
    os.makedirs(host.local("/etc"))
    os.symlink(victim, host.local("/etc/link"))
    with pytest.raises(OSError):
        host.set_attrs("/etc/link", mode=0o644, owner="root", group="root")
    assert _unchanged(victim)


@pytest.mark.live
def test_secrets_and_configuration_with_credentials_are_for_their_service_only(tmp_path):
    site = render_site(tmp_path / "site", "--admin", "teacher")
    for path, (owner, _, mode) in site.owners.items():
        assert mode & 0o007 in (0, 4), path  # nothing is writable by others
        if "password" in path or "token" in path:
            assert mode & 0o077 in (0, 0o040) and owner == "root", path
    # Alertmanager's configuration may hold SMTP or webhook credentials.
    assert site.owners["/etc/prometheus/alertmanager.yml"] == ("root", "prometheus", 0o640)


@pytest.mark.live
def test_grafana_links_use_the_servers_real_name(tmp_path):
    """Old behaviour: domain stayed localhost, so links Grafana sends out were wrong."""
    ini = "/etc/grafana/grafana.ini"
    site = render_site(tmp_path / "a", "--admin", "teacher", "--domain", "gpu.example.edu")
    text = site.read(ini)
    assert "\ndomain = gpu.example.edu\n" in text
    assert "\nroot_url = http://gpu.example.edu/services/grafana/\n" in text
    own_port = render_site(tmp_path / "b", "--admin", "t", "--domain", "gpu.example.edu",
                           "--grafana-port", "3443")  # fmt: skip
    assert "\nroot_url = http://gpu.example.edu:3443/\n" in own_port.read(ini)
    https = render_site(tmp_path / "c", "--admin", "t", "--domain", "https://gpu.example.edu")
    assert "\nroot_url = https://gpu.example.edu/services/grafana/\n" in https.read(ini)
    with pytest.raises(AssertionError, match="--domain 'https://x/y': give the server's DNS name"):
        render_site(tmp_path / "d", "--admin", "t", "--domain", "https://x/y")
