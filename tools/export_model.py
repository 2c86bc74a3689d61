#!/usr/bin/python3
"""Exports a BERT cross-encoder (BertForSequenceClassification) to a rerankd model directory.

A model directory is what rerankd loads:
  model.pt    TorchScript module (fp32 weights), see BertCrossEncoder.forward for the contract.
  vocab.txt   WordPiece vocabulary, one token a line, line number == token id.
  model.yaml  metadata (name, version, max_length, lowercase, precision, ...); written LAST, so a
              directory with a model.yaml is complete (a watcher may key reloads on it).

Modes (see --help and tools/README.md):
  --checkpoint DIR --out OUT        export a Hugging Face checkpoint directory (config.json,
                                    vocab.txt, model.safetensors or pytorch_model.bin).
  --random-init --config CFG --out OUT
                                    random weights in the shape of CFG (demo/tests only).
  --write-random-checkpoint --config CFG --out DIR
                                    write a random HF-style checkpoint directory (real HF key
                                    names), so tests exercise the real checkpoint path.

model.pt calls the fused CPU ops torch.ops.rerank.* (server/fused_ops/, FusedLayer) by default:
exporting loads librerank_fused_ops.so (--fused-ops-lib; built by the CMake target
rerank_fused_ops), and so must any Python process that loads the model (load_fused_ops);
rerankd links the ops. --plain exports the plain-op module (ATen ops only), the fp32 reference.

Runs with Debian's /usr/bin/python3 + python3-torch (1.13). It deliberately needs neither
`transformers` nor `safetensors`: the safetensors format is read and written here.
Exit status: 0 on success, 2 on a usage error or a bad input (the message names the file/key).
"""

import os
import sys

if __name__ == "__main__" and os.environ.get("PYTHONHASHSEED") != "0":
    # torch.jit.save orders some class constants by set iteration, i.e. by Python's string hash:
    # pin the hash seed (before importing torch, so the re-exec is cheap) so that identical
    # weights give a byte-identical model.pt and hence the same model.yaml version.
    os.execve(sys.executable, [sys.executable] + sys.argv, dict(os.environ, PYTHONHASHSEED="0"))

import argparse  # noqa: E402  (after the re-exec above)
import hashlib
import json
import math
import re
import shutil
import struct
import time
from typing import Dict, List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

import yaml

WEIGHTS_SAFETENSORS = "model.safetensors"
WEIGHTS_BIN = "pytorch_model.bin"
SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]")


class ExportError(Exception):
    """A bad input or option; main() prints it and exits with status 2."""


# --------------------------------------------------------------------------------------------
# Config
# --------------------------------------------------------------------------------------------

# Activations of HF BERT configs we reproduce exactly, mapped to the name the module uses.
_ACTIVATIONS = {
    "gelu": "gelu",  # exact erf gelu (HF "gelu")
    "gelu_python": "gelu",
    "gelu_new": "gelu_tanh",  # tanh approximation
    "gelu_pytorch_tanh": "gelu_tanh",
    "relu": "relu",
}


class BertConfig:
    """The subset of a HF BertConfig that determines the inference graph."""

    def __init__(self, d: dict, source: str):
        def req(key):
            if key not in d:
                raise ExportError(f"{source}: missing required key '{key}'")
            return d[key]

        def pos_int(key, value):
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ExportError(f"{source}: '{key}' must be a positive integer, got {value!r}")
            return value

        self.raw = d
        self.vocab_size = pos_int("vocab_size", req("vocab_size"))
        self.hidden_size = pos_int("hidden_size", req("hidden_size"))
        self.num_hidden_layers = pos_int("num_hidden_layers", req("num_hidden_layers"))
        self.num_attention_heads = pos_int("num_attention_heads", req("num_attention_heads"))
        self.intermediate_size = pos_int("intermediate_size", req("intermediate_size"))
        self.max_position_embeddings = pos_int(
            "max_position_embeddings", req("max_position_embeddings"))
        self.type_vocab_size = pos_int("type_vocab_size", d.get("type_vocab_size", 2))
        self.layer_norm_eps = float(d.get("layer_norm_eps", 1e-12))
        self.initializer_range = float(d.get("initializer_range", 0.02))
        self.pad_token_id = int(d.get("pad_token_id", 0) or 0)
        # HF: num_labels is derived from id2label; PretrainedConfig's default is 2.
        if "num_labels" in d:
            num_labels = d["num_labels"]
        elif d.get("id2label"):
            num_labels = len(d["id2label"])
        else:
            num_labels = 2
        self.num_labels = pos_int("num_labels", num_labels)
        act = d.get("hidden_act", "gelu")
        if act not in _ACTIVATIONS:
            raise ExportError(f"{source}: unsupported hidden_act {act!r} "
                              f"(supported: {', '.join(sorted(_ACTIVATIONS))})")
        self.hidden_act = _ACTIVATIONS[act]
        pet = d.get("position_embedding_type", "absolute")
        if pet != "absolute":
            raise ExportError(f"{source}: unsupported position_embedding_type {pet!r} "
                              "(only 'absolute')")
        if self.hidden_size % self.num_attention_heads != 0:
            raise ExportError(f"{source}: hidden_size {self.hidden_size} is not a multiple of "
                              f"num_attention_heads {self.num_attention_heads}")


def load_config(path: str) -> BertConfig:
    if not os.path.isfile(path):
        raise ExportError(f"missing config: {path}")
    try:
        with open(path, "r", encoding="utf-8") as f:
            d = json.load(f)
    except (OSError, ValueError) as e:
        raise ExportError(f"cannot read config {path}: {e}") from e
    if not isinstance(d, dict):
        raise ExportError(f"config {path}: expected a JSON object")
    return BertConfig(d, path)


# --------------------------------------------------------------------------------------------
# Model. Submodule names mirror transformers' BertForSequenceClassification so that
# state_dict() keys are the real HF names (bert.encoder.layer.0.attention.self.query.weight, ...).
# Everything is TorchScript-scriptable: no Python control flow on tensor values, shapes read
# at run time, so any batch size B and length T (<= max_position_embeddings) work.
# --------------------------------------------------------------------------------------------


