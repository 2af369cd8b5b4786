#!/usr/bin/env python3
"""Trains Microsoft torchscale's own RetNetDecoder the way `retnet train` does, for comparing loss and tokens/s.

Usage:
    /usr/bin/python3 tools/torchscale-train/train.py --torchscale /tmp/torchscale-src \
        --train train.txt --val val.txt --steps 300 --batch 8 --seq-len 128 --lr 3e-3 --warmup 30 \
        --min-lr-ratio 0.1 --betas 0.9,0.98 --weight-decay 0.01 --clip 2.0 --seed 0 --threads 2 --json out.json

The model is the C# "tiny" preset (d 64, value width 128, 2 heads, FFN 128, 2 layers, byte vocabulary 256, swish,
scaled embeddings, untied output, eps 1e-6, no dropout) built by torchscale's code at the commit pinned in
tools/torchscale-fixtures/make_fixtures.py, whose helpers import it (with stand-ins for fairscale/timm/einops) and
refuse a source tree whose files differ from that commit. Nothing of torchscale is copied here. See README.md for what
matches the C# trainer and what cannot.
"""

import argparse
import json
import math
import os
import platform
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.dont_write_bytecode = True  # no __pycache__ beside make_fixtures.py in the source tree
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "torchscale-fixtures"))
import make_fixtures  # noqa: E402  (pinning and import helpers; imports neither torch nor torchscale by itself)

# RetNetConfig.Preset("tiny") of src/RetNet.Ilgpu/Model/RetNetConfig.cs, in torchscale's field names.
TINY = dict(
    decoder_embed_dim=64,
    decoder_value_embed_dim=128,
    decoder_retention_heads=2,
    decoder_ffn_embed_dim=128,
    decoder_layers=2,
    vocab_size=256,
    activation_fn="swish",
    no_scale_embedding=False,
    share_decoder_input_output_embed=False,
    layernorm_eps=1e-6,
    dropout=0.0,
    activation_dropout=0.0,
    drop_path_rate=0.0,
    chunkwise_recurrent=False,  # torchscale's parallel form, for training and evaluation
)

UTF8_BOM = b"\xef\xbb\xbf"


def fail(message):
    sys.exit(f"train.py: {message}")


def learning_rate(step, peak, warmup, total, kind="cosine", min_ratio=0.1, power=1.0):
    """LearningRateSchedule.At of src/RetNet.Ilgpu/Training/LearningRateSchedule.cs, step counted from 1."""
    if step <= warmup:
        return peak * step / warmup
    if kind == "constant":
        return peak
    minimum = min_ratio * peak
    progress = 1.0 if total == warmup else min(1.0, (step - warmup) / (total - warmup))
    if kind == "cosine":
        fraction = 0.5 * (1 + math.cos(math.pi * progress))
    elif kind == "linear":
        fraction = 1 - progress
    else:  # polynomial
        fraction = (1 - progress) ** power
    return minimum + (peak - minimum) * fraction


def read_bytes(path, minimum):
    """The byte-level token ids of a UTF-8 text file, as TokenDataset reads it: a leading byte-order mark skipped."""
    import torch
    with open(path, "rb") as f:
        data = f.read()
    if data.startswith(UTF8_BOM):
        data = data[len(UTF8_BOM):]
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as e:
        fail(f"{path} is not UTF-8 text ({e}).")
    if len(data) < minimum:
        fail(f"{path} holds {len(data)} bytes, fewer than one window of seq-len + 1 = {minimum}.")
    return torch.frombuffer(bytearray(data), dtype=torch.uint8).to(torch.int64)


def build_model(torchscale, seed):
    import torch
    import torch.nn as nn
    RetNetConfig, RetNetDecoder = torchscale[0], torchscale[1]
    torch.manual_seed(seed)
    config = RetNetConfig(**TINY)
    d = config.decoder_embed_dim
    # As torchscale's fairseq language model builds it: the embedding first, N(0, d^-1/2), no padding row.
    embed_tokens = nn.Embedding(config.vocab_size, d)
    nn.init.normal_(embed_tokens.weight, mean=0, std=d ** -0.5)
    decoder = RetNetDecoder(config, embed_tokens=embed_tokens)
    if decoder.chunkwise_recurrent:
        fail("the decoder is chunkwise; expected torchscale's parallel form.")
    return config, decoder.float()


