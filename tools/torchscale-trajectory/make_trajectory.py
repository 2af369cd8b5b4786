#!/usr/bin/env python3
"""Writes a training-trajectory fixture: 50 AdamW steps of torchscale's RetNetDecoder, recorded step by step.

Usage:
    /usr/bin/python3 tools/torchscale-trajectory/make_trajectory.py --torchscale /tmp/torchscale-src \
        --text docs/MATH.md --output tests/RetNet.Ilgpu.Tests/Fixtures/TorchscaleTrajectory/tiny-t16

From one initial state_dict (the C# "tiny" preset built by torchscale's code at the commit pinned in
tools/torchscale-fixtures/make_fixtures.py, every value rounded to fp32) and one sequence of windows of byte ids (saved
in the fixture), it trains in float64 with `retnet train`'s recipe: mean next-token cross-entropy, clip_grad_norm_,
the learning rate of LearningRateSchedule.At (tools/torchscale-train/train.py's copy of it), torch.optim.AdamW with
the parameter groups of AdamW.DecaysByDefault. It writes per-step loss, learning rate and pre-clip gradient norm, and
the weights after the last step. See README.md beside this file. Nothing of torchscale is copied here.
"""

import argparse
import hashlib
import math
import os
import platform
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.dont_write_bytecode = True  # no __pycache__ beside the helpers
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "torchscale-fixtures"))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "torchscale-train"))
import make_fixtures  # noqa: E402  (pinning, import, safetensors and JSON helpers)
import train  # noqa: E402  (TINY, learning_rate, parameter_groups: the recipe of `retnet train`)

# The run the fixture records: retnet train's recipe, 50 steps with a 5-step warm-up. Why these values:
# - lr 1e-3: the trajectory must be well-conditioned, or no fp32 trainer can follow it. At lr 3e-3 torch's own float32
#   run of this fixture leaves the float64 one by 1e-3 relative in loss from step 23 on (and 4e-3 of a tensor's max
#   with clip 2.0); at 1e-3 by 2e-7 at most in 50 steps (checked below: a tenth of the tests' tolerances at most).
# - clip 1.0 (retnet train's default) is below most steps' gradient norms, so a trainer that does not clip fails;
# - weight decay 0.1 makes the decay groups visible in the final weights (0.01 would shrink a weight by 3e-4 of
#   itself over 50 steps, below the tests' tolerance);
# - T = 16: at T = 32 and lr 3e-3 torchscale's row-sum clamp (which the C# model does not have, docs/MATH.md §4) moved
#   the losses by 2.4e-3 relative by step 50; here it never triggers (checked below).
SETTINGS = dict(steps=50, batch=8, seq_len=16, lr=1e-3, warmup=5, schedule="cosine", min_lr_ratio=0.1,
                beta1=0.9, beta2=0.98, eps=1e-8, weight_decay=0.1, clip=1.0)
SEED = 20
# What tests/RetNet.Ilgpu.Tests/Training/TorchscaleTrajectoryTests.cs allows: each step's loss relative to
# torchscale's, and each final weight tensor relative to its own max |value|.
LOSS_TOLERANCE = 1e-4
WEIGHT_TOLERANCE = 1e-3


class UndoneClamp:
    """Multiplies each row of torchscale's parallel retention output by the clamp(Σ_j |(QKᵀ⊙D)_ij|, 1, 5e4) it divided
    by (a detached factor, as torchscale's is), which leaves the canonical retention the C# model computes."""

    def __init__(self, retention_class):
        self.retention_class = retention_class
        self.original = retention_class.parallel_forward

    def __enter__(self):
        original = self.original

        def parallel_forward(module, qr, kr, v, mask):
            scale = (qr @ kr.transpose(-1, -2) * mask).detach().abs().sum(dim=-1, keepdim=True).clamp(min=1, max=5e4)
            return original(module, qr, kr, v, mask) * scale.transpose(1, 2)  # [b, h, t, 1] -> [b, t, h, 1]

        self.retention_class.parallel_forward = parallel_forward
        return self

    def __exit__(self, *exc):
        self.retention_class.parallel_forward = self.original


