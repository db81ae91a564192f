# RETORT_CUDA=SIM: the whole GPU backend built for the CUDA simulator (README.md beside this
# file). Included from the top-level CMakeLists.txt before core/. Defines
#  - retort_cuda_sim: the simulated CUDA runtime, cuBLASLt, cuDNN's graph API and NCCL (include/
#    has their headers);
#  - retort_translate_cuda(OUT_VAR file.cu ...): gen.py's C++ translation of each kernel file.
add_library(retort_cuda_sim STATIC
  ${CMAKE_CURRENT_LIST_DIR}/block_simulator.cpp ${CMAKE_CURRENT_LIST_DIR}/cuda_runtime.cpp
  ${CMAKE_CURRENT_LIST_DIR}/cublaslt.cpp ${CMAKE_CURRENT_LIST_DIR}/cudnn.cpp
  ${CMAKE_CURRENT_LIST_DIR}/nccl.cpp)
target_include_directories(retort_cuda_sim PUBLIC ${CMAKE_CURRENT_LIST_DIR}/include)
target_link_libraries(retort_cuda_sim PUBLIC MPI::MPI_CXX)

# Device memory checked as a GPU would fault on it: the kernels are built with AddressSanitizer
# (an access past an allocation, or to one already freed by its stream) and UBSan's alignment
# check (a float4 / uint2 load or store at an address a GPU cannot vector-load from: "misaligned
# address" there), and so is the backend's host side (core/cuda/*.cpp); the runtime poisons each
# allocation's padding. The simulated libraries' loops are not instrumented (they check their
# operands' extents themselves; instrumented, they doubled the e2e tests' time), nor is the rest
# of retort. Every executable that links the simulator gets the sanitizers' runtimes.
option(RETORT_SIM_SANITIZE "simulator build: ASan + alignment checks on the kernels" ON)
set(RETORT_SIM_SANITIZE_FLAGS)
if(RETORT_SIM_SANITIZE)
  set(RETORT_SIM_SANITIZE_FLAGS -fsanitize=address,alignment -fno-sanitize-recover=alignment)
  set_source_files_properties(${CMAKE_CURRENT_LIST_DIR}/cuda_runtime.cpp PROPERTIES
    COMPILE_OPTIONS "${RETORT_SIM_SANITIZE_FLAGS}")
  target_link_options(retort_cuda_sim INTERFACE -fsanitize=address,alignment)
endif()

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
