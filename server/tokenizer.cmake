# BERT WordPiece tokenizer (HF tokenizers-exact), used on the request hot path.
add_library(rerank_tokenizer ${CMAKE_CURRENT_LIST_DIR}/tokenizer.cc)
target_link_libraries(rerank_tokenizer
  PUBLIC absl::status absl::statusor absl::strings absl::flat_hash_map
  PRIVATE ICU::uc)
