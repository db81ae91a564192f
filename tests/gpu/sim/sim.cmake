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
