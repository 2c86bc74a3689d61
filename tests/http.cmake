# The HTTP layer (common/http/) over real loopback sockets.
rerank_add_test(http_server_test
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/http_server_test.cc
  LIBS rerank_http nlohmann_json::nlohmann_json)
