#!/usr/bin/env bash
# Runs the `retnet forward` command on every torchscale fixture in three modes (parallel, chunkwise with chunks of 5
# that do not divide T = 12, recurrent) and `retnet gradients` in both training forms, and prints, per fixture, the
# worst max|Δ|/max|ref| against torchscale's parallel and recurrent logits, the loss's relative error and the worst
# max|Δ|/max|ref| over every parameter's gradient. Needs the .NET SDK and python3 with numpy. Run from the repository
# root:
#   tools/torchscale-fixtures/cli-parity.sh [--device cpu|opencl|cuda]
set -euo pipefail
device=${2:-cpu}
[ "${1:-}" = "--device" ] || device=cpu
dotnet build -c Release src/RetNet.Ilgpu.Cli -v quiet -nologo >/dev/null
F=tests/RetNet.Ilgpu.Tests/Fixtures/Torchscale
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
for dir in $F/*/; do
  name=$(basename "$dir")
  for mode in "parallel" "chunkwise --chunk-size 5" "recurrent"; do
    tag=${mode%% *}
    dotnet src/RetNet.Ilgpu.Cli/bin/Release/net10.0/retnet.dll forward --device "$device" --model "$dir" --tokens "$dir/tokens.txt" --mode $mode --output "$out/$name-$tag.safetensors" >/dev/null 2>"$out/$name-$tag.err"
    cat "$out/$name-$tag.err"
  done
  for form in "parallel" "chunkwise --chunk-size 5"; do
    tag=${form%% *}
    dotnet src/RetNet.Ilgpu.Cli/bin/Release/net10.0/retnet.dll gradients --device "$device" --model "$dir" --tokens "$dir/tokens.txt" --form $form --output "$out/$name-grad-$tag.safetensors" >/dev/null 2>/dev/null
  done
done
python3 - "$F" "$out" <<'PY'
import json, struct, sys, os, numpy as np
def read(p, meta=False):
    b = open(p, 'rb').read(); n = struct.unpack('<Q', b[:8])[0]; h = json.loads(b[8:8+n]); d = b[8+n:]
    t = {k: np.frombuffer(d[v['data_offsets'][0]:v['data_offsets'][1]], '<f4').reshape(v['shape']) for k, v in h.items() if k != '__metadata__'}
    return (t, h.get('__metadata__', {})) if meta else t
F, out = sys.argv[1], sys.argv[2]
for name in sorted(os.listdir(F)):
    if not os.path.isdir(os.path.join(F, name)): continue
    exp = read(os.path.join(F, name, 'expected.safetensors'))
    row = []
    for tag in ['parallel', 'chunkwise', 'recurrent']:
        got = read(os.path.join(out, f'{name}-{tag}.safetensors'))['logits'].astype(np.float64)
        for ref in ['logits_parallel', 'logits_recurrent']:
            r = exp[ref].astype(np.float64)
            row.append(np.abs(got - r).max() / np.abs(r).max())
    ref_grads, ref_meta = read(os.path.join(F, name, 'gradients.safetensors'), meta=True)
    loss_err, grad_err = 0.0, 0.0
    for tag in ['parallel', 'chunkwise']:
        grads, meta = read(os.path.join(out, f'{name}-grad-{tag}.safetensors'), meta=True)
        loss_err = max(loss_err, abs(float(meta['loss']) - float(ref_meta['loss'])) / abs(float(ref_meta['loss'])))
        for k, r in ref_grads.items():
            r = r.astype(np.float64)
            grad_err = max(grad_err, np.abs(grads[k].astype(np.float64) - r).max() / np.abs(r).max())
    print(f'{name:38s} logits {max(row):.1e}   loss {loss_err:.1e}   gradients {grad_err:.1e}')
PY