class BertEmbeddings(nn.Module):
    def __init__(self, cfg: BertConfig):
        super().__init__()
        self.word_embeddings = nn.Embedding(cfg.vocab_size, cfg.hidden_size)
        self.position_embeddings = nn.Embedding(cfg.max_position_embeddings, cfg.hidden_size)
        self.token_type_embeddings = nn.Embedding(cfg.type_vocab_size, cfg.hidden_size)
        self.LayerNorm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)

    def forward(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor) -> torch.Tensor:
        seq_len = input_ids.size(1)
        position_ids = torch.arange(seq_len, dtype=torch.long, device=input_ids.device)
        # Same summation order as HF (word + token_type, then + position).
        emb = self.word_embeddings(input_ids) + self.token_type_embeddings(token_type_ids)
        emb = emb + self.position_embeddings(position_ids).unsqueeze(0)
        return self.LayerNorm(emb)


class BertSelfAttention(nn.Module):
    def __init__(self, cfg: BertConfig):
        super().__init__()
        self.num_heads = cfg.num_attention_heads
        self.head_size = cfg.hidden_size // cfg.num_attention_heads
        self.all_head_size = self.num_heads * self.head_size
        self.scale = math.sqrt(float(self.head_size))
        self.query = nn.Linear(cfg.hidden_size, self.all_head_size)
        self.key = nn.Linear(cfg.hidden_size, self.all_head_size)
        self.value = nn.Linear(cfg.hidden_size, self.all_head_size)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        # [B, T, H*D] -> [B, H, T, D]
        return x.view(x.size(0), x.size(1), self.num_heads, self.head_size).transpose(1, 2)

    def forward(self, hidden: torch.Tensor, mask_add: torch.Tensor) -> torch.Tensor:
        q = self._heads(self.query(hidden))
        k = self._heads(self.key(hidden))
        v = self._heads(self.value(hidden))
        scores = torch.matmul(q, k.transpose(-1, -2)) / self.scale
        scores = scores + mask_add  # [B, 1, 1, T] broadcast: padded keys get -10000
        probs = F.softmax(scores, dim=-1)
        ctx = torch.matmul(probs, v).transpose(1, 2).contiguous()
        return ctx.view(ctx.size(0), ctx.size(1), self.all_head_size)


class BertSelfOutput(nn.Module):
    def __init__(self, cfg: BertConfig):
        super().__init__()
        self.dense = nn.Linear(cfg.hidden_size, cfg.hidden_size)
        self.LayerNorm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)

    def forward(self, x: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(self.dense(x) + residual)


class BertAttention(nn.Module):
    def __init__(self, cfg: BertConfig):
        super().__init__()
        self.self = BertSelfAttention(cfg)
        self.output = BertSelfOutput(cfg)

    def forward(self, hidden: torch.Tensor, mask_add: torch.Tensor) -> torch.Tensor:
        return self.output(self.self(hidden, mask_add), hidden)


class BertIntermediate(nn.Module):
    def __init__(self, cfg: BertConfig):
        super().__init__()
        self.dense = nn.Linear(cfg.hidden_size, cfg.intermediate_size)
        self.act = cfg.hidden_act  # a str attribute: a TorchScript constant-like branch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.dense(x)
        if self.act == "gelu":
            return F.gelu(x)  # exact (erf) gelu, as HF "gelu"
        elif self.act == "gelu_tanh":
            return F.gelu(x, approximate="tanh")
        else:
            return F.relu(x)


class BertOutput(nn.Module):
    def __init__(self, cfg: BertConfig):
        super().__init__()
        self.dense = nn.Linear(cfg.intermediate_size, cfg.hidden_size)
        self.LayerNorm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)

    def forward(self, x: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(self.dense(x) + residual)


class BertLayer(nn.Module):
    def __init__(self, cfg: BertConfig):
        super().__init__()
        self.attention = BertAttention(cfg)
        self.intermediate = BertIntermediate(cfg)
        self.output = BertOutput(cfg)

    def forward(self, hidden: torch.Tensor, mask_add: torch.Tensor) -> torch.Tensor:
        attn = self.attention(hidden, mask_add)
        return self.output(self.intermediate(attn), attn)


class BertEncoder(nn.Module):
    def __init__(self, cfg: BertConfig):
        super().__init__()
        self.layer = nn.ModuleList([BertLayer(cfg) for _ in range(cfg.num_hidden_layers)])

    def forward(self, hidden: torch.Tensor, mask_add: torch.Tensor) -> torch.Tensor:
        for layer in self.layer:
            hidden = layer(hidden, mask_add)
        return hidden


class BertPooler(nn.Module):
    def __init__(self, cfg: BertConfig):
        super().__init__()
        self.dense = nn.Linear(cfg.hidden_size, cfg.hidden_size)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.dense(hidden[:, 0]))  # the [CLS] position


class BertModel(nn.Module):
    def __init__(self, cfg: BertConfig):
        super().__init__()
        self.embeddings = BertEmbeddings(cfg)
        self.encoder = BertEncoder(cfg)
        self.pooler = BertPooler(cfg)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                token_type_ids: torch.Tensor) -> torch.Tensor:
        hidden = self.embeddings(input_ids, token_type_ids)
        # Additive mask in the dtype of the attention scores (= the parameters' dtype), so the
        # module also runs with bf16 parameters. -10000 (as HF BERT did) rather than
        # finfo.min: it cannot overflow to -inf when added, and exp(-10000) is exactly 0.
        mask = attention_mask.unsqueeze(1).unsqueeze(2).to(hidden.dtype)
        mask_add = (1.0 - mask) * -10000.0
        hidden = self.encoder(hidden, mask_add)
        return self.pooler(hidden)


class BertCrossEncoder(nn.Module):
    """BertForSequenceClassification for inference (no dropout).

    forward(input_ids, attention_mask, token_type_ids): int64 [B, T] each; T <=
    max_position_embeddings; attention_mask is 1 for real tokens and 0 for padding, which must be
    on the right (positions are absolute). Returns float32 logits [B] when num_labels == 1 (a
    cross-encoder relevance score), else float32 [B, num_labels]. The output is float32 even if
    the parameters were cast to bfloat16.
    """

    def __init__(self, cfg: BertConfig):
        super().__init__()
        self.num_labels = cfg.num_labels
        self.bert = BertModel(cfg)
        self.classifier = nn.Linear(cfg.hidden_size, cfg.num_labels)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                token_type_ids: torch.Tensor) -> torch.Tensor:
        logits = self.classifier(self.bert(input_ids, attention_mask, token_type_ids))
        if self.num_labels == 1:
            return logits.squeeze(-1).float()
        return logits.float()


