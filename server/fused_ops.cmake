# Fused CPU ops for the exported model (server/fused_ops/fused_ops.h): TorchScript custom ops
# rerank::attention, rerank::add_layernorm, rerank::bias_act.
#  - rerank_fused_ops_obj: the objects, compiled into rerank_torch_scorer (server.cmake), so every
#    binary that loads a model has the ops registered (torch_scorer.cc references the object);
#  - rerank_fused_ops: build/server/fused_ops/librerank_fused_ops.so, for Python's
#    torch.ops.load_library (tools/export_model.py --fused-ops-lib, the exporter's tests).
add_library(rerank_fused_ops_obj OBJECT ${CMAKE_CURRENT_LIST_DIR}/fused_ops/fused_ops.cc)
set_target_properties(rerank_fused_ops_obj PROPERTIES POSITION_INDEPENDENT_CODE ON)
# at::parallel_for is a header template that runs the whole range on the calling thread unless
# the translation unit is compiled with OpenMP (_OPENMP), as ATen itself is (libtorch uses
# libgomp): without this the ops ignore at::set_num_threads and run on one thread. Not under
# ThreadSanitizer, which does not see libgomp's barriers (the ops then run serially there).
target_link_libraries(rerank_fused_ops_obj PUBLIC ${TORCH_LIBRARIES})
set(RERANK_FUSED_OPS_OPENMP "")
if(NOT RERANK_SANITIZE STREQUAL "thread")
  find_package(OpenMP REQUIRED)
  set(RERANK_FUSED_OPS_OPENMP OpenMP::OpenMP_CXX)
  # -fopenmp for this file only; its users link libgomp (the objects call GOMP_parallel).
  target_link_libraries(rerank_fused_ops_obj PRIVATE OpenMP::OpenMP_CXX
                        INTERFACE $<LINK_ONLY:OpenMP::OpenMP_CXX>)
endif()
# Torch's headers are noisy (see server/torch_scorer.cc).
target_compile_options(rerank_fused_ops_obj PRIVATE -Wno-error)

if(RERANK_SANITIZE STREQUAL "")
  add_library(rerank_fused_ops SHARED $<TARGET_OBJECTS:rerank_fused_ops_obj>)
else()
  # Python (not instrumented) loads this library: a sanitizer runtime cannot be loaded that way,
  # so the Python-side copy is built without sanitizers.
  add_library(rerank_fused_ops SHARED ${CMAKE_CURRENT_LIST_DIR}/fused_ops/fused_ops.cc)
  target_compile_options(rerank_fused_ops PRIVATE -Wno-error -fno-sanitize=all)
  target_link_options(rerank_fused_ops PRIVATE -fno-sanitize=all)
endif()
target_link_libraries(rerank_fused_ops PRIVATE ${TORCH_LIBRARIES} ${RERANK_FUSED_OPS_OPENMP})
set_target_properties(rerank_fused_ops PROPERTIES
  LIBRARY_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/server/fused_ops)
