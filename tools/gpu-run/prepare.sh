#!/usr/bin/env bash
# Builds the bundle tools/gpu-run/run.sh needs on the device machine: the retnet CLI with a .NET runtime
# (../shared/portable/pack.sh writes the git-ignored .portable/), then drops the native plotting libraries of every
# platform but linux-x64 (ScottPlot's SkiaSharp ships ~150 MB of them), so the bundle fits the device tool's 64 MiB.
# Then: the device tool's run with carry [".portable"] and the command `bash tools/gpu-run/run.sh "$OUT"`.
set -euo pipefail
cd "$(git rev-parse --show-toplevel)"
pack=${PORTABLE_PACK:-../shared/portable/pack.sh}
[ -x "$pack" ] || [ -f "$pack" ] || { echo "prepare.sh: no $pack (set PORTABLE_PACK)" >&2; exit 2; }
bash "$pack" src/RetNet.Ilgpu.Cli/RetNet.Ilgpu.Cli.csproj
find .portable/app/runtimes -mindepth 1 -maxdepth 1 ! -name linux-x64 -exec rm -rf {} +
bash .portable/run.sh devices >/dev/null
echo "prepare.sh: .portable is $(du -sm .portable | cut -f1) MiB; it ran 'retnet devices' here"
