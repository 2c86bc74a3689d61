# rerank-bench: raw-model baseline and gRPC load generator (see bench/RESULTS.md).
add_executable(rerank-bench ${CMAKE_CURRENT_LIST_DIR}/rerank_bench.cc
                            ${CMAKE_CURRENT_LIST_DIR}/roofline.cc)
# roofline.cc includes torch headers (noisy): like server/torch_scorer.cc, no -Werror there.
set_source_files_properties(${CMAKE_CURRENT_LIST_DIR}/roofline.cc PROPERTIES COMPILE_OPTIONS
                            -Wno-error)
target_include_directories(rerank-bench PRIVATE ${CMAKE_SOURCE_DIR})
target_link_libraries(rerank-bench PRIVATE rerank_proto rerank_batcher rerank_tokenizer
                      rerank_torch_scorer nlohmann_json::nlohmann_json absl::synchronization
                      gRPC::grpc++ ${TORCH_LIBRARIES})
if(TCMALLOC_LIB)
  target_link_libraries(rerank-bench PRIVATE -Wl,--no-as-needed ${TCMALLOC_LIB} -Wl,--as-needed)
endif()
