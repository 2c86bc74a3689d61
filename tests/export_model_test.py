#!/usr/bin/python3
"""Tests of tools/export_model.py (run by ctest as export_model_test, with /usr/bin/python3).

The exported TorchScript module is compared against an independent reference forward written
here with plain float64 tensor ops straight from the state_dict, one example at a time and
without padding, so it checks the module's wiring, its numerics and its padding semantics.
"""

import contextlib
import hashlib
import importlib.util
import io
import json
import math
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import time
import unittest

import torch
import yaml

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOOL = os.path.join(REPO, "tools", "export_model.py")
PYTHON = sys.executable
MINILM_DIR = os.path.join(REPO, "third_party", "ms-marco-MiniLM-L-6-v2")  # vendored, see NOTICE

_spec = importlib.util.spec_from_file_location("export_model", TOOL)
em = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(em)

# model.pt calls the fused ops (torch.ops.rerank.*) by default: register them in this process
# (librerank_fused_ops.so from $RERANK_FUSED_OPS_LIB or $RERANK_BUILD_DIR, as the exporter finds it).
FUSED_OPS_LIB = em.load_fused_ops()

TINY = {
    "architectures": ["BertForSequenceClassification"],
    "vocab_size": 200,
    "hidden_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "intermediate_size": 64,
    "max_position_embeddings": 64,
    "type_vocab_size": 2,
    "layer_norm_eps": 1e-12,
    "hidden_act": "gelu",
    "initializer_range": 0.02,
    "id2label": {"0": "LABEL_0"},
    "label2id": {"LABEL_0": 0},
    "model_type": "bert",
}

YAML_KEYS = {"name", "version", "max_length", "lowercase", "precision", "score_activation",
             "num_layers", "hidden_size", "source", "demo"}


