# Sanitizer and fuzzing builds (docs/hardening.md; scripts/sanitize and scripts/fuzz drive them).
#   -DMOESERVE_SANITIZE=address,undefined   ASan + UBSan over everything (GCC or Clang)
#   -DMOESERVE_SANITIZE=thread              TSan (engine tests; OpenMP limited to one thread)
#   -DMOESERVE_FUZZ=ON                      libFuzzer targets in tests/fuzz (Clang only), with
#                                           ASan + UBSan and coverage in every library
# Any report aborts the process (no recovery), so a sanitizer finding fails its test.
set(MOESERVE_SANITIZE "" CACHE STRING "Sanitizers to build with: address,undefined | thread")
option(MOESERVE_FUZZ "Build the libFuzzer targets (needs Clang)" OFF)

if(MOESERVE_SANITIZE)
  if(MOESERVE_CUDA)
    message(FATAL_ERROR "MOESERVE_SANITIZE: configure with -DMOESERVE_CUDA=OFF (host code only)")
  endif()
  add_compile_options(-fsanitize=${MOESERVE_SANITIZE} -fno-omit-frame-pointer
                      -fno-sanitize-recover=all -g)
  add_link_options(-fsanitize=${MOESERVE_SANITIZE})
endif()

if(MOESERVE_FUZZ)
  if(NOT CMAKE_CXX_COMPILER_ID STREQUAL "Clang")
    message(FATAL_ERROR "MOESERVE_FUZZ needs Clang: CC=clang CXX=clang++ cmake ...")
  endif()
  if(MOESERVE_CUDA)
    message(FATAL_ERROR "MOESERVE_FUZZ: configure with -DMOESERVE_CUDA=OFF")
  endif()
  # Coverage instrumentation everywhere; only the fuzz executables link libFuzzer's main.
  add_compile_options(-fsanitize=fuzzer-no-link,address,undefined -fno-omit-frame-pointer
                      -fno-sanitize-recover=undefined -g)
  add_link_options(-fsanitize=address,undefined)
endif()
