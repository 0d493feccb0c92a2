"""Downloads into a file."""

from __future__ import annotations

from dlcourse_installer.machine.host import Host


def download(host: Host, url: str, dest: str) -> None:
    """Network downloads are retried: a flaky mirror should not stop the install."""
    host.run(["curl", "-fsSL", "--retry", "3", "--retry-delay", "5", "-o", dest, url])
