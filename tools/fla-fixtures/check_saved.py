#!/usr/bin/env python3
"""Checks that fla's own RetNetForCausalLM loads a model folder the library saved and computes the library's logits.

Usage:
    python3 check_saved.py --fla /path/to/fla-source --model DIR --tokens FILE --logits OUT.safetensors
        [--tolerance 2e-4] [--allow-unknown-config-keys] [--round-to-config-dtype] [--alter KIND ...]
        [--negative-controls]

DIR is a model folder in fla's Hugging Face convention (config.json, and model.safetensors or
model.safetensors.index.json with its shards). FILE holds token ids, one sequence per line. OUT.safetensors holds the
library's logits for those rows, tensor "logits" [B, T, V] (what `retnet forward --output` writes).

The folder is loaded the way transformers' `from_pretrained` loads it: fla's RetNetConfig is built with config.json's
keys as arguments (keys it has no argument for become attributes, as transformers does), RetNetForCausalLM(config) is
constructed (which ties lm_head to the embedding when tie_word_embeddings is set), and the weights are loaded with
`load_state_dict(strict=True)`; a tied model whose file lacks lm_head.weight is loaded with lm_head.weight as the only
allowed missing key. fla runs with make_fixtures.py's machinery (its pinned source, its stand-ins, its pure-torch
references in place of Triton kernels) in float64 on the CPU, parallel retention form.

Exit status: 0 when the folder loads cleanly and max|Δlogits| / max|logits_fla| ≤ tolerance; 1 when the logits differ;
2 when the folder has a problem (a file or key fla would not load, a shape, a dtype, a config key fla does not read);
3 when a negative control was not caught.

--alter KIND changes what was read before the check, to show that the check fails: gate-norm (the gate-norm weight of
layer 0 times 1.1), qk-permute (the rows of q_proj and k_proj of every layer permuted within each head from
rotate-half to interleaved order), extra-key, missing-key, shape (a weight transposed), config-key (an unknown config
key), config-value (num_heads doubled). --negative-controls runs the check once per KIND and fails unless each one is
caught.
"""

import argparse
import inspect
import json
import math
import os
import struct
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_fixtures  # noqa: E402  (the shared fla machinery)

DEFAULT_TOLERANCE = 2e-4

# Keys of transformers' PretrainedConfig (and what save_pretrained adds) that fla's RetNetConfig forwards to it: read by
# transformers itself, so not "unknown" although RetNetConfig has no argument of that name.
TRANSFORMERS_KEYS = {
    "architectures", "model_type", "transformers_version", "torch_dtype", "dtype", "_name_or_path", "_commit_hash",
    "_attn_implementation", "bos_token_id", "eos_token_id", "pad_token_id", "sep_token_id", "decoder_start_token_id",
    "tie_word_embeddings", "output_attentions", "output_hidden_states", "return_dict", "is_encoder_decoder",
    "is_decoder", "add_cross_attention", "tie_encoder_decoder", "cross_attention_hidden_size", "chunk_size_feed_forward",
    "pruned_heads", "id2label", "label2id", "num_labels", "problem_type", "tokenizer_class", "prefix",
    "task_specific_params", "finetuning_task", "torchscript", "use_bfloat16", "quantization_config",
}

# safetensors dtype codes: bytes per element.
DTYPE_SIZES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1}
CONFIG_DTYPES = {"float32": "F32", "bfloat16": "BF16", "float16": "F16", "float64": "F64"}


class Report:
    def __init__(self):
        self.problems = []
        self.notes = []

    def problem(self, text):
        self.problems.append(text)
        print(f"PROBLEM: {text}")

    def note(self, text):
        self.notes.append(text)
        print(f"note: {text}")


# ---------------------------------------------------------------------------------------------------------------------
# Reading files, as strictly as the safetensors library validates them.
# ---------------------------------------------------------------------------------------------------------------------