class FastLinear(nn.Module):
    """nn.Linear whose parameters the server may cast to bfloat16 (model.precision: bf16).

    The input is cast to the weight's dtype, so the GEMM runs on oneDNN's bf16 kernels while
    the residual stream, LayerNorm and softmax stay float32 (see InferenceCrossEncoder).
    """

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor):
        super().__init__()
        self.weight = nn.Parameter(weight.detach().clone().contiguous(), requires_grad=False)
        self.bias = nn.Parameter(bias.detach().clone().contiguous(), requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x.to(self.weight.dtype), self.weight, self.bias)


class FastLayer(nn.Module):
    """One BERT encoder layer, rearranged for CPU inference (same function as BertLayer):
    query/key/value fused into one GEMM, 1/sqrt(head_size) folded into the query projection,
    float32 residual stream, LayerNorm and softmax; GEMMs in FastLinear's dtype."""

    def __init__(self, layer: BertLayer, cfg: BertConfig):
        super().__init__()
        att = layer.attention.self
        self.num_heads = att.num_heads
        self.head_size = att.head_size
        self.hidden = att.all_head_size
        inv = 1.0 / math.sqrt(float(att.head_size))
        w = torch.cat([att.query.weight * inv, att.key.weight, att.value.weight], 0)
        b = torch.cat([att.query.bias * inv, att.key.bias, att.value.bias], 0)
        self.qkv = FastLinear(w, b)
        self.attn_out = FastLinear(layer.attention.output.dense.weight,
                                   layer.attention.output.dense.bias)
        self.ln1 = layer.attention.output.LayerNorm
        self.ffn_in = FastLinear(layer.intermediate.dense.weight, layer.intermediate.dense.bias)
        self.act = layer.intermediate.act
        self.ffn_out = FastLinear(layer.output.dense.weight, layer.output.dense.bias)
        self.ln2 = layer.output.LayerNorm

    def forward(self, x: torch.Tensor, mask_add: torch.Tensor) -> torch.Tensor:
        bsz = x.size(0)
        seq = x.size(1)
        qkv = self.qkv(x).view(bsz, seq, 3, self.num_heads, self.head_size)
        # One copy to [3, B, H, T, D]: q, k, v become contiguous slices (k^T is a free view).
        qkv = qkv.permute(2, 0, 3, 1, 4).contiguous()
        scores = torch.matmul(qkv[0], qkv[1].transpose(-1, -2))  # scale folded into query
        # Softmax in the GEMM dtype: the scores were already rounded to it by the GEMM, and
        # ATen's bf16 softmax accumulates in float32, so a float32 round trip adds nothing.
        probs = F.softmax(scores + mask_add.to(scores.dtype), dim=-1)
        ctx = torch.matmul(probs, qkv[2]).transpose(1, 2).reshape(bsz, seq, self.hidden)
        x = self.ln1(self.attn_out(ctx).float() + x)
        h = self.ffn_in(x)
        if self.act == "gelu":
            h = F.gelu(h)
        elif self.act == "gelu_tanh":
            h = F.gelu(h, approximate="tanh")
        else:
            h = F.relu(h)
        return self.ln2(self.ffn_out(h).float() + x)


class InferenceCrossEncoder(nn.Module):
    """What model.pt holds: BertCrossEncoder's function, laid out for fast CPU inference.

    forward(input_ids, attention_mask, token_type_ids) -> float32 logits [B] (num_labels == 1)
    or [B, num_labels]. Only FastLinear parameters change dtype when rerankd runs the model in
    bf16 (it casts exactly the submodules named in `bf16_submodules`); embeddings, LayerNorms,
    the residual stream and softmax stay float32, which keeps bf16 scores close to fp32.
    """

    rerank_mixed_precision: bool

    def __init__(self, model: BertCrossEncoder, cfg: BertConfig):
        super().__init__()
        self.rerank_mixed_precision = True
        self.num_labels = model.num_labels
        self.embeddings = model.bert.embeddings
        self.layers = nn.ModuleList([FastLayer(l, cfg) for l in model.bert.encoder.layer])
        self.pooler = FastLinear(model.bert.pooler.dense.weight, model.bert.pooler.dense.bias)
        self.classifier = FastLinear(model.classifier.weight, model.classifier.bias)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                token_type_ids: torch.Tensor) -> torch.Tensor:
        x = self.embeddings(input_ids, token_type_ids).float()
        # -10000 for padded keys, as HF BERT: exp(-10000) is exactly 0 and it cannot overflow.
        mask_add = (1.0 - attention_mask.unsqueeze(1).unsqueeze(2).float()) * -10000.0
        for layer in self.layers:
            x = layer(x, mask_add)
        pooled = torch.tanh(self.pooler(x[:, 0]).float())
        logits = self.classifier(pooled).float()
        if self.num_labels == 1:
            return logits.squeeze(-1)
        return logits


