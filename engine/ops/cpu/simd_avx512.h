// `struct Simd` for AVX-512 (F/BW/VL/DQ): 16 fp32 lanes, the vector vocabulary of the CPU
// kernel templates (ops/linear/*_simd.h). Not a public header: include it inside an anonymous
// namespace of a file compiled with -mavx512f -mavx512bw -mavx512vl -mavx512dq, after
// <immintrin.h>, so its copy never meets another ISA's at link time.

struct Simd {
  using V = __m512;
  static constexpr int kLanes = 16;

  static V Zero() { return _mm512_setzero_ps(); }
  static V Set1(float v) { return _mm512_set1_ps(v); }
  static V Load(const float* p) { return _mm512_loadu_ps(p); }
  static void Store(float* p, V v) { _mm512_storeu_ps(p, v); }
  static V Mul(V a, V b) { return _mm512_mul_ps(a, b); }
  static V Fma(V a, V b, V c) { return _mm512_fmadd_ps(a, b, c); }
  static float Reduce(V v) { return _mm512_reduce_add_ps(v); }

  // BF16 is the high half of an fp32: widen and shift.
  static V LoadBf16(const uint16_t* p) {
    const __m512i wide =
        _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
    return _mm512_castsi512_ps(_mm512_slli_epi32(wide, 16));
  }

  // e4m3 (bias 7, reference §4) → fp32 exactly, without ever forming an fp32 subnormal (which
  // would cost a microcode assist per multiply): exponent and mantissa move into place with the
  // exponent rebased by 120 = 127 − 7; e = 0 lanes (e4m3 subnormals and zero) then hold
  // 2^-7·(1 + m/8) and become 2^-6·m/8 as 2v − 2^-6, exact by Sterbenz. 0x7F/0xFF (NaN) are
  // refused by the loader.
  static V LoadE4m3(const uint8_t* p) {
    const __m512i b = _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
    const __m512i magnitude =
        _mm512_add_epi32(_mm512_slli_epi32(_mm512_and_si512(b, _mm512_set1_epi32(0x7F)), 20),
                         _mm512_set1_epi32(120 << 23));
    V v = _mm512_castsi512_ps(magnitude);
    const __mmask16 subnormal = _mm512_testn_epi32_mask(b, _mm512_set1_epi32(0x78));
    v = _mm512_mask_sub_ps(v, subnormal, _mm512_add_ps(v, v), _mm512_set1_ps(0x1p-6f));
    const __m512i sign = _mm512_slli_epi32(_mm512_and_si512(b, _mm512_set1_epi32(0x80)), 24);
    return _mm512_castsi512_ps(_mm512_or_si512(_mm512_castps_si512(v), sign));
  }
};
