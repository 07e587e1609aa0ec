#!/bin/sh
# Installs the Debian/Ubuntu packages named as arguments that the image does not have yet; used
# by both stages of docker/Dockerfile. Packages already present are skipped without touching apt,
# so a base image that already carries them (an offline debootstrap base made with --include)
# builds with no network, and a stock base (debian:bookworm, nvidia/cuda:*) gets them from its
# configured mirror.
set -eu

missing=""
for package in "$@"; do
  if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q 'install ok installed'; then
    missing="$missing $package"
  fi
done

if [ -z "$missing" ]; then
  echo "install-packages: all $# packages present"
  exit 0
fi

echo "install-packages: installing$missing"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# shellcheck disable=SC2086  # one word per package
apt-get install -y -qq --no-install-recommends $missing
rm -rf /var/lib/apt/lists/*
