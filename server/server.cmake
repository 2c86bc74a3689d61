# Hot path: model metadata, scorer (the only torch TU), batcher, engine, gRPC service.
add_library(rerank_model_info STATIC ${CMAKE_CURRENT_LIST_DIR}/model_info.cc)
target_link_libraries(rerank_model_info PUBLIC absl::status absl::statusor absl::strings yaml-cpp)

add_library(rerank_torch_scorer STATIC ${CMAKE_CURRENT_LIST_DIR}/torch_scorer.cc)
target_link_libraries(rerank_torch_scorer PUBLIC absl::status absl::statusor absl::strings
                      PRIVATE ${TORCH_LIBRARIES} ${CMAKE_DL_LIBS})
target_compile_options(rerank_torch_scorer PRIVATE -Wno-error)

add_library(rerank_batcher STATIC ${CMAKE_CURRENT_LIST_DIR}/batcher.cc)
target_link_libraries(rerank_batcher PUBLIC rerank_tokenizer absl::status absl::statusor
                      absl::synchronization absl::time absl::flat_hash_map absl::hash absl::strings
                      Threads::Threads)

add_library(rerank_engine STATIC ${CMAKE_CURRENT_LIST_DIR}/rerank_engine.cc
                                 ${CMAKE_CURRENT_LIST_DIR}/rerank_service.cc)
target_link_libraries(rerank_engine PUBLIC rerank_proto rerank_batcher rerank_tokenizer
                      rerank_model_info rerank_feature_flags rerank_rate_limiter rerank_score_cache
                      rerank_rollout nlohmann_json::nlohmann_json absl::status absl::statusor
                      absl::strings absl::time gRPC::grpc++)

add_library(rerank_server STATIC ${CMAKE_CURRENT_LIST_DIR}/rerank_server.cc)
target_link_libraries(rerank_server PUBLIC rerank_engine rerank_torch_scorer rerank_config
                      rerank_audit_log rerank_flag_store gRPC::grpc++ gRPC::grpc++_reflection
                      spdlog::spdlog)

add_executable(rerankd ${CMAKE_CURRENT_LIST_DIR}/main.cc)
target_link_libraries(rerankd PRIVATE rerank_server)
if(TCMALLOC_LIB)
  # tcmalloc: glibc malloc mmaps and page-faults every large tensor (~3x slower forward).
  target_link_libraries(rerankd PRIVATE -Wl,--no-as-needed ${TCMALLOC_LIB} -Wl,--as-needed)
endif()
