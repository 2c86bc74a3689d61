# The data plane: model metadata, scorer (the only torch TU), batcher, engine, gRPC service.
# Wiring and main() live above both planes, in app/.
add_library(rerank_model_info STATIC ${CMAKE_CURRENT_LIST_DIR}/model_info.cc)
target_link_libraries(rerank_model_info PUBLIC absl::status absl::statusor absl::strings yaml-cpp)

add_library(rerank_torch_scorer STATIC ${CMAKE_CURRENT_LIST_DIR}/torch_scorer.cc
                                       $<TARGET_OBJECTS:rerank_fused_ops_obj>)
target_link_libraries(rerank_torch_scorer PUBLIC absl::status absl::statusor absl::strings
                      PRIVATE ${TORCH_LIBRARIES} ${CMAKE_DL_LIBS})
target_compile_options(rerank_torch_scorer PRIVATE -Wno-error)

add_library(rerank_batcher STATIC ${CMAKE_CURRENT_LIST_DIR}/batcher.cc)
target_link_libraries(rerank_batcher PUBLIC rerank_tokenizer rerank_observers absl::status absl::statusor
                      absl::synchronization absl::time absl::flat_hash_map absl::hash absl::strings
                      Threads::Threads)

add_library(rerank_engine STATIC ${CMAKE_CURRENT_LIST_DIR}/rerank_engine.cc
                                 ${CMAKE_CURRENT_LIST_DIR}/rerank_service.cc)
target_link_libraries(rerank_engine PUBLIC rerank_proto rerank_observers rerank_tokenizer rerank_hash
                      rerank_model_info rerank_feature_flags rerank_rate_limiter rerank_score_cache
                      rerank_rollout rerank_grpc_status nlohmann_json::nlohmann_json absl::status
                      absl::statusor absl::strings absl::synchronization absl::time gRPC::grpc++)
