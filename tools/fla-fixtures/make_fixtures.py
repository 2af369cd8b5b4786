#!/usr/bin/env python3
"""Writes small RetNet test fixtures by running flash-linear-attention's (fla's) own RetNetForCausalLM code.

Usage:
    python3 make_fixtures.py --fla /path/to/fla-source --output tests/RetNet.Ilgpu.Tests/Fixtures/Fla

--fla is a checkout (or `git archive`) of https://github.com/fla-org/flash-linear-attention at the commit below: the
folder that holds the `fla` package. Nothing of fla is copied into this repository; the script imports it from that
folder and refuses to run when the files it executes differ from the pinned commit.

fla's model code runs as written, on the CPU in float64. Its Triton kernels are replaced, at the call sites, by fla's
own pure-torch reference functions (see README.md for which stands in for which). Every parameter is exactly
representable in the storage type of its checkpoint (F32 or BF16), so a model loading model.safetensors uses exactly
the weights of the reference.
"""

import argparse
import hashlib
import json
import os
import sys
import types

FLA_COMMIT = "bc3b101dcb713ddc5bd8924b66754eb68b5ccf89"

# Git blob hashes at FLA_COMMIT of every fla file the script executes (from `git ls-tree -r <commit> fla`). A different
# file means different code: the fixtures would not be the pinned fla's.
PINNED_BLOBS = {
    "fla/layers/multiscale_retention.py": "a02289d526a3e5f56a6295a09f544ee142b50ed4",
    "fla/layers/utils.py": "b22526d01f764edff01ba2413882061e4de3e31f",
    "fla/models/hybrid.py": "551a5aab16fbf0ebbc6f3d69d8502abe0cdb7d66",
    "fla/models/modeling_layers.py": "320ce6efb6d7c4d11d762fd0b0e766d1836cd34d",
    "fla/models/retnet/configuration_retnet.py": "36e7e464e66ed4df27f5b26ff88a1977f42e9559",
    "fla/models/retnet/modeling_retnet.py": "3f113af901f3af375068d0cbd4e711cc13b3a497",
    "fla/models/utils.py": "55d24d375b4da716e7f50fbb9e8241bcec6d81c9",
    "fla/modules/activations.py": "28bff3ed6f745009ff266bb5a872ff7a6593e4de",
    "fla/modules/fused_norm_gate.py": "0ae24cbe2b0bdbb61b621c991e614e46c61083f8",
    "fla/modules/l2warp.py": "3d385823877dac969e46b20d22b17a033f3654a7",
    "fla/modules/layernorm.py": "a337d52441cb899864925134b3e01779c0f7f208",
    "fla/modules/layernorm_gated.py": "c94365bd9cc019c4adc5945d24856aaa9831cd71",
    "fla/modules/mlp.py": "b517743fd04bc0aaa6aef104bab6850106987ea7",
    "fla/modules/rotary.py": "e95b952c1bc1fcabd1c8d286124be334756a1980",
    "fla/ops/retention/chunk.py": "f7948a902c7e4ed94008b9a9886d318a7d0efb74",
    "fla/ops/retention/fused_recurrent.py": "01d696db580e673cb5d081aa2be433a409488e7a",
    "fla/ops/retention/naive.py": "b81ea21f82f06eeb7e303ae1c4e6e38fa5a14115",
    "fla/ops/retention/parallel.py": "bd741875093ae204e1765adcfffd427e21288f0d",
    "fla/ops/simple_gla/naive.py": "4b3f9c463eda9562fd12824afa19247e72a407e0",
}

BATCH = 2
SEQ_LEN = 16
# logits_prefill_steps: this many tokens in one call, then the rest one at a time.
PREFILL = 7
# Chunk length of fla's naive chunkwise reference (its default, 64, would make a 16-token sequence one chunk).
CHUNK = 4
# config.json's transformers_version: a fixed string (no transformers runs here); legacy configs carry an older one.
TRANSFORMERS_VERSION = "4.53.0"
LEGACY_TRANSFORMERS_VERSION = "4.45.2"

# Shared by every fixture unless it says otherwise: a tiny model with fla's defaults otherwise (expand_k 1, expand_v 2,
# hidden_ratio 2, swish, norm_eps 1e-6, fuse_norm true). initializer_range is larger than fla's 0.02 so that logits
# have a scale of order 1 (fla's own _init_weights draws the weights with it).
BASE = dict(
    hidden_size=32,
    num_hidden_layers=2,
    num_heads=2,
    vocab_size=48,
    initializer_range=0.15,
)

# name, seed, storage dtype, the RetNetConfig arguments that distinguish it, config.json style ("current" or "2024").
FIXTURES = [
    # fla's defaults: expand_k 1, expand_v 2, hidden_ratio 2 and no intermediate_size, so the FFN width comes from
    # fla's formula 256·ceil(int(32·2·2/3) / 256) = 256. The other fixtures set a small intermediate_size to keep the
    # files small.
    ("fp32-untied-h2", 201, "float32", dict(), "current"),
    ("bf16-untied-h2", 202, "bfloat16", dict(intermediate_size=32), "current"),
    ("fp32-tied-ev1-h2", 203, "float32", dict(tie_word_embeddings=True, expand_v=1, intermediate_size=32), "current"),
    ("fp32-gqa-h4-kv2", 204, "float32", dict(num_heads=4, num_kv_heads=2, intermediate_size=32), "current"),
    ("fp32-ffn80-expandk05-eps5-h2", 205, "float32", dict(intermediate_size=80, expand_k=0.5, norm_eps=1e-5),
     "current"),
    ("fp32-sharded-h2", 206, "float32", dict(intermediate_size=48), "current"),
    ("fp32-unfused-norm-ev1-h2", 207, "float32", dict(fuse_norm=False, expand_v=1, intermediate_size=32), "current"),
    ("fp32-legacy2024-config-h4", 208, "float32", dict(num_heads=4, expand_k=1, expand_v=2, intermediate_size=32),
     "2024"),
]
SHARDED = {"fp32-sharded-h2"}
GENERATION_CONFIG = {"fp32-untied-h2", "fp32-tied-ev1-h2"}

