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

  // The sums of four vectors' lanes, each by the same fixed tree (so a sum does not depend on
  // which argument it came in): lane i + lane i + 8, then the 128-bit quarters pairwise, then
  // within each quarter (0 + 2, 1 + 3), (02 + 13). One pass for four outputs costs about half
  // of four single reductions: with K = 256 the reductions were a fifth of a decode tile.
  static void Reduce4(V a, V b, V c, V d, float* out) {
    // The masked forms with a full mask: GCC 12 flags the plain ones' undefined pass-through
    // operand under -Werror=uninitialized.
    constexpr __mmask16 kAll = 0xFFFF;
    const V ab = _mm512_add_ps(_mm512_mask_shuffle_f32x4(a, kAll, a, b, 0x44),
                               _mm512_mask_shuffle_f32x4(a, kAll, a, b, 0xEE));
    const V cd = _mm512_add_ps(_mm512_mask_shuffle_f32x4(c, kAll, c, d, 0x44),
                               _mm512_mask_shuffle_f32x4(c, kAll, c, d, 0xEE));
    // Quarter q now holds the four partial sums of argument q.
    const V quarters = _mm512_add_ps(_mm512_mask_shuffle_f32x4(ab, kAll, ab, cd, 0x88),
                                     _mm512_mask_shuffle_f32x4(ab, kAll, ab, cd, 0xDD));
    const V pairs = _mm512_add_ps(
        quarters, _mm512_mask_permute_ps(quarters, kAll, quarters, _MM_SHUFFLE(1, 0, 3, 2)));
    const V sums =
        _mm512_add_ps(pairs, _mm512_mask_permute_ps(pairs, kAll, pairs, _MM_SHUFFLE(2, 3, 0, 1)));
    _mm_storeu_ps(out,
                  _mm512_maskz_extractf32x4_ps(0xF, _mm512_maskz_compress_ps(0x1111, sums), 0));
  }

  // BF16 is the high half of an fp32: widen and shift.
  static V LoadBf16(const uint16_t* p) {
    const __m512i wide =
        _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
    return _mm512_castsi512_ps(_mm512_slli_epi32(wide, 16));
  }

  // e4m3 (bias 7, reference §4) → fp32, as the value times 2^-8 (kE4m3Unit): the seven
  // exponent and mantissa bits shifted into an fp16 (bias 15) are that value exactly, e4m3
  // subnormals becoming fp16 subnormals, and vcvtph2ps widens them exactly. The caller folds
  // 2^8 into the block scale, so (v · 2^-8) · (scale · 2^8) rounds like v · scale. The byte is
  // sign-extended, so after the shift by 7 its sign sits in bits 14 and 15 and clearing bit 14
  // leaves the fp16 sign: two integer ops and one conversion per 16 weights (decode of FP8
  // weights is bound by this conversion, not by memory). 0x7F/0xFF (NaN) are refused by the
  // loader.
  static constexpr float kE4m3Unit = 0x1p-8f;
  static V LoadE4m3(const uint8_t* p) {
    const __m256i b = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
    const __m256i half =
        _mm256_and_si256(_mm256_slli_epi16(b, 7), _mm256_set1_epi16(static_cast<int16_t>(0xBFFF)));
    return _mm512_cvtph_ps(half);
  }
};
