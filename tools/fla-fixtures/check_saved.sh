#!/usr/bin/env bash
# Saves fla-convention RetNet folders with the library (init through the API, fine-tuning with `retnet train`, a
# sharded save), runs each with `retnet forward`, and checks with check_saved.py that fla's own RetNetForCausalLM loads
# each folder and computes the same logits. Usage: tools/fla-fixtures/check_saved.sh /tmp/fla [WORKDIR]
set -euo pipefail
FLA=${1:?usage: check_saved.sh FLA_SOURCE [WORKDIR]}
W=${2:-/tmp/fla-roundtrip}
cd "$(dirname "$0")/../.."
dotnet build src/RetNet.Ilgpu.Cli -c Release -v q -nologo >/dev/null
dotnet build tools/fla-fixtures/SaveFla -c Release -v q -nologo >/dev/null
R="dotnet src/RetNet.Ilgpu.Cli/bin/Release/net10.0/retnet.dll"
S="dotnet tools/fla-fixtures/SaveFla/bin/Release/net10.0/SaveFla.dll"
CHECK="/usr/bin/python3 tools/fla-fixtures/check_saved.py --fla $FLA"
rm -rf "$W" && mkdir -p "$W"
/usr/bin/python3 -c "
import random; r = random.Random(5)
open('$W/tokens.txt', 'w').write(''.join(' '.join(str(r.randrange(256)) for _ in range(24)) + '\n' for _ in range(3)))
r = random.Random(6)
open('$W/tokens-long.txt', 'w').write(''.join(' '.join(str(r.randrange(256)) for _ in range(100)) + '\n' for _ in range(2)))"
head -c 20000 README.md > "$W/train.txt"

# Saved through the API (LanguageModel.Create → FromWeights → Save, or ModelFolder.Write with small shards).
$S "$W/fp32" --seed 11
$S "$W/bf16" --seed 12 --dtype bf16
$S "$W/sharded" --seed 13 --max-shard-bytes 60000
$S "$W/tied" --seed 14 --tied
$S "$W/unfused" --seed 15 --unfused-norm
# Saved by `retnet train` after 5 optimiser steps on text.
train() { $R train --model "$W/$1" --data "$W/train.txt" --output "$W/$2" --steps 5 --batch 2 --seq-len 32 --lr 0.003 \
    --tokenizer byte --device cpu "${@:3}" | tail -1; }
train fp32 trained
train bf16 trained-bf16 --dtype bf16
train tied trained-tied

status=0
for c in fp32 bf16 sharded tied unfused trained trained-bf16 trained-tied; do
    $R forward --model "$W/$c" --tokens "$W/tokens.txt" --output "$W/$c.logits.safetensors" --device cpu | tail -1
    echo "=== $c"
    $CHECK --model "$W/$c" --tokens "$W/tokens.txt" --logits "$W/$c.logits.safetensors" || status=1
done
for m in "chunkwise --chunk-size 16" recurrent; do
    $R forward --model "$W/trained" --tokens "$W/tokens-long.txt" --output "$W/long.logits.safetensors" --device cpu \
        --mode $m | tail -1
    echo "=== trained, 2×100 tokens, library --mode $m"
    $CHECK --model "$W/trained" --tokens "$W/tokens-long.txt" --logits "$W/long.logits.safetensors" || status=1
done
echo "=== negative controls on trained, sharded, trained-tied"
for c in trained sharded trained-tied; do
    $CHECK --model "$W/$c" --tokens "$W/tokens.txt" --logits "$W/$c.logits.safetensors" --negative-controls \
        | grep -- '^--- .*caught\|negative controls' || status=1
done
exit $status
