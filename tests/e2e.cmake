# End-to-end tests of the retort command line (bash scripts; included from tests/CMakeLists.txt).
# Each gets the binary in RETORT_BIN and its own scratch directory in WORK. A script that
# cannot run here (e.g. no permission to mount a tmpfs) exits 77 (lib.sh's `skip`): ctest
# reports it as skipped, not passed.
file(GLOB E2E_TESTS CONFIGURE_DEPENDS ${CMAKE_CURRENT_SOURCE_DIR}/e2e/*.sh)
foreach(script ${E2E_TESTS})
  get_filename_component(name ${script} NAME_WE)
  if(name STREQUAL "lib")
    continue()
  endif()
  add_test(NAME e2e_${name} COMMAND bash ${script})
  set_tests_properties(e2e_${name} PROPERTIES LABELS e2e TIMEOUT 600 SKIP_RETURN_CODE 77
    ENVIRONMENT "RETORT_BIN=$<TARGET_FILE:retort>;RETORT_SOURCE_DIR=${PROJECT_SOURCE_DIR};WORK=${CMAKE_CURRENT_BINARY_DIR}/e2e/${name};OMP_NUM_THREADS=1")
  # gpu_*.sh need a GPU: they exit 77 without one and ctest reports them skipped.
  if(name MATCHES "^gpu_")
    set_tests_properties(e2e_${name} PROPERTIES LABELS "e2e;gpu" SKIP_RETURN_CODE 77)
  endif()
endforeach()
