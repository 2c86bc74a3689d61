rerank_add_test(flags_codec_test
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/flags_codec_test.cc
  LIBS rerank_flags_codec yaml-cpp)