class FusedLayer(nn.Module):
    """FastLayer's function with the fused CPU ops of librerank_fused_ops.so
    (server/fused_ops/fused_ops.h), registered as TorchScript ops torch.ops.rerank.*:

    - rerank::attention_packed: scaled dot-product attention per (pair, head) in one pass over
      packed rows (the pairs' real tokens end to end), each pair over its own rows only;
    - rerank::add_layernorm: bias + residual + LayerNorm after the attention-output and FFN-output
      GEMMs, also writing the next GEMM's (bf16) input in the same pass;
    - rerank::bias_act: bias + GELU after the intermediate GEMM.

    The GEMMs are FastLinear weights called without their bias (the epilogues add it), so rerankd's
    bf16 cast (FastLinear submodules) is unchanged. Parameter names are FastLayer's.
    forward(x, x_lowp, offsets) -> (x, x_lowp): x is the float32 residual stream of the packed
    rows [N, hidden], x_lowp its copy in the QKV weight's dtype; offsets int64 [B + 1] delimit the
    pairs (every op here is row-wise except the attention, so no GEMM ever sees a padded row)."""

    def __init__(self, layer: BertLayer, cfg: BertConfig):
        super().__init__()
        fast = FastLayer(layer, cfg)
        self.num_heads = fast.num_heads
        self.qkv = fast.qkv
        self.attn_out = fast.attn_out
        self.ln1 = fast.ln1
        self.ln1_eps = float(fast.ln1.eps)
        self.ffn_in = fast.ffn_in
        self.act = fast.act
        self.ffn_out = fast.ffn_out
        self.ln2 = fast.ln2
        self.ln2_eps = float(fast.ln2.eps)

    def forward(self, x: torch.Tensor, x_lowp: torch.Tensor,
                offsets: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        qkv = F.linear(x_lowp.to(self.qkv.weight.dtype), self.qkv.weight, self.qkv.bias)
        ctx = torch.ops.rerank.attention_packed(qkv, offsets, self.num_heads)
        y = F.linear(ctx.to(self.attn_out.weight.dtype), self.attn_out.weight)
        x, h_in = torch.ops.rerank.add_layernorm(y, self.attn_out.bias, x, self.ln1.weight,
                                                 self.ln1.bias, self.ln1_eps,
                                                 self.ffn_in.weight.dtype)
        h = torch.ops.rerank.bias_act(F.linear(h_in, self.ffn_in.weight), self.ffn_in.bias,
                                      self.act)
        y = F.linear(h.to(self.ffn_out.weight.dtype), self.ffn_out.weight)
        return torch.ops.rerank.add_layernorm(y, self.ffn_out.bias, x, self.ln2.weight,
                                              self.ln2.bias, self.ln2_eps, self.qkv.weight.dtype)


class FusedInferenceCrossEncoder(nn.Module):
    """InferenceCrossEncoder with FusedLayer layers (the default model.pt; `--plain` exports
    InferenceCrossEncoder). Same contract and the same bf16 cast (FastLinear submodules); loading
    it needs the rerank ops registered: rerankd links them, Python loads librerank_fused_ops.so
    (load_fused_ops).

    Padding-free: the padded [B, T] input is packed once into the real tokens of all pairs end to
    end (padding on the right, as the contract says), and embeddings, every GEMM, the epilogues and
    the attention run on those N rows only. The cost of a forward therefore follows the real
    tokens, not B x T: `rerank_padding_free` tells rerankd's batcher so (it then plans the fewest
    forwards instead of trading forwards against padding). A pair must have at least one token.
    """

    rerank_mixed_precision: bool
    rerank_padding_free: bool

    def __init__(self, model: BertCrossEncoder, cfg: BertConfig):
        super().__init__()
        self.rerank_mixed_precision = True
        self.rerank_padding_free = True
        self.num_labels = model.num_labels
        self.embeddings = model.bert.embeddings
        self.layers = nn.ModuleList([FusedLayer(l, cfg) for l in model.bert.encoder.layer])
        self.pooler = FastLinear(model.bert.pooler.dense.weight, model.bert.pooler.dense.bias)
        self.classifier = FastLinear(model.classifier.weight, model.classifier.bias)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                token_type_ids: torch.Tensor) -> torch.Tensor:
        seq_len = input_ids.size(1)
        # Padding is on the right (the contract), so a pair's real tokens are its first
        # sum(mask) positions, and flat index i is position i % T of its pair.
        lengths = attention_mask.sum(1).to(torch.long)
        offsets = F.pad(torch.cumsum(lengths, 0), (1, 0))
        keep = attention_mask.reshape(-1).nonzero().squeeze(1)
        emb = self.embeddings
        # BertEmbeddings.forward on the packed rows (same summation order).
        x = emb.word_embeddings(input_ids.reshape(-1).index_select(0, keep)) + \
            emb.token_type_embeddings(token_type_ids.reshape(-1).index_select(0, keep))
        x = emb.LayerNorm(x + emb.position_embeddings(torch.remainder(keep, seq_len))).float()
        x_lowp = x
        for layer in self.layers:
            x, x_lowp = layer(x, x_lowp, offsets)
        # Each pair's first row ([CLS]).
        pooled = torch.tanh(self.pooler(x.index_select(0, offsets[:-1])).float())
        logits = self.classifier(pooled).float()
        if self.num_labels == 1:
            return logits.squeeze(-1)
        return logits


FUSED_OPS_LIB_ENV = "RERANK_FUSED_OPS_LIB"
_FUSED_OPS_REL = os.path.join("server", "fused_ops", "librerank_fused_ops.so")


def default_fused_ops_lib() -> str:
    """$RERANK_FUSED_OPS_LIB, else $RERANK_BUILD_DIR/server/fused_ops/librerank_fused_ops.so, else
    <repo>/build/server/fused_ops/librerank_fused_ops.so (built by the CMake target
    rerank_fused_ops)."""
    if os.environ.get(FUSED_OPS_LIB_ENV):
        return os.environ[FUSED_OPS_LIB_ENV]
    if os.environ.get("RERANK_BUILD_DIR"):
        return os.path.join(os.environ["RERANK_BUILD_DIR"], _FUSED_OPS_REL)
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    return os.path.join(repo, "build", _FUSED_OPS_REL)


def load_fused_ops(path: Optional[str] = None) -> str:
    """Registers torch.ops.rerank.* in this process (idempotent); returns the library's path."""
    path = os.path.abspath(path or default_fused_ops_lib())
    if not os.path.isfile(path):
        raise ExportError(f"fused ops library not found: {path} (build it with `cmake --build "
                          f"build --target rerank_fused_ops`, pass --fused-ops-lib PATH or set "
                          f"{FUSED_OPS_LIB_ENV}; or export the plain-op module with --plain)")
    try:
        torch.ops.load_library(path)
    except (OSError, RuntimeError) as e:
        raise ExportError(f"cannot load fused ops library {path}: {e}") from e
    return path


def cast_fast_linears(module, dtype) -> None:
    """Casts every FastLinear of a (scripted or eager) InferenceCrossEncoder to `dtype`: what
    rerankd does for model.precision bf16 (server/torch_scorer.cc)."""
    for name, sub in module.named_modules():
        if getattr(sub, "original_name", type(sub).__name__) == "FastLinear":
            sub.to(dtype)


