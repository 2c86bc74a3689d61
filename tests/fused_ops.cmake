# The fused CPU ops (server/fused_ops/) against plain ATen ops: ragged lengths, float32 and
# bfloat16, the AVX-512 kernels (skipped on CPUs without AVX-512) and the portable fallback.
rerank_add_test(fused_ops_test SOURCES ${CMAKE_CURRENT_LIST_DIR}/fused_ops_test.cc
                LIBS rerank_fused_ops_obj)
# Torch's headers are noisy (as for server/torch_scorer.cc).
set_source_files_properties(${CMAKE_CURRENT_LIST_DIR}/fused_ops_test.cc PROPERTIES
                            COMPILE_OPTIONS -Wno-error)
