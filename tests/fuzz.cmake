# libFuzzer targets of the file readers (tests/fuzz/; included from tests/CMakeLists.txt).
# libFuzzer needs clang and the main build uses g++, so tests/fuzz is a small project of its
# own (only the reader sources, built with ASan + UBSan) that this build drives as an
# ExternalProject in <build>/fuzz. RETORT_FUZZ: AUTO (on when clang++ links
# -fsanitize=fuzzer), ON (error if it cannot), OFF.
# Tests labelled `fuzz` replay the seed corpus tests/fuzz/corpus/<target> and run a few hundred
# fixed-seed mutations (tests/fuzz/run.sh --smoke); longer runs: tests/fuzz/run.sh TARGET SECONDS.
set(RETORT_FUZZ AUTO CACHE STRING "libFuzzer targets of the file readers: AUTO (on when clang++ with libFuzzer is found), ON or OFF")
set_property(CACHE RETORT_FUZZ PROPERTY STRINGS AUTO ON OFF)

set(RETORT_FUZZ_TARGETS token_dataset distill_corpus checkpoint sharded_checkpoint config hf_checkpoint
                        hf_tokenizer)
set(retort_have_fuzz OFF)
if(NOT RETORT_FUZZ STREQUAL "OFF")
  find_program(RETORT_FUZZ_CXX NAMES clang++ clang++-14)
  find_program(RETORT_FUZZ_CC NAMES clang clang-14)
  if(RETORT_FUZZ_CXX AND RETORT_FUZZ_CC)
    set(probe_dir ${CMAKE_CURRENT_BINARY_DIR}/fuzz_probe)
    file(MAKE_DIRECTORY ${probe_dir})
    file(WRITE ${probe_dir}/probe.cpp
      "#include <cstddef>\n#include <cstdint>\nextern \"C\" int LLVMFuzzerTestOneInput(const uint8_t*, size_t) { return 0; }\n")
    execute_process(COMMAND ${RETORT_FUZZ_CXX} -fsanitize=fuzzer,address,undefined probe.cpp -o probe
                    WORKING_DIRECTORY ${probe_dir} RESULT_VARIABLE probe_rc OUTPUT_QUIET ERROR_QUIET)
    if(probe_rc EQUAL 0)
      set(retort_have_fuzz ON)
    endif()
  endif()
  if(NOT retort_have_fuzz AND RETORT_FUZZ STREQUAL "ON")
    message(FATAL_ERROR "RETORT_FUZZ=ON but clang++ cannot link -fsanitize=fuzzer "
                        "(Debian: apt-get install clang libclang-rt-14-dev)")
  endif()
endif()
message(STATUS "retort fuzz targets (clang libFuzzer): ${retort_have_fuzz}")

if(retort_have_fuzz)
  include(ExternalProject)
  set(RETORT_FUZZ_BIN ${CMAKE_BINARY_DIR}/fuzz)
  ExternalProject_Add(retort_fuzzers
    SOURCE_DIR ${CMAKE_CURRENT_SOURCE_DIR}/fuzz
    BINARY_DIR ${RETORT_FUZZ_BIN}
    CMAKE_ARGS -DCMAKE_CXX_COMPILER=${RETORT_FUZZ_CXX} -DCMAKE_C_COMPILER=${RETORT_FUZZ_CC}
               -DCMAKE_BUILD_TYPE=  # tests/fuzz/CMakeLists.txt sets -O1 -g
    INSTALL_COMMAND ""
    BUILD_ALWAYS ON  # the sources live in core/ and data/: let make decide what changed
    EXCLUDE_FROM_ALL OFF)
  foreach(target ${RETORT_FUZZ_TARGETS})
    add_test(NAME fuzz_${target}
             COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/fuzz/run.sh --smoke ${target} 150)
    set_tests_properties(fuzz_${target} PROPERTIES LABELS fuzz TIMEOUT 120
      ENVIRONMENT "FUZZ_BIN_DIR=${RETORT_FUZZ_BIN};FUZZ_WORK=${CMAKE_CURRENT_BINARY_DIR}/fuzz/${target};OMP_NUM_THREADS=1")
  endforeach()
endif()
