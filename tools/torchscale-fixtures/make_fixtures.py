#!/usr/bin/env python3
"""Writes small RetNet test fixtures by running Microsoft torchscale's own RetNet code.

Usage:
    python3 make_fixtures.py --torchscale /path/to/torchscale-source \
        --output tests/RetNet.Ilgpu.Tests/Fixtures/Torchscale

--torchscale is a checkout (or `git archive`) of https://github.com/microsoft/torchscale at the commit below:
the folder that holds the `torchscale` package. Nothing of torchscale is copied into this repository; the script
imports it from that folder and refuses to run when the files it executes differ from the pinned commit.

Each fixture is a float64 model whose parameters are all exactly representable in fp32, so a fp32 implementation
loading model.safetensors uses exactly the weights of the reference. See README.md for the files and their meaning.
"""

import argparse
import hashlib
import json
import os
import sys
import types

TORCHSCALE_COMMIT = "4d1e0e82e5adf86dd424f1463192635b73fc8efc"

# Git blob hashes at TORCHSCALE_COMMIT of every torchscale file that importing RetNetDecoder executes (from
# `git ls-tree -r <commit> torchscale`). A different file means different code: the fixtures would not be the
# pinned torchscale's.
PINNED_BLOBS = {
    "torchscale/__init__.py": "3ae31e2507e8759f2ac7f85e517288f536c04ac3",
    "torchscale/architecture/__init__.py": "3ae31e2507e8759f2ac7f85e517288f536c04ac3",
    "torchscale/architecture/config.py": "36fe0223e6a2e636afc17e0875d5c37ec839d29f",
    "torchscale/architecture/retnet.py": "b29928cb1f2fdb883b9d0cfdbb778295376176e1",
    "torchscale/architecture/utils.py": "58a5c15be538bc6ca0526f6755c28462b5d8e263",
    "torchscale/component/__init__.py": "3ae31e2507e8759f2ac7f85e517288f536c04ac3",
    "torchscale/component/droppath.py": "18c06440816d67402470f8a0876e9c4806d172fc",
    "torchscale/component/feedforward_network.py": "9d0295d94a61b4c2379f460c508ef5b50960a43e",
    "torchscale/component/flash_attention.py": "ac549344bb64802979390178482f84156dff51b6",
    "torchscale/component/gate_linear_unit.py": "ecc9b34f194acd6f14b86a7d541599124fbf4b9d",
    "torchscale/component/multihead_attention.py": "6017bc8de454a333fe7fce5ab669e8c5a1c6bb9f",
    "torchscale/component/multiscale_retention.py": "d475ccf79c0691dd55ab0a2c5a6d05010c572c21",
    "torchscale/component/multiway_network.py": "a44a699e9e3b4d2aa9389d5b1e572158b792045d",
    "torchscale/component/rms_norm.py": "465536cbb5a98b91d876b25aae44eeb659d8e84c",
    "torchscale/component/xmoe/__init__.py": "3ae31e2507e8759f2ac7f85e517288f536c04ac3",
    "torchscale/component/xmoe/global_groups.py": "c6c31096b9eee3c48025f63e21419a28ceb759c1",
    "torchscale/component/xmoe/moe_layer.py": "51e77137e2fc56ffb1e3a37494857542b079f3f7",
    "torchscale/component/xmoe/routing.py": "751a76a16195989a38a1f2289b8d19033f213ff8",
    "torchscale/component/xpos_relative_position.py": "a3ec129d9c075e1054d5b4c8a99baee4812feadf",
}

BATCH = 2
SEQ_LEN = 12

# Shared by every fixture unless it says otherwise: small enough for the CPU accelerator, a value width different
# from d and an FFN width different from both, so that a transposed or misread matrix shows as a shape error.
BASE = dict(
    decoder_embed_dim=32,
    decoder_value_embed_dim=48,
    decoder_ffn_embed_dim=40,
    decoder_layers=2,
    vocab_size=40,
    dropout=0.0,
    activation_dropout=0.0,
    drop_path_rate=0.0,
    layernorm_eps=1e-6,
)

