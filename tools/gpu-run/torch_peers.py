#!/usr/bin/env python3
"""The peer's side of the GPU session (tools/gpu-run/run.sh): the same work as `retnet bench` timed with PyTorch on the
same device, written as JSON. torch.matmul in bf16 and fp32 (the GEMM target), a decoding step's products over a
7b-sized layer's weights in bf16 (the bandwidth target), chunkwise retention written with torch matmuls, forward and
backward (the retention target; fla's kernels report ~10 ms on an H100 at B4 H8 D256 T16384), and causal
scaled_dot_product_attention forward and backward (the Transformer baseline's token mixer).

Usage: python3 torch_peers.py OUT.json [--device cuda|cpu] [--small]
--small shrinks every size so the script can be checked on a CPU in seconds.
"""
import json
import sys
import time

import torch


def timed(fn, device, repetitions=10, warmup=3):
    """Median milliseconds of fn() after warm-up, synchronised (CUDA events on a GPU)."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repetitions):
        if device == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            torch.cuda.synchronize()
            times.append(start.elapsed_time(end))
        else:
            t0 = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t0) * 1e3)
    times.sort()
    return times[len(times) // 2]


def chunkwise_retention(q, k, v, gamma, chunk):
    """Canonical retention o_t = sum_{j<=t} gamma^(t-j) (q_t.k_j) v_j, chunkwise: inside a chunk the masked decayed
    product, across chunks the state S [B, H, Dk, Dv] carried with decay gamma^L (L the chunk's length; the last chunk
    may be shorter). q, k [B, H, T, Dk], v [B, H, T, Dv], gamma [H]."""
    b, h, t, dk = q.shape
    dv = v.shape[-1]
    log_g = torch.log(gamma.double())[:, None]  # [H, 1]

    def factors(length):
        idx = torch.arange(length, device=q.device, dtype=torch.float64)
        decay = torch.exp((idx[:, None] - idx[None, :])[None] * log_g[..., None]) * (idx[:, None] >= idx[None, :])
        inner = torch.exp((idx + 1)[None] * log_g)  # gamma^(i+1): the state's share in row i
        to_state = torch.exp((length - 1 - idx)[None] * log_g)  # gamma^(L-1-j): row j's share in the next state
        return (decay.to(q.dtype), inner.to(q.dtype)[None, :, :, None], to_state.to(q.dtype)[None, :, :, None],
                torch.exp(length * log_g).to(q.dtype)[None, :, :, None])

    full = factors(chunk)
    state = torch.zeros(b, h, dk, dv, device=q.device, dtype=q.dtype)
    outs = []
    for c0 in range(0, t, chunk):
        qc, kc, vc = q[:, :, c0:c0 + chunk], k[:, :, c0:c0 + chunk], v[:, :, c0:c0 + chunk]
        decay, inner, to_state, chunk_decay = full if qc.shape[2] == chunk else factors(qc.shape[2])
        o = ((qc @ kc.transpose(-1, -2)) * decay) @ vc + (qc * inner) @ state
        state = state * chunk_decay + (kc * to_state).transpose(-1, -2) @ vc
        outs.append(o)
    return torch.cat(outs, dim=2)


def parallel_retention(q, k, v, gamma):
    """The same retention as a masked T x T product: the reference the chunkwise code is checked against."""
    t = q.shape[2]
    idx = torch.arange(t, device=q.device, dtype=torch.float64)
    decay = torch.exp((idx[:, None] - idx[None, :])[None] * torch.log(gamma.double())[:, None, None])
    decay = decay * (idx[:, None] >= idx[None, :])
    return ((q.double() @ k.double().transpose(-1, -2)) * decay) @ v.double()


def main():
    out = sys.argv[1]
    device = "cuda" if "--device" not in sys.argv else sys.argv[sys.argv.index("--device") + 1]
    small = "--small" in sys.argv
    torch.manual_seed(0)
    results = {"torch": torch.__version__, "device": torch.cuda.get_device_name() if device == "cuda" else "cpu",
               "rows": []}

    def add(**row):
        results["rows"].append(row)
        print(json.dumps(row), flush=True)

    # GEMM: the product retnet bench gemm times, square and bf16/fp32.
    n = 256 if small else 4096
    for dtype in (torch.bfloat16, torch.float32):
        a = torch.randn(n, n, device=device, dtype=dtype)
        b = torch.randn(n, n, device=device, dtype=dtype)
        ms = timed(lambda: a @ b, device)
        add(work="matmul", shape=f"{n}x{n}x{n}", dtype=str(dtype), ms=ms, tflops=2 * n ** 3 / ms / 1e9)

    # A decoding step's products of one 7b-sized RetNet layer (d 4096, value 6912, FFN 6912): q, k (d -> d),
    # v, g (d -> value), out (value -> d), fc1, gate (d -> ffn), fc2 (ffn -> d); x is one row, W [out, in] in bf16.
    d, value, ffn = (128, 216, 216) if small else (4096, 6912, 6912)
    shapes = [(d, d), (d, d), (value, d), (value, d), (d, value), (ffn, d), (ffn, d), (d, ffn)]
    weights = [torch.randn(o, i, device=device, dtype=torch.bfloat16) for o, i in shapes]
    x = {i: torch.randn(1, i, device=device, dtype=torch.bfloat16) for i in {i for _, i in shapes}}
    ms = timed(lambda: [x[w.shape[1]] @ w.t() for w in weights], device)
    total = sum(w.numel() * 2 for w in weights)
    add(work="decode-layer-products", shape=f"d={d} value={value} ffn={ffn}", dtype="torch.bfloat16", ms=ms,
        weight_bytes=total, gbps=total / ms / 1e6)

    # The chunkwise code must compute retention: checked against the T x T form in float64 on a small case (a chunk that
    # does not divide T), and the check must reject gamma rounded to 1.
    cq, ck, cv = (torch.randn(1, 2, 70, 8, device=device, dtype=torch.float64) for _ in range(3))
    cg = torch.tensor([0.9, 0.99], device=device, dtype=torch.float64)
    expected = parallel_retention(cq, ck, cv, cg)
    error = (chunkwise_retention(cq, ck, cv, cg, 16) - expected).abs().max() / expected.abs().max()
    wrong = (chunkwise_retention(cq, ck, cv, torch.ones_like(cg), 16) - expected).abs().max() / expected.abs().max()
    if not (error < 1e-9 < wrong):
        raise SystemExit(f"chunkwise retention is wrong: relative error {error}, gamma=1 control {wrong}")
    add(work="chunkwise-retention-check", relative_error=float(error), gamma_one_control=float(wrong))

    # Chunkwise retention, forward and forward+backward, the shape.
    bsz, heads, dim, t, chunk = (1, 2, 32, 256, 64) if small else (4, 8, 256, 16384, 64)
    gamma = 1 - torch.exp2(-5 - torch.arange(heads, device=device, dtype=torch.float32))
    for dtype in (torch.bfloat16, torch.float32):
        q = torch.randn(bsz, heads, t, dim, device=device, dtype=dtype, requires_grad=True)
        k = (torch.randn(bsz, heads, t, dim, device=device, dtype=dtype) * dim ** -0.5).requires_grad_()
        v = torch.randn(bsz, heads, t, dim, device=device, dtype=dtype, requires_grad=True)
        with torch.no_grad():
            fwd = timed(lambda: chunkwise_retention(q, k, v, gamma, chunk), device, repetitions=5, warmup=2)

        def step():
            o = chunkwise_retention(q, k, v, gamma, chunk)
            o.sum().backward()
            q.grad = k.grad = v.grad = None

        both = timed(step, device, repetitions=5, warmup=2)
        add(work="chunkwise-retention", shape=f"B{bsz} H{heads} D{dim} T{t} C{chunk}", dtype=str(dtype),
            forward_ms=fwd, forward_backward_ms=both)

    # Causal softmax attention (the Transformer baseline), forward and backward (PyTorch 2.0 and later).
    bsz, heads, dim, t = (1, 2, 32, 256) if small else (4, 8, 128, 16384)
    if not hasattr(torch.nn.functional, "scaled_dot_product_attention"):
        add(work="sdpa-causal", skipped=f"torch {torch.__version__} has no scaled_dot_product_attention")
    for dtype in (torch.bfloat16,) if hasattr(torch.nn.functional, "scaled_dot_product_attention") else ():
        q, k, v = (torch.randn(bsz, heads, t, dim, device=device, dtype=dtype, requires_grad=True) for _ in range(3))
        with torch.no_grad():
            fwd = timed(lambda: torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True), device,
                        repetitions=5, warmup=2)

        def step():
            torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True).sum().backward()
            q.grad = k.grad = v.grad = None

        both = timed(step, device, repetitions=5, warmup=2)
        add(work="sdpa-causal", shape=f"B{bsz} H{heads} D{dim} T{t}", dtype=str(dtype), forward_ms=fwd,
            forward_backward_ms=both)

    with open(out, "w") as f:
        json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
