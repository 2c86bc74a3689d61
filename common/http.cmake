# The HTTP layer (common/http/): an asynchronous HTTP/1.1 server on Boost.Beast/Asio (header-only,
# libboost-dev), a router and the handler vocabulary, shared by the admin API and the data-plane
# HTTP API. Boost stays private: http_server.h does not include it.
find_package(Boost 1.74 REQUIRED)
add_library(rerank_http STATIC
  ${CMAKE_CURRENT_LIST_DIR}/http/http_types.cc
  ${CMAKE_CURRENT_LIST_DIR}/http/http_router.cc
  ${CMAKE_CURRENT_LIST_DIR}/http/http_server.cc)
target_include_directories(rerank_http PUBLIC ${CMAKE_SOURCE_DIR})
target_link_libraries(rerank_http PUBLIC
  absl::status absl::statusor absl::strings absl::synchronization absl::time Threads::Threads
  PRIVATE Boost::headers nlohmann_json::nlohmann_json spdlog::spdlog)
