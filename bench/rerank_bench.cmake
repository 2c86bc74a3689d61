# rerank-bench: raw-model baseline and gRPC load generator (see bench/RESULTS.md).
add_executable(rerank-bench ${CMAKE_CURRENT_LIST_DIR}/rerank_bench.cc)
target_link_libraries(rerank-bench PRIVATE rerank_proto rerank_batcher rerank_tokenizer
                      rerank_torch_scorer nlohmann_json::nlohmann_json absl::synchronization
                      gRPC::grpc++)
if(TCMALLOC_LIB)
  target_link_libraries(rerank-bench PRIVATE -Wl,--no-as-needed ${TCMALLOC_LIB} -Wl,--as-needed)
endif()
