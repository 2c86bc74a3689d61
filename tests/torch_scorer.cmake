# TorchScorer with the real tiny exported model (padding-free export: packed rows).
rerank_add_test(torch_scorer_test SOURCES ${CMAKE_CURRENT_LIST_DIR}/torch_scorer_test.cc
                LIBS rerank_torch_scorer rerank_batcher)
add_dependencies(torch_scorer_test test_models)
