# Overload, faults and soak (issue 8 section 5): the batcher drops cancelled/expired jobs without
# inference (counted per pair) and survives a Scorer that throws; over a real gRPC channel,
# dropped requests never reach the model and are counted in /metrics, a model that throws (a fake
# and a real TorchScript forward) fails only its batch, a burst over capacity is shed with
# RESOURCE_EXHAUSTED and a lone request is fast again at once, and 1,000 idle connections are held.
# The 60-second overload, the 10,000-connection and the 30-minute soak figures are benchmarks
# (bench/run_overload_bench.sh, bench/run_soak.sh; bench/RESULTS.md).
rerank_add_test(overload_batcher_test SOURCES ${CMAKE_CURRENT_LIST_DIR}/overload_batcher_test.cc
                LIBS rerank_batcher)
rerank_add_test(overload_service_test SOURCES ${CMAKE_CURRENT_LIST_DIR}/overload_service_test.cc
                LIBS rerank_app)
add_dependencies(overload_service_test test_models)
