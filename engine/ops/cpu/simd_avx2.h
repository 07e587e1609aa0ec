// `struct Simd` for AVX2 + FMA: 8 fp32 lanes (see simd_avx512.h). Not a public header: include
// it inside an anonymous namespace of a file compiled with -mavx2 -mfma, after <immintrin.h>.

struct Simd {
  using V = __m256;
  static constexpr int kLanes = 8;

  static V Zero() { return _mm256_setzero_ps(); }
  static V Set1(float v) { return _mm256_set1_ps(v); }
  static V Load(const float* p) { return _mm256_loadu_ps(p); }
  static void Store(float* p, V v) { _mm256_storeu_ps(p, v); }
  static V Mul(V a, V b) { return _mm256_mul_ps(a, b); }
  static V Fma(V a, V b, V c) { return _mm256_fmadd_ps(a, b, c); }

  // The sums of four vectors' lanes, each by the same fixed tree (so a sum does not depend on
  // which argument it came in): lane i + lane i + 4, then adjacent pairs, then the two pairs.
  static void Reduce4(V a, V b, V c, V d, float* out) {
    const V ab =
        _mm256_add_ps(_mm256_permute2f128_ps(a, b, 0x20), _mm256_permute2f128_ps(a, b, 0x31));
    const V cd =
        _mm256_add_ps(_mm256_permute2f128_ps(c, d, 0x20), _mm256_permute2f128_ps(c, d, 0x31));
    const V pairs = _mm256_hadd_ps(ab, cd);       // per half: a|b's two pair sums, c|d's two
    const V sums = _mm256_hadd_ps(pairs, pairs);  // lanes 0, 1, 4, 5: a, c, b, d
    out[0] = _mm256_cvtss_f32(sums);
    out[2] = _mm_cvtss_f32(
        _mm_shuffle_ps(_mm256_castps256_ps128(sums), _mm256_castps256_ps128(sums), 1));
    const __m128 high = _mm256_extractf128_ps(sums, 1);
    out[1] = _mm_cvtss_f32(high);
    out[3] = _mm_cvtss_f32(_mm_shuffle_ps(high, high, 1));
  }

  static V LoadBf16(const uint16_t* p) {
    const __m256i wide =
        _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
    return _mm256_castsi256_ps(_mm256_slli_epi32(wide, 16));
  }

  // As the AVX-512 version (simd_avx512.h): rebased exponent, subnormals fixed as
  // 2v − 2^-6, then the sign.
  static constexpr float kE4m3Unit = 1.0f;  // LoadE4m3 gives the value itself
  static V LoadE4m3(const uint8_t* p) {
    const __m256i b = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p)));
    const __m256i magnitude =
        _mm256_add_epi32(_mm256_slli_epi32(_mm256_and_si256(b, _mm256_set1_epi32(0x7F)), 20),
                         _mm256_set1_epi32(120 << 23));
    const V v = _mm256_castsi256_ps(magnitude);
    const __m256i subnormal =
        _mm256_cmpeq_epi32(_mm256_and_si256(b, _mm256_set1_epi32(0x78)), _mm256_setzero_si256());
    const V fixed = _mm256_sub_ps(_mm256_add_ps(v, v), _mm256_set1_ps(0x1p-6f));
    const V value = _mm256_blendv_ps(v, fixed, _mm256_castsi256_ps(subnormal));
    const __m256i sign = _mm256_slli_epi32(_mm256_and_si256(b, _mm256_set1_epi32(0x80)), 24);
    return _mm256_castsi256_ps(_mm256_or_si256(_mm256_castps_si256(value), sign));
  }
};
