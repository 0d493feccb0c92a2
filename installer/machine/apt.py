"""apt and dpkg, one verb each."""

from __future__ import annotations

from dlcourse_installer.machine.host import Host

# Never stop at a debconf question: the installer's own flags answer them.
APT_ENV = {"DEBIAN_FRONTEND": "noninteractive"}


def is_installed(host: Host, package: str) -> bool:
    result = host.query(["dpkg-query", "-W", "-f=${Status}", package])
    return result.ok and result.stdout.strip().endswith("install ok installed")


def missing(host: Host, packages: list[str]) -> list[str]:
    return [p for p in packages if not is_installed(host, p)]


def installed_matching(host: Host, patterns: list[str]) -> list[str]:
    """Installed package names matching dpkg glob patterns (``nvidia-*``)."""
    result = host.query(["dpkg-query", "-W", "-f=${Package} ${Status}\\n", *patterns])
    return sorted(
        line.split()[0]
        for line in result.stdout.splitlines()
        if line.strip().endswith("install ok installed")
    )


def version(host: Host, package: str) -> str | None:
    """The installed version, else the one apt would install; None if apt knows neither."""
    result = host.query(["dpkg-query", "-W", "-f=${Version}", package])
    if result.ok and result.stdout.strip():
        return result.stdout.strip()
    result = host.query(["apt-cache", "show", "--no-all-versions", package])
    for line in result.stdout.splitlines() if result.ok else []:
        key, _, value = line.partition(":")
        if key == "Version":
            return value.strip()
    return None


def upstream_version(host: Host, package: str) -> str | None:
    """The upstream part of an installed package's version: 580.65.06-0ubuntu1 -> 580.65.06."""
    result = host.query(["dpkg-query", "-W", "-f=${Version}", package])
    if not result.ok or not result.stdout.strip():
        return None
    version = result.stdout.strip().split(":")[-1]  # no epoch
    return version.split("-")[0]


def refresh(host: Host) -> None:
    """apt-get update, once a run (a new source, e.g. Grafana's, makes it due again)."""
    if not host.apt_lists_fresh:
        host.run(["apt-get", "update"], env=APT_ENV)
        host.apt_lists_fresh = True


def install(host: Host, packages: list[str]) -> None:
    host.run(["apt-get", "install", "-y", *packages], env=APT_ENV)


def ensure_packages(host: Host, packages: list[str]) -> list[str]:
    """Install what is missing (after refreshing the lists); return what was installed."""
    todo = missing(host, packages)
    if todo:
        refresh(host)
        install(host, todo)
    return todo


def purge(host: Host, packages: list[str]) -> None:
    host.run(["apt-get", "purge", "-y", *packages], env=APT_ENV)
    host.run(["apt-get", "autoremove", "-y"], env=APT_ENV)


def add_ppa(host: Host, ppa: str) -> None:
    host.run(["add-apt-repository", "-y", f"ppa:{ppa}"], env=APT_ENV)
    host.apt_lists_fresh = True  # add-apt-repository updates the lists itself