# The keys fla's RetNetConfig had from Nov 2024 (commit c416c50e, "[RetNet] Set default `num_heads` to 8") until
# fuse_swiglu was added (f99798d8, Feb 2025), in the order save_pretrained then wrote them.
LEGACY_2024_KEYS = [
    "attn_mode", "hidden_size", "expand_k", "expand_v", "hidden_ratio", "intermediate_size", "num_hidden_layers",
    "num_heads", "num_kv_heads", "feature_map", "hidden_act", "use_short_conv", "conv_size", "use_output_gate",
    "max_position_embeddings", "elementwise_affine", "norm_eps", "attn", "use_cache", "initializer_range",
    "fuse_norm", "fuse_cross_entropy", "vocab_size",
]

# Every form must agree with the parallel form to this fraction of max|logits|: float64 rounding only.
FORMS_AGREE = 1e-9


def fail(message):
    sys.exit(f"make_fixtures.py: {message}")


def git_blob_sha1(data):
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def source_root(path):
    """The folder holding the fla package, given it or the package folder itself."""
    path = os.path.abspath(path)
    if os.path.isfile(os.path.join(path, "fla", "models", "retnet", "modeling_retnet.py")):
        return path
    if os.path.isfile(os.path.join(path, "models", "retnet", "modeling_retnet.py")):
        return os.path.dirname(path)
    fail(f"--fla {path} holds no fla/models/retnet/modeling_retnet.py; expected a flash-linear-attention source "
         f"tree at commit {FLA_COMMIT}.")


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
        fail(f"the fla source at {root} is not commit {FLA_COMMIT}:\n  " + "\n  ".join(wrong) +
             f"\nCheck out that commit (git checkout {FLA_COMMIT}) and run again.")


STAND_IN = "<stand-in, make_fixtures.py>"


def refuse(what):
    def call(*args, **kwargs):
        raise NotImplementedError(f"make_fixtures.py stands in for {what}; a fixture must not need it.")
    call.__name__ = what.rsplit(".", 1)[-1]
    return call


def refusing_class(what):
    class Refused:
        def __init__(self, *args, **kwargs):
            raise NotImplementedError(f"make_fixtures.py stands in for {what}; a fixture must not need it.")
    Refused.__name__ = what.rsplit(".", 1)[-1]
    return Refused


def module(name, path=None, **attributes):
    m = types.ModuleType(name)
    m.__dict__.update(attributes)
    m.__file__ = STAND_IN
    if path is not None:
        m.__path__ = [path]
    sys.modules[name] = m
    parent, _, child = name.rpartition(".")
    if parent and parent in sys.modules:
        setattr(sys.modules[parent], child, m)
    return m


# ---------------------------------------------------------------------------------------------------------------------
# Stand-ins for packages Debian lacks (triton, einops, transformers) and for what torch 1.13 lacks.
# ---------------------------------------------------------------------------------------------------------------------