# name, seed, the RetNetConfig fields that distinguish it, per-head decays γ written over the decay buffer (None:
# torchscale's own schedule).
FIXTURES = [
    ("prenorm-swish-untied-scaled-eps6-h2", 101,
     dict(decoder_retention_heads=2, activation_fn="swish", layernorm_eps=1e-6,
          share_decoder_input_output_embed=False, no_scale_embedding=False), None),
    ("prenorm-gelu-tied-unscaled-eps5-h4", 102,
     dict(decoder_retention_heads=4, activation_fn="gelu", layernorm_eps=1e-5,
          share_decoder_input_output_embed=True, no_scale_embedding=True), None),
    ("postnorm-swish-h2", 103,
     dict(decoder_retention_heads=2, activation_fn="swish", layernorm_eps=1e-5, decoder_normalize_before=False,
          no_scale_embedding=False), None),
    ("deepnorm-postnorm-gelu-h2", 104,
     dict(decoder_retention_heads=2, activation_fn="gelu", deepnorm=True, decoder_normalize_before=False,
          no_scale_embedding=False), None),
    ("deepnorm-prenorm-swish-h4", 105,
     dict(decoder_retention_heads=4, activation_fn="swish", deepnorm=True, decoder_normalize_before=True,
          no_scale_embedding=False), None),
    ("layernorm-embedding-gelu-h2", 106,
     dict(decoder_retention_heads=2, activation_fn="gelu", layernorm_embedding=True, layernorm_eps=1e-6,
          no_scale_embedding=False), None),
    # Decays unlike torchscale's schedule (0.96875, 0.984375 for two heads): a loader that ignores the buffer and
    # uses its own schedule gets visibly different logits.
    ("trained-decays-h2", 107,
     dict(decoder_retention_heads=2, activation_fn="swish", no_scale_embedding=False), [0.9, 0.99]),
    # An odd head count with d 24 (Dk 8) and value width 36 (Dv 12).
    ("prenorm-swish-h3-dk8", 108,
     dict(decoder_retention_heads=3, activation_fn="swish", decoder_embed_dim=24, decoder_value_embed_dim=36,
          no_scale_embedding=False), None),
]

# Parallel and recurrent logits must agree to this fraction of max|logits|: float64 rounding only.
FORMS_AGREE = 1e-9


def fail(message):
    sys.exit(f"make_fixtures.py: {message}")


def git_blob_sha1(data):
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def source_root(path):
    """The folder holding the torchscale package, given it or the package folder itself."""
    path = os.path.abspath(path)
    if os.path.isfile(os.path.join(path, "torchscale", "architecture", "retnet.py")):
        return path
    if os.path.isfile(os.path.join(path, "architecture", "retnet.py")):
        return os.path.dirname(path)
    fail(f"--torchscale {path} holds no torchscale/architecture/retnet.py; expected a torchscale source tree "
         f"at commit {TORCHSCALE_COMMIT}.")


def check_pinned(root):
    wrong = []
    for relative, expected in sorted(PINNED_BLOBS.items()):
        path = os.path.join(root, relative)
        if not os.path.isfile(path):
            wrong.append(f"{relative}: missing")
            continue
        with open(path, "rb") as f:
            actual = git_blob_sha1(f.read())
        if actual != expected:
            wrong.append(f"{relative}: blob {actual}, expected {expected}")
    if wrong:
        fail(f"the torchscale source at {root} is not commit {TORCHSCALE_COMMIT}:\n  " + "\n  ".join(wrong) +
             f"\nCheck out that commit (git checkout {TORCHSCALE_COMMIT}) and run again.")


def install_stand_ins():
    """Minimal modules for third-party packages torchscale imports but RetNet never calls.

    Always these, even where the real packages are installed, so that the fixtures do not depend on them.
    checkpoint_wrapper and FSDP's wrap are numerically the identity, so identity stand-ins are exact should a config
    ask for them; timm's drop_path (drop_path_rate > 0) and einops (multi-head attention, not RetNet) refuse.
    """

    def module(name, **attributes):
        m = types.ModuleType(name)
        m.__dict__.update(attributes)
        m.__file__ = f"<stand-in for {name}, make_fixtures.py>"
        sys.modules[name] = m
        return m

    def identity(layer, *args, **kwargs):
        return layer

    def refuse(what):
        def call(*args, **kwargs):
            raise NotImplementedError(f"make_fixtures.py stands in for {what}; a fixture must not need it.")
        return call

    module("fairscale")
    module("fairscale.nn", checkpoint_wrapper=identity, wrap=identity)
    module("timm")
    module("timm.models")
    module("timm.models.layers", drop_path=refuse("timm.models.layers.drop_path"))
    module("einops", rearrange=refuse("einops.rearrange"))


def import_torchscale(root):
    if "torchscale" in sys.modules:
        fail("torchscale is already imported; run the script as a program.")
    install_stand_ins()
    sys.path.insert(0, root)
    from torchscale.architecture.config import RetNetConfig
    from torchscale.architecture.retnet import RetNetDecoder
    from torchscale.component.multiscale_retention import MultiScaleRetention
    from torchscale.component.rms_norm import RMSNorm
    # Every torchscale module that ran must be one of the checked files under root, not an installed copy.
    for name, m in sorted(sys.modules.items()):
        if name == "torchscale" or name.startswith("torchscale."):
            relative = os.path.relpath(os.path.abspath(m.__file__), root).replace(os.sep, "/")
            if relative not in PINNED_BLOBS:
                fail(f"importing RetNet loaded {m.__file__}, which is not a checked file of {root}.")
    return RetNetConfig, RetNetDecoder, MultiScaleRetention, RMSNorm


