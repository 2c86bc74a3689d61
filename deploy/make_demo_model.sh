#!/usr/bin/env bash
# Generates the default demo model (MiniLM-L6 shape, RANDOM weights) unless it already exists.
# The real tokenizer vocab and config come from ../shared when present; they are never copied
# into the repository. Without them, a demo vocab and the published MiniLM-L6 shape are used.
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL_DIR="${RERANKER_MODEL_DIR:-models/demo-minilm-l6}"
if [ -f "$MODEL_DIR/model.pt" ] && [ -f "$MODEL_DIR/model.yaml" ] && [ -f "$MODEL_DIR/vocab.txt" ]; then
  exit 0
fi
SHARED="${RERANK_SHARED_DIR:-../shared}"
SRC="$SHARED/data/models/ms-marco-MiniLM-L-6-v2"
args=(--random-init --out "$MODEL_DIR" --name demo-minilm-l6 --seed 0)
if [ -f "$SRC/config.json" ]; then
  args+=(--config "$SRC/config.json")
else
  tmp_cfg="$(mktemp --suffix=.json)"
  trap 'rm -f "$tmp_cfg"' EXIT
  # The architecture of cross-encoder/ms-marco-MiniLM-L-6-v2 (BertForSequenceClassification).
  cat > "$tmp_cfg" <<'JSON'
{"architectures": ["BertForSequenceClassification"], "model_type": "bert", "hidden_size": 384,
 "num_hidden_layers": 6, "num_attention_heads": 12, "intermediate_size": 1536, "hidden_act": "gelu",
 "max_position_embeddings": 512, "type_vocab_size": 2, "vocab_size": 30522, "layer_norm_eps": 1e-12,
 "initializer_range": 0.02, "num_labels": 1, "id2label": {"0": "LABEL_0"}, "pad_token_id": 0}
JSON
  args+=(--config "$tmp_cfg")
fi
if [ -f "$SRC/vocab.txt" ]; then
  args+=(--vocab "$SRC/vocab.txt")
else
  echo "make_demo_model: $SRC/vocab.txt not found; generating a demo vocab (tokenization will not match the real model)" >&2
fi
echo "make_demo_model: writing $MODEL_DIR (random weights: scores are meaningless)" >&2
/usr/bin/python3 tools/export_model.py "${args[@]}"
