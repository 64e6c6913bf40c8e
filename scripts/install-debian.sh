#!/usr/bin/env bash
# Installs Debian packages a test needs when the program it needs is missing:
#   install-debian.sh PROGRAM PACKAGE...   (e.g. /usr/sbin/nginx nginx-light)
set -euo pipefail
program="$1"
shift
if [ -x "$program" ]; then
  exit 0
fi
if [ "$(id -u)" != "0" ]; then
  echo "install-debian: $program is missing and we are not root; run: sudo apt-get install $*" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "$@" >/dev/null
echo "install-debian: installed $*"
