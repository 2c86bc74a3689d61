# Every C++ source is clang-format clean (.clang-format).
add_test(NAME clang_format_check COMMAND bash ${CMAKE_CURRENT_LIST_DIR}/check_format.sh)
set_tests_properties(clang_format_check PROPERTIES TIMEOUT 120)
