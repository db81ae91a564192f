# Script-driven tests (included from tests/CMakeLists.txt).

# ---- reference: whole model vs an independent float64 PyTorch implementation (SPEC §1) ----
add_executable(dump_model ${CMAKE_CURRENT_SOURCE_DIR}/reference/dump_model.cpp)
target_link_libraries(dump_model PRIVATE retort_models)
set(RETORT_REF_VARIANTS
  "tied_mha|tied=1 heads=4 kv_heads=4"
  "tied_gqa|tied=1 heads=4 kv_heads=2"
  "untied_mha|tied=0 heads=4 kv_heads=4"
  "untied_gqa|tied=0 heads=4 kv_heads=2 T=13 recompute=1"
  "tied_gqa_noqknorm_mup|tied=1 heads=4 kv_heads=1 qk_norm=0 init=mup_simple"
  "qwen2_qkv_bias|tied=1 heads=4 kv_heads=2 qk_norm=0 qkv_bias=1"
  "qwen2_untied_recompute|tied=0 heads=8 kv_heads=2 qk_norm=0 qkv_bias=1 recompute=1"
  "sliding_window|tied=1 heads=4 kv_heads=2 window=5"
  "sliding_window_noqknorm_recompute|tied=0 heads=4 kv_heads=2 qk_norm=0 window=2 T=13 recompute=1"
  "smollm3_nope|tied=1 heads=4 kv_heads=2 qk_norm=0 no_rope=2"
  "nope_qknorm_recompute|tied=0 heads=4 kv_heads=2 no_rope=2 recompute=1"
  "llama3_rope|tied=1 heads=4 kv_heads=2 qk_norm=0 rope_scaling=llama3 rope_factor=32 rope_original=400"
  "kd_online|tied=1 heads=4 kv_heads=2 kd=online lambda=0.6 tau=1.5"
  "kd_topk_renormalize|tied=0 heads=4 kv_heads=2 kd=renormalize lambda=0.7 tau=2 k=8"
  "kd_topk_bucket|tied=1 heads=4 kv_heads=2 kd=bucket lambda=1 tau=1 k=5")
foreach(variant ${RETORT_REF_VARIANTS})
  string(REPLACE "|" ";" parts "${variant}")
  list(GET parts 0 vname)
  list(GET parts 1 vargs)
  separate_arguments(vargs UNIX_COMMAND "${vargs}")
  add_test(NAME reference_model_${vname}
    COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/reference/run_reference.sh $<TARGET_FILE:dump_model>
            ${CMAKE_CURRENT_BINARY_DIR}/reference/${vname}
            vocab=64 d=32 layers=2 seq=16 batch=2 qk_norm=1 ${vargs})
  set_tests_properties(reference_model_${vname} PROPERTIES LABELS reference
    ENVIRONMENT "OMP_NUM_THREADS=1")
endforeach()