def run(decoder, windows, s, torch, F, retention_class, undo_clamp=False, dtype=None):
    """Trains decoder in place on windows; returns the step records, the final parameters, the largest row sum and
    the names of the decayed and undecayed parameters."""
    import contextlib
    groups, decayed, not_decayed = train.parameter_groups(decoder, s["weight_decay"])
    optimizer = torch.optim.AdamW(groups, lr=s["lr"], betas=(s["beta1"], s["beta2"]), eps=s["eps"])
    parameters = list(decoder.parameters())
    vocab = decoder.embed_tokens.weight.shape[0]
    decoder.train()
    steps = []
    with make_fixtures.RowSumProbe(retention_class) as probe, \
            (UndoneClamp(retention_class) if undo_clamp else contextlib.nullcontext()):
        for step in range(1, s["steps"] + 1):
            optimizer.zero_grad(set_to_none=False)
            w = windows[step - 1]
            logits = decoder(w[:, :-1])[0]
            if logits.dtype != (dtype or torch.float64):
                train.fail(f"step {step}: the logits are {logits.dtype}; expected {dtype or torch.float64}.")
            loss = F.cross_entropy(logits.reshape(-1, vocab), w[:, 1:].reshape(-1))
            loss.backward()
            norm = torch.nn.utils.clip_grad_norm_(parameters, s["clip"], error_if_nonfinite=True).item()
            rate = train.learning_rate(step, s["lr"], s["warmup"], s["steps"], s["schedule"], s["min_lr_ratio"])
            for group in optimizer.param_groups:
                group["lr"] = rate
            optimizer.step()
            steps.append({"step": step, "loss": loss.item(), "lr": rate, "grad_norm": norm,
                          "clip_scale": min(1.0, s["clip"] / (norm + 1e-6))})
            if not undo_clamp and dtype is None:
                print(f"step {step}: loss {loss.item():.6f}  lr {rate:.3e}  grad norm {norm:.4f}  "
                      f"row sum {probe.max_row_sum:.3f}", flush=True)
    final = {name: p.detach().clone() for name, p in decoder.named_parameters()}
    return steps, final, probe.max_row_sum, decayed, not_decayed


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--torchscale", required=True,
                        help=f"torchscale source tree at commit {make_fixtures.TORCHSCALE_COMMIT}")
    parser.add_argument("--text", required=True, help="UTF-8 text the windows are drawn from (their ids are saved)")
    parser.add_argument("--output", required=True, help="the fixture folder to write")
    args = parser.parse_args()

    root = make_fixtures.source_root(args.torchscale)
    make_fixtures.check_pinned(root)
    import torch
    import torch.nn as nn
    import torch.nn.functional as F
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    torch.set_default_dtype(torch.float64)
    torchscale = make_fixtures.import_torchscale(root)
    RetNetConfig, RetNetDecoder, MultiScaleRetention = torchscale[0], torchscale[1], torchscale[2]
    s = SETTINGS
    T, B = s["seq_len"], s["batch"]

    data = train.read_bytes(args.text, T + 1)
    torch.manual_seed(SEED)
    config = RetNetConfig(**train.TINY)
    embed_tokens = nn.Embedding(config.vocab_size, config.decoder_embed_dim)
    nn.init.normal_(embed_tokens.weight, mean=0, std=config.decoder_embed_dim ** -0.5)
    decoder = RetNetDecoder(config, embed_tokens=embed_tokens)
    if decoder.chunkwise_recurrent:
        train.fail("the decoder is chunkwise; expected torchscale's parallel form.")
    # torchscale makes the decay buffer float32 whatever the default dtype; the whole model goes float64, and every
    # value (buffers included) is rounded to fp32 so the fp32 checkpoint holds exactly what the reference starts from.
    decoder.double()
    with torch.no_grad():
        for tensor in list(decoder.parameters()) + list(decoder.buffers()):
            tensor.data = tensor.data.float().double()
    initial = {k: v.detach().clone() for k, v in decoder.state_dict().items()}

    generator = torch.Generator().manual_seed(SEED)
    offsets = torch.arange(T + 1)
    windows = []
    for _ in range(s["steps"]):
        starts = torch.randint(0, data.numel() - T, (B,), generator=generator)
        windows.append(data[starts[:, None] + offsets[None, :]])

    steps, final, max_row_sum, decayed, not_decayed = run(decoder, windows, s, torch, F, MultiScaleRetention)
    # torchscale's parallel form divides each retention row by clamp(Σ|QKᵀ⊙D|, 1, 5e4); the C# model does not
    # (docs/MATH.md §4). Training pushes row sums past 1, so the same run again with the clamp undone measures what it
    # changes: it must stay well inside the tests' tolerances, or the fixture would test the clamp, not the trainer.
    decoder.load_state_dict(initial)
    unclamped, unclamped_final, _, _, _ = run(decoder, windows, s, torch, F, MultiScaleRetention, undo_clamp=True)
    clamp_loss = max(abs(a["loss"] - b["loss"]) / abs(a["loss"]) for a, b in zip(steps, unclamped))
    clamp_weights = max(((final[k] - unclamped_final[k]).abs().max() / final[k].abs().max()).item() for k in final)
    print(f"max retention row sum {max_row_sum:.4f}; undoing the clamp changes a step's loss by {clamp_loss:.2e} "
          f"relative at most and a final weight by {clamp_weights:.2e} of its tensor's max |value|")
    if clamp_loss > LOSS_TOLERANCE / 10 or clamp_weights > WEIGHT_TOLERANCE / 10:
        train.fail("torchscale's row-sum clamp changes the trajectory by more than a tenth of the tolerances.")

    # The same run in float32: how far fp32 rounding alone carries a trajectory from the float64 one.
    decoder.load_state_dict(initial)
    decoder.float()
    f32, f32_final, _, _, _ = run(decoder, [w for w in windows], s, torch, F, MultiScaleRetention, dtype=torch.float32)
    f32_losses = [abs(a["loss"] - b["loss"]) / abs(a["loss"]) for a, b in zip(steps, f32)]
    f32_weights = max(((final[k] - f32_final[k].double()).abs().max() / final[k].abs().max()).item() for k in final)
    print("float32 against float64, loss relative per step: " + " ".join(f"{x:.1e}" for x in f32_losses))
    print(f"float32 against float64: final weights {f32_weights:.2e} of the tensor's max |value|")
    if max(f32_losses) > LOSS_TOLERANCE / 10 or f32_weights > WEIGHT_TOLERANCE / 10:
        train.fail("fp32 rounding alone moves this trajectory by more than a tenth of the tolerances: it is too "
                   "ill-conditioned for an fp32 trainer to be held to it (lower the learning rate).")

    os.makedirs(args.output, exist_ok=True)
    metadata = {"torchscale_commit": make_fixtures.TORCHSCALE_COMMIT, "torch_version": torch.__version__}
    make_fixtures.write_safetensors(os.path.join(args.output, "model.safetensors"), initial, metadata)
    make_fixtures.write_safetensors(os.path.join(args.output, "final.safetensors"), final, {**metadata, "step": str(s["steps"])})
    make_fixtures.write_json(os.path.join(args.output, "config.json"),
                             {k: v for k, v in sorted(vars(config).items()) if make_fixtures.json_value(v)})
    with open(os.path.join(args.output, "windows.txt"), "w", encoding="utf-8", newline="\n") as f:
        for w in windows:
            for row in w.tolist():
                f.write(" ".join(str(i) for i in row) + "\n")
    with open(args.text, "rb") as f:
        text_sha256 = hashlib.sha256(f.read()).hexdigest()
    make_fixtures.write_json(os.path.join(args.output, "trajectory.json"), {
        "generator": "tools/torchscale-trajectory/make_trajectory.py",
        "torchscale_commit": make_fixtures.TORCHSCALE_COMMIT,
        "torch_version": torch.__version__,
        "python": platform.python_version(),
        "dtype": "float64",
        "form": "parallel",
        "seed": SEED,
        "text": {"path": os.path.relpath(os.path.abspath(args.text)).replace(os.sep, "/"), "sha256": text_sha256,
                 "bytes": data.numel()},
        "settings": s,
        "decayed_parameters": decayed,
        "undecayed_parameters": not_decayed,
        "max_retention_row_sum": max_row_sum,
        "clipped_steps": sum(1 for x in steps if x["clip_scale"] < 1),
        "clamp_effect": {"loss_relative": clamp_loss, "weights_of_tensor_max": clamp_weights},
        "float32_run_effect": {"loss_relative": max(f32_losses), "weights_of_tensor_max": f32_weights},
        "tolerances": {"loss_relative": LOSS_TOLERANCE, "weights_of_tensor_max": WEIGHT_TOLERANCE},
        "steps": steps,
    })
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
