# Hot-path tests: batcher (fake scorer) and the engine/service over a real gRPC channel.
rerank_add_test(batcher_test SOURCES ${CMAKE_CURRENT_LIST_DIR}/batcher_test.cc LIBS rerank_batcher)
