# Tokenizer: unit tests, HF golden parity (library and CLI).
rerank_add_test(tokenizer_test
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/tokenizer_test.cc
  LIBS rerank_tokenizer)
rerank_add_test(tokenizer_golden_test
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/tokenizer_golden_test.cc
  LIBS rerank_tokenizer nlohmann_json::nlohmann_json)
add_test(NAME rerank_tokenize_cli_test
  COMMAND ${RERANK_PYTHON} ${CMAKE_CURRENT_LIST_DIR}/rerank_tokenize_cli_test.py
          --binary $<TARGET_FILE:rerank-tokenize> --shared-dir ${RERANK_SHARED_DIR})
set_tests_properties(rerank_tokenize_cli_test PROPERTIES SKIP_RETURN_CODE 77 TIMEOUT 300)
