# RerankEngine unit tests through a fake ScoringQueue (tests/testing/fake_scoring_queue.h): the
# request logic without threads, a model or gRPC.
rerank_add_test(rerank_engine_test SOURCES ${CMAKE_CURRENT_LIST_DIR}/rerank_engine_test.cc
                LIBS rerank_engine rerank_fake_audit_sink)
