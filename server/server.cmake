# The data plane: model metadata, scorer (the only torch TU), batcher, engine, gRPC service.
# Wiring and main() live above both planes, in app/.
add_library(rerank_model_info STATIC ${CMAKE_CURRENT_LIST_DIR}/model_info.cc)
target_link_libraries(rerank_model_info PUBLIC absl::status absl::statusor absl::strings yaml-cpp)

add_library(rerank_torch_scorer STATIC ${CMAKE_CURRENT_LIST_DIR}/torch_scorer.cc
                                       $<TARGET_OBJECTS:rerank_fused_ops_obj>)
# The fused ops' objects call libgomp (see fused_ops.cmake).
target_link_libraries(rerank_torch_scorer PUBLIC absl::status absl::statusor absl::strings
                      PRIVATE ${TORCH_LIBRARIES} ${CMAKE_DL_LIBS}
                              $<LINK_ONLY:${RERANK_FUSED_OPS_OPENMP}>)
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

# The HTTP data plane (Cohere v2, Cohere v1 / Jina, TEI routes) over the same engine. Its OpenAPI
# document is checked in as JSON and embedded at configure time.
set(_openapi_json ${CMAKE_CURRENT_LIST_DIR}/http_openapi.json)
set_property(DIRECTORY APPEND PROPERTY CMAKE_CONFIGURE_DEPENDS ${_openapi_json})
file(READ ${_openapi_json} RERANK_OPENAPI_JSON)
configure_file(${CMAKE_CURRENT_LIST_DIR}/http_openapi.cc.in
               ${CMAKE_CURRENT_BINARY_DIR}/http_openapi.cc @ONLY)
add_library(rerank_http_service STATIC ${CMAKE_CURRENT_LIST_DIR}/http_rerank_service.cc
                                       ${CMAKE_CURRENT_BINARY_DIR}/http_openapi.cc)
target_include_directories(rerank_http_service PUBLIC ${CMAKE_SOURCE_DIR})
target_link_libraries(rerank_http_service PUBLIC rerank_engine rerank_http rerank_observers
                      PRIVATE rerank_proto_json rerank_status_macros absl::strings absl::time)