def einops_rearrange(x, pattern, **sizes):
    """The rearrange patterns fla's RetNet path uses, and no other."""
    if pattern == "... (h d) -> ... h d":
        return x.reshape(*x.shape[:-1], -1, sizes["d"])
    if pattern == "... h d -> ... (h d)":
        return x.reshape(*x.shape[:-2], -1)
    if pattern == "b t h ... -> b h t ...":
        return x.transpose(1, 2)
    if pattern == "b h (n c) d -> b h n c d":
        b, h, nc, d = x.shape
        return x.reshape(b, h, nc // sizes["c"], sizes["c"], d)
    if pattern == "b h n c d -> b (n c) h d":
        b, h, n, c, d = x.shape
        return x.permute(0, 2, 3, 1, 4).reshape(b, n * c, h, d)
    raise NotImplementedError(f"make_fixtures.py's einops stand-in has no rearrange pattern {pattern!r}.")


def einops_repeat(x, pattern, **sizes):
    """The repeat patterns fla's RetNet path uses, and no other."""
    import torch
    if pattern == "... h d -> ... (h g) d":
        return x.repeat_interleave(sizes["g"], dim=-2)
    if pattern == "... (h d) -> ... (h g) d":
        return x.reshape(*x.shape[:-1], -1, sizes["d"]).repeat_interleave(sizes["g"], dim=-2)
    if pattern == "... d -> ... 1 (2 d)":
        return torch.cat([x, x], dim=-1).unsqueeze(-2)
    raise NotImplementedError(f"make_fixtures.py's einops stand-in has no repeat pattern {pattern!r}.")


def install_triton():
    """triton: enough for fla's modules to define their kernels; any launch or host helper raises."""

    class Kernel:
        def __init__(self, fn=None, *args, **kwargs):
            self.fn = fn

        def __getitem__(self, grid):
            raise NotImplementedError("make_fixtures.py: a Triton kernel was launched; it must be replaced.")

        def __call__(self, *args, **kwargs):
            raise NotImplementedError("make_fixtures.py: a Triton kernel was called; it must be replaced.")

    def jit(fn=None, **kwargs):
        return Kernel(fn) if fn is not None else (lambda f: Kernel(f))

    def decorator_factory(*args, **kwargs):
        return lambda fn: fn if isinstance(fn, Kernel) else Kernel(fn)

    class Config:
        def __init__(self, *args, **kwargs):
            self.args, self.kwargs = args, kwargs

    class Anything:
        """tl.constexpr, tl.float32, ...: names used in signatures and defaults at definition time."""

        def __init__(self, name):
            self.name = name

        def __getattr__(self, name):
            return Anything(f"{self.name}.{name}")

        def __call__(self, *args, **kwargs):
            raise NotImplementedError(f"make_fixtures.py: {self.name} was called; a Triton helper ran.")

        def __getitem__(self, item):
            return self

    class Language(types.ModuleType):
        def __getattr__(self, name):
            if name.startswith("__"):
                raise AttributeError(name)
            return Anything(f"triton.language.{name}")

    triton = module("triton", jit=jit, autotune=decorator_factory, heuristics=decorator_factory, Config=Config,
                    cdiv=refuse("triton.cdiv"), next_power_of_2=refuse("triton.next_power_of_2"),
                    __version__="0.0-stand-in")
    language = Language("triton.language")
    language.__file__ = STAND_IN
    language.__path__ = []
    sys.modules["triton.language"] = language
    triton.language = language
    for name in ("triton.language.extra", "triton.language.extra.libdevice", "triton.language.math",
                 "triton.runtime", "triton.runtime.autotuner", "triton.runtime.driver"):
        m = Language(name)
        m.__file__ = STAND_IN
        m.__path__ = []
        sys.modules[name] = m


def install_transformers():
    """transformers: the configuration, model base, outputs and helpers fla's RetNet imports, each minimal."""
    import dataclasses
    import logging
    import typing

    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    class PretrainedConfig:
        """Keeps what fla's config sets, plus the generic keys transformers' PretrainedConfig adds."""
        model_type = ""

        def __init__(self, **kwargs):
            self.pad_token_id = kwargs.pop("pad_token_id", None)
            self.bos_token_id = kwargs.pop("bos_token_id", None)
            self.eos_token_id = kwargs.pop("eos_token_id", None)
            self.tie_word_embeddings = kwargs.pop("tie_word_embeddings", True)
            self.torch_dtype = kwargs.pop("torch_dtype", None)
            self.architectures = kwargs.pop("architectures", None)
            self.output_attentions = kwargs.pop("output_attentions", False)
            self.output_hidden_states = kwargs.pop("output_hidden_states", False)
            self.return_dict = kwargs.pop("return_dict", True)
            kwargs.pop("transformers_version", None)
            kwargs.pop("model_type", None)
            # As transformers does: any other key becomes an attribute.
            for key, value in kwargs.items():
                setattr(self, key, value)

        @property
        def use_return_dict(self):
            return self.return_dict

    class PreTrainedModel(nn.Module):
        config_class = None
        base_model_prefix = ""
        _tied_weights_keys = None

        def __init__(self, config, *inputs, **kwargs):
            super().__init__()
            self.config = config

        def post_init(self):
            # transformers: initialise every module once with the model's _init_weights, then tie.
            for m in self.modules():
                if not getattr(m, "_fixture_initialised", False):
                    self._init_weights(m)
                    m._fixture_initialised = True
            if self.config.tie_word_embeddings and hasattr(self, "get_output_embeddings"):
                self.get_output_embeddings().weight = self.get_input_embeddings().weight

    class ModelOutput:
        def to_tuple(self):
            return tuple(getattr(self, f.name) for f in dataclasses.fields(self) if getattr(self, f.name) is not None)

        def __getitem__(self, index):
            return self.to_tuple()[index]

    @dataclasses.dataclass
    class BaseModelOutputWithPast(ModelOutput):
        last_hidden_state: typing.Any = None
        past_key_values: typing.Any = None
        hidden_states: typing.Any = None
        attentions: typing.Any = None

    @dataclasses.dataclass
    class CausalLMOutputWithPast(ModelOutput):
        loss: typing.Any = None
        logits: typing.Any = None
        past_key_values: typing.Any = None
        hidden_states: typing.Any = None
        attentions: typing.Any = None

    def deprecate_kwarg(old_name, version=None, new_name=None, **kwargs):
        def decorate(fn):
            def wrapped(*args, **kw):
                if old_name in kw:
                    raise NotImplementedError(f"make_fixtures.py: deprecated argument {old_name} passed.")
                return fn(*args, **kw)
            wrapped.__name__, wrapped.__doc__ = fn.__name__, fn.__doc__
            return wrapped
        return decorate

    class HFCache:
        def __init__(self, *args, **kwargs):
            pass

    class GenerationMixin:
        pass

    utils_logging = types.SimpleNamespace(get_logger=logging.getLogger)
    module("transformers", __version__=TRANSFORMERS_VERSION, path="")
    module("transformers.configuration_utils", PretrainedConfig=PretrainedConfig)
    module("transformers.modeling_utils", PreTrainedModel=PreTrainedModel)
    module("transformers.modeling_outputs", BaseModelOutputWithPast=BaseModelOutputWithPast,
           CausalLMOutputWithPast=CausalLMOutputWithPast)
    module("transformers.utils", path="", logging=utils_logging)
    module("transformers.utils.deprecation", deprecate_kwarg=deprecate_kwarg)
    module("transformers.activations", ACT2FN={"swish": F.silu, "silu": F.silu})
    module("transformers.cache_utils", Cache=HFCache)
    module("transformers.generation", GenerationMixin=GenerationMixin)
    # transformers.modeling_layers is left out on purpose: fla then uses its own GradientCheckpointingLayer.


def install_torch_gaps():
    """What fla imports from torch ≥ 2 and torch 1.13 lacks; each added only where missing."""
    import torch
    import torch.distributed
    import torch.nn as nn

    if not hasattr(torch, "compiler"):
        # torch.compiler.disable only keeps torch.compile away from a function: the identity without compile.
        torch.compiler = types.SimpleNamespace(disable=lambda fn=None, **kwargs: fn if fn else (lambda f: f))
    if not hasattr(torch, "compile"):
        # fla decorates a few activations (not RetNet's) with @torch.compile; uncompiled they are the same function.
        torch.compile = lambda fn=None, **kwargs: fn if fn else (lambda f: f)
    if not hasattr(torch.distributed, "DeviceMesh"):
        torch.distributed.DeviceMesh = refusing_class("torch.distributed.DeviceMesh")
    if "torch.distributed.tensor" not in sys.modules:
        try:
            import torch.distributed.tensor  # noqa: F401
        except ImportError:
            # Tensor parallelism only; DTensor stays absent, which fla's try/except handles.
            module("torch.distributed.tensor", path="", Replicate=refusing_class("Replicate"),
                   Shard=refusing_class("Shard"), Placement=refusing_class("Placement"),
                   distribute_module=refuse("torch.distributed.tensor.distribute_module"))
            module("torch.distributed.tensor.parallel", ParallelStyle=type("ParallelStyle", (), {}))
    if not hasattr(nn, "RMSNorm"):
        class RMSNorm(nn.Module):
            """torch.nn.RMSNorm (torch ≥ 2.4) as documented: y = x / sqrt(mean(x²) + eps) · weight."""

            def __init__(self, normalized_shape, eps=None, elementwise_affine=True, device=None, dtype=None):
                super().__init__()
                self.normalized_shape = (normalized_shape,) if isinstance(normalized_shape, int) \
                    else tuple(normalized_shape)
                if len(self.normalized_shape) != 1:
                    raise NotImplementedError("make_fixtures.py's nn.RMSNorm normalises the last dimension only.")
                self.eps = eps
                self.elementwise_affine = elementwise_affine
                if elementwise_affine:
                    self.weight = nn.Parameter(torch.empty(self.normalized_shape, device=device, dtype=dtype))
                else:
                    self.register_parameter("weight", None)
                self.reset_parameters()

            def reset_parameters(self):
                if self.weight is not None:
                    nn.init.ones_(self.weight)

            def forward(self, x):
                eps = self.eps if self.eps is not None else torch.finfo(x.dtype).eps
                y = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps)
                return y * self.weight if self.weight is not None else y

        nn.RMSNorm = RMSNorm