def decode(dtype, shape, data):
    import numpy as np
    import torch
    if dtype == "BF16":
        bits = np.frombuffer(data, dtype="<u2").astype("<u4") << 16
        values = bits.view("<f4")
    elif dtype in ("F32", "F64", "F16"):
        values = np.frombuffer(data, dtype={"F32": "<f4", "F64": "<f8", "F16": "<f2"}[dtype])
    else:
        values = np.frombuffer(data, dtype={"I64": "<i8", "I32": "<i4", "I16": "<i2", "I8": "i1", "U8": "u1",
                                            "BOOL": "u1"}[dtype])
    return torch.from_numpy(values.astype(np.float64)).reshape(shape)


def read_safetensors(path, report):
    """{name: (dtype, shape, float64 tensor)}, metadata; every format violation is a problem."""
    name = os.path.basename(path)
    with open(path, "rb") as f:
        blob = f.read()
    if len(blob) < 8:
        report.problem(f"{name}: {len(blob)} bytes, shorter than the 8-byte header length.")
        return {}, None
    (n,) = struct.unpack("<Q", blob[:8])
    if n > len(blob) - 8:
        report.problem(f"{name}: header length {n} exceeds the file.")
        return {}, None
    text = blob[8:8 + n]
    if not text.startswith(b"{"):
        report.problem(f"{name}: the header does not start with '{{' (safetensors ≥ 0.4 refuses it).")
    try:
        header = json.loads(text.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        report.problem(f"{name}: the header is not UTF-8 JSON ({e}).")
        return {}, None
    metadata = header.pop("__metadata__", None)
    if metadata is not None and (not isinstance(metadata, dict) or
                                 not all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items())):
        report.problem(f"{name}: __metadata__ {metadata!r} is not a map of strings to strings.")
    data = blob[8 + n:]
    tensors, spans = {}, []
    for key, info in header.items():
        dtype, shape, offsets = info.get("dtype"), info.get("shape"), info.get("data_offsets")
        if dtype not in DTYPE_SIZES or not isinstance(shape, list) or not isinstance(offsets, list) or len(offsets) != 2:
            report.problem(f"{name}: {key} has an invalid entry {info!r}.")
            continue
        begin, end = offsets
        if end - begin != math.prod(shape) * DTYPE_SIZES[dtype]:
            report.problem(f"{name}: {key} spans {end - begin} bytes; {dtype} {shape} needs "
                           f"{math.prod(shape) * DTYPE_SIZES[dtype]}.")
            continue
        spans.append((begin, end, key))
        tensors[key] = (dtype, shape, decode(dtype, shape, data[begin:end]))
    position = 0
    for begin, end, key in sorted(spans):
        if begin != position:
            report.problem(f"{name}: {key} starts at {begin}, not at {position} (gaps and overlaps are invalid).")
        position = end
    if position != len(data):
        report.problem(f"{name}: the tensors end at byte {position} of a {len(data)}-byte data section.")
    return tensors, metadata


