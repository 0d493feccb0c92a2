#!/usr/bin/env bash
# Installs the Debian packages and npm tools that the tests and the demo run for real
# (Prometheus, Alertmanager, node_exporter, configurable-http-proxy, a C compiler, ...).
# Packages are listed one per line in scripts/apt-packages.txt, optionally followed by a
# command: when that command is already on PATH (e.g. Node.js from NodeSource, whose npm
# conflicts with Debian's), the package is not installed. Safe to rerun.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
missing=()
while read -r pkg command; do
  [ -n "$pkg" ] || continue
  if [ -n "$command" ] && command -v "$command" >/dev/null; then
    continue
  fi
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done < <(sed -e 's/#.*//' "$here/apt-packages.txt")
need_chp=0
command -v configurable-http-proxy >/dev/null || need_chp=1

if [ ${#missing[@]} -eq 0 ] && [ $need_chp -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" != 0 ]; then
  echo "setup-system: missing ${missing[*]:-} ${need_chp:+configurable-http-proxy}; run as root (or install them) first" >&2
  exit 1
fi
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup-system: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
if [ $need_chp -eq 1 ]; then
  echo "setup-system: installing configurable-http-proxy from npm"
  npm install -g --silent configurable-http-proxy >/dev/null
fi
