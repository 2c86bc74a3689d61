# Python unit tests of tools/export_model.py (the TorchScript exporter). Runs with RERANK_PYTHON
# (Debian's /usr/bin/python3 + python3-torch); about 40 s on 2 idle cores.
add_test(NAME export_model_test
         COMMAND ${RERANK_PYTHON} ${CMAKE_SOURCE_DIR}/tests/export_model_test.py)
set_tests_properties(export_model_test PROPERTIES
  TIMEOUT 300
  LABELS python
  ENVIRONMENT "RERANK_BUILD_DIR=${CMAKE_BINARY_DIR}")