def load_weights(folder, report):
    """The tensors transformers would read from the folder: model.safetensors, else the index and its shards."""
    single = os.path.join(folder, "model.safetensors")
    index_path = os.path.join(folder, "model.safetensors.index.json")
    if os.path.isfile(single):
        if os.path.isfile(index_path):
            report.note("both model.safetensors and model.safetensors.index.json: transformers reads model.safetensors.")
        files = {"model.safetensors": None}
    elif os.path.isfile(index_path):
        with open(index_path, encoding="utf-8") as f:
            index = json.load(f)
        weight_map = index.get("weight_map")
        if not isinstance(weight_map, dict):
            report.problem("model.safetensors.index.json has no weight_map.")
            return {}, set()
        files = {}
        for key, file in weight_map.items():
            files.setdefault(file, set()).add(key)
        print(f"sharded: {len(files)} files, {len(weight_map)} keys in weight_map")
    else:
        report.problem("neither model.safetensors nor model.safetensors.index.json.")
        return {}, set()
    tensors, dtypes = {}, set()
    for file, mapped in files.items():
        path = os.path.join(folder, file)
        if not os.path.isfile(path):
            report.problem(f"{file} (from the index) is missing.")
            continue
        shard, metadata = read_safetensors(path, report)
        # transformers' load_state_dict raises OSError on any other format (a missing __metadata__ is accepted).
        if metadata is not None and metadata.get("format") not in ("pt", "tf", "flax", "mlx"):
            report.problem(f"{file}: __metadata__ {metadata!r} lacks format \"pt\"; transformers refuses the file "
                           "(\"does not contain the valid metadata\").")
        if mapped is not None:
            for key in sorted(set(shard) - mapped):
                report.problem(f"{file} holds {key}, which the index maps to {files and 'another file' or 'nothing'}.")
            for key in sorted(mapped - set(shard)):
                report.problem(f"the index maps {key} to {file}, which does not hold it.")
        for key in shard:
            if key in tensors:
                report.problem(f"{key} is in more than one file.")
        tensors.update(shard)
        dtypes |= {d for d, _, _ in shard.values()}
    if os.path.isfile(index_path) and not os.path.isfile(single):
        total = sum(math.prod(s) * DTYPE_SIZES[d] for d, s, _ in tensors.values())
        declared = index.get("metadata", {}).get("total_size")
        if declared != total:
            report.problem(f"index metadata.total_size is {declared!r}; the tensors hold {total} bytes.")
    return tensors, dtypes


# ---------------------------------------------------------------------------------------------------------------------
# Config and state dict, as from_pretrained handles them.
# ---------------------------------------------------------------------------------------------------------------------

def check_config(written, RetNetConfig, report, allow_unknown):
    arguments = [p for p in inspect.signature(RetNetConfig.__init__).parameters if p not in ("self", "kwargs")]
    if written.get("model_type") != "retnet":
        report.problem(f"config.json model_type is {written.get('model_type')!r}; AutoConfig maps \"retnet\" to fla's "
                       "RetNetConfig.")
    if "RetNetForCausalLM" not in (written.get("architectures") or []):
        report.note(f"config.json architectures is {written.get('architectures')!r}, without \"RetNetForCausalLM\".")
    unknown = sorted(k for k in written if k not in arguments and k not in TRANSFORMERS_KEYS)
    for key in unknown:
        text = (f"config.json key {key!r} = {written[key]!r} is no argument of fla's RetNetConfig (nor a transformers "
                "key): transformers keeps it as an attribute without a warning and fla never reads it.")
        if allow_unknown:
            report.note(text)
        else:
            report.problem(text)
    absent = [k for k in arguments if k not in written and k not in ("pad_token_id", "bos_token_id", "eos_token_id")]
    if absent:
        report.note(f"config.json leaves out {absent}: fla uses its defaults "
                    f"{ {k: inspect.signature(RetNetConfig.__init__).parameters[k].default for k in absent} }.")
    try:
        config = RetNetConfig(**json.loads(json.dumps(written)))
    except Exception as e:  # noqa: BLE001  (fla's own validation)
        report.problem(f"fla's RetNetConfig(**config.json) raises {type(e).__name__}: {e}")
        return None
    for key, value in written.items():
        if key in arguments and getattr(config, key) != value:
            report.problem(f"config.json {key} = {value!r} loads as {getattr(config, key)!r}.")
    return config


