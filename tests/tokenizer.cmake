# Tokenizer: unit tests, HF golden parity (library and CLI). The real vocab and tokenizer.json are
# vendored in third_party/ms-marco-MiniLM-L-6-v2, the golden file gzipped in tests/testdata; a
# missing file fails the test with its path (nothing skips).
find_package(ZLIB REQUIRED)
set(RERANK_GOLDEN_GZ
    ${CMAKE_SOURCE_DIR}/tests/testdata/tokenizer-golden/scifact_and_edge_cases.jsonl.gz)
rerank_add_test(tokenizer_test
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/tokenizer_test.cc
  LIBS rerank_tokenizer)
target_compile_definitions(tokenizer_test PRIVATE RERANK_MINILM_DIR="${RERANK_MINILM_DIR}")
rerank_add_test(tokenizer_golden_test
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/tokenizer_golden_test.cc
  LIBS rerank_tokenizer nlohmann_json::nlohmann_json ZLIB::ZLIB)
target_compile_definitions(tokenizer_golden_test PRIVATE
  RERANK_MINILM_DIR="${RERANK_MINILM_DIR}" RERANK_GOLDEN_GZ="${RERANK_GOLDEN_GZ}")
add_test(NAME rerank_tokenize_cli_test
  COMMAND ${RERANK_PYTHON} ${CMAKE_CURRENT_LIST_DIR}/rerank_tokenize_cli_test.py
          --binary $<TARGET_FILE:rerank-tokenize> --vocab ${RERANK_MINILM_DIR}/vocab.txt
          --golden ${RERANK_GOLDEN_GZ})
set_tests_properties(rerank_tokenize_cli_test PROPERTIES TIMEOUT 300)
