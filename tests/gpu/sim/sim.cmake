# RETORT_CUDA=SIM: the whole GPU backend built for the CUDA simulator (README.md beside this
# file). Included from the top-level CMakeLists.txt before core/. Defines
#  - retort_cuda_sim: the simulated CUDA runtime, cuBLASLt, cuDNN's graph API and NCCL (include/
#    has their headers);
#  - retort_translate_cuda(OUT_VAR file.cu ...): gen.py's C++ translation of each kernel file.
add_library(retort_cuda_sim STATIC
  ${CMAKE_CURRENT_LIST_DIR}/block_simulator.cpp ${CMAKE_CURRENT_LIST_DIR}/cuda_runtime.cpp
  ${CMAKE_CURRENT_LIST_DIR}/cublaslt.cpp ${CMAKE_CURRENT_LIST_DIR}/cudnn.cpp
  ${CMAKE_CURRENT_LIST_DIR}/nccl.cpp ${CMAKE_CURRENT_LIST_DIR}/race.cpp)
target_include_directories(retort_cuda_sim PUBLIC ${CMAKE_CURRENT_LIST_DIR}/include)
target_link_libraries(retort_cuda_sim PUBLIC MPI::MPI_CXX)

# RETORT_SIM_SANITIZE=address (the default; ON means it too): device memory checked as a GPU
# would fault on it. The kernels are built with AddressSanitizer (an access past an allocation,
# or to one already freed by its stream) and UBSan's alignment check (a float4 / uint2 load or
# store at an address a GPU cannot vector-load from: "misaligned address" there), and so is the
# backend's host side (core/cuda/*.cpp); the runtime poisons each allocation's padding. The
# simulated libraries' loops are not instrumented (they check their operands' extents
# themselves; instrumented, they doubled the e2e tests' time), nor is the rest of retort.
# RETORT_SIM_SANITIZE=thread (tests/gpu/sim/racecheck.sh): the same files built with
# ThreadSanitizer instead (and the simulated libraries too), and the block simulator and the
# runtime tell it that a block's threads are fibers ordered only by their barriers, that
# neighbouring blocks are not ordered, and that streams are ordered only by events and the
# host's synchronisations (race.cpp), so a race between two threads of a block, two blocks of a
# grid or two streams is reported whatever the schedule. Every executable that links the
# simulator gets the sanitizer's runtime.
set(RETORT_SIM_SANITIZE address CACHE STRING
  "simulator build: address (ASan + alignment checks), thread (ThreadSanitizer races) or OFF")
set(RETORT_SIM_SANITIZE_FLAGS)
set(sim_instrumented ${CMAKE_CURRENT_LIST_DIR}/cuda_runtime.cpp)
if(RETORT_SIM_SANITIZE STREQUAL "address" OR RETORT_SIM_SANITIZE STREQUAL "ON")
  set(RETORT_SIM_SANITIZE_FLAGS -fsanitize=address,alignment -fno-sanitize-recover=alignment)
  target_link_options(retort_cuda_sim INTERFACE -fsanitize=address,alignment)
elseif(RETORT_SIM_SANITIZE STREQUAL "thread")
  set(RETORT_SIM_SANITIZE_FLAGS -fsanitize=thread -g)
  target_link_options(retort_cuda_sim INTERFACE -fsanitize=thread)
  # ThreadSanitizer must see the libraries' operand accesses on their streams' threads, and
  # every count of the objects they share with the host (shared_ptr)
  list(APPEND sim_instrumented ${CMAKE_CURRENT_LIST_DIR}/cublaslt.cpp
    ${CMAKE_CURRENT_LIST_DIR}/cudnn.cpp ${CMAKE_CURRENT_LIST_DIR}/nccl.cpp)
  # not instrumented themselves (the scheduler's state is the fibers' shared bookkeeping)
  set_source_files_properties(${CMAKE_CURRENT_LIST_DIR}/block_simulator.cpp
    ${CMAKE_CURRENT_LIST_DIR}/race.cpp PROPERTIES COMPILE_DEFINITIONS RETORT_SIM_RACECHECK=1)
elseif(NOT RETORT_SIM_SANITIZE STREQUAL "OFF")
  message(FATAL_ERROR "RETORT_SIM_SANITIZE=${RETORT_SIM_SANITIZE}: expected address, thread or OFF")
endif()
set_source_files_properties(${sim_instrumented} PROPERTIES
  COMPILE_OPTIONS "${RETORT_SIM_SANITIZE_FLAGS}")

function(retort_translate_cuda out_var)
  set(outputs)
  file(MAKE_DIRECTORY ${PROJECT_BINARY_DIR}/cuda-sim)
  foreach(cu ${ARGN})
    get_filename_component(name ${cu} NAME_WE)
    set(cpp ${PROJECT_BINARY_DIR}/cuda-sim/${name}.cpp)
    add_custom_command(OUTPUT ${cpp}
      COMMAND python3 ${PROJECT_SOURCE_DIR}/tests/gpu/sim/gen.py ${cu} ${cpp}
      DEPENDS ${cu} ${PROJECT_SOURCE_DIR}/tests/gpu/sim/gen.py
      COMMENT "simulator translation of ${name}.cu")
    list(APPEND outputs ${cpp})
  endforeach()
  set(${out_var} ${outputs} PARENT_SCOPE)
endfunction()
