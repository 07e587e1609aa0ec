#!/bin/sh
# Prints, one per line, the packages that own the shared libraries the given executables load,
# as the build stage of docker/Dockerfile resolved them. The runtime stage installs exactly
# these, so the list follows the distribution (bookworm's libgrpc++1.51 or noble's
# libgrpc++1.51t64) and the CMake options without a hand-kept list per variant.
#
# libcuda is the one library left out on purpose: it belongs to the host's driver, and the
# NVIDIA container toolkit mounts it into the container at run time.
set -eu

libraries=$(ldd "$@" | awk '$2 == "=>" && $3 ~ /^\// { print $3 }' | grep -v '/libcuda\.so' | sort -u)

# dpkg records the path it unpacked: /usr/lib/... or /lib/... (merged /usr makes both work for
# the loader), and for CUDA the real file behind /usr/local/cuda's links. Ask for every spelling
# in one dpkg-query call (each call reads the whole package database).
candidates() {
  real=$(readlink -f "$1")
  for path in "$1" "$real"; do
    echo "$path"
    case "$path" in
      /usr/*) echo "${path#/usr}" ;;
      *) echo "/usr$path" ;;
    esac
  done
}
owners=$(for library in $libraries; do candidates "$library"; done | sort -u |
  xargs dpkg-query -S 2>/dev/null || true)

packages=""
for library in $libraries; do
  found=""
  for path in $(candidates "$library"); do
    found=$(echo "$owners" | awk -v p="$path" '$NF == p { sub(/:.*/, "", $1); print $1; exit }')
    [ -n "$found" ] && break
  done
  if [ -z "$found" ]; then
    echo "runtime-packages: no package owns $library (needed by $*)" >&2
    exit 1
  fi
  packages="$packages $found"
done
echo "$packages" | tr ' ' '\n' | sed '/^$/d' | sort -u
