# The HTTP data plane (server/http_rerank_service.h) end to end on loopback sockets, its config
# keys, and real npm clients (Cohere SDK, LangChain JS, Node fetch, the README's curl examples)
# against the real rerankd binary.
rerank_add_test(http_data_plane_test
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/http_data_plane_test.cc
  LIBS rerank_app nlohmann_json::nlohmann_json)
add_dependencies(http_data_plane_test test_models)
rerank_add_test(http_config_test SOURCES ${CMAKE_CURRENT_LIST_DIR}/http_config_test.cc
                LIBS rerank_config)
# Needs node + npm (deploy/install_deps.sh) and, on its first run, the npm registry; the packages
# are installed into ${CMAKE_BINARY_DIR}/npm-clients once per lock file.
add_test(NAME npm_clients_test
         COMMAND ${RERANK_PYTHON} ${CMAKE_CURRENT_LIST_DIR}/npm_clients_test.py ${CMAKE_BINARY_DIR}
         WORKING_DIRECTORY ${CMAKE_SOURCE_DIR})
set_tests_properties(npm_clients_test PROPERTIES TIMEOUT 900)
