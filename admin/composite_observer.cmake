# Header-only fan-out RequestObserver / BatcherObserver (admin/composite_observer.h).
add_library(rerank_admin_observers INTERFACE)
target_include_directories(rerank_admin_observers INTERFACE ${CMAKE_SOURCE_DIR})
target_link_libraries(rerank_admin_observers INTERFACE rerank_batcher absl::status absl::time)