def init_random(model: BertCrossEncoder, cfg: BertConfig, seed: int,
                std: Optional[float] = None, nonzero_biases: bool = False) -> None:
    """HF-style init: normal(0, initializer_range) weights, zero biases, LayerNorm 1/0.

    nonzero_biases (tests only) also randomizes biases and LayerNorm parameters, so that every
    parameter measurably affects the output and a wrong wiring cannot go unnoticed.
    """
    std = cfg.initializer_range if std is None else std
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if ".LayerNorm." in name:
                if name.endswith(".weight"):
                    p.fill_(1.0)
                    if nonzero_biases:
                        p.add_(torch.randn(p.shape, generator=gen) * 0.1)
                else:
                    p.zero_()
                    if nonzero_biases:
                        p.copy_(torch.randn(p.shape, generator=gen) * 0.1)
            elif name.endswith(".bias"):
                p.zero_()
                if nonzero_biases:
                    p.copy_(torch.randn(p.shape, generator=gen) * std)
            else:
                p.copy_(torch.randn(p.shape, generator=gen) * std)
        if not nonzero_biases and 0 <= cfg.pad_token_id < cfg.vocab_size:
            model.bert.embeddings.word_embeddings.weight[cfg.pad_token_id].zero_()


# --------------------------------------------------------------------------------------------
# safetensors (https://github.com/huggingface/safetensors#format): 8-byte little-endian header
# length N, N bytes of JSON {name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__":
# {str: str}}, then the raw little-endian tensor bytes; offsets are relative to the byte after
# the header.
# --------------------------------------------------------------------------------------------

_ST_DTYPES = {
    "F64": torch.float64,
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "I64": torch.int64,
    "I32": torch.int32,
    "I16": torch.int16,
    "I8": torch.int8,
    "U8": torch.uint8,
    "BOOL": torch.bool,
}
_ST_CODES = {v: k for k, v in _ST_DTYPES.items()}


def _check_little_endian():
    if sys.byteorder != "little":
        raise ExportError("safetensors I/O is only implemented on little-endian hosts")


def read_safetensors(path: str) -> Dict[str, torch.Tensor]:
    _check_little_endian()
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise ExportError(f"cannot read {path}: {e}") from e
    if len(data) < 8:
        raise ExportError(f"{path}: truncated safetensors file (no header length)")
    (header_len,) = struct.unpack("<Q", data[:8])
    if 8 + header_len > len(data):
        raise ExportError(f"{path}: header length {header_len} exceeds file size {len(data)}")
    try:
        header = json.loads(data[8:8 + header_len].decode("utf-8"))
    except ValueError as e:
        raise ExportError(f"{path}: invalid safetensors JSON header: {e}") from e
    if not isinstance(header, dict):
        raise ExportError(f"{path}: safetensors header is not a JSON object")
    base = 8 + header_len
    payload = len(data) - base
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        try:
            code, shape, (begin, end) = info["dtype"], info["shape"], info["data_offsets"]
        except (KeyError, TypeError, ValueError) as e:
            raise ExportError(f"{path}: malformed header entry for tensor '{name}'") from e
        if code not in _ST_DTYPES:
            raise ExportError(f"{path}: tensor '{name}' has unsupported dtype {code!r}")
        dtype = _ST_DTYPES[code]
        numel = 1
        for s in shape:
            numel *= int(s)
        itemsize = torch.empty((), dtype=dtype).element_size()
        if not (0 <= begin <= end <= payload) or end - begin != numel * itemsize:
            raise ExportError(f"{path}: tensor '{name}' has bad data_offsets [{begin}, {end}] "
                              f"for dtype {code} shape {shape}")
        if numel == 0:
            t = torch.empty(shape, dtype=dtype)
        else:
            t = torch.frombuffer(bytearray(data[base + begin:base + end]), dtype=dtype)
            t = t.reshape(shape)
        out[name] = t
    return out


def _tensor_bytes(t: torch.Tensor) -> bytes:
    t = t.detach().cpu().contiguous()
    if t.dtype == torch.bfloat16:  # numpy has no bfloat16: reinterpret the bits
        return t.view(torch.int16).numpy().tobytes()
    return t.numpy().tobytes()


def write_safetensors(path: str, tensors: Dict[str, torch.Tensor],
                      metadata: Optional[Dict[str, str]] = None) -> None:
    _check_little_endian()
    header = {}
    blobs = []
    offset = 0
    for name in sorted(tensors):
        t = tensors[name]
        if t.dtype not in _ST_CODES:
            raise ExportError(f"cannot write tensor '{name}' of dtype {t.dtype} to safetensors")
        raw = _tensor_bytes(t)
        header[name] = {"dtype": _ST_CODES[t.dtype], "shape": list(t.shape),
                        "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    hb = json.dumps(header, separators=(",", ":")).encode("utf-8")
    hb += b" " * ((8 - len(hb) % 8) % 8)  # pad so the data starts 8-byte aligned
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hb)))
        f.write(hb)
        for raw in blobs:
            f.write(raw)


# --------------------------------------------------------------------------------------------
# Checkpoint loading
# --------------------------------------------------------------------------------------------


def _load_bin(path: str) -> Dict[str, torch.Tensor]:
    try:
        sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many types for a corrupt/unsafe pickle
        raise ExportError(f"cannot load {path}: {e}") from e
    if not isinstance(sd, dict):
        raise ExportError(f"{path}: expected a state_dict (dict of tensors)")
    return sd


