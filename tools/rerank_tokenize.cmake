# rerank-tokenize: JSON lines {"query","document"} -> {"input_ids","token_type_ids"}.
add_executable(rerank-tokenize ${CMAKE_CURRENT_LIST_DIR}/rerank_tokenize.cc)
target_link_libraries(rerank-tokenize PRIVATE rerank_tokenizer rerank_json_util nlohmann_json::nlohmann_json)