def load_model(config, tensors, dtypes, written, RetNetForCausalLM, report, round_to_config_dtype=False):
    import torch
    try:
        model = RetNetForCausalLM(config)
    except Exception as e:  # noqa: BLE001
        report.problem(f"fla's RetNetForCausalLM(config) raises {type(e).__name__}: {e}")
        return None
    model.double()
    expected = model.state_dict()
    tied = bool(config.tie_word_embeddings)
    allowed_missing = {"lm_head.weight"} if tied else set()

    stated = written.get("torch_dtype", written.get("dtype"))
    first = sorted(tensors)[0] if tensors else None
    if len(dtypes) > 1:
        report.note(f"the tensors mix dtypes {sorted(dtypes)} ("
                    + ", ".join(f"{d}: {sum(1 for v in tensors.values() if v[0] == d)}" for d in sorted(dtypes))
                    + "); from_pretrained casts all of them to one dtype.")
    if stated is None:
        report.note("config.json torch_dtype is " + ("null" if "torch_dtype" in written else "absent") +
                    ": from_pretrained(torch_dtype=\"auto\") takes the dtype of the first tensor, "
                    f"{first} ({tensors[first][0] if first else None}), for the whole model.")
    elif CONFIG_DTYPES.get(stated) is None:
        report.problem(f"config.json torch_dtype {stated!r} is no floating type torch knows.")
    elif CONFIG_DTYPES[stated] not in dtypes:
        report.problem(f"config.json torch_dtype is {stated!r} but the tensors are {sorted(dtypes)} "
                       "(from_pretrained(torch_dtype=\"auto\") would load them as " + stated + ").")
    elif len(dtypes) > 1:
        report.note(f"config.json torch_dtype is {stated!r}: from_pretrained(torch_dtype=\"auto\") rounds the "
                    f"{sorted(dtypes - {CONFIG_DTYPES[stated]})} tensors to {stated} (--round-to-config-dtype shows "
                    "the effect).")

    unexpected = sorted(set(tensors) - set(expected))
    missing = sorted(set(expected) - set(tensors) - allowed_missing)
    for key in unexpected:
        report.problem(f"the file has {key}, which fla's RetNetForCausalLM does not have (unexpected key).")
    for key in missing:
        report.problem(f"fla's RetNetForCausalLM expects {key}, which the file lacks (missing key).")
    for key in sorted(set(tensors) & set(expected)):
        if list(expected[key].shape) != tensors[key][1]:
            report.problem(f"{key}: the file's shape {tensors[key][1]}, fla's {list(expected[key].shape)}.")
    if tied and "lm_head.weight" in tensors:
        if not torch.equal(tensors["lm_head.weight"][2], tensors.get("model.embeddings.weight", (0, 0, None))[2]):
            report.problem("tie_word_embeddings is true but the file's lm_head.weight differs from "
                           "model.embeddings.weight: one overwrites the other when loading.")
        else:
            report.note("tie_word_embeddings is true and the file also holds lm_head.weight (equal to the embedding); "
                        "save_pretrained leaves it out.")
    if not tied and "lm_head.weight" not in tensors:
        report.problem("tie_word_embeddings is false and the file has no lm_head.weight.")

    state = {k: v[2] for k, v in tensors.items()}
    try:
        if allowed_missing - set(tensors):
            result = model.load_state_dict(state, strict=False)
            extra_missing = set(result.missing_keys) - allowed_missing
            if extra_missing or result.unexpected_keys:
                report.problem(f"load_state_dict: missing {sorted(extra_missing)}, "
                               f"unexpected {sorted(result.unexpected_keys)}.")
        else:
            model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        report.problem(f"fla's load_state_dict raises: {str(e).strip()}")
        return None
    if round_to_config_dtype:
        # What from_pretrained(torch_dtype="auto") does: every parameter in the config's dtype (else the first
        # tensor's); the forward then still runs in float64 from those values.
        target = stated if CONFIG_DTYPES.get(stated) else {v: k for k, v in CONFIG_DTYPES.items()}[tensors[first][0]]
        with torch.no_grad():
            for p in model.parameters():
                p.data = p.data.to(getattr(torch, target)).double()
        print(f"parameters rounded to {target}, as from_pretrained(torch_dtype=\"auto\") stores them")
    if tied and model.lm_head.weight.data_ptr() != model.model.embeddings.weight.data_ptr():
        report.problem("lm_head is no longer tied to the embedding after loading.")
    model.eval()
    return model