def _load_index(index_path: str, loader) -> Dict[str, torch.Tensor]:
    """Sharded checkpoints: *.index.json maps each key to a shard file."""
    try:
        with open(index_path, "r", encoding="utf-8") as f:
            weight_map = json.load(f)["weight_map"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ExportError(f"cannot read shard index {index_path}: {e}") from e
    sd = {}
    for shard in sorted(set(weight_map.values())):
        sd.update(loader(os.path.join(os.path.dirname(index_path), shard)))
    return sd


def load_checkpoint_weights(ckpt_dir: str) -> Tuple[Dict[str, torch.Tensor], str]:
    """Returns (state_dict, weights file). Prefers safetensors, like transformers."""
    candidates = [
        (WEIGHTS_SAFETENSORS, read_safetensors),
        (WEIGHTS_SAFETENSORS + ".index.json", lambda p: _load_index(p, read_safetensors)),
        (WEIGHTS_BIN, _load_bin),
        (WEIGHTS_BIN + ".index.json", lambda p: _load_index(p, _load_bin)),
    ]
    for fname, loader in candidates:
        path = os.path.join(ckpt_dir, fname)
        if os.path.isfile(path):
            return loader(path), path
    raise ExportError(f"missing weights: neither {os.path.join(ckpt_dir, WEIGHTS_SAFETENSORS)} "
                      f"nor {os.path.join(ckpt_dir, WEIGHTS_BIN)} exists")


# Buffers that some checkpoints carry but that are not parameters of the model.
_IGNORED_KEY = re.compile(r"(^|\.)embeddings\.(position_ids|token_type_ids)$")


def normalize_state_dict(sd: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """Maps historical key spellings to current HF names.

    - LayerNorm.gamma / LayerNorm.beta (old BERT ports) -> LayerNorm.weight / LayerNorm.bias
    - keys without the "bert." prefix (a bare BertModel-style dump) get it
    - position_ids / token_type_ids buffers are dropped.
    """
    out = {}
    for key, value in sd.items():
        if _IGNORED_KEY.search(key):
            continue
        new = key
        if new.startswith(("embeddings.", "encoder.", "pooler.")):
            new = "bert." + new
        new = re.sub(r"LayerNorm\.gamma$", "LayerNorm.weight", new)
        new = re.sub(r"LayerNorm\.beta$", "LayerNorm.bias", new)
        if new in out:
            raise ExportError(f"checkpoint has both '{key}' and another key that maps to '{new}'")
        out[new] = value
    return out


def load_weights_into(model: nn.Module, sd: Dict[str, torch.Tensor], source: str) -> None:
    sd = normalize_state_dict(sd)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(sd))
    unexpected = sorted(set(sd) - set(expected))
    if missing or unexpected:
        msg = [f"{source}: checkpoint keys do not match BertForSequenceClassification"]
        if missing:
            msg.append(f"missing keys ({len(missing)}): {', '.join(missing)}")
        if unexpected:
            msg.append(f"unexpected keys ({len(unexpected)}): {', '.join(unexpected)}")
        raise ExportError("\n  ".join(msg))
    mismatched = [f"'{k}': checkpoint {list(sd[k].shape)} vs config {list(v.shape)}"
                  for k, v in expected.items() if tuple(sd[k].shape) != tuple(v.shape)]
    if mismatched:
        raise ExportError(f"{source}: shape mismatch (config.json vs weights):\n  " +
                          "\n  ".join(mismatched))
    converted = {}
    for k, v in sd.items():
        if not v.is_floating_point():
            raise ExportError(f"{source}: tensor '{k}' has non-float dtype {v.dtype}")
        converted[k] = v.to(torch.float32)  # fp16/bf16 checkpoints are upcast; fp32 is stored
    model.load_state_dict(converted, strict=True)


# --------------------------------------------------------------------------------------------
# Vocab
# --------------------------------------------------------------------------------------------

_COMMON_WORDS = (
    "the of and to in a is that for it as was with be by on not he this are or his from at "
    "which but have an they you were her she there one all we their has been its who had more "
    "will would can if about what when how many people live city population area known museums "
    "search query document score rank model test").split()


def demo_vocab(vocab_size: int) -> List[str]:
    """A deterministic BERT-like WordPiece vocab of exactly vocab_size tokens.

    Layout as in BERT uncased: [PAD]=0, [unused0..98]=1..99, [UNK]=100, [CLS]=101, [SEP]=102,
    [MASK]=103, then single printable ASCII characters (lowercase letters and digits first, so
    small vocabs still cover them), their "##" continuation forms, then filler words. Any
    lowercased ASCII word therefore tokenizes without [UNK] once the vocab is >= 292 tokens.
    """
    if vocab_size < 104:
        raise ExportError(f"demo vocab needs vocab_size >= 104, got {vocab_size}")
    tokens = ["[PAD]"] + [f"[unused{i}]" for i in range(99)] + ["[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    printable = [chr(c) for c in range(33, 127)]
    first = [c for c in printable if c.islower() or c.isdigit()]
    chars = first + [c for c in printable if c not in first]
    tokens += chars + ["##" + c for c in chars]
    seen = set(tokens)
    for w in _COMMON_WORDS:
        if w not in seen:
            tokens.append(w)
            seen.add(w)
    i = 0
    while len(tokens) < vocab_size:  # filler: "fill" + base-26 letters (aa, ab, ...)
        n, s = i, ""
        for _ in range(3):
            s = chr(ord("a") + n % 26) + s
            n //= 26
        tok = "fill" + s + (str(n) if n else "")
        if tok not in seen:
            tokens.append(tok)
            seen.add(tok)
        i += 1
    return tokens[:vocab_size]


def read_vocab(path: str) -> List[str]:
    try:
        with open(path, "r", encoding="utf-8") as f:
            return f.read().splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise ExportError(f"cannot read vocab {path}: {e}") from e


def check_vocab(path: str, cfg: BertConfig) -> int:
    tokens = read_vocab(path)
    if len(tokens) > cfg.vocab_size:
        raise ExportError(f"vocab {path} has {len(tokens)} tokens but config vocab_size is "
                          f"{cfg.vocab_size}: ids would index past the embedding table")
    present = set(tokens)
    missing = [t for t in SPECIAL_TOKENS if t not in present]
    if missing:
        raise ExportError(f"vocab {path} lacks special token(s): {', '.join(missing)}")
    return len(tokens)


def write_demo_vocab(path: str, vocab_size: int) -> None:
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(demo_vocab(vocab_size)) + "\n")


# --------------------------------------------------------------------------------------------
# Export
# --------------------------------------------------------------------------------------------


def _smoke_inputs(cfg: BertConfig, seed: int = 1234):
    """A padded batch of 3 (lengths T, T-2, 3) for post-export self-checks."""
    g = torch.Generator().manual_seed(seed)
    t = min(16, cfg.max_position_embeddings)
    lengths = [t, max(1, t - 2), min(3, t)]
    ids = torch.randint(0, cfg.vocab_size, (3, t), generator=g)
    mask = torch.zeros(3, t, dtype=torch.long)
    types = torch.zeros(3, t, dtype=torch.long)
    for b, n in enumerate(lengths):
        mask[b, :n] = 1
        types[b, n // 2:n] = 1 if cfg.type_vocab_size > 1 else 0
        ids[b, n:] = 0
    return ids, mask, types


def _sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def export_model(model: BertCrossEncoder, cfg: BertConfig, out_dir: str, *, name: str,
                 vocab_src: Optional[str], max_length: int, lowercase: bool, precision: str,
                 score_activation: str, source: str, demo: bool,
                 fused_ops_lib: Optional[str] = None) -> dict:
    """Scripts `model`, writes out_dir/{model.pt, vocab.txt, model.yaml}; returns the yaml dict.

    fused_ops_lib: None exports the plain-op module (InferenceCrossEncoder, the fp32 fidelity
    reference); a path exports FusedInferenceCrossEncoder after loading that library."""
    # rerankd's loader (server/model_info.cc) rejects max_length < 8.
    if min(max_length, cfg.max_position_embeddings) < 8:
        raise ExportError(f"max_length must be >= 8, got --max-length {max_length} and "
                          f"max_position_embeddings {cfg.max_position_embeddings}")
    os.makedirs(out_dir, exist_ok=True)
    model.eval()
    if fused_ops_lib is None:
        inference = InferenceCrossEncoder(model, cfg).eval()
    else:
        load_fused_ops(fused_ops_lib)
        inference = FusedInferenceCrossEncoder(model, cfg).eval()
    scripted = torch.jit.script(inference)
    # Write to temporary names and rename, so a watcher never sees half-written files. The
    # TorchScript archive's inner folder is named after the file, hence a temp dir.
    tmp_dir = os.path.join(out_dir, ".export.tmp")
    os.makedirs(tmp_dir, exist_ok=True)
    pt_tmp = os.path.join(tmp_dir, "model.pt")
    torch.jit.save(scripted, pt_tmp)

    # Self-check: the saved module reloads and agrees with the eager module (catches scripting
    # divergences), and runs in bf16 when that is the requested runtime precision.
    loaded = torch.jit.load(pt_tmp)
    ids, mask, types = _smoke_inputs(cfg)
    with torch.no_grad():
        want = model(ids, mask, types)
        got = loaded(ids, mask, types)
        diff = (want - got).abs().max().item()
        if got.dtype != torch.float32 or not torch.isfinite(got).all() or diff > 1e-4:
            raise ExportError(f"self-check failed: TorchScript output differs from eager by {diff}")
        if precision == "bf16":
            bf16 = torch.jit.load(pt_tmp)
            cast_fast_linears(bf16, torch.bfloat16)
            got_bf16 = bf16(ids, mask, types)
            if got_bf16.dtype != torch.float32 or not torch.isfinite(got_bf16).all():
                raise ExportError("self-check failed: the module does not run in bfloat16")
    os.replace(pt_tmp, os.path.join(out_dir, "model.pt"))
    os.rmdir(tmp_dir)

    vocab_dst = os.path.join(out_dir, "vocab.txt")
    if vocab_src is None:
        write_demo_vocab(vocab_dst + ".tmp", cfg.vocab_size)
    else:
        shutil.copyfile(vocab_src, vocab_dst + ".tmp")
    os.replace(vocab_dst + ".tmp", vocab_dst)

    meta = {
        "name": name,
        "version": _sha256(os.path.join(out_dir, "model.pt"))[:12],
        "max_length": min(max_length, cfg.max_position_embeddings),
        "lowercase": bool(lowercase),
        "precision": precision,
        "score_activation": score_activation,
        "num_layers": cfg.num_hidden_layers,
        "hidden_size": cfg.hidden_size,
        "source": source,
        "demo": bool(demo),
    }
    yaml_tmp = os.path.join(out_dir, "model.yaml.tmp")
    with open(yaml_tmp, "w", encoding="utf-8") as f:
        f.write("# rerankd model directory metadata, written by tools/export_model.py.\n")
        yaml.safe_dump(meta, f, sort_keys=False, default_flow_style=False, allow_unicode=True)
    os.replace(yaml_tmp, os.path.join(out_dir, "model.yaml"))
    return meta


def _lowercase_from(dir_path: Optional[str]) -> bool:
    """do_lower_case from tokenizer_config.json in dir_path if present, else True (uncased)."""
    if dir_path is None:
        return True
    path = os.path.join(dir_path, "tokenizer_config.json")
    if not os.path.isfile(path):
        return True
    try:
        with open(path, "r", encoding="utf-8") as f:
            value = json.load(f).get("do_lower_case", True)
    except (OSError, ValueError, AttributeError) as e:
        raise ExportError(f"cannot read {path}: {e}") from e
    if not isinstance(value, bool):
        raise ExportError(f"{path}: do_lower_case must be true or false, got {value!r}")
    return value


def _default_activation(cfg: BertConfig) -> str:
    """sentence-transformers records the CrossEncoder's activation in the config."""
    act = str(cfg.raw.get("sbert_ce_default_activation_function") or "")
    return "sigmoid" if act.endswith("Sigmoid") else "raw"


def _warn_num_labels(cfg: BertConfig) -> None:
    if cfg.num_labels != 1:
        print(f"export_model: warning: num_labels={cfg.num_labels}: model.pt returns "
              f"[B, {cfg.num_labels}] logits; rerankd expects a single score (num_labels=1)",
              file=sys.stderr)


def _fused_lib_arg(args) -> Optional[str]:
    """None with --plain, else the fused ops library to load (--fused-ops-lib or the default)."""
    if args.plain:
        return None
    return args.fused_ops_lib or default_fused_ops_lib()


def cmd_checkpoint(args) -> dict:
    ckpt = os.path.abspath(args.checkpoint)
    if not os.path.isdir(ckpt):
        raise ExportError(f"checkpoint directory does not exist: {ckpt}")
    cfg = load_config(os.path.join(ckpt, "config.json"))
    vocab = os.path.join(ckpt, "vocab.txt")
    if not os.path.isfile(vocab):
        raise ExportError(f"missing vocab: {vocab}")
    check_vocab(vocab, cfg)
    sd, weights_path = load_checkpoint_weights(ckpt)
    model = BertCrossEncoder(cfg)
    load_weights_into(model, sd, weights_path)
    _warn_num_labels(cfg)
    return export_model(
        model, cfg, args.out, name=args.name or os.path.basename(ckpt.rstrip(os.sep)),
        vocab_src=vocab, max_length=args.max_length, lowercase=_lowercase_from(ckpt),
        precision=args.precision,
        score_activation=args.score_activation or _default_activation(cfg),
        source=f"checkpoint:{ckpt}", demo=False, fused_ops_lib=_fused_lib_arg(args))


def cmd_random_init(args) -> dict:
    cfg = load_config(args.config)
    if args.vocab is not None:
        check_vocab(args.vocab, cfg)
    model = BertCrossEncoder(cfg)
    init_random(model, cfg, args.seed, std=args.init_std, nonzero_biases=args.nonzero_biases)
    _warn_num_labels(cfg)
    vocab_dir = os.path.dirname(os.path.abspath(args.vocab)) if args.vocab else None
    return export_model(
        model, cfg, args.out, name=args.name or "random-init", vocab_src=args.vocab,
        max_length=args.max_length, lowercase=_lowercase_from(vocab_dir),
        precision=args.precision,
        score_activation=args.score_activation or _default_activation(cfg),
        source="random-init", demo=True, fused_ops_lib=_fused_lib_arg(args))


def cmd_write_random_checkpoint(args) -> dict:
    cfg = load_config(args.config)
    if args.vocab is not None:
        check_vocab(args.vocab, cfg)
    model = BertCrossEncoder(cfg)
    init_random(model, cfg, args.seed, std=args.init_std, nonzero_biases=args.nonzero_biases)
    sd = {k: v.detach().clone() for k, v in model.state_dict().items()}
    # Like checkpoints saved by transformers < 4.31, which carry this int64 buffer.
    sd["bert.embeddings.position_ids"] = torch.arange(
        cfg.max_position_embeddings, dtype=torch.long).unsqueeze(0)
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "config.json"), "w", encoding="utf-8") as f:
        json.dump(cfg.raw, f, indent=2, sort_keys=True)
        f.write("\n")
    if args.format == "safetensors":
        write_safetensors(os.path.join(args.out, WEIGHTS_SAFETENSORS), sd, {"format": "pt"})
    else:
        torch.save(sd, os.path.join(args.out, WEIGHTS_BIN))
    vocab_dst = os.path.join(args.out, "vocab.txt")
    if args.vocab is not None:
        shutil.copyfile(args.vocab, vocab_dst)
    else:
        write_demo_vocab(vocab_dst, cfg.vocab_size)
    return {"checkpoint": os.path.abspath(args.out), "format": args.format}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="export_model.py",
        description="Export a BERT cross-encoder to a rerankd model directory "
                    "(model.pt, vocab.txt, model.yaml).",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = p.add_mutually_exclusive_group(required=True)
    mode.add_argument("--checkpoint", metavar="DIR",
                      help="HF checkpoint dir: config.json, vocab.txt, model.safetensors or "
                           "pytorch_model.bin (optional tokenizer_config.json)")
    mode.add_argument("--random-init", action="store_true",
                      help="export random weights in the shape of --config (demo: true)")
    mode.add_argument("--write-random-checkpoint", action="store_true",
                      help="write a random HF-style checkpoint dir to --out (for tests)")
    p.add_argument("--out", required=True, metavar="DIR", help="output directory")
    p.add_argument("--config", metavar="JSON", help="config.json (random modes)")
    p.add_argument("--vocab", metavar="TXT",
                   help="vocab.txt to copy (random modes); default: a generated demo vocab")
    p.add_argument("--name", help="model name (default: checkpoint dir name / random-init)")
    p.add_argument("--max-length", type=int, default=512,
                   help="max tokens per pair; capped at max_position_embeddings (default 512)")
    p.add_argument("--precision", choices=("fp32", "bf16"), default="fp32",
                   help="runtime precision recorded in model.yaml; weights stay fp32")
    p.add_argument("--score-activation", choices=("raw", "sigmoid"), default=None,
                   help="applied by the server to logits (default: from the config's "
                        "sbert_ce_default_activation_function, else raw)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random modes")
    p.add_argument("--format", choices=("safetensors", "bin"), default="safetensors",
                   help="weights format of --write-random-checkpoint")
    p.add_argument("--init-std", type=float, default=None,
                   help="random modes: weight std (default: config initializer_range)")
    p.add_argument("--nonzero-biases", action="store_true",
                   help="random modes: also randomize biases/LayerNorm (tests)")
    p.add_argument("--plain", action="store_true",
                   help="export the plain-op module (ATen ops only; the fp32 fidelity "
                        "reference) instead of the fused-op one")
    p.add_argument("--fused-ops-lib", metavar="SO",
                   help="librerank_fused_ops.so to load for the fused module (default: "
                        f"${FUSED_OPS_LIB_ENV}, else $RERANK_BUILD_DIR/{_FUSED_OPS_REL}, else "
                        f"<repo>/build/{_FUSED_OPS_REL})")
    return p


def main(argv: Optional[List[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if (args.random_init or args.write_random_checkpoint) and not args.config:
        parser.error("--config is required with --random-init / --write-random-checkpoint")
    if args.plain and args.fused_ops_lib:
        parser.error("--fused-ops-lib is for the fused module; --plain loads no library")
    if args.checkpoint and (args.config or args.vocab):
        parser.error("--config/--vocab are read from the --checkpoint directory")
    start = time.monotonic()
    try:
        if args.checkpoint:
            result = cmd_checkpoint(args)
        elif args.random_init:
            result = cmd_random_init(args)
        else:
            result = cmd_write_random_checkpoint(args)
    except ExportError as e:
        print(f"export_model: error: {e}", file=sys.stderr)
        return 2
    print(f"export_model: wrote {os.path.abspath(args.out)} in "
          f"{time.monotonic() - start:.2f}s: {json.dumps(result)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
