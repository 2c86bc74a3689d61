# The HTTP data plane (server/http_rerank_service.h) end to end on loopback sockets, its config
# keys, and real npm clients (Cohere SDK, LangChain JS, Node fetch, the README's curl examples)
# against the real rerankd binary.
rerank_add_test(http_data_plane_test
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/http_data_plane_test.cc
  LIBS rerank_app nlohmann_json::nlohmann_json)
add_dependencies(http_data_plane_test test_models)
rerank_add_test(http_config_test SOURCES ${CMAKE_CURRENT_LIST_DIR}/http_config_test.cc
                LIBS rerank_config)
