# The audit log's bounds: bytes in the queue, gzip of rotated files, a total-size cap.
find_package(ZLIB REQUIRED)
rerank_add_test(audit_limits_test SOURCES ${CMAKE_CURRENT_LIST_DIR}/audit_limits_test.cc
                LIBS rerank_audit_log nlohmann_json::nlohmann_json ZLIB::ZLIB)
