#!/bin/bash
# Builds the mqttlb image with buildah on a machine that reaches Debian's
# package mirror but no image registry (run from anywhere, as root):
#  1. the Debian 12 base, made by mmdebstrap from Debian's packages (minbase,
#     without man pages, docs and locales, like debian:bookworm-slim), cached as
#     $MQTTLB_CACHE/debian-bookworm-minbase.tar (default ~/.cache/mqttlb) and
#     made again when older than MQTTLB_BASE_MAX_AGE_DAYS (default 7, for
#     security updates);
#  2. imported into buildah's storage under the name the Containerfile's FROM
#     uses (BASE, docker.io/library/debian:bookworm-slim), again whenever the
#     tarball changed (the image carries the tarball's sha256 as a label);
#  3. buildah bud --isolation chroot --pull=never --format docker (to keep the
#     HEALTHCHECK) -t $MQTTLB_IMAGE (default localhost/mqttlb:latest).
# MQTTLB_JOBS (default 2) compiler jobs inside the build; MQTTLB_DEBIAN_MIRROR
# (default http://deb.debian.org). MQTTLB_PREBUILT=DIR packages DIR/mqttlb and
# DIR/mqttlb-broker (built on Debian 12) instead of compiling: the build
# context is then deploy/ and those two files only (BINARIES=prebuilt).
# Prints the image name last.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cache=${MQTTLB_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/mqttlb}
base_tar=$cache/debian-bookworm-minbase.tar
base_name=docker.io/library/debian:bookworm-slim
image=${MQTTLB_IMAGE:-localhost/mqttlb:latest}
mirror=${MQTTLB_DEBIAN_MIRROR:-http://deb.debian.org}
max_age=${MQTTLB_BASE_MAX_AGE_DAYS:-7}
for tool in buildah mmdebstrap; do
  command -v "$tool" >/dev/null || { echo "build-image: $tool is not installed (apt-get install $tool)" >&2; exit 1; }
done
mkdir -p "$cache"
if [ ! -s "$base_tar" ] || [ -n "$(find "$base_tar" -mtime +"$max_age")" ]; then
  echo "build-image: making the Debian 12 base with mmdebstrap -> $base_tar"
  mmdebstrap --variant=minbase --format=tar --quiet \
    --aptopt='Acquire::Languages "none"' \
    --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/doc/*' \
    --dpkgopt='path-include=/usr/share/doc/*/copyright' --dpkgopt='path-exclude=/usr/share/locale/*' \
    --dpkgopt='path-exclude=/usr/share/info/*' \
    bookworm "$base_tar.tmp" \
    "deb $mirror/debian bookworm main" "deb $mirror/debian bookworm-updates main" \
    "deb $mirror/debian-security bookworm-security main"
  mv "$base_tar.tmp" "$base_tar"
fi
sha=$(sha256sum "$base_tar" | cut -d' ' -f1)
have=$(buildah inspect --type image --format '{{index .OCIv1.Config.Labels "org.mqttlb.base-sha256"}}' \
         "$base_name" 2>/dev/null || true)
if [ "$have" != "$sha" ]; then
  echo "build-image: importing $base_tar as $base_name"
  old_base=$(buildah images -q --no-trunc "$base_name" 2>/dev/null || true)
  ctr=$(buildah from --pull=never scratch)
  trap 'buildah rm "$ctr" >/dev/null 2>&1 || true' EXIT
  buildah add --quiet "$ctr" "$base_tar" / >/dev/null
  buildah config --cmd /bin/bash --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    --label org.mqttlb.base-sha256="$sha" "$ctr"
  buildah commit --quiet --rm "$ctr" "$base_name" >/dev/null
  trap - EXIT
  # The base it replaces is untagged now: remove it (kept while in use).
  [ -n "$old_base" ] && buildah rmi "$old_base" >/dev/null 2>&1 || true
fi
context=$root
binaries=build
if [ -n "${MQTTLB_PREBUILT:-}" ]; then
  context=$(mktemp -d)
  trap 'rm -rf "$context"' EXIT
  mkdir -p "$context/build"
  cp -a "$root/deploy" "$context/deploy"
  cp "$MQTTLB_PREBUILT/mqttlb" "$MQTTLB_PREBUILT/mqttlb-broker" "$context/build/"
  binaries=prebuilt
fi
echo "build-image: buildah bud (binaries: $binaries) -> $image"
# buildah 1.28 keeps the working container and image of an aliased stage
# ("FROM ${BINARIES} AS binaries"; --force-rm fails on it): remove the ones
# this build made.
ctrs_before=$(buildah containers -q | sort)
dangling_before=$(buildah images -q --filter dangling=true | sort)
buildah bud --isolation chroot --pull=never --format docker --layers=false \
  --build-arg JOBS="${MQTTLB_JOBS:-2}" --build-arg BINARIES="$binaries" \
  -f "$context/deploy/container/Containerfile" -t "$image" "$context"
for c in $(comm -13 <(echo "$ctrs_before") <(buildah containers -q | sort)); do
  buildah rm "$c" >/dev/null 2>&1 || true
done
for i in $(comm -13 <(echo "$dangling_before") <(buildah images -q --filter dangling=true | sort)); do
  buildah rmi "$i" >/dev/null 2>&1 || true
done
echo "$image"
