#!/usr/bin/env bash
# Builds Orca's Debian base image without a registry: debootstrap a Debian bookworm "minbase"
# root filesystem into a cache folder, add what the worker needs, and `docker import` it under
# the tag docker/Dockerfile.worker and docker/Dockerfile.backend start FROM.
#
# On a machine that can pull images you do not need this: `docker pull debian:bookworm-slim`
# and `docker tag debian:bookworm-slim orca-base:bookworm` gives the Dockerfiles the same start
# (they install ca-certificates and git themselves when missing).
#
# Idempotent: an existing image with the tag is reused (pass --force to rebuild), and the
# rootfs tarball is cached, so a removed image is re-imported in seconds without debootstrap.
#
# Usage: scripts/build-base-image.sh [--force]
# Env:   ORCA_BASE_IMAGE  (default orca-base:bookworm)
#        ORCA_BASE_MIRROR (default http://deb.debian.org/debian)
#        ORCA_BASE_CACHE  (default ${XDG_CACHE_HOME:-$HOME/.cache}/orca/base-image)
set -euo pipefail

image="${ORCA_BASE_IMAGE:-orca-base:bookworm}"
mirror="${ORCA_BASE_MIRROR:-http://deb.debian.org/debian}"
cache="${ORCA_BASE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/orca/base-image}"
# Packages on top of minbase. ca-certificates: HTTPS clones and agent API calls;
# git: the worker clones with the git CLI; openssh-client: ssh:// and user@host:path URLs.
packages="ca-certificates,git,openssh-client"
tarball="$cache/bookworm-minbase.tar"

force=0
[ "${1:-}" = "--force" ] && force=1

if [ "$force" = 0 ] && docker image inspect "$image" >/dev/null 2>&1; then
  echo "==> base image $image exists; reusing it (--force rebuilds)" >&2
  exit 0
fi

mkdir -p "$cache"
if [ "$force" = 1 ] || [ ! -s "$tarball" ]; then
  if ! command -v debootstrap >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ]; then
      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
    else
      echo "!!! debootstrap is missing; install it (apt-get install debootstrap) or run as root" >&2
      exit 1
    fi
  fi
  if [ "$(id -u)" != 0 ]; then
    echo "!!! debootstrap needs root (it creates device nodes and chroots)" >&2
    exit 1
  fi
  rootfs="$cache/rootfs"
  rm -rf "$rootfs" "$tarball.tmp"
  echo "==> debootstrap bookworm (minbase + $packages) into $rootfs" >&2
  debootstrap --variant=minbase --include="$packages" bookworm "$rootfs" "$mirror" >"$cache/debootstrap.log" 2>&1 || {
    echo "!!! debootstrap failed; see $cache/debootstrap.log" >&2
    tail -n 20 "$cache/debootstrap.log" >&2
    exit 1
  }
  # Smaller and reproducible-ish: no package lists, caches or logs in the image.
  chroot "$rootfs" apt-get clean
  rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/log/*.log \
    "$rootfs"/var/log/apt/* "$rootfs"/tmp/* "$rootfs"/root/.bash_history
  # The image gets the resolver and hostname from Docker at run time.
  : >"$rootfs/etc/resolv.conf"
  : >"$rootfs/etc/hostname"
  tar --numeric-owner --xattrs -C "$rootfs" -cf "$tarball.tmp" .
  mv "$tarball.tmp" "$tarball"
  rm -rf "$rootfs"
fi

echo "==> docker import $tarball as $image" >&2
docker import \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'ENV LANG=C.UTF-8' \
  --change 'CMD ["/bin/bash"]' \
  --message "Debian bookworm minbase + $packages (scripts/build-base-image.sh)" \
  "$tarball" "$image" >/dev/null
docker image inspect --format '==> {{index .RepoTags 0}}: {{.Size}} bytes' "$image" >&2
