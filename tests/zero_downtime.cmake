# Zero downtime (issue 7 section 5): the SIGTERM drain window, rolling restarts behind client-side
# round robin, and hot model reload under traffic.
#
# A second tiny model, different weights (seed 1) and so a different version, for the swap tests:
# ${CMAKE_BINARY_DIR}/testdata/tiny_model_b. Part of `test_models`.
set(RERANK_TINY_MODEL_B_DIR ${CMAKE_BINARY_DIR}/testdata/tiny_model_b)
add_custom_command(
  OUTPUT ${RERANK_TINY_MODEL_B_DIR}/model.pt ${RERANK_TINY_MODEL_B_DIR}/vocab.txt
         ${RERANK_TINY_MODEL_B_DIR}/model.yaml
  COMMAND ${RERANK_PYTHON} ${CMAKE_SOURCE_DIR}/tools/export_model.py
          --random-init --config ${CMAKE_SOURCE_DIR}/tests/testdata/tiny_bert_config.json
          --out ${RERANK_TINY_MODEL_B_DIR} --name tiny_model_b --seed 1 --init-std 0.2
          --nonzero-biases --vocab ${RERANK_MINILM_DIR}/vocab.txt
          --fused-ops-lib $<TARGET_FILE:rerank_fused_ops>
  DEPENDS ${CMAKE_SOURCE_DIR}/tools/export_model.py rerank_fused_ops
          ${CMAKE_SOURCE_DIR}/tests/testdata/tiny_bert_config.json
  COMMENT "Generating the second tiny test model in ${RERANK_TINY_MODEL_B_DIR}"
  VERBATIM)
add_custom_target(test_model_b DEPENDS ${RERANK_TINY_MODEL_B_DIR}/model.yaml)
add_dependencies(test_models test_model_b)

# In process, real gRPC channels and admin HTTP on port 0: the drain window, hot reload under
# traffic (real TorchScript models A and B), a broken model rejected, the model.dir poller.
rerank_add_test(zero_downtime_test
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/zero_downtime_test.cc
  LIBS rerank_app rerank_fake_audit_sink nlohmann_json::nlohmann_json)
add_dependencies(zero_downtime_test test_models)

# The real rerankd binary: SIGTERM drain (exit 0, audit flushed) and a rolling restart of one of
# two instances behind a Python client-side round_robin channel under continuous traffic.
add_test(NAME zero_downtime_process_test
         COMMAND ${RERANK_PYTHON} ${CMAKE_CURRENT_LIST_DIR}/zero_downtime_process_test.py)
set_tests_properties(zero_downtime_process_test PROPERTIES
  TIMEOUT 300 LABELS python
  ENVIRONMENT "RERANK_SOURCE_DIR=${CMAKE_SOURCE_DIR};RERANK_BUILD_DIR=${CMAKE_BINARY_DIR};RERANKD=$<TARGET_FILE:rerankd>")
