# Builds (target `test_models`, part of ALL) a tiny random-weight model directory for the C++
# tests: ${CMAKE_BINARY_DIR}/testdata/tiny_model/{model.pt,vocab.txt,model.yaml}, i.e.
# $RERANK_BUILD_DIR/testdata/tiny_model at test time. Shape: tests/testdata/tiny_bert_config.json
# (2 layers, hidden 64, 4 heads, max_position_embeddings 128). The vocab is the real MiniLM
# WordPiece vocab vendored in third_party/ (a missing file is a configure error, never a silent
# fallback: the tests' expected rankings depend on it). Weights are deterministic (seed 0), so
# model.yaml's version is stable. The model calls the fused ops (torch.ops.rerank.*, see
# server/fused_ops/), so the export loads librerank_fused_ops.so: hence the dependency.
# They use std 0.2 and random biases/LayerNorm rather than BERT's 0.02 init, whose logits are
# nearly constant (std ~1e-4 across inputs): here scores spread by about 1, so tests comparing
# scores (padding, batching, ordering, fp32 vs bf16) can actually fail.
# A test binary built on its own should add_dependencies(<test> test_models).
set(RERANK_TINY_MODEL_DIR ${CMAKE_BINARY_DIR}/testdata/tiny_model)
set(_tiny_model_config ${CMAKE_SOURCE_DIR}/tests/testdata/tiny_bert_config.json)
set(_tiny_model_vocab ${RERANK_MINILM_DIR}/vocab.txt)
if(NOT EXISTS ${_tiny_model_vocab})
  message(FATAL_ERROR "test_models: missing ${_tiny_model_vocab} (vendored MiniLM vocab; "
                      "restore it with `git checkout -- third_party`)")
endif()
add_custom_command(
  OUTPUT ${RERANK_TINY_MODEL_DIR}/model.pt ${RERANK_TINY_MODEL_DIR}/vocab.txt
         ${RERANK_TINY_MODEL_DIR}/model.yaml
  COMMAND ${RERANK_PYTHON} ${CMAKE_SOURCE_DIR}/tools/export_model.py
          --random-init --config ${_tiny_model_config} --out ${RERANK_TINY_MODEL_DIR}
          --name tiny_model --seed 0 --init-std 0.2 --nonzero-biases
          --vocab ${_tiny_model_vocab} --fused-ops-lib $<TARGET_FILE:rerank_fused_ops>
  DEPENDS ${CMAKE_SOURCE_DIR}/tools/export_model.py ${_tiny_model_config} ${_tiny_model_vocab}
          rerank_fused_ops
  COMMENT "Generating tiny random test model in ${RERANK_TINY_MODEL_DIR}"
  VERBATIM)
add_custom_target(test_models ALL DEPENDS ${RERANK_TINY_MODEL_DIR}/model.yaml)