def run_main(argv):
    """Runs export_model.main in-process; returns (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc = em.main(argv)
        except SystemExit as e:  # argparse errors
            rc = e.code
    return rc, out.getvalue(), err.getvalue()


def run_cli(argv):
    """Runs the tool as a real process (checks the shebang-level CLI and exit codes)."""
    p = subprocess.run([PYTHON, TOOL] + argv, capture_output=True, text=True, timeout=300)
    return p.returncode, p.stdout, p.stderr


def write_json(path, obj):
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f)


def sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def read_yaml(path):
    with open(path, "r", encoding="utf-8") as f:
        return yaml.safe_load(f)


def load_state_dict(ckpt_dir):
    st = os.path.join(ckpt_dir, "model.safetensors")
    if os.path.exists(st):
        return em.read_safetensors(st)
    return torch.load(os.path.join(ckpt_dir, "pytorch_model.bin"), map_location="cpu")


# ------------------------------------------------------------------------------------------
# Independent reference: float64, per example, real tokens only, explicit per-head loop.
# ------------------------------------------------------------------------------------------


def _ln(x, w, b, eps):
    mean = x.mean(dim=-1, keepdim=True)
    var = ((x - mean) ** 2).mean(dim=-1, keepdim=True)
    return (x - mean) / torch.sqrt(var + eps) * w + b


def _gelu_erf(x):
    return 0.5 * x * (1.0 + torch.erf(x / math.sqrt(2.0)))


def reference_score(sd, cfg, ids, types):
    """Logits [num_labels] for one unpadded sequence (ids, types: 1-D int64)."""
    def p(key):
        return sd[key].double()

    def lin(x, prefix):
        return x @ p(prefix + ".weight").t() + p(prefix + ".bias")

    eps = cfg["layer_norm_eps"]
    heads = cfg["num_attention_heads"]
    d = cfg["hidden_size"] // heads
    t = ids.shape[0]
    x = (p("bert.embeddings.word_embeddings.weight")[ids]
         + p("bert.embeddings.token_type_embeddings.weight")[types]
         + p("bert.embeddings.position_embeddings.weight")[:t])
    x = _ln(x, p("bert.embeddings.LayerNorm.weight"), p("bert.embeddings.LayerNorm.bias"), eps)
    for layer in range(cfg["num_hidden_layers"]):
        pre = f"bert.encoder.layer.{layer}."
        q = lin(x, pre + "attention.self.query")
        k = lin(x, pre + "attention.self.key")
        v = lin(x, pre + "attention.self.value")
        ctx = torch.zeros_like(x)
        for h in range(heads):
            cols = slice(h * d, (h + 1) * d)
            s = q[:, cols] @ k[:, cols].t() / math.sqrt(d)
            e = torch.exp(s - s.max(dim=-1, keepdim=True).values)
            ctx[:, cols] = (e / e.sum(dim=-1, keepdim=True)) @ v[:, cols]
        a = _ln(lin(ctx, pre + "attention.output.dense") + x,
                p(pre + "attention.output.LayerNorm.weight"),
                p(pre + "attention.output.LayerNorm.bias"), eps)
        inter = _gelu_erf(lin(a, pre + "intermediate.dense"))
        x = _ln(lin(inter, pre + "output.dense") + a, p(pre + "output.LayerNorm.weight"),
                p(pre + "output.LayerNorm.bias"), eps)
    pooled = torch.tanh(lin(x[0], "bert.pooler.dense"))
    return lin(pooled, "classifier")


def random_batch(gen, cfg, batch, max_t):
    """Right-padded batch plus the unpadded examples it holds."""
    lengths = [int(torch.randint(2, max_t + 1, (1,), generator=gen)) for _ in range(batch)]
    lengths[0] = max_t  # the batch is padded to its longest example
    ids = torch.zeros(batch, max_t, dtype=torch.long)
    mask = torch.zeros(batch, max_t, dtype=torch.long)
    types = torch.zeros(batch, max_t, dtype=torch.long)
    examples = []
    for b, n in enumerate(lengths):
        ex_ids = torch.randint(1, cfg["vocab_size"], (n,), generator=gen)
        split = int(torch.randint(1, n + 1, (1,), generator=gen))
        ex_types = torch.zeros(n, dtype=torch.long)
        ex_types[split:] = 1
        ids[b, :n] = ex_ids
        mask[b, :n] = 1
        types[b, :n] = ex_types
        examples.append((ex_ids, ex_types))
    return ids, mask, types, examples


def max_diff_vs_reference(module, sd, cfg, seeds, max_batch, max_t):
    """Returns (max abs diff, all reference scores) over random padded batches."""
    worst, refs = 0.0, []
    for seed in seeds:
        gen = torch.Generator().manual_seed(seed)
        batch = int(torch.randint(1, max_batch + 1, (1,), generator=gen))
        t = int(torch.randint(2, max_t + 1, (1,), generator=gen))
        ids, mask, types, examples = random_batch(gen, cfg, batch, t)
        with torch.no_grad():
            got = module(ids, mask, types)
        assert got.dtype == torch.float32 and tuple(got.shape) == (batch,), (got.dtype, got.shape)
        want = torch.stack([reference_score(sd, cfg, i, ty)[0] for i, ty in examples])
        worst = max(worst, (got.double() - want).abs().max().item())
        refs.extend(want.tolist())
    return worst, refs


class ExportCheckpointTest(unittest.TestCase):
    """Random HF checkpoint (safetensors and bin) -> export -> TorchScript vs reference."""

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="export_model_test_")
        cls.config_path = os.path.join(cls.tmp, "tiny_config.json")
        write_json(cls.config_path, TINY)
        cls.ckpt, cls.out = {}, {}
        for fmt in ("safetensors", "bin"):
            ckpt = os.path.join(cls.tmp, "ckpt_" + fmt)
            out = os.path.join(cls.tmp, "model_" + fmt)
            # Larger std and random biases/LayerNorm: logits of order 1, every parameter matters.
            rc, _, err = run_main(["--write-random-checkpoint", "--config", cls.config_path,
                                   "--out", ckpt, "--format", fmt, "--seed", "7",
                                   "--init-std", "0.2", "--nonzero-biases"])
            assert rc == 0, err
            rc, _, err = run_main(["--checkpoint", ckpt, "--out", out])
            assert rc == 0, err
            cls.ckpt[fmt], cls.out[fmt] = ckpt, out

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def _check_against_reference(self, fmt):
        module = torch.jit.load(os.path.join(self.out[fmt], "model.pt"))
        self.assertIsInstance(module, torch.jit.ScriptModule)
        sd = load_state_dict(self.ckpt[fmt])
        diff, refs = max_diff_vs_reference(module, sd, TINY, range(6), 6, 64)
        print(f"\n[{fmt}] max abs diff TorchScript vs reference: {diff:.3g} "
              f"(logit std {torch.tensor(refs).std().item():.3g})", file=sys.stderr)
        self.assertLess(diff, 1e-4)
        # The comparison is only meaningful if the scores vary.
        self.assertGreater(torch.tensor(refs).std().item(), 0.1)

    def test_safetensors_export_matches_reference(self):
        self._check_against_reference("safetensors")

    def test_bin_export_matches_reference(self):
        self._check_against_reference("bin")

    def test_safetensors_and_bin_checkpoints_hold_the_same_weights(self):
        a = load_state_dict(self.ckpt["safetensors"])
        b = load_state_dict(self.ckpt["bin"])
        self.assertEqual(sorted(a), sorted(b))
        for k in a:
            self.assertTrue(torch.equal(a[k], b[k]), k)
        self.assertIn("bert.encoder.layer.0.attention.self.query.weight", a)
        self.assertIn("bert.encoder.layer.1.attention.output.LayerNorm.weight", a)
        self.assertIn("bert.pooler.dense.weight", a)
        self.assertIn("classifier.weight", a)
        self.assertEqual(a["bert.embeddings.position_ids"].dtype, torch.int64)

    def test_reference_comparison_detects_a_wrong_weight(self):
        # Guards the test itself: a small change to one deep weight must exceed the tolerance.
        module = torch.jit.load(os.path.join(self.out["safetensors"], "model.pt"))
        sd = dict(load_state_dict(self.ckpt["safetensors"]))
        key = "bert.encoder.layer.1.intermediate.dense.weight"
        sd[key] = sd[key] * 1.01
        diff, _ = max_diff_vs_reference(module, sd, TINY, range(3), 4, 32)
        self.assertGreater(diff, 1e-3)

    def test_padding_does_not_change_scores(self):
        module = torch.jit.load(os.path.join(self.out["safetensors"], "model.pt"))
        gen = torch.Generator().manual_seed(3)
        ids, mask, types, examples = random_batch(gen, TINY, 5, 48)
        with torch.no_grad():
            batched = module(ids, mask, types)
            for b, (ex_ids, ex_types) in enumerate(examples):
                alone = module(ex_ids[None], torch.ones_like(ex_ids)[None], ex_types[None])
                self.assertEqual(tuple(alone.shape), (1,))
                self.assertLess(abs(alone.item() - batched[b].item()), 1e-5, f"example {b}")
            # Garbage in padded positions (ids, types) must not matter either.
            noisy_ids = torch.where(mask.bool(), ids, torch.randint(0, 200, ids.shape))
            noisy_types = torch.where(mask.bool(), types, torch.ones_like(types))
            self.assertLess((module(noisy_ids, mask, noisy_types) - batched).abs().max().item(),
                            1e-5)

    def test_any_batch_size_and_length(self):
        module = torch.jit.load(os.path.join(self.out["bin"], "model.pt"))
        with torch.no_grad():
            for b, t in ((1, 1), (1, 64), (9, 3), (2, 17)):
                x = torch.ones(b, t, dtype=torch.long)
                y = module(x * 5, x, torch.zeros_like(x))
                self.assertEqual(tuple(y.shape), (b,))
                self.assertEqual(y.dtype, torch.float32)

    def test_bf16_parameters_still_return_float32_close_to_fp32(self):
        # What rerankd does for precision bf16: cast exactly the FastLinear submodules.
        module = torch.jit.load(os.path.join(self.out["safetensors"], "model.pt"))
        self.assertTrue(module.rerank_mixed_precision)
        gen = torch.Generator().manual_seed(11)
        ids, mask, types, _ = random_batch(gen, TINY, 6, 40)
        with torch.no_grad():
            fp32 = module(ids, mask, types)
            em.cast_fast_linears(module, torch.bfloat16)
            linear_dtypes = {p.dtype for n, p in module.named_parameters()
                             if ".qkv." in n or ".ffn_in." in n or n.startswith("classifier.")}
            self.assertEqual(linear_dtypes, {torch.bfloat16})
            self.assertEqual(module.state_dict()["layers.0.ln1.weight"].dtype, torch.float32)
            bf16 = module(ids, mask, types)
        self.assertEqual(bf16.dtype, torch.float32)
        self.assertTrue(torch.isfinite(bf16).all())
        self.assertLess((bf16 - fp32).abs().max().item(), 0.1 + 0.05 * fp32.abs().max().item())

    def test_model_yaml_fields(self):
        meta = read_yaml(os.path.join(self.out["safetensors"], "model.yaml"))
        self.assertEqual(set(meta), YAML_KEYS)
        pt = os.path.join(self.out["safetensors"], "model.pt")
        self.assertEqual(meta["version"], sha256(pt)[:12])
        self.assertEqual(meta["name"], "ckpt_safetensors")
        self.assertEqual(meta["max_length"], 64)  # min(512 default, max_position_embeddings)
        self.assertIs(meta["lowercase"], True)  # no tokenizer_config.json
        self.assertEqual(meta["precision"], "fp32")
        self.assertEqual(meta["score_activation"], "raw")
        self.assertEqual(meta["num_layers"], 2)
        self.assertEqual(meta["hidden_size"], 32)
        self.assertEqual(meta["source"], "checkpoint:" + os.path.abspath(self.ckpt["safetensors"]))
        self.assertIs(meta["demo"], False)

    def test_vocab_is_copied(self):
        self.assertEqual(sha256(os.path.join(self.out["bin"], "vocab.txt")),
                         sha256(os.path.join(self.ckpt["bin"], "vocab.txt")))

    def test_model_yaml_options_and_tokenizer_config(self):
        ckpt = os.path.join(self.tmp, "ckpt_options")
        shutil.copytree(self.ckpt["safetensors"], ckpt)
        write_json(os.path.join(ckpt, "tokenizer_config.json"), {"do_lower_case": False})
        cfg = dict(TINY, sbert_ce_default_activation_function="torch.nn.modules.activation.Sigmoid")
        write_json(os.path.join(ckpt, "config.json"), cfg)
        out = os.path.join(self.tmp, "model_options")
        rc, _, err = run_main(["--checkpoint", ckpt, "--out", out, "--max-length", "32",
                               "--precision", "bf16", "--name", "my-reranker"])
        self.assertEqual(rc, 0, err)
        meta = read_yaml(os.path.join(out, "model.yaml"))
        self.assertEqual(meta["name"], "my-reranker")
        self.assertEqual(meta["max_length"], 32)
        self.assertIs(meta["lowercase"], False)
        self.assertEqual(meta["precision"], "bf16")
        self.assertEqual(meta["score_activation"], "sigmoid")  # from the config
        rc, _, err = run_main(["--checkpoint", ckpt, "--out", out, "--score-activation", "raw"])
        self.assertEqual(rc, 0, err)
        self.assertEqual(read_yaml(os.path.join(out, "model.yaml"))["score_activation"], "raw")
        self.assertFalse(os.path.exists(os.path.join(out, ".export.tmp")))

    def test_cli_export_is_reproducible(self):
        outs = [os.path.join(self.tmp, f"repro_{i}") for i in range(2)]
        for out in outs:
            rc, stdout, err = run_cli(["--checkpoint", self.ckpt["bin"], "--out", out])
            self.assertEqual(rc, 0, err)
            self.assertIn("version", stdout)
        v = [read_yaml(os.path.join(o, "model.yaml"))["version"] for o in outs]
        # Byte-identical across processes (the CLI pins PYTHONHASHSEED; in-process exports above
        # run under a random hash seed and may order TorchScript constants differently).
        self.assertEqual(v[0], v[1])


class KeyCompatibilityAndErrorsTest(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="export_model_keys_")
        cls.config_path = os.path.join(cls.tmp, "tiny_config.json")
        write_json(cls.config_path, TINY)
        cls.base = os.path.join(cls.tmp, "base")
        rc, _, err = run_main(["--write-random-checkpoint", "--config", cls.config_path,
                               "--out", cls.base, "--format", "bin", "--seed", "5",
                               "--init-std", "0.2", "--nonzero-biases"])
        assert rc == 0, err
        cls.sd = torch.load(os.path.join(cls.base, "pytorch_model.bin"))

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def _checkpoint(self, name, sd, fmt="bin", config=None):
        d = os.path.join(self.tmp, name)
        os.makedirs(d)
        write_json(os.path.join(d, "config.json"), config or TINY)
        shutil.copyfile(os.path.join(self.base, "vocab.txt"), os.path.join(d, "vocab.txt"))
        if fmt == "bin":
            torch.save(sd, os.path.join(d, "pytorch_model.bin"))
        else:
            em.write_safetensors(os.path.join(d, "model.safetensors"), sd)
        return d

    def _scores(self, model_dir):
        module = torch.jit.load(os.path.join(model_dir, "model.pt"))
        gen = torch.Generator().manual_seed(1)
        ids, mask, types, _ = random_batch(gen, TINY, 4, 30)
        with torch.no_grad():
            return module(ids, mask, types)

    def test_old_names_and_missing_prefix(self):
        def old(k):
            k = k.replace("LayerNorm.weight", "LayerNorm.gamma").replace("LayerNorm.bias",
                                                                          "LayerNorm.beta")
            return k[len("bert."):] if k.startswith("bert.") else k
        old_sd = {old(k): v for k, v in self.sd.items() if not k.endswith("position_ids")}
        self.assertIn("encoder.layer.0.attention.output.LayerNorm.gamma", old_sd)
        self.assertIn("embeddings.LayerNorm.beta", old_sd)
        outs = {}
        for name, sd, fmt in (("new", self.sd, "bin"), ("old", old_sd, "safetensors")):
            out = os.path.join(self.tmp, "out_" + name)
            rc, _, err = run_main(["--checkpoint", self._checkpoint("ck_" + name, sd, fmt),
                                   "--out", out])
            self.assertEqual(rc, 0, err)
            outs[name] = self._scores(out)
        self.assertTrue(torch.equal(outs["new"], outs["old"]))

    def test_half_precision_checkpoints_are_upcast(self):
        for dtype in (torch.float16, torch.bfloat16):
            half = {k: (v.to(dtype) if v.is_floating_point() else v) for k, v in self.sd.items()}
            name = str(dtype).split(".")[-1]
            out = os.path.join(self.tmp, "out_" + name)
            rc, _, err = run_main(["--checkpoint", self._checkpoint("ck_" + name, half, "safetensors"),
                                   "--out", out])
            self.assertEqual(rc, 0, err)
            module = torch.jit.load(os.path.join(out, "model.pt"))
            ref_sd = {k: v.float() for k, v in half.items()}
            diff, _ = max_diff_vs_reference(module, ref_sd, TINY, range(2), 4, 32)
            self.assertLess(diff, 1e-4, name)

    def test_missing_key_fails_naming_it(self):
        sd = dict(self.sd)
        del sd["bert.encoder.layer.1.output.dense.bias"]
        rc, _, err = run_main(["--checkpoint", self._checkpoint("ck_missing", sd),
                               "--out", os.path.join(self.tmp, "x")])
        self.assertEqual(rc, 2)
        self.assertIn("missing keys (1): bert.encoder.layer.1.output.dense.bias", err)
        self.assertIn("pytorch_model.bin", err)
        self.assertFalse(os.path.exists(os.path.join(self.tmp, "x", "model.yaml")))

    def test_unexpected_key_fails_naming_it(self):
        sd = dict(self.sd)
        sd["cls.predictions.bias"] = torch.zeros(200)
        rc, _, err = run_main(["--checkpoint", self._checkpoint("ck_unexpected", sd, "safetensors"),
                               "--out", os.path.join(self.tmp, "y")])
        self.assertEqual(rc, 2)
        self.assertIn("unexpected keys (1): cls.predictions.bias", err)

    def test_shape_mismatch_fails_naming_the_key(self):
        config = dict(TINY, intermediate_size=48)
        d = self._checkpoint("ck_shape", self.sd, config=config)
        rc, _, err = run_cli(["--checkpoint", d, "--out", os.path.join(self.tmp, "z")])
        self.assertEqual(rc, 2)
        self.assertIn("shape mismatch", err)
        self.assertIn("'bert.encoder.layer.0.intermediate.dense.weight': checkpoint [64, 32] "
                      "vs config [48, 32]", err)

    def test_missing_config_and_weights_exit_2_naming_the_file(self):
        d = os.path.join(self.tmp, "ck_empty")
        os.makedirs(d)
        rc, _, err = run_cli(["--checkpoint", d, "--out", os.path.join(self.tmp, "w")])
        self.assertEqual(rc, 2)
        self.assertIn(os.path.join(d, "config.json"), err)
        write_json(os.path.join(d, "config.json"), TINY)
        shutil.copyfile(os.path.join(self.base, "vocab.txt"), os.path.join(d, "vocab.txt"))
        rc, _, err = run_main(["--checkpoint", d, "--out", os.path.join(self.tmp, "w")])
        self.assertEqual(rc, 2)
        self.assertIn("missing weights", err)
        self.assertIn(os.path.join(d, "model.safetensors"), err)
        rc, _, err = run_main(["--random-init", "--config", os.path.join(d, "nope.json"),
                               "--out", os.path.join(self.tmp, "w")])
        self.assertEqual(rc, 2)
        self.assertIn("nope.json", err)

    def test_bad_config_key_and_vocab_errors(self):
        bad = os.path.join(self.tmp, "bad_config.json")
        write_json(bad, {k: v for k, v in TINY.items() if k != "num_attention_heads"})
        rc, _, err = run_main(["--random-init", "--config", bad, "--out", os.path.join(self.tmp, "v")])
        self.assertEqual(rc, 2)
        self.assertIn("'num_attention_heads'", err)
        big_vocab = os.path.join(self.tmp, "big_vocab.txt")
        with open(big_vocab, "w") as f:
            f.write("\n".join(em.demo_vocab(300)) + "\n")
        rc, _, err = run_main(["--random-init", "--config", self.config_path, "--vocab", big_vocab,
                               "--out", os.path.join(self.tmp, "v")])
        self.assertEqual(rc, 2)
        self.assertIn("300 tokens", err)
        rc, _, err = run_main(["--random-init", "--config", self.config_path, "--max-length", "7",
                               "--out", os.path.join(self.tmp, "v")])
        self.assertEqual(rc, 2)
        self.assertIn("max_length must be >= 8", err)


class SafetensorsTest(unittest.TestCase):

    def test_reads_hand_built_file(self):
        # Built from the format spec, independently of write_safetensors.
        f32 = struct.pack("<3f", 1.5, -2.0, 0.25)
        i64 = struct.pack("<2q", -7, 1 << 40)
        f16 = struct.pack("<e", 0.5)
        bf16 = struct.pack("<H", 0x3FC0)  # 1.5 in bfloat16
        header = {
            "a": {"dtype": "F32", "shape": [3], "data_offsets": [0, 12]},
            "b": {"dtype": "I64", "shape": [1, 2], "data_offsets": [12, 28]},
            "c": {"dtype": "F16", "shape": [], "data_offsets": [28, 30]},
            "d": {"dtype": "BF16", "shape": [1], "data_offsets": [30, 32]},
            "__metadata__": {"format": "pt"},
        }
        hb = json.dumps(header).encode()
        with tempfile.NamedTemporaryFile(suffix=".safetensors", delete=False) as f:
            f.write(struct.pack("<Q", len(hb)) + hb + f32 + i64 + f16 + bf16)
        try:
            t = em.read_safetensors(f.name)
        finally:
            os.unlink(f.name)
        self.assertEqual(sorted(t), ["a", "b", "c", "d"])
        self.assertEqual(t["a"].tolist(), [1.5, -2.0, 0.25])
        self.assertEqual(t["b"].dtype, torch.int64)
        self.assertEqual(t["b"].tolist(), [[-7, 1 << 40]])
        self.assertEqual(t["c"].dtype, torch.float16)
        self.assertEqual(t["c"].shape, torch.Size([]))
        self.assertEqual(t["c"].item(), 0.5)
        self.assertEqual(t["d"].dtype, torch.bfloat16)
        self.assertEqual(t["d"].item(), 1.5)

    def test_round_trip_and_corruption(self):
        tensors = {
            "f32": torch.randn(3, 4),
            "f16": torch.randn(5).half(),
            "bf16": torch.randn(2, 3).bfloat16(),
            "i64": torch.arange(6).reshape(1, 6),
            "empty": torch.zeros(0, 3),
        }
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "x.safetensors")
            em.write_safetensors(path, tensors, {"format": "pt"})
            with open(path, "rb") as f:
                data = f.read()
            (n,) = struct.unpack("<Q", data[:8])
            self.assertEqual((8 + n) % 8, 0)
            back = em.read_safetensors(path)
            self.assertEqual(sorted(back), sorted(tensors))
            for k, v in tensors.items():
                self.assertEqual(back[k].dtype, v.dtype, k)
                self.assertTrue(torch.equal(back[k], v), k)
            with open(path, "wb") as f:
                f.write(data[:-4])  # truncated payload
            with self.assertRaisesRegex(em.ExportError, "bad data_offsets"):
                em.read_safetensors(path)
            with open(path, "wb") as f:
                f.write(struct.pack("<Q", 1 << 40) + b"{}")
            with self.assertRaisesRegex(em.ExportError, "header length"):
                em.read_safetensors(path)


class FusedVsPlainTest(unittest.TestCase):
    """The default (fused-op) module against the plain-op one (--plain) and the reference."""

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="export_model_fused_")
        cls.config_path = os.path.join(cls.tmp, "tiny_config.json")
        write_json(cls.config_path, TINY)
        cls.ckpt = os.path.join(cls.tmp, "ckpt")
        rc, _, err = run_main(["--write-random-checkpoint", "--config", cls.config_path,
                               "--out", cls.ckpt, "--seed", "5", "--init-std", "0.2",
                               "--nonzero-biases"])
        assert rc == 0, err
        cls.out = {}
        for kind, extra in (("fused", []), ("plain", ["--plain"])):
            out = os.path.join(cls.tmp, kind)
            rc, _, err = run_main(["--checkpoint", cls.ckpt, "--out", out] + extra)
            assert rc == 0, err
            cls.out[kind] = out

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def _load(self, kind):
        return torch.jit.load(os.path.join(self.out[kind], "model.pt"))

    def test_default_module_calls_the_fused_ops_and_plain_does_not(self):
        fused = str(self._load("fused").inlined_graph)
        plain = str(self._load("plain").inlined_graph)
        for op in ("rerank::attention", "rerank::add_layernorm", "rerank::bias_act"):
            self.assertIn(op, fused)
            self.assertNotIn(op, plain)
        self.assertNotIn("rerank::", plain)

    def test_both_match_the_reference(self):
        sd = load_state_dict(self.ckpt)
        for kind in ("fused", "plain"):
            diff, refs = max_diff_vs_reference(self._load(kind), sd, TINY, range(5), 6, 64)
            self.assertLess(diff, 1e-4, kind)
            self.assertGreater(torch.tensor(refs).std().item(), 0.1)

    def test_fused_matches_plain_in_fp32_and_bf16_with_ragged_padding(self):
        fused, plain = self._load("fused"), self._load("plain")
        gen = torch.Generator().manual_seed(21)
        ids, mask, types, _ = random_batch(gen, TINY, 7, 50)
        with torch.no_grad():
            f32, p32 = fused(ids, mask, types), plain(ids, mask, types)
            self.assertLess((f32 - p32).abs().max().item(), 1e-5)
            em.cast_fast_linears(fused, torch.bfloat16)
            em.cast_fast_linears(plain, torch.bfloat16)
            f16, p16 = fused(ids, mask, types), plain(ids, mask, types)
        self.assertEqual(f16.dtype, torch.float32)
        # Both bf16 modules stay near fp32 (the fused one keeps softmax inputs in float32).
        tol = 0.1 + 0.05 * p32.abs().max().item()
        self.assertLess((f16 - p32).abs().max().item(), tol)
        self.assertLess((f16 - p16).abs().max().item(), tol)

    def test_missing_library_fails_naming_it_and_plain_needs_none(self):
        missing = os.path.join(self.tmp, "no", "librerank_fused_ops.so")
        rc, _, err = run_main(["--checkpoint", self.ckpt, "--out", os.path.join(self.tmp, "x"),
                               "--fused-ops-lib", missing])
        self.assertEqual(rc, 2)
        self.assertIn(missing, err)
        self.assertIn("--plain", err)
        rc, _, err = run_main(["--checkpoint", self.ckpt, "--out", os.path.join(self.tmp, "y"),
                               "--plain", "--fused-ops-lib", FUSED_OPS_LIB])
        self.assertEqual(rc, 2)
        self.assertIn("--fused-ops-lib", err)


class RandomInitTest(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="export_model_random_")
        cls.config_path = os.path.join(cls.tmp, "tiny_config.json")
        write_json(cls.config_path, TINY)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def _export(self, name, *extra):
        out = os.path.join(self.tmp, name)
        rc, _, err = run_main(["--random-init", "--config", self.config_path, "--out", out]
                              + list(extra))
        self.assertEqual(rc, 0, err)
        return out

    def test_random_init_model_directory(self):
        out = self._export("demo")
        module = torch.jit.load(os.path.join(out, "model.pt"))
        x = torch.ones(2, 5, dtype=torch.long)
        with torch.no_grad():
            y = module(x, x, torch.zeros_like(x))
        self.assertEqual(tuple(y.shape), (2,))
        with open(os.path.join(out, "vocab.txt"), encoding="utf-8") as f:
            lines = f.read().splitlines()
        self.assertEqual(len(lines), TINY["vocab_size"])
        meta = read_yaml(os.path.join(out, "model.yaml"))
        self.assertEqual(set(meta), YAML_KEYS)
        self.assertIs(meta["demo"], True)
        self.assertEqual(meta["source"], "random-init")
        self.assertEqual(meta["version"], sha256(os.path.join(out, "model.pt"))[:12])
        # HF init: LayerNorm 1/0, zero biases, weights with std initializer_range. (model.pt
        # holds the inference layout: layers.N.ln2 is bert.encoder.layer.N.output.LayerNorm,
        # layers.N.ffn_in is bert.encoder.layer.N.intermediate.dense.)
        sd = module.state_dict()
        self.assertTrue(torch.equal(sd["layers.0.ln2.weight"], torch.ones(32)))
        self.assertTrue(torch.equal(sd["classifier.bias"], torch.zeros(1)))
        std = sd["layers.0.ffn_in.weight"].std().item()
        self.assertAlmostEqual(std, 0.02, delta=0.003)

    def test_seed_determines_weights(self):
        a, b, c = (torch.jit.load(os.path.join(self._export(n, "--seed", s), "model.pt"))
                   for n, s in (("s1", "1"), ("s1b", "1"), ("s2", "2")))
        key = "layers.1.qkv.weight"  # fused query/key/value of layer 1
        self.assertTrue(torch.equal(a.state_dict()[key], b.state_dict()[key]))
        self.assertFalse(torch.equal(a.state_dict()[key], c.state_dict()[key]))

    def test_given_vocab_is_copied(self):
        vocab = os.path.join(self.tmp, "my_vocab.txt")
        with open(vocab, "w", encoding="utf-8") as f:
            f.write("\n".join(em.demo_vocab(150)) + "\n")
        out = self._export("with_vocab", "--vocab", vocab)
        self.assertEqual(sha256(vocab), sha256(os.path.join(out, "vocab.txt")))

    def test_demo_vocab_is_a_valid_wordpiece_vocab(self):
        for size in (104, 200, 30522):
            v = em.demo_vocab(size)
            self.assertEqual(len(v), size)
            self.assertEqual(len(set(v)), size, "duplicate tokens")
            self.assertEqual(v[0], "[PAD]")
            self.assertEqual(v[1], "[unused0]")
            self.assertEqual(v[99], "[unused98]")
            self.assertEqual(v[100:104], ["[UNK]", "[CLS]", "[SEP]", "[MASK]"])
            for tok in v:
                self.assertTrue(tok and not any(c.isspace() for c in tok), repr(tok))
        v = em.demo_vocab(30522)
        self.assertEqual(v, em.demo_vocab(30522))  # deterministic
        ids = {t: i for i, t in enumerate(v)}

        def wordpiece(word):  # greedy longest-match-first, as BERT's WordpieceTokenizer
            out, start = [], 0
            while start < len(word):
                end = len(word)
                while end > start:
                    piece = ("##" if start else "") + word[start:end]
                    if piece in ids:
                        out.append(piece)
                        break
                    end -= 1
                if end == start:
                    return ["[UNK]"]
                start = end
            return out

        for word in ("hello", "berlin", "3,520,031", "x!y", "the"):
            pieces = wordpiece(word)
            self.assertNotIn("[UNK]", pieces, word)
            self.assertEqual("".join(p[2:] if p.startswith("##") else p for p in pieces), word)
        self.assertEqual(wordpiece("the"), ["the"])
        with self.assertRaises(em.ExportError):
            em.demo_vocab(50)


class MiniLMShapeTest(unittest.TestCase):
    """The production shape: MiniLM-L6 config and real vocab, vendored in third_party/."""

    def setUp(self):
        for name in ("config.json", "vocab.txt", "tokenizer_config.json"):
            path = os.path.join(MINILM_DIR, name)
            self.assertTrue(os.path.isfile(path), f"missing vendored file {path}")
        self.tmp = tempfile.mkdtemp(prefix="export_model_minilm_")

    def tearDown(self):
        shutil.rmtree(self.tmp, ignore_errors=True)

    def test_minilm_shaped_export(self):
        with open(os.path.join(MINILM_DIR, "config.json"), encoding="utf-8") as f:
            cfg = json.load(f)
        ckpt = os.path.join(self.tmp, "ckpt")
        out = os.path.join(self.tmp, "model")
        rc, _, err = run_main(["--write-random-checkpoint", "--config",
                               os.path.join(MINILM_DIR, "config.json"), "--out", ckpt,
                               "--vocab", os.path.join(MINILM_DIR, "vocab.txt"),
                               "--init-std", "0.1", "--nonzero-biases"])
        self.assertEqual(rc, 0, err)
        shutil.copyfile(os.path.join(MINILM_DIR, "tokenizer_config.json"),
                        os.path.join(ckpt, "tokenizer_config.json"))
        start = time.monotonic()
        rc, _, err = run_main(["--checkpoint", ckpt, "--out", out])
        elapsed = time.monotonic() - start
        self.assertEqual(rc, 0, err)
        meta = read_yaml(os.path.join(out, "model.yaml"))
        self.assertEqual((meta["num_layers"], meta["hidden_size"], meta["max_length"]),
                         (6, 384, 512))
        self.assertIs(meta["lowercase"], True)
        self.assertEqual(meta["score_activation"], "raw")
        module = torch.jit.load(os.path.join(out, "model.pt"))
        sd = em.read_safetensors(os.path.join(ckpt, "model.safetensors"))
        diff, refs = max_diff_vs_reference(module, sd, cfg, range(3), 4, 128)
        print(f"\n[MiniLM-L6 shape] export {elapsed:.2f}s, max abs diff TorchScript vs "
              f"reference {diff:.3g} (logit std {torch.tensor(refs).std().item():.3g})",
              file=sys.stderr)
        self.assertLess(diff, 1e-4)
        self.assertGreater(torch.tensor(refs).std().item(), 0.05)


if __name__ == "__main__":
    torch.set_num_threads(2)
    unittest.main(verbosity=2)