def parameter_groups(decoder, weight_decay):
    """AdamW.DecaysByDefault: matrices (rank >= 2) decay except embed_tokens.weight; vectors do not."""
    decay, no_decay = [], []
    for name, p in decoder.named_parameters():
        if p.dim() >= 2 and not (name == "embed_tokens.weight" or name.endswith(".embed_tokens.weight")):
            decay.append((name, p))
        else:
            no_decay.append((name, p))
    groups = [
        {"params": [p for _, p in decay], "weight_decay": weight_decay},
        {"params": [p for _, p in no_decay], "weight_decay": 0.0},
    ]
    return groups, [n for n, _ in decay], [n for n, _ in no_decay]


def evaluate(decoder, data, seq_len, batch, vocab):
    """Trainer.Evaluate: windows of T + 1 at stride T (the last partial one dropped), batches of B; nats per token."""
    import torch
    import torch.nn.functional as F
    windows = (data.numel() - 1) // seq_len
    offsets = torch.arange(seq_len + 1)
    was_training = decoder.training
    decoder.eval()
    nats, tokens = 0.0, 0
    with torch.no_grad():
        for first in range(0, windows, batch):
            starts = torch.arange(first, min(first + batch, windows)) * seq_len
            w = data[starts[:, None] + offsets[None, :]]
            logits = decoder(w[:, :-1])[0]
            nats += F.cross_entropy(logits.reshape(-1, vocab), w[:, 1:].reshape(-1), reduction="sum").item()
            tokens += w.shape[0] * seq_len
    decoder.train(was_training)
    return nats / tokens, tokens


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--torchscale", required=True,
                        help=f"torchscale source tree at commit {make_fixtures.TORCHSCALE_COMMIT}")
    parser.add_argument("--train", required=True, help="UTF-8 training text (byte tokens)")
    parser.add_argument("--val", required=True, help="UTF-8 validation text (byte tokens)")
    parser.add_argument("--steps", type=int, required=True, help="optimiser steps (the schedule's length)")
    parser.add_argument("--batch", type=int, default=8, help="windows per micro-batch, B")
    parser.add_argument("--seq-len", type=int, default=128, help="predicted tokens per window, T")
    parser.add_argument("--grad-accum", type=int, default=1, help="micro-batches per optimiser step")
    parser.add_argument("--lr", type=float, default=3e-4, help="peak learning rate")
    parser.add_argument("--warmup", type=int, default=0, help="linear warm-up steps")
    parser.add_argument("--schedule", default="cosine", choices=["cosine", "linear", "polynomial", "constant"])
    parser.add_argument("--power", type=float, default=1.0, help="exponent of the polynomial schedule")
    parser.add_argument("--min-lr-ratio", type=float, default=0.1, help="final learning rate / peak")
    parser.add_argument("--betas", default="0.9,0.98", help="AdamW's beta1,beta2")
    parser.add_argument("--eps", type=float, default=1e-8, help="AdamW's eps")
    parser.add_argument("--weight-decay", type=float, default=0.01, help="decoupled weight decay of the matrices")
    parser.add_argument("--clip", type=float, default=1.0, help="global gradient-norm clip (0: off)")
    parser.add_argument("--seed", type=int, default=0, help="seeds the initialisation and the window sampler")
    parser.add_argument("--threads", type=int, default=1, help="torch.set_num_threads")
    parser.add_argument("--log-every", type=int, default=10, help="print every N steps (0: never)")
    parser.add_argument("--json", help="write the report (with every step) here")
    args = parser.parse_args()

    try:
        beta1, beta2 = (float(b) for b in args.betas.split(","))
    except ValueError:
        fail(f"--betas is '{args.betas}'; expected two numbers, e.g. 0.9,0.98.")
    problems = []
    for name in ("steps", "batch", "seq_len", "grad_accum", "threads"):
        if getattr(args, name) < 1:
            problems.append(f"--{name.replace('_', '-')} is {getattr(args, name)}; expected >= 1")
    if not 0 <= args.warmup <= args.steps:
        problems.append(f"--warmup is {args.warmup}; expected 0 ... --steps ({args.steps})")
    if not (args.lr > 0 and math.isfinite(args.lr)):
        problems.append(f"--lr is {args.lr}; expected a finite value > 0")
    if not 0 <= args.min_lr_ratio <= 1:
        problems.append(f"--min-lr-ratio is {args.min_lr_ratio}; expected 0 ... 1")
    if not (0 <= beta1 < 1 and 0 <= beta2 < 1):
        problems.append(f"--betas are {beta1},{beta2}; expected each in [0, 1)")
    if not (args.clip >= 0 and math.isfinite(args.clip)):
        problems.append(f"--clip is {args.clip}; expected finite and >= 0")
    if not (args.weight_decay >= 0 and args.eps > 0):
        problems.append("--weight-decay must be >= 0 and --eps > 0")
    if problems:
        fail("; ".join(problems) + ".")

    started = time.perf_counter()
    root = make_fixtures.source_root(args.torchscale)
    make_fixtures.check_pinned(root)
    try:
        import torch
        import torch.nn.functional as F
    except ImportError as e:
        fail(f"{e}; run with a Python that has torch (e.g. Debian's /usr/bin/python3).")
    torchscale = make_fixtures.import_torchscale(root)
    torch.set_num_threads(args.threads)

    T, B, A = args.seq_len, args.batch, args.grad_accum
    train = read_bytes(args.train, T + 1)
    val = read_bytes(args.val, T + 1)
    config, decoder = build_model(torchscale, args.seed)
    vocab = config.vocab_size
    groups, decayed, not_decayed = parameter_groups(decoder, args.weight_decay)
    optimizer = torch.optim.AdamW(groups, lr=args.lr, betas=(beta1, beta2), eps=args.eps)
    parameters = [p for p in decoder.parameters()]
    parameter_count = sum(p.numel() for p in parameters)
    generator = torch.Generator().manual_seed(args.seed)
    offsets = torch.arange(T + 1)
    setup_seconds = time.perf_counter() - started

    print(f"torchscale {make_fixtures.TORCHSCALE_COMMIT[:12]} RetNetDecoder (tiny: d 64, value 128, 2 heads, FFN 128, "
          f"2 layers, vocab 256), {parameter_count:,} parameters; torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads")
    print(f"train {train.numel():,} bytes, val {val.numel():,} bytes; {args.steps} steps of {A}x{B}x{T} tokens, "
          f"lr {args.lr} ({args.schedule}, warm-up {args.warmup}, min ratio {args.min_lr_ratio}), "
          f"betas {beta1},{beta2}, weight decay {args.weight_decay}, clip {args.clip}, seed {args.seed}")

    t0 = time.perf_counter()
    val_before, val_tokens = evaluate(decoder, val, T, B, vocab)
    eval_before_seconds = time.perf_counter() - t0
    print(f"val before training: {val_before:.4f} nats/byte, {val_before / math.log(2):.4f} bits/byte "
          f"over {val_tokens:,} tokens ({eval_before_seconds:.2f} s)")

    decoder.train()
    steps = []
    train_seconds = 0.0
    train_tokens = 0
    starts_range = train.numel() - T  # starts uniform on [0, Count - T - 1], as WindowSampler draws them
    for step in range(1, args.steps + 1):
        t0 = time.perf_counter()
        optimizer.zero_grad(set_to_none=False)
        loss_sum = 0.0
        for _ in range(A):
            starts = torch.randint(0, starts_range, (B,), generator=generator)
            w = train[starts[:, None] + offsets[None, :]]
            logits = decoder(w[:, :-1])[0]
            loss = F.cross_entropy(logits.reshape(-1, vocab), w[:, 1:].reshape(-1))
            (loss / A).backward()
            loss_sum += loss.item() / A
        if args.clip > 0:
            norm = torch.nn.utils.clip_grad_norm_(parameters, args.clip, error_if_nonfinite=True).item()
        else:
            norm = torch.norm(torch.stack([p.grad.detach().norm(2) for p in parameters]), 2).item()
            if not math.isfinite(norm):
                fail(f"step {step}: the gradient norm is {norm}.")
        rate = learning_rate(step, args.lr, args.warmup, args.steps, args.schedule, args.min_lr_ratio, args.power)
        for group in optimizer.param_groups:
            group["lr"] = rate
        optimizer.step()
        seconds = time.perf_counter() - t0
        train_seconds += seconds
        train_tokens += A * B * T
        steps.append({"step": step, "loss": loss_sum, "lr": rate, "grad_norm": norm, "seconds": seconds})
        if args.log_every and (step % args.log_every == 0 or step == 1 or step == args.steps):
            print(f"step {step}/{args.steps}  loss {loss_sum:.4f}  lr {rate:.2e}  grad norm {norm:.3f}  "
                  f"{train_tokens / train_seconds:.0f} tokens/s", flush=True)

    t0 = time.perf_counter()
    val_after, _ = evaluate(decoder, val, T, B, vocab)
    eval_after_seconds = time.perf_counter() - t0
    total_seconds = time.perf_counter() - started

    losses = [s["loss"] for s in steps]
    first5 = sum(losses[:5]) / len(losses[:5])
    last5 = sum(losses[-5:]) / len(losses[-5:])
    tokens_per_second = train_tokens / train_seconds
    print(f"training: {train_tokens:,} tokens in {train_seconds:.2f} s = {tokens_per_second:.0f} tokens/s "
          f"({train_seconds / args.steps * 1000:.1f} ms/step)")
    print(f"training loss: first 5 steps {first5:.4f}, last 5 steps {last5:.4f} nats/token")
    print(f"val after training: {val_after:.4f} nats/byte, {val_after / math.log(2):.4f} bits/byte "
          f"over {val_tokens:,} tokens ({eval_after_seconds:.2f} s)")
    print(f"wall: setup {setup_seconds:.2f} s, total {total_seconds:.2f} s")

    if args.json:
        report = {
            "generator": "tools/torchscale-train/train.py",
            "torchscale_commit": make_fixtures.TORCHSCALE_COMMIT,
            "torch_version": torch.__version__,
            "python": platform.python_version(),
            "threads": torch.get_num_threads(),
            "form": "parallel",
            "config": {k: v for k, v in sorted(vars(config).items()) if make_fixtures.json_value(v)},
            "parameters": parameter_count,
            "decayed_parameters": decayed,
            "undecayed_parameters": not_decayed,
            "settings": {
                "train": os.path.abspath(args.train), "val": os.path.abspath(args.val), "steps": args.steps,
                "batch": B, "seq_len": T, "grad_accum": A, "lr": args.lr, "warmup": args.warmup,
                "schedule": args.schedule, "power": args.power, "min_lr_ratio": args.min_lr_ratio,
                "beta1": beta1, "beta2": beta2, "eps": args.eps, "weight_decay": args.weight_decay,
                "clip": args.clip, "seed": args.seed,
            },
            "train_bytes": train.numel(),
            "val_bytes": val.numel(),
            "train_tokens": train_tokens,
            "train_seconds": train_seconds,
            "tokens_per_second": tokens_per_second,
            "train_loss_first5": first5,
            "train_loss_last5": last5,
            "val_tokens": val_tokens,
            "val_loss_before": val_before,
            "val_bits_per_byte_before": val_before / math.log(2),
            "val_loss": val_after,
            "val_bits_per_byte": val_after / math.log(2),
            "eval_before_seconds": eval_before_seconds,
            "eval_after_seconds": eval_after_seconds,
            "setup_seconds": setup_seconds,
            "total_seconds": total_seconds,
            "steps_log": steps,
        }
        make_fixtures.write_json(args.json, report)
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
