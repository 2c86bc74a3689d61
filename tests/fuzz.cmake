# Fuzz targets (tests/fuzz/, seed corpora in tests/fuzz/corpus/<name>/). Each is built twice:
#  - fuzz_<name>_replay, in every build (any compiler): the target with fuzz_replay_main.cc,
#    registered as a ctest that runs the seed corpus plus a fixed set of deterministic mutations.
#    A bounded fuzz run that `make test` can afford without clang or a second build tree.
#  - fuzz_<name>, only with -DRERANK_FUZZ=ON (clang, see the top-level CMakeLists.txt): the
#    coverage-guided libFuzzer binary that `make fuzz` (tests/fuzz/run_fuzz.sh) runs.
set(RERANK_FUZZ_DIR ${CMAKE_CURRENT_LIST_DIR}/fuzz)
find_package(Boost 1.74 REQUIRED)  # the HTTP target parses responses with Beast

# rerank_add_fuzz_target(<name> SOURCES ... LIBS ... MUTATIONS <n> MAX_LEN <bytes>)
function(rerank_add_fuzz_target name)
  cmake_parse_arguments(F "" "MUTATIONS;MAX_LEN" "SOURCES;LIBS" ${ARGN})
  add_executable(fuzz_${name}_replay ${F_SOURCES} ${RERANK_FUZZ_DIR}/fuzz_replay_main.cc)
  target_compile_definitions(fuzz_${name}_replay PRIVATE RERANK_SOURCE_DIR="${CMAKE_SOURCE_DIR}")
  target_link_libraries(fuzz_${name}_replay PRIVATE ${F_LIBS})
  add_test(NAME fuzz_${name}_replay
           COMMAND fuzz_${name}_replay --mutations=${F_MUTATIONS} --max_len=${F_MAX_LEN}
                   ${RERANK_FUZZ_DIR}/corpus/${name}
           WORKING_DIRECTORY ${CMAKE_BINARY_DIR})
  set_tests_properties(fuzz_${name}_replay PROPERTIES LABELS fuzz TIMEOUT 300)
  if(RERANK_FUZZ)
    add_executable(fuzz_${name} ${F_SOURCES})
    target_compile_definitions(fuzz_${name} PRIVATE RERANK_SOURCE_DIR="${CMAKE_SOURCE_DIR}")
    target_link_libraries(fuzz_${name} PRIVATE ${F_LIBS})
    target_link_options(fuzz_${name} PRIVATE -fsanitize=fuzzer)
  endif()
endfunction()

rerank_add_fuzz_target(tokenizer
  SOURCES ${RERANK_FUZZ_DIR}/tokenizer_fuzz.cc
  LIBS rerank_tokenizer
  MUTATIONS 20000 MAX_LEN 4096)
rerank_add_fuzz_target(rerank_request
  SOURCES ${RERANK_FUZZ_DIR}/rerank_request_fuzz.cc
  LIBS rerank_engine rerank_fake_audit_sink absl::synchronization
  MUTATIONS 20000 MAX_LEN 4096)
rerank_add_fuzz_target(config
  SOURCES ${RERANK_FUZZ_DIR}/config_fuzz.cc
  LIBS rerank_config rerank_tokenizer absl::strings
  MUTATIONS 5000 MAX_LEN 16384)
rerank_add_fuzz_target(flags
  SOURCES ${RERANK_FUZZ_DIR}/flags_fuzz.cc
  LIBS rerank_flags_codec rerank_feature_flags rerank_tokenizer nlohmann_json::nlohmann_json
       absl::strings
  MUTATIONS 10000 MAX_LEN 4096)
rerank_add_fuzz_target(http
  SOURCES ${RERANK_FUZZ_DIR}/http_fuzz.cc
  LIBS rerank_http Boost::headers spdlog::spdlog absl::strings
  MUTATIONS 3000 MAX_LEN 8192)
