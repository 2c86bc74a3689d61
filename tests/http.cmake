# The HTTP layer (common/http/) over real loopback sockets, and the admin HTTP server under a few
# hundred slow clients (real AdminCore components, as in admin_plane_test).
rerank_add_test(http_server_test
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/http_server_test.cc
  LIBS rerank_http nlohmann_json::nlohmann_json)
rerank_add_test(admin_http_slow_clients_test
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/admin_http_slow_clients_test.cc
  LIBS rerank_admin_http rerank_audit_log rerank_config)
