# The interfaces that cross planes (common/observers.h): header only, absl status/time alone.
add_library(rerank_observers INTERFACE)
target_include_directories(rerank_observers INTERFACE ${CMAKE_SOURCE_DIR})
target_link_libraries(rerank_observers INTERFACE absl::status absl::time)

# The admin plane's handle on the served model (common/model_control.h): header only.
add_library(rerank_model_control INTERFACE)
target_include_directories(rerank_model_control INTERFACE ${CMAKE_SOURCE_DIR})
target_link_libraries(rerank_model_control INTERFACE absl::status absl::statusor)