class RowSumProbe:
    """Records max_row Σ_j |(Q Kᵀ ⊙ D)_ij| of torchscale's parallel retention.

    torchscale divides each row of the parallel form by clamp(that sum, 1, 5e4) and the recurrent form does not; the
    group norm undoes the division only up to its eps, so the two forms are the same function (and these fixtures are
    valid for every form) only when no row sum exceeds 1.
    """

    def __init__(self, retention_class):
        self.retention_class = retention_class
        self.original = retention_class.parallel_forward
        self.max_row_sum = 0.0

    def __enter__(self):
        probe, original = self, self.original

        def parallel_forward(module, qr, kr, v, mask):
            sums = (qr @ kr.transpose(-1, -2) * mask).detach().abs().sum(dim=-1)
            probe.max_row_sum = max(probe.max_row_sum, sums.max().item())
            return original(module, qr, kr, v, mask)

        self.retention_class.parallel_forward = parallel_forward
        return self

    def __exit__(self, *exc):
        self.retention_class.parallel_forward = self.original


def json_value(value):
    try:
        json.dumps(value)
        return True
    except TypeError:
        return False


def write_safetensors(path, tensors, metadata):
    """Writes F32 safetensors: u64 LE header length, JSON header padded with spaces to 8 bytes, raw LE data."""
    import numpy as np
    import torch
    header = {"__metadata__": dict(metadata)}
    blobs = []
    offset = 0
    for name in sorted(tensors):
        array = tensors[name].detach().cpu().to(torch.float32).contiguous().numpy()
        data = array.astype("<f4", copy=False).tobytes()
        header[name] = {"dtype": "F32", "shape": list(array.shape), "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    text = json.dumps(header, sort_keys=True, separators=(",", ":")).encode("utf-8")
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(np.uint64(len(text)).astype("<u8").tobytes())
        f.write(text)
        for data in blobs:
            f.write(data)


def write_json(path, value):
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        json.dump(value, f, indent=2, sort_keys=True)
        f.write("\n")


def build(name, seed, overrides, decays, torchscale):
    import torch
    import torch.nn as nn
    RetNetConfig, RetNetDecoder, _, RMSNorm = torchscale

    torch.manual_seed(seed)
    config = RetNetConfig(**{**BASE, **overrides})
    d, vocab = config.decoder_embed_dim, config.vocab_size
    # As torchscale's fairseq language model builds it: N(0, d^-1/2). No padding row: the fixtures have no dictionary.
    embed_tokens = nn.Embedding(vocab, d)
    nn.init.normal_(embed_tokens.weight, mean=0, std=d ** -0.5)
    decoder = RetNetDecoder(config, embed_tokens=embed_tokens)
    # torchscale creates the decay buffer as float32 whatever the default dtype; the whole model goes float64.
    decoder.double()

    with torch.no_grad():
        # Norm weights start at 1, where a test that ignores them cannot fail.
        for module in decoder.modules():
            if isinstance(module, RMSNorm) and module.weight is not None:
                module.weight.copy_(1 + 0.2 * torch.randn_like(module.weight))
        if decays is not None:
            if len(decays) != config.decoder_retention_heads:
                fail(f"{name}: {len(decays)} decays for {config.decoder_retention_heads} heads.")
            decoder.retnet_rel_pos.decay.copy_(torch.log(torch.tensor(decays, dtype=torch.float64)))
        # The fp32 checkpoint must hold exactly the values the float64 reference computes with: buffers included.
        for tensor in list(decoder.parameters()) + list(decoder.buffers()):
            tensor.data = tensor.data.float().double()
    decoder.eval()
    tokens = torch.randint(0, vocab, (BATCH, SEQ_LEN))
    return config, decoder, tokens


def run_fixture(name, seed, overrides, decays, torchscale, output, torch_version):
    import torch
    import torch.nn.functional as F
    config, decoder, tokens = build(name, seed, overrides, decays, torchscale)
    vocab = config.vocab_size

    with RowSumProbe(torchscale[2]) as probe:
        logits_parallel = decoder(tokens)[0]
    if logits_parallel.dtype != torch.float64:
        fail(f"{name}: parallel logits are {logits_parallel.dtype}; expected float64.")

    # Token by token as torchscale decodes: given the first t tokens and the state of the first t−1, RetNetDecoder
    # embeds only the last one and rotates it by position t−1.
    state = {}
    steps = []
    with torch.no_grad():
        for t in range(1, SEQ_LEN + 1):
            steps.append(decoder(tokens[:, :t], incremental_state=state)[0][:, -1])
    logits_recurrent = torch.stack(steps, dim=1)

    scale = logits_parallel.detach().abs().max().item()
    difference = (logits_parallel.detach() - logits_recurrent).abs().max().item()
    if probe.max_row_sum > 1:
        fail(f"{name}: a parallel retention row has Σ|QKᵀ⊙D| = {probe.max_row_sum!r} > 1, so torchscale's clamp "
             "rescales it and the parallel and recurrent forms differ; choose another config or seed.")
    if not difference <= FORMS_AGREE * scale:
        fail(f"{name}: parallel and recurrent logits differ by {difference!r} (max|logits| {scale!r}); "
             f"expected ≤ {FORMS_AGREE}·max|logits|.")

    loss = F.cross_entropy(logits_parallel[:, :-1].reshape(-1, vocab), tokens[:, 1:].reshape(-1))
    loss.backward()
    # named_parameters lists a shared tensor once: a tied output projection's gradient is under embed_tokens.weight.
    gradients = {n: p.grad for n, p in decoder.named_parameters()}
    state_dict = decoder.state_dict()
    buffers = {n for n, _ in decoder.named_buffers()}
    tied = {"output_projection.weight"} if config.share_decoder_input_output_embed else set()
    if set(gradients) != set(state_dict) - buffers - tied or any(g is None for g in gradients.values()):
        fail(f"{name}: the gradients do not cover the parameters of the state dict.")

    folder = os.path.join(output, name)
    os.makedirs(folder, exist_ok=True)
    write_json(os.path.join(folder, "config.json"),
               {k: v for k, v in sorted(vars(config).items()) if json_value(v)})
    write_safetensors(os.path.join(folder, "model.safetensors"), state_dict, {"format": "pt"})
    with open(os.path.join(folder, "tokens.txt"), "w", encoding="utf-8", newline="\n") as f:
        for row in tokens.tolist():
            f.write(" ".join(str(i) for i in row) + "\n")
    write_safetensors(os.path.join(folder, "expected.safetensors"),
                      {"logits_parallel": logits_parallel, "logits_recurrent": logits_recurrent},
                      {"torchscale_commit": TORCHSCALE_COMMIT, "torch_version": torch_version, "fixture": name,
                       "format": "pt"})
    write_safetensors(os.path.join(folder, "gradients.safetensors"), gradients,
                      {"loss": repr(loss.item()), "format": "pt"})

    entry = {
        "name": name,
        "seed": seed,
        "settings": {k: overrides[k] for k in sorted(overrides)},
        "retention_decay": decays,
        "decoder_normalize_before": config.decoder_normalize_before,
        "deepnorm": config.deepnorm,
        "layernorm_embedding": config.layernorm_embedding,
        "tied": config.share_decoder_input_output_embed,
        "loss": repr(loss.item()),
        "max_abs_logit": repr(scale),
        "parallel_recurrent_max_abs_difference": repr(difference),
        "max_parallel_retention_row_abs_sum": repr(probe.max_row_sum),
    }
    print(f"{name}: loss {loss.item():.6f}, max|logit| {scale:.4g}, |parallel − recurrent| {difference:.3g}, "
          f"max row Σ|R| {probe.max_row_sum:.3g}")
    return entry


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--torchscale", required=True,
                        help=f"torchscale source tree at commit {TORCHSCALE_COMMIT} (the folder holding torchscale/)")
    parser.add_argument("--output", required=True, help="folder to write one subfolder per fixture into")
    args = parser.parse_args()

    root = source_root(args.torchscale)
    check_pinned(root)
    try:
        import numpy  # noqa: F401
        import torch
    except ImportError as e:
        fail(f"{e}; run with a Python that has torch and numpy (e.g. Debian's /usr/bin/python3).")
    torchscale = import_torchscale(root)

    # One thread: the reduction order, and so every bit of the output, does not depend on the machine's cores.
    torch.set_num_threads(1)
    torch.set_default_dtype(torch.float64)
    torch_version = torch.__version__

    os.makedirs(args.output, exist_ok=True)
    entries = [run_fixture(name, seed, overrides, decays, torchscale, args.output, torch_version)
               for name, seed, overrides, decays in FIXTURES]
    write_json(os.path.join(args.output, "manifest.json"), {
        "generator": "tools/torchscale-fixtures/make_fixtures.py",
        "torchscale_commit": TORCHSCALE_COMMIT,
        "torch_version": torch_version,
        "batch": BATCH,
        "seq_len": SEQ_LEN,
        "base_config": BASE,
        "fixtures": entries,
    })


if __name__ == "__main__":
    main()
