# Tokenizer throughput on the SciFact 20-passage request workload.
find_package(benchmark CONFIG REQUIRED)
add_executable(tokenizer_bench ${CMAKE_CURRENT_LIST_DIR}/tokenizer_bench.cc)
target_link_libraries(tokenizer_bench PRIVATE rerank_tokenizer nlohmann_json::nlohmann_json
                      benchmark::benchmark)
target_compile_definitions(tokenizer_bench PRIVATE
                           RERANK_DEFAULT_SHARED_DIR="${RERANK_SHARED_DIR}"
                           RERANK_MINILM_DIR="${RERANK_MINILM_DIR}")
