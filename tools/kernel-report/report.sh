#!/usr/bin/env bash
# Static GPU report of every kernel: builds the CLI, exports each kernel's PTX (sm_80, sm_90) with its launch geometry,
# runs `ptxas -v` on it and writes docs/KERNEL-REPORT.md and docs/kernel-report.json. Needs no GPU.
#
#   tools/kernel-report/report.sh              the report
#   tools/kernel-report/report.sh --self-test  unit tests of the parser and the occupancy calculator only (no ptxas)
#
# ptxas is taken from $PTXAS, PATH, $CUDA_HOME/bin or the cache folder ($RETNET_PTXAS_CACHE, default
# /var/cache/retnet-ilgpu/ptxas-11.8, or ~/.cache/retnet-ilgpu/ptxas-11.8 when that is not writable). Failing those, it
# downloads Debian 12's nvidia-cuda-toolkit (non-free, CUDA 11.8, ~84 MB) with apt-get through a temporary apt
# configuration (the machine's sources stay as they are), keeps only ptxas (a standalone binary) in the cache folder,
# and deletes the rest.
set -euo pipefail

tmp=""
ptx_dir=""
ptxas=""
trap 'rm -rf "$tmp" "$ptx_dir"' EXIT

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
helper="$here/kernel_report.py"

if [[ "${1:-}" == "--self-test" ]]; then
    exec python3 "$helper" --self-test
fi
if [[ $# -gt 0 ]]; then
    echo "usage: $0 [--self-test]" >&2
    exit 2
fi

deb_package="nvidia-cuda-toolkit"
deb_version="11.8.89~11.8.0-5~deb12u1"

cache_dir() {
    if [[ -n "${RETNET_PTXAS_CACHE:-}" ]]; then
        echo "$RETNET_PTXAS_CACHE"
    elif mkdir -p /var/cache/retnet-ilgpu/ptxas-11.8 2>/dev/null && [[ -w /var/cache/retnet-ilgpu/ptxas-11.8 ]]; then
        echo /var/cache/retnet-ilgpu/ptxas-11.8
    else
        echo "${XDG_CACHE_HOME:-$HOME/.cache}/retnet-ilgpu/ptxas-11.8"
    fi
}

# The Debian mirror this machine's apt already uses (first URIs:/deb line), else deb.debian.org.
debian_mirror() {
    local uri
    uri="$(grep -hsE '^URIs:' /etc/apt/sources.list.d/*.sources | awk '{print $2}' | grep -v security | head -n1 || true)"
    if [[ -z "$uri" ]]; then
        uri="$(grep -hsE '^deb ' /etc/apt/sources.list /etc/apt/sources.list.d/*.list | awk '{print $2}' \
            | grep -v security | head -n1 || true)"
    fi
    echo "${uri:-http://deb.debian.org/debian}"
}

fetch_ptxas() {
    local cache="$1" mirror deb
    command -v apt-get >/dev/null && command -v dpkg-deb >/dev/null || {
        echo "no ptxas found and no apt-get/dpkg-deb to fetch one: set PTXAS or CUDA_HOME" >&2
        exit 1
    }
    tmp="$(mktemp -d)"
    mirror="$(debian_mirror)"
    mkdir -p "$tmp/parts" "$tmp/lists/partial" "$tmp/cache/archives/partial"
    echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $mirror bookworm non-free" > "$tmp/sources.list"
    local apt_options=(-o "Dir::Etc::SourceList=$tmp/sources.list" -o "Dir::Etc::SourceParts=$tmp/parts"
        -o "Dir::State::Lists=$tmp/lists" -o "Dir::Cache=$tmp/cache" -o "Debug::NoLocking=1"
        -o "APT::Architecture=amd64" -o "APT::Sandbox::User=root")
    echo "fetching $deb_package $deb_version from $mirror bookworm non-free (temporary apt configuration)" >&2
    apt-get "${apt_options[@]}" -qq update
    (cd "$tmp" && apt-get "${apt_options[@]}" -qq download "$deb_package=$deb_version")
    deb="$(ls "$tmp"/"$deb_package"_*.deb)"
    mkdir -p "$tmp/x" "$cache"
    dpkg-deb --fsys-tarfile "$deb" | tar -x -C "$tmp/x" ./usr/bin/ptxas
    install -m 0755 "$tmp/x/usr/bin/ptxas" "$cache/ptxas"
    rm -rf "$tmp"
}

# Sets $ptxas; not run in a subshell, so the EXIT trap also cleans up after a failed download.
find_ptxas() {
    local cache
    if [[ -n "${PTXAS:-}" ]]; then
        ptxas="$PTXAS"
    elif command -v ptxas >/dev/null; then
        ptxas="$(command -v ptxas)"
    elif [[ -n "${CUDA_HOME:-}" && -x "$CUDA_HOME/bin/ptxas" ]]; then
        ptxas="$CUDA_HOME/bin/ptxas"
    else
        cache="$(cache_dir)"
        [[ -x "$cache/ptxas" ]] || fetch_ptxas "$cache"
        ptxas="$cache/ptxas"
    fi
}

find_ptxas
echo "ptxas: $ptxas ($("$ptxas" --version | grep -m1 release))"

cd "$root"
if ! build_log="$(dotnet build -c Release src/RetNet.Ilgpu.Cli/RetNet.Ilgpu.Cli.csproj 2>&1)"; then
    echo "$build_log" | grep -E "error" >&2
    exit 1
fi
ptx_dir="$(mktemp -d)"
dotnet src/RetNet.Ilgpu.Cli/bin/Release/net10.0/retnet.dll kernels --ptx "$ptx_dir"
python3 "$helper" --ptx-dir "$ptx_dir" --ptxas "$ptxas" \
    --markdown docs/KERNEL-REPORT.md --json docs/kernel-report.json --command "tools/kernel-report/report.sh"
echo "wrote docs/KERNEL-REPORT.md and docs/kernel-report.json"