# ---------------------------------------------------------------------------------------------------------------------
# Alterations (negative controls).
# ---------------------------------------------------------------------------------------------------------------------

ALTERATIONS = ["gate-norm", "qk-permute", "extra-key", "missing-key", "shape", "config-key", "config-value"]


def alter(kind, written, tensors):
    """Changes (config.json, tensors) in memory as a faulty save would; returns a description."""
    import torch
    written, tensors = dict(written), dict(tensors)
    if kind == "gate-norm":
        key = next(k for k in sorted(tensors) if ".attn.g_norm" in k and k.startswith("model.layers.0."))
        d, s, t = tensors[key]
        tensors[key] = (d, s, t * 1.1)
        return f"{key} × 1.1", written, tensors
    if kind == "qk-permute":
        heads = written["num_heads"]
        kv_heads = written.get("num_kv_heads") or heads
        changed = []
        for key in sorted(tensors):
            if key.endswith(".attn.q_proj.weight") or key.endswith(".attn.k_proj.weight"):
                d, s, t = tensors[key]
                h = heads if ".q_proj" in key else kv_heads
                dk = s[0] // h
                # rotate-half (first half, second half) to interleaved (pairs) within each head.
                order = torch.arange(dk).reshape(2, dk // 2).t().reshape(-1)
                rows = torch.cat([hh * dk + order for hh in range(h)])
                tensors[key] = (d, s, t[rows])
                changed.append(key)
        return f"rows of {len(changed)} q_proj/k_proj weights from rotate-half to interleaved order", written, tensors
    if kind == "extra-key":
        d, s, t = tensors["model.norm.weight"]
        tensors["model.layers.0.attn.g_norm.bias"] = (d, s, t.clone())
        return "an extra tensor model.layers.0.attn.g_norm.bias", written, tensors
    if kind == "missing-key":
        del tensors["model.norm.weight"]
        return "model.norm.weight removed", written, tensors
    if kind == "shape":
        key = next(k for k in sorted(tensors) if k.endswith("mlp.down_proj.weight"))
        d, s, t = tensors[key]
        tensors[key] = (d, [s[1], s[0]], t.t().contiguous())
        return f"{key} transposed", written, tensors
    if kind == "config-key":
        written["rope_theta"] = 500000.0
        return "config.json key rope_theta 500000 added", written, tensors
    if kind == "config-value":
        written["num_heads"] = 2 * written["num_heads"]
        return f"config.json num_heads {written['num_heads'] // 2} → {written['num_heads']}", written, tensors
    raise ValueError(kind)


# ---------------------------------------------------------------------------------------------------------------------
# The check.
# ---------------------------------------------------------------------------------------------------------------------

def read_tokens(path):
    rows = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                rows.append([int(x) for x in line.split()])
    if not rows or any(len(r) != len(rows[0]) for r in rows):
        make_fixtures.fail(f"{path}: expected rows of token ids of one length.")
    return rows


def check(written, tensors, dtypes, tokens, reference, fla, tolerance, allow_unknown, round_to_config_dtype=False):
    """(status, relative difference): 0 equal within tolerance, 1 logits differ, 2 a loading problem."""
    import torch
    RetNetConfig, RetNetForCausalLM = fla
    report = Report()
    config = check_config(written, RetNetConfig, report, allow_unknown)
    model = (load_model(config, tensors, dtypes, written, RetNetForCausalLM, report, round_to_config_dtype)
             if config is not None else None)
    if model is None:
        return 2, None
    ids = torch.tensor(tokens, dtype=torch.long)
    if ids.max().item() >= config.vocab_size or ids.min().item() < 0:
        make_fixtures.fail(f"token ids outside the vocabulary of {config.vocab_size}.")
    make_fixtures.Forms.current = "parallel"
    with torch.no_grad():
        logits = model(input_ids=ids, use_cache=False).logits
    if logits.dtype != torch.float64:
        make_fixtures.fail(f"fla's logits are {logits.dtype}; expected float64.")
    if list(reference.shape) != list(logits.shape):
        report.problem(f"the library's logits are {list(reference.shape)}; fla's {list(logits.shape)}.")
        return 2, None
    scale = logits.abs().max().item()
    difference = (logits - reference).abs().max().item()
    relative = difference / scale
    argmax = (logits.argmax(-1) == reference.argmax(-1)).double().mean().item()
    print(f"fla logits {list(logits.shape)}: max|ref| {scale:.6g}, max|Δ| {difference:.3e}, max|Δ|/max|ref| "
          f"{relative:.3e} (tolerance {tolerance:g}); argmax agreement {argmax:.4f}")
    if report.problems:
        return 2, relative
    if not relative <= tolerance:
        return 1, relative
    return 0, relative


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fla", required=True, help=f"flash-linear-attention source at {make_fixtures.FLA_COMMIT}")
    parser.add_argument("--model", required=True, help="the model folder the library saved")
    parser.add_argument("--tokens", required=True, help="token ids, one sequence per line")
    parser.add_argument("--logits", required=True, help="the library's logits for those rows (tensor \"logits\")")
    parser.add_argument("--tolerance", type=float, default=DEFAULT_TOLERANCE, help="largest max|Δ|/max|ref| allowed")
    parser.add_argument("--allow-unknown-config-keys", action="store_true",
                        help="report config keys fla does not read as notes, not problems")
    parser.add_argument("--round-to-config-dtype", action="store_true",
                        help="round every parameter to config.json's torch_dtype (else the first tensor's dtype), as "
                             "from_pretrained(torch_dtype=\"auto\") would, before the float64 forward")
    parser.add_argument("--alter", action="append", choices=ALTERATIONS, default=[],
                        help="change what was read before checking (expect a failure)")
    parser.add_argument("--negative-controls", action="store_true",
                        help="after the check, run it once per alteration and fail unless each is caught")
    args = parser.parse_args()

    fla = make_fixtures.prepare_fla(args.fla)
    with open(os.path.join(args.model, "config.json"), encoding="utf-8") as f:
        written = json.load(f)
    print(f"{args.model}: config.json {len(written)} keys")
    load_report = Report()
    tensors, dtypes = load_weights(args.model, load_report)
    print(f"{len(tensors)} tensors, dtypes {sorted(dtypes)}")
    logits_file, _ = read_safetensors(args.logits, load_report)
    if "logits" not in logits_file:
        make_fixtures.fail(f"{args.logits} has no tensor \"logits\".")
    reference = logits_file["logits"][2]
    tokens = read_tokens(args.tokens)

    for kind in args.alter:
        description, written, tensors = alter(kind, written, tensors)
        print(f"ALTERED: {description}")
    status, relative = check(written, tensors, dtypes, tokens, reference, fla, args.tolerance,
                             args.allow_unknown_config_keys, args.round_to_config_dtype)
    if load_report.problems and status == 0:
        status = 2
    verdict = {0: "PASS", 1: "FAIL (logits differ)", 2: "FAIL (loading problem)"}[status]
    print(f"{verdict}: max|Δ|/max|ref| = {relative if relative is None else format(relative, '.3e')}")

    if args.negative_controls:
        print()
        missed = []
        for kind in ALTERATIONS:
            description, w, t = alter(kind, written, tensors)
            print(f"--- negative control {kind}: {description}")
            s, r = check(w, t, dtypes, tokens, reference, fla, args.tolerance, args.allow_unknown_config_keys)
            caught = s != 0
            print(f"--- {kind}: {'caught' if caught else 'NOT CAUGHT'} (status {s}, max|Δ|/max|ref| "
                  f"{'n/a' if r is None else format(r, '.3e')})")
            if not caught:
                missed.append(kind)
        if missed:
            print(f"negative controls not caught: {missed}")
            sys.exit(3)
        print(f"all {len(ALTERATIONS)} negative controls caught")
    sys.exit(status)


if __name__ == "__main__":
    main()
