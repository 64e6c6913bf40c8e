#!/usr/bin/env bash
# Installs Debian's nginx for the tests that put the tier behind a real reverse proxy, when it is missing.
set -euo pipefail
if command -v nginx >/dev/null || [ -x /usr/sbin/nginx ]; then
  exit 0
fi
if [ "$(id -u)" != "0" ]; then
  echo "install-nginx: nginx is missing and we are not root; run: sudo apt-get install nginx-light" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends nginx-light >/dev/null
/usr/sbin/nginx -v
