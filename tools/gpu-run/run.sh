#!/usr/bin/env bash
# The one prepared GPU session of issue 12: everything worth measuring on a lent GPU, in one command that fits the
# device tool's 10-minute limit (each step has its own timeout; their sum is 555 s). Writes at most 8 files to OUT:
# run.log (everything printed), verify.json, gemm-fp32.json, gemm-bf16.json, retention.json, decode.json, train.json,
# torch.json (the same work with PyTorch on the same GPU: tools/gpu-run/torch_peers.py).
#
# On the device machine, from the repository root, with the portable bundle carried (built here first with
# ../shared/portable/pack.sh src/RetNet.Ilgpu.Cli/RetNet.Ilgpu.Cli.csproj):
#   bash tools/gpu-run/run.sh "$OUT"
# Checked here on the CPU with small sizes:
#   RETNET="dotnet src/RetNet.Ilgpu.Cli/bin/Release/net10.0/retnet.dll" PYTHON=/usr/bin/python3 \
#     bash tools/gpu-run/run.sh /tmp/gpu-run --device cpu --small
set -uo pipefail
out=${1:?usage: run.sh OUT_DIR [--device cuda|opencl|cpu] [--small]}
shift
device=cuda
small=0
while [ $# -gt 0 ]; do
  case $1 in
    --device) device=$2; shift 2 ;;
    --small) small=1; shift ;;
    *) echo "run.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
mkdir -p "$out"
read -r -a retnet <<<"${RETNET:-bash .portable/run.sh}"
python=${PYTHON:-python3}
log=$out/run.log
: >"$log"
failures=0

step() {
  local name=$1 limit=$2
  shift 2
  echo "== $name: $*" | tee -a "$log"
  local start=$SECONDS
  timeout "$limit" "$@" >>"$log" 2>&1
  local rc=$?
  [ $rc -eq 0 ] || failures=$((failures + 1))
  echo "-- $name: exit $rc after $((SECONDS - start)) s (limit $limit s)" | tee -a "$log"
}

if [ $small -eq 1 ]; then
  gemm_shapes=128x128x128,1x256x128
  retention=(--batch 1 --heads 2 --dk 32 --dv 32 --seq-lens 256)
  decode=(--preset tiny --positions 64,256 --batches 1)
  train=(--preset tiny --seq-lens 256)
  torch_size=--small
else
  # The issue's targets: bf16 GEMM 4096³ against torch.matmul; a decoding step of a 7b-sized layer (d 4096, value and
  # FFN 6912: these are its products with one row) at HBM speed; chunkwise retention B4 H8 D256 T16384 forward and
  # backward; decoding and training against the Transformer baseline.
  gemm_shapes=4096x4096x4096,1x4096x4096,1x6912x4096,1x4096x6912
  retention=(--batch 4 --heads 8 --dk 256 --dv 256 --seq-lens 4096,16384 --repetitions 3 --seconds-per-case 5)
  decode=(--preset medium --positions 64,1024,8192 --batches 1,8 --arch retnet,transformer)
  train=(--preset small --seq-lens 2048,8192 --arch retnet,transformer)
  torch_size=
fi

step devices 30 "${retnet[@]}" devices
# Without the device the rest would only time the CPU: stop at once and keep the device time.
if [ "$device" = cuda ] && ! grep -q '^Cuda ' "$log"; then
  echo "run.sh: retnet devices lists no CUDA device; stopping (see run.log)" | tee -a "$log"
  exit 1
fi
step verify 120 "${retnet[@]}" verify --device "$device" --json "$out/verify.json"
step gemm-fp32 45 "${retnet[@]}" bench gemm --device "$device" --shapes "$gemm_shapes" --transpose-b --dtype fp32 \
  --implementations tiled,small-rows --json "$out/gemm-fp32.json"
step gemm-bf16 45 "${retnet[@]}" bench gemm --device "$device" --shapes "$gemm_shapes" --transpose-b --dtype bf16 \
  --implementations tiled,small-rows --json "$out/gemm-bf16.json"
step retention 90 "${retnet[@]}" bench retention --device "$device" "${retention[@]}" --json "$out/retention.json"
step decode 90 "${retnet[@]}" bench decode --device "$device" "${decode[@]}" --dtype fp32,bf16 --json "$out/decode.json"
step train 60 "${retnet[@]}" bench train --device "$device" "${train[@]}" --json "$out/train.json"
# shellcheck disable=SC2086
step torch 75 "$python" "$(dirname "$0")/torch_peers.py" "$out/torch.json" --device "$device" $torch_size
echo "run.sh: $failures step(s) failed; files: $(cd "$out" && ls | tr '\n' ' ')" | tee -a "$log"
[ $failures -eq 0 ]