class Float64Torch(types.ModuleType):
    """`torch` as seen by fla's reference functions: torch.float / torch.float32 are float64.

    fla's references upcast to float32 (`dtype=torch.float`, `.to(torch.float32)`) to compute "at full precision";
    here full precision is float64, so those casts widen to float64 instead of rounding to float32.
    """

    def __init__(self):
        super().__init__("torch")
        import torch
        self.__dict__["_torch"] = torch

    def __getattr__(self, name):
        if name in ("float", "float32"):
            return self._torch.float64
        return getattr(self._torch, name)


# ---------------------------------------------------------------------------------------------------------------------
# Importing fla: only the files of the RetNet path, with fla's own stand-ins for its kernels.
# ---------------------------------------------------------------------------------------------------------------------

class Forms:
    """Which retention form the next forward uses (fla itself picks fused_recurrent for every T ≤ 64)."""
    current = "parallel"
    naive_retention_checked = 0


def import_fla(root):
    if any(name == "fla" or name.startswith("fla.") for name in sys.modules):
        fail("fla is already imported; run the script as a program.")
    import importlib

    import torch
    import torch.nn.functional as F

    install_triton()
    # packaging.version: fla compares transformers versions with it; plain "X.Y.Z" strings suffice here.
    module("packaging", path="")
    module("packaging.version", parse=lambda text: tuple(int(part) for part in text.split(".")))
    module("einops", rearrange=einops_rearrange, repeat=einops_repeat)
    install_transformers()
    install_torch_gaps()

    package = os.path.join(root, "fla")
    # Packages whose __init__ would import all of fla (every model, layer and kernel): bare packages instead, from
    # which only the RetNet path's files are imported.
    for name in ("fla", "fla.layers", "fla.models", "fla.models.retnet", "fla.modules", "fla.ops",
                 "fla.ops.retention", "fla.ops.simple_gla"):
        module(name, path=os.path.join(package, *name.split(".")[1:]))

    def passthrough(fn=None, **kwargs):
        return fn if fn is not None else (lambda f: f)

    # fla's own infrastructure the RetNet files import: device queries, autotune settings, the backend dispatcher
    # and index helpers. Decorators are identities; anything that would run raises.
    module("fla.utils", autotune_cache_kwargs={}, get_multiprocessor_count=refuse("fla.utils.get_multiprocessor_count"),
           input_guard=passthrough, autocast_custom_fwd=passthrough, autocast_custom_bwd=passthrough,
           tensor_cache=passthrough, IS_AMD=False)
    module("fla.modules.backends", dispatch=lambda *args, **kwargs: passthrough)
    module("fla.ops.utils", path="", prepare_chunk_indices=refuse("fla.ops.utils.prepare_chunk_indices"))
    module("fla.ops.utils.index", prepare_lens_from_mask=refuse("fla.ops.utils.index.prepare_lens_from_mask"),
           prepare_cu_seqlens_from_mask=refuse("fla.ops.utils.index.prepare_cu_seqlens_from_mask"))
    module("fla.ops.utils.op", exp=refuse("fla.ops.utils.op.exp"), log=refuse("fla.ops.utils.op.log"))
    module("fla.ops.attnres", fused_attnres=refuse("fla.ops.attnres.fused_attnres"))
    module("fla.layers.attn", Attention=refusing_class("fla.layers.attn.Attention"))

    float64_torch = Float64Torch()

    def load(name, widen=False):
        m = importlib.import_module(name)
        if widen:
            m.torch = float64_torch
        return m

    # fla's pure-torch references.
    simple_gla_naive = load("fla.ops.simple_gla.naive", widen=True)
    retention_naive = load("fla.ops.retention.naive", widen=True)

    # The simple-GLA kernels fla's retention wrappers call, replaced by fla's naive simple-GLA references. Retention is
    # simple GLA with a per-head constant log-decay g_gamma; the references take it per token.
    def per_token(g_gamma, q):
        return g_gamma[None, None, :].expand(q.shape[0], q.shape[1], q.shape[2])

    def fused_recurrent_simple_gla(q, k, v, g_gamma, scale=None, initial_state=None, output_final_state=False,
                                   reverse=False, cu_seqlens=None, state_v_first=False, **kwargs):
        if reverse or cu_seqlens is not None or state_v_first or kwargs:
            raise NotImplementedError("make_fixtures.py: unsupported fused_recurrent_simple_gla arguments.")
        return simple_gla_naive.naive_recurrent_simple_gla(
            q, k, v, per_token(g_gamma, q), scale=scale, initial_state=initial_state,
            output_final_state=output_final_state)

    def chunk_simple_gla(q, k, v, scale=None, g_gamma=None, initial_state=None, output_final_state=False,
                         cu_seqlens=None, chunk_size=None, **kwargs):
        if cu_seqlens is not None or kwargs:
            raise NotImplementedError("make_fixtures.py: unsupported chunk_simple_gla arguments.")
        o, state = simple_gla_naive.naive_chunk_simple_gla(
            q, k, v, per_token(g_gamma, q), initial_state=initial_state, output_final_state=output_final_state,
            chunk_size=chunk_size or CHUNK, scale=scale)
        return o, state

    def parallel_simple_gla(q, k, v, g=None, scale=None, output_attentions=False, cu_seqlens=None, **kwargs):
        if cu_seqlens is not None or kwargs:
            raise NotImplementedError("make_fixtures.py: unsupported parallel_simple_gla arguments.")
        o, attn = simple_gla_naive.naive_parallel_simple_gla(q, k, v, g, scale=scale)
        # fla's retention-specific reference (head-first layout) must give the same output.
        check = retention_naive.naive_retention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
        difference = (check.transpose(1, 2) - o).abs().max().item()
        if not difference <= 1e-12 * max(1.0, o.abs().max().item()):
            fail(f"fla's naive_retention and naive_parallel_simple_gla differ by {difference!r}.")
        Forms.naive_retention_checked += 1
        return o, (attn if output_attentions else None)

    module("fla.ops.simple_gla.fused_recurrent", fused_recurrent_simple_gla=fused_recurrent_simple_gla)
    module("fla.ops.simple_gla.chunk", chunk_simple_gla=chunk_simple_gla)
    module("fla.ops.simple_gla.parallel", parallel_simple_gla=parallel_simple_gla)

    # fla's retention wrappers (they compute g_gamma = log(1 − 2^(−5−h)) and call the kernels above).
    retention_recurrent = load("fla.ops.retention.fused_recurrent", widen=True)
    retention_chunk = load("fla.ops.retention.chunk", widen=True)
    retention_parallel = load("fla.ops.retention.parallel", widen=True)
    retention = sys.modules["fla.ops.retention"]
    retention.fused_recurrent_retention = retention_recurrent.fused_recurrent_retention
    retention.chunk_retention = retention_chunk.chunk_retention
    retention.parallel_retention = retention_parallel.parallel_retention
    retention.fused_chunk_retention = refuse("fla.ops.retention.fused_chunk_retention")

    # Norms: fla's RMSNorm calls rms_norm (Triton); fla's rms_norm_ref is its reference.
    layernorm = load("fla.modules.layernorm")

    def rms_norm(x, weight, bias, residual=None, eps=1e-5, prenorm=False, residual_in_fp32=False):
        if residual_in_fp32:
            raise NotImplementedError("make_fixtures.py: residual_in_fp32 is not used by RetNet.")
        return layernorm.rms_norm_ref(x, weight, bias, residual=residual, eps=eps, prenorm=prenorm, upcast=False)

    layernorm.rms_norm = rms_norm

    # The gated norm: FusedRMSNormGated calls rms_norm_gated (Triton); fla's gated reference is rms_norm_ref of
    # fla/modules/layernorm_gated.py with z the gate: rmsnorm(x)·w·silu(z).
    layernorm_gated = load("fla.modules.layernorm_gated", widen=True)
    fused_norm_gate = load("fla.modules.fused_norm_gate")

    def rms_norm_gated(x, g, weight, bias, activation="swish", residual=None, prenorm=False, residual_in_fp32=False,
                       eps=1e-6):
        if activation not in ("swish", "silu") or residual is not None or prenorm or residual_in_fp32:
            raise NotImplementedError("make_fixtures.py: unsupported rms_norm_gated arguments.")
        return layernorm_gated.rms_norm_ref(x, weight, bias, z=g, eps=eps, norm_before_gate=True, upcast=True)

    fused_norm_gate.rms_norm_gated = rms_norm_gated

    # Rotary: RotaryEmbedding calls rotary_embedding (Triton); fla's rotary_embedding_ref is its reference, given the
    # rows of the cos/sin cache for the positions seqlen_offset … seqlen_offset + T − 1.
    rotary = load("fla.modules.rotary", widen=True)

    def rotary_embedding(x, cos, sin, interleaved=False, inplace=False, seqlen_offsets=0, cu_seqlens=None,
                         chunk_indices=None):
        if inplace or cu_seqlens is not None or not isinstance(seqlen_offsets, int):
            raise NotImplementedError("make_fixtures.py: unsupported rotary_embedding arguments.")
        t = x.shape[1]
        return rotary.rotary_embedding_ref(x, cos[seqlen_offsets:seqlen_offsets + t],
                                           sin[seqlen_offsets:seqlen_offsets + t], interleaved)

    rotary.rotary_embedding = rotary_embedding

    # SwiGLU: GatedMLP calls swiglu_linear / swiglu (Triton). fla has no pure-torch SwiGLU; this is the formula of
    # their docstrings, SwiGLULinear(x, y, W, b) = (swish(x) · y) Wᵀ + b.
    mlp = load("fla.modules.mlp")
    mlp.swiglu_linear = lambda x, y, weight, bias: F.linear(F.silu(x) * y, weight, bias)
    mlp.swiglu = lambda x, y: F.silu(x) * y

    load("fla.modules.l2warp")
    modules = sys.modules["fla.modules"]
    modules.RMSNorm = layernorm.RMSNorm
    modules.FusedRMSNormGated = fused_norm_gate.FusedRMSNormGated
    modules.GatedMLP = mlp.GatedMLP
    modules.RotaryEmbedding = rotary.RotaryEmbedding
    modules.ShortConvolution = refusing_class("fla.modules.ShortConvolution")
    modules.FusedCrossEntropyLoss = refusing_class("fla.modules.FusedCrossEntropyLoss")
    modules.FusedLinearCrossEntropyLoss = refusing_class("fla.modules.FusedLinearCrossEntropyLoss")

    msr = load("fla.layers.multiscale_retention")

    # MultiScaleRetention.forward calls fused_recurrent_retention for every q_len ≤ 64 whatever attn_mode says; the
    # fixtures choose the form themselves, each through fla's own wrapper.
    def retention_form(q, k, v, initial_state=None, output_final_state=False, cu_seqlens=None, **kwargs):
        form = Forms.current
        if form == "recurrent":
            return retention_recurrent.fused_recurrent_retention(
                q=q, k=k, v=v, initial_state=initial_state, output_final_state=output_final_state,
                cu_seqlens=cu_seqlens, **kwargs)
        if form == "chunk":
            return retention_chunk.chunk_retention(
                q=q, k=k, v=v, initial_state=initial_state, output_final_state=output_final_state,
                cu_seqlens=cu_seqlens, chunk_size=CHUNK, **kwargs)
        if form == "parallel":
            if initial_state is not None or output_final_state:
                raise NotImplementedError("make_fixtures.py: the parallel form has no state.")
            o, _ = retention_parallel.parallel_retention(q=q, k=k, v=v, cu_seqlens=cu_seqlens, **kwargs)
            return o, None
        raise ValueError(form)

    msr.fused_recurrent_retention = retention_form

    configuration = load("fla.models.retnet.configuration_retnet")
    modeling = load("fla.models.retnet.modeling_retnet")

    # Every fla module that ran must be a checked file under root, or one of this script's stand-ins.
    for name, m in sorted(sys.modules.items()):
        if name == "fla" or name.startswith("fla."):
            if m.__file__ == STAND_IN:
                continue
            relative = os.path.relpath(os.path.abspath(m.__file__), root).replace(os.sep, "/")
            if relative not in PINNED_BLOBS:
                fail(f"importing RetNet loaded {m.__file__}, which is not a checked file of {root}.")
    return configuration.RetNetConfig, modeling.RetNetForCausalLM


