# Fair scheduling between clients (issue 8 section 1): the batcher's deficit round robin, weights,
# per-client cap and admission; the engine's admission before tokenizing; and, over a real gRPC
# channel, a light client's request overtaking a heavy client's queued backlog.
rerank_add_test(fair_batcher_test SOURCES ${CMAKE_CURRENT_LIST_DIR}/fair_batcher_test.cc
                LIBS rerank_batcher)
rerank_add_test(fair_engine_test SOURCES ${CMAKE_CURRENT_LIST_DIR}/fair_engine_test.cc
                LIBS rerank_engine rerank_fake_audit_sink)
rerank_add_test(fair_service_test SOURCES ${CMAKE_CURRENT_LIST_DIR}/fair_service_test.cc
                LIBS rerank_app)
add_dependencies(fair_service_test test_models)
rerank_add_test(fair_config_test SOURCES ${CMAKE_CURRENT_LIST_DIR}/fair_config_test.cc
                LIBS rerank_config)
