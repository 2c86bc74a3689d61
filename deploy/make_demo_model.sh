#!/usr/bin/env bash
# Generates the default demo model (MiniLM-L6 shape, RANDOM weights) unless it already exists.
# Its config and WordPiece vocab are the real ones of cross-encoder/ms-marco-MiniLM-L-6-v2,
# vendored in third_party/ms-marco-MiniLM-L-6-v2 (see NOTICE), so tokenization matches the real
# model. A demo model made earlier with another vocab (e.g. the old generated demo vocab) is
# regenerated; a model directory not named demo-minilm-l6 is never touched.
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL_DIR="${RERANKER_MODEL_DIR:-models/demo-minilm-l6}"
SRC="third_party/ms-marco-MiniLM-L-6-v2"
for f in config.json vocab.txt tokenizer_config.json; do
  if [ ! -f "$SRC/$f" ]; then
    echo "make_demo_model: missing vendored file $SRC/$f (restore it with: git checkout -- $SRC)" >&2
    exit 1
  fi
done
if [ -f "$MODEL_DIR/model.pt" ] && [ -f "$MODEL_DIR/model.yaml" ] && [ -f "$MODEL_DIR/vocab.txt" ]; then
  if cmp -s "$MODEL_DIR/vocab.txt" "$SRC/vocab.txt" \
     || ! grep -q '^name: demo-minilm-l6$' "$MODEL_DIR/model.yaml"; then
    exit 0
  fi
  echo "make_demo_model: $MODEL_DIR/vocab.txt differs from $SRC/vocab.txt; regenerating" >&2
fi
# model.pt calls the fused CPU ops (server/fused_ops/), so exporting loads librerank_fused_ops.so
# (CMake target rerank_fused_ops, part of `make build`). RERANK_EXPORT_PLAIN=1 exports the
# plain-op module instead (no library needed; slower).
if [ "${RERANK_EXPORT_PLAIN:-0}" = 1 ]; then
  OPS_ARGS=(--plain)
else
  FUSED_OPS_LIB="${RERANK_FUSED_OPS_LIB:-${BUILD:-build}/server/fused_ops/librerank_fused_ops.so}"
  if [ ! -f "$FUSED_OPS_LIB" ]; then
    echo "make_demo_model: $FUSED_OPS_LIB not found: build it first (make build, or cmake --build" \
         "build --target rerank_fused_ops), set RERANK_FUSED_OPS_LIB, or RERANK_EXPORT_PLAIN=1" >&2
    exit 1
  fi
  OPS_ARGS=(--fused-ops-lib "$FUSED_OPS_LIB")
fi
echo "make_demo_model: writing $MODEL_DIR (random weights: scores are meaningless)" >&2
/usr/bin/python3 tools/export_model.py --random-init --out "$MODEL_DIR" --name demo-minilm-l6 \
  --seed 0 --config "$SRC/config.json" --vocab "$SRC/vocab.txt" "${OPS_ARGS[@]}"
