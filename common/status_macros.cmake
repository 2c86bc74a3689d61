# RETURN_IF_ERROR / ASSIGN_OR_RETURN (header only).
add_library(rerank_status_macros INTERFACE)
target_include_directories(rerank_status_macros INTERFACE ${CMAKE_SOURCE_DIR})
target_link_libraries(rerank_status_macros INTERFACE absl::base absl::status absl::statusor)
