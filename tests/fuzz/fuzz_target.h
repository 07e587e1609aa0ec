// The entry point every fuzz target defines (libFuzzer's), and the check that turns a broken
// invariant into a crash the fuzzer (or the corpus replay in CI) reports.
//
// Each target is linked twice: with libFuzzer (Clang, MOESERVE_FUZZ=ON; scripts/fuzz) to search
// for inputs, and with fuzz_replay_main.cc (any compiler, every CI run) to run the committed seed
// corpus plus fresh random mutations of it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

// Aborts (a finding) when an invariant the target asserts does not hold.
#define FUZZ_CHECK(condition)                                                                 \
  do {                                                                                        \
    if (!(condition)) {                                                                       \
      std::fprintf(stderr, "%s:%d: FUZZ_CHECK failed: %s\n", __FILE__, __LINE__, #condition); \
      std::abort();                                                                           \
    }                                                                                         \
  } while (0)
