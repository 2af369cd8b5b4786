#!/usr/bin/env bash
# Runs a command against a real OpenCL 3.0 runtime (PoCL 6 on this CPU) inside a Debian 13 chroot.
#
# Why a chroot: ILGPU's OpenCL backend needs the generic address space (OpenCL 2.0+). Debian 12's PoCL 3.1 lacks
# it; Debian 13's PoCL 6.0 has it. The chroot holds only PoCL, the ICD loader and .NET's native dependencies; the
# .NET SDK, the NuGet cache and the project folder are bind-mounted at their own paths, so the same build runs.
#
# Usage (as root):
#   tools/opencl-lane.sh ensure            create the chroot if it is missing (about a minute, ~850 MB)
#   tools/opencl-lane.sh run CMD [ARG...]  run CMD inside it, in the current folder, with RETNET_DEVICE=opencl
# Environment: RETNET_POCL_ROOT (default /var/cache/retnet-ilgpu/pocl-trixie), DEBIAN_MIRROR (default: the first
# URIs: line of this machine's apt sources).
set -euo pipefail

root=${RETNET_POCL_ROOT:-/var/cache/retnet-ilgpu/pocl-trixie}
stamp="$root/.retnet-ready"

die() { echo "opencl-lane: $*" >&2; exit 2; }

mirror() {
  if [ -n "${DEBIAN_MIRROR:-}" ]; then echo "$DEBIAN_MIRROR"; return; fi
  local m
  m=$(grep -h -m1 '^URIs:' /etc/apt/sources.list.d/*.sources 2>/dev/null | head -1 | awk '{print $2}')
  [ -n "$m" ] || m=$(grep -h -m1 '^deb ' /etc/apt/sources.list 2>/dev/null | awk '{print $2}')
  [ -n "$m" ] || die "no Debian mirror found in the apt sources; set DEBIAN_MIRROR"
  echo "$m"
}

ensure() {
  [ -f "$stamp" ] && return 0
  mkdir -p "$(dirname "$root")"
  [ "$(id -u)" = 0 ] || die "creating the chroot needs root"
  if ! command -v debootstrap >/dev/null; then
    apt-get update -qq >/dev/null && apt-get install -y -qq debootstrap >/dev/null
  fi
  rm -rf "$root"
  mkdir -p "$(dirname "$root")"
  echo "opencl-lane: creating the Debian 13 chroot with PoCL in $root" >&2
  debootstrap --variant=minbase \
    --include=pocl-opencl-icd,ocl-icd-libopencl1,ocl-icd-opencl-dev,libicu76,libssl3t64,ca-certificates \
    trixie "$root" "$(mirror)" >"$root.log" 2>&1 || { tail -20 "$root.log" >&2; die "debootstrap failed"; }
  touch "$stamp"
}

# Bind-mounts the host folders the build needs, at their own paths.
mounts=()
mount_bind() {
  local src=$1
  [ -e "$src" ] || return 0
  mkdir -p "$root$src"
  mount --bind "$src" "$root$src"
  mounts=("$root$src" "${mounts[@]}")
}
unmount_all() {
  local m
  for m in "${mounts[@]}"; do umount -l "$m" 2>/dev/null || true; done
}

run() {
  # One run at a time: concurrent runs would stack and then lazily unmount each other's bind mounts.
  mkdir -p "$(dirname "$root")"
  exec 9>"$(dirname "$root")/lane.lock"
  flock 9
  ensure
  local dotnet_root here
  dotnet_root=$(dirname "$(readlink -f "$(command -v dotnet)")")
  here=$(pwd)
  trap unmount_all EXIT
  trap 'exit 143' TERM INT
  mount_bind /proc; mount_bind /sys; mount_bind /dev
  mount_bind "$dotnet_root"
  mkdir -p "$HOME/.nuget/packages"
  mount_bind "$HOME/.nuget"
  mount_bind "$here"
  [ -n "${RETNET_LANE_EXTRA_MOUNT:-}" ] && mount_bind "$RETNET_LANE_EXTRA_MOUNT"
  # Build servers are disabled: one started inside would outlive these mounts and break later builds outside.
  chroot "$root" env -i \
    PATH="$dotnet_root:/usr/local/bin:/usr/bin:/bin" DOTNET_ROOT="$dotnet_root" HOME="$HOME" \
    DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1 DOTNET_CLI_USE_MSBUILD_SERVER=0 MSBUILDDISABLENODEREUSE=1 \
    UseSharedCompilation=false DOTNET_SKIP_FIRST_TIME_EXPERIENCE=1 NUGET_CERT_REVOCATION_MODE=offline \
    RETNET_DEVICE=opencl \
    bash -c 'cd "$1" && shift && exec "$@"' bash "$here" "$@"
}

case "${1:-}" in
  ensure) ensure ;;
  run) shift; [ $# -gt 0 ] || die "run needs a command"; run "$@" ;;
  *) die "usage: $0 ensure | run CMD [ARG...]" ;;
esac
