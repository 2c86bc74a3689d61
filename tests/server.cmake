# Hot-path tests: batcher (fake scorer) and the engine/service over a real gRPC channel.
rerank_add_test(batcher_test SOURCES ${CMAKE_CURRENT_LIST_DIR}/batcher_test.cc LIBS rerank_batcher)
rerank_add_test(rerank_service_test SOURCES ${CMAKE_CURRENT_LIST_DIR}/rerank_service_test.cc
                LIBS rerank_app nlohmann_json::nlohmann_json)
add_dependencies(rerank_service_test test_models)

# A Python client generated from the published proto against the real rerankd binary.
add_test(NAME python_client_test
         COMMAND ${RERANK_PYTHON} ${CMAKE_CURRENT_LIST_DIR}/python_client_test.py ${CMAKE_BINARY_DIR}
         WORKING_DIRECTORY ${CMAKE_SOURCE_DIR})
set_tests_properties(python_client_test PROPERTIES TIMEOUT 300)