# ---------------------------------------------------------------------------------------------------------------------
# Files.
# ---------------------------------------------------------------------------------------------------------------------

SAFETENSORS_DTYPES = {"float32": ("F32", "<f4"), "float64": ("F64", "<f8"), "bfloat16": ("BF16", None)}


def tensor_bytes(tensor, dtype):
    import torch
    code, numpy_type = SAFETENSORS_DTYPES[dtype]
    t = tensor.detach().cpu().contiguous()
    if dtype == "bfloat16":
        data = t.to(torch.bfloat16).view(torch.int16).numpy().astype("<i2", copy=False).tobytes()
    else:
        data = t.to(getattr(torch, dtype)).numpy().astype(numpy_type, copy=False).tobytes()
    return code, list(t.shape), data


def write_safetensors(path, tensors, dtype, metadata):
    """u64 LE header length, JSON header padded with spaces to 8 bytes, raw LE data; tensors in name order."""
    import numpy as np
    header = {"__metadata__": dict(metadata)}
    blobs = []
    offset = 0
    for name in sorted(tensors):
        code, shape, data = tensor_bytes(tensors[name], dtype)
        header[name] = {"dtype": code, "shape": shape, "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    text = json.dumps(header, sort_keys=True, separators=(",", ":")).encode("utf-8")
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(np.uint64(len(text)).astype("<u8").tobytes())
        f.write(text)
        for data in blobs:
            f.write(data)
    return offset


def write_json(path, value):
    """As transformers writes its JSON files: indent 2, sorted keys, a final newline."""
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        json.dump(value, f, indent=2, sort_keys=True)
        f.write("\n")


def config_json(config, keys, storage, transformers_version):
    """What save_pretrained writes: the model's keys, the generic ids and flags, architectures and versions."""
    value = {"architectures": ["RetNetForCausalLM"], "model_type": "retnet"}
    for key in keys:
        value[key] = getattr(config, key)
    value.update(bos_token_id=config.bos_token_id, eos_token_id=config.eos_token_id,
                 pad_token_id=config.pad_token_id, tie_word_embeddings=config.tie_word_embeddings,
                 torch_dtype=storage, transformers_version=transformers_version)
    return value


# ---------------------------------------------------------------------------------------------------------------------
# One fixture.
# ---------------------------------------------------------------------------------------------------------------------

def current_config_keys(RetNetConfig):
    import inspect
    return [name for name in inspect.signature(RetNetConfig.__init__).parameters
            if name not in ("self", "kwargs", "pad_token_id", "bos_token_id", "eos_token_id", "tie_word_embeddings")]


def build(name, seed, storage, overrides, style, fla):
    import torch
    RetNetConfig, RetNetForCausalLM = fla

    if style == "current":
        keys = current_config_keys(RetNetConfig)
        arguments = {**BASE, **overrides, "torch_dtype": storage}
        version = TRANSFORMERS_VERSION
        # The configuration the fixture describes, as RetNetConfig builds it; config.json is written from it.
        config = RetNetConfig(**arguments)
        written = config_json(config, keys, storage, version)
    else:
        # An older config.json: the 2024 key set (values as the 2024 RetNetConfig held them), which today's
        # RetNetConfig must load into the same model.
        template = RetNetConfig(**{**BASE, **overrides})
        written = config_json(template, LEGACY_2024_KEYS, storage, LEGACY_TRANSFORMERS_VERSION)
        missing = [k for k in current_config_keys(RetNetConfig) if k not in written]
        for key in missing:
            if getattr(template, key) != getattr(RetNetConfig(), key):
                fail(f"{name}: {key} differs from its default but the 2024 config has no such key.")
    # Load config.json as from_pretrained would: the written keys, through today's RetNetConfig.
    config = RetNetConfig(**json.loads(json.dumps(written)))
    for key, value in written.items():
        if key not in ("architectures", "model_type", "transformers_version") and getattr(config, key) != value:
            fail(f"{name}: config.json's {key} loads as {getattr(config, key)!r}, not {value!r}.")

    torch.manual_seed(seed)
    model = RetNetForCausalLM(config)
    model.double()
    with torch.no_grad():
        for pname, p in model.named_parameters():
            # 1-D parameters are the norm weights (fla's RetNet has no biases); they start at 1, where a test that
            # ignores them cannot fail.
            if p.dim() == 1:
                p.copy_(1 + 0.2 * torch.randn_like(p))
        # The checkpoint must hold exactly the values the float64 reference computes with.
        for p in model.parameters():
            p.data = p.data.to(getattr(torch, storage)).double()
    model.eval()
    tokens = torch.randint(0, config.vocab_size, (BATCH, SEQ_LEN))
    return config, written, model, tokens


def forward(model, form, **kwargs):
    Forms.current = form
    try:
        return model(**kwargs)
    finally:
        Forms.current = "parallel"


def run_fixture(name, seed, storage, overrides, style, fla, output, torch_version):
    import torch
    import torch.nn.functional as F
    config, written, model, tokens = build(name, seed, storage, overrides, style, fla)
    vocab = config.vocab_size

    checked_before = Forms.naive_retention_checked
    logits_parallel = forward(model, "parallel", input_ids=tokens, use_cache=False).logits
    if Forms.naive_retention_checked == checked_before:
        fail(f"{name}: the parallel forward did not reach fla's parallel retention.")
    if logits_parallel.dtype != torch.float64:
        fail(f"{name}: parallel logits are {logits_parallel.dtype}; expected float64.")

    with torch.no_grad():
        logits_chunk = forward(model, "chunk", input_ids=tokens, use_cache=False).logits

        # Token by token through fla's cache, as generation drives it.
        cache, steps = None, []
        for t in range(SEQ_LEN):
            out = forward(model, "recurrent", input_ids=tokens[:, t:t + 1], past_key_values=cache, use_cache=True)
            cache = out.past_key_values
            steps.append(out.logits[:, -1])
        logits_recurrent = torch.stack(steps, dim=1)

        # The first PREFILL tokens in one call (chunkwise, with the final state), then one at a time.
        out = forward(model, "chunk", input_ids=tokens[:, :PREFILL], past_key_values=None, use_cache=True)
        cache, parts = out.past_key_values, [out.logits]
        for t in range(PREFILL, SEQ_LEN):
            out = forward(model, "recurrent", input_ids=tokens[:, t:t + 1], past_key_values=cache, use_cache=True)
            cache = out.past_key_values
            parts.append(out.logits)
        logits_prefill_steps = torch.cat(parts, dim=1)

    scale = logits_parallel.detach().abs().max().item()
    differences = {}
    for form, logits in (("chunk", logits_chunk), ("recurrent", logits_recurrent),
                         ("prefill_steps", logits_prefill_steps)):
        difference = (logits_parallel.detach() - logits).abs().max().item()
        if not difference <= FORMS_AGREE * scale:
            fail(f"{name}: parallel and {form} logits differ by {difference!r} (max|logits| {scale!r}); "
                 f"expected ≤ {FORMS_AGREE}·max|logits|.")
        differences[form] = difference

    loss = F.cross_entropy(logits_parallel[:, :-1].reshape(-1, vocab), tokens[:, 1:].reshape(-1))
    loss.backward()
    # named_parameters lists a shared tensor once: a tied lm_head's gradient is under model.embeddings.weight.
    gradients = {n: p.grad for n, p in model.named_parameters()}
    state_dict = model.state_dict()
    if config.tie_word_embeddings:
        # save_pretrained leaves out the tied copy (_tied_weights_keys).
        if state_dict["lm_head.weight"].data_ptr() != state_dict["model.embeddings.weight"].data_ptr():
            fail(f"{name}: tie_word_embeddings is set but lm_head is not the embedding.")
        del state_dict["lm_head.weight"]
    if set(gradients) != set(state_dict) or any(g is None for g in gradients.values()):
        fail(f"{name}: the gradients do not cover the parameters of the state dict.")

    folder = os.path.join(output, name)
    os.makedirs(folder, exist_ok=True)
    for old in os.listdir(folder):
        os.remove(os.path.join(folder, old))
    write_json(os.path.join(folder, "config.json"), written)
    if name in GENERATION_CONFIG:
        write_json(os.path.join(folder, "generation_config.json"),
                   {"_from_model_config": True, "bos_token_id": config.bos_token_id,
                    "eos_token_id": config.eos_token_id, "transformers_version": TRANSFORMERS_VERSION})
    if name in SHARDED:
        # As save_pretrained shards: tensors in state-dict order, a new file once the first holds half the bytes.
        names = list(state_dict)
        sizes = [len(tensor_bytes(state_dict[n], storage)[2]) for n in names]
        total, first, running = sum(sizes), [], 0
        for n, size in zip(names, sizes):
            if running >= total / 2:
                break
            first.append(n)
            running += size
        shards = [first, [n for n in names if n not in first]]
        weight_map = {}
        for i, shard in enumerate(shards, start=1):
            file = f"model-{i:05d}-of-{len(shards):05d}.safetensors"
            write_safetensors(os.path.join(folder, file), {n: state_dict[n] for n in shard}, storage,
                              {"format": "pt"})
            weight_map.update({n: file for n in shard})
        write_json(os.path.join(folder, "model.safetensors.index.json"),
                   {"metadata": {"total_size": total}, "weight_map": weight_map})
    else:
        write_safetensors(os.path.join(folder, "model.safetensors"), state_dict, storage, {"format": "pt"})
    with open(os.path.join(folder, "tokens.txt"), "w", encoding="utf-8", newline="\n") as f:
        for row in tokens.tolist():
            f.write(" ".join(str(i) for i in row) + "\n")
    write_safetensors(os.path.join(folder, "expected.safetensors"),
                      {"logits_parallel": logits_parallel, "logits_chunk": logits_chunk,
                       "logits_recurrent": logits_recurrent, "logits_prefill_steps": logits_prefill_steps},
                      "float64",
                      {"fla_commit": FLA_COMMIT, "torch_version": torch_version, "fixture": name, "format": "pt"})
    write_safetensors(os.path.join(folder, "gradients.safetensors"), gradients, "float64",
                      {"loss": repr(loss.item()), "fla_commit": FLA_COMMIT, "fixture": name, "format": "pt"})

    attn = model.model.layers[0].attn
    entry = {
        "name": name,
        "seed": seed,
        "storage_dtype": storage,
        "config_style": style,
        "settings": {k: overrides[k] for k in sorted(overrides)},
        "hidden_size": config.hidden_size,
        "num_heads": config.num_heads,
        "num_kv_heads": attn.num_kv_heads,
        "head_k_dim": attn.head_k_dim,
        "head_v_dim": attn.head_v_dim,
        "intermediate_size": model.model.layers[0].mlp.intermediate_size,
        "vocab_size": vocab,
        "tied": config.tie_word_embeddings,
        "fuse_norm": config.fuse_norm,
        "sharded": name in SHARDED,
        "loss": repr(loss.item()),
        "max_abs_logit": repr(scale),
        "parallel_chunk_max_abs_difference": repr(differences["chunk"]),
        "parallel_recurrent_max_abs_difference": repr(differences["recurrent"]),
        "parallel_prefill_steps_max_abs_difference": repr(differences["prefill_steps"]),
    }
    print(f"{name}: loss {loss.item():.6f}, max|logit| {scale:.4g}, |parallel − chunk| {differences['chunk']:.3g}, "
          f"|parallel − recurrent| {differences['recurrent']:.3g}, "
          f"|parallel − prefill+steps| {differences['prefill_steps']:.3g}")
    return entry


def prepare_fla(path):
    """Checks the fla source at path, sets torch up for float64 (one thread) and imports fla's RetNet path.

    Returns (RetNetConfig, RetNetForCausalLM). Shared with check_saved.py."""
    root = source_root(path)
    check_pinned(root)
    try:
        import numpy  # noqa: F401
        import torch
    except ImportError as e:
        fail(f"{e}; run with a Python that has torch and numpy (e.g. Debian's /usr/bin/python3).")

    # One thread: the reduction order, and so every bit of the output, does not depend on the machine's cores.
    torch.set_num_threads(1)
    torch.set_default_dtype(torch.float64)
    # fla's references call .float() to compute at full precision; in these float64 runs that is float64.
    torch.Tensor.float = lambda self, *args, **kwargs: self.to(torch.float64, *args, **kwargs)
    return import_fla(root)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fla", required=True,
                        help=f"flash-linear-attention source tree at commit {FLA_COMMIT} (the folder holding fla/)")
    parser.add_argument("--output", required=True, help="folder to write one subfolder per fixture into")
    args = parser.parse_args()

    fla = prepare_fla(args.fla)
    import torch
    torch_version = torch.__version__

    os.makedirs(args.output, exist_ok=True)
    entries = [run_fixture(name, seed, storage, overrides, style, fla, args.output, torch_version)
               for name, seed, storage, overrides, style in FIXTURES]
    write_json(os.path.join(args.output, "manifest.json"), {
        "generator": "tools/fla-fixtures/make_fixtures.py",
        "fla_commit": FLA_COMMIT,
        "torch_version": torch_version,
        "batch": BATCH,
        "seq_len": SEQ_LEN,
        "prefill": PREFILL,
        "chunk_size": CHUNK,
        "base_config": BASE,
        "fixtures": entries,
    })


if __name__ == "__main__":
    main()
