// Explicit-SIMD versions of the RGB bilinear patch (flip_extract.hpp, extract_patch_rgb): the same float32
// operations in the same order (IEEE multiplies and adds, no FMA), so the bytes are identical to the scalar path;
// tests compare both. x86-64 with GCC or Clang only; chosen at run time from the CPU's features.
#pragma once

#include <cstddef>
#include <cstdint>

#include "flip_patch_weights.hpp"

#if (defined(__GNUC__) || defined(__clang__)) && defined(__x86_64__)
#define FLIPSAMPLER_HAVE_X86_SIMD 1
#include <immintrin.h>

namespace flipsampler {

inline bool cpu_has_avx2() {
    static const bool avx2 = __builtin_cpu_supports("avx2");  // thread-safe one-time init
    return avx2;
}

// 8 bytes -> 8 floats.
__attribute__((target("avx2"))) inline __m256 load8_as_float(const uint8_t* p) {
    return _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p))));
}

// roundf for 0 <= v < 2**22 as in round_to_u8: (int)(v + 0.5f), zero where v < 0.5f; 8 lanes -> 8 bytes at dst.
__attribute__((target("avx2"))) inline void store8_rounded(__m256 v, uint8_t* dst) {
    const __m256 half = _mm256_set1_ps(0.5f);
    const __m256i r = _mm256_and_si256(_mm256_cvttps_epi32(_mm256_add_ps(v, half)),
                                       _mm256_castps_si256(_mm256_cmp_ps(v, half, _CMP_GE_OQ)));
    const __m128i w16 = _mm_packus_epi32(_mm256_castsi256_si128(r), _mm256_extracti128_si256(r, 1));
    _mm_storel_epi64(reinterpret_cast<__m128i*>(dst), _mm_packus_epi16(w16, w16));
}

// RGB patch of size P (3 * P a multiple of 8: P = 8, 16) centred at (cx, cy), with AVX2. Same contract and
// arithmetic as extract_patch_rgb<P>: returns false (nothing written) when the columns' or rows' neighbours are
// not consecutive pixels. Reads stay inside the patch's (P + 1) x (P + 1) pixel window.
template <int P>
__attribute__((target("avx2"))) bool extract_patch_rgb_avx2(const uint8_t* img, int width, float cx, float cy,
                                                            uint8_t* dst) {
    static_assert((3 * P) % 8 == 0, "3 * P must be a multiple of 8");
    constexpr int kLen = P * 3;
    constexpr int kVec = kLen / 8;
    RgbPatchWeights<P> wts;
    if (!wts.set(cx, cy)) return false;
    const size_t row_stride = static_cast<size_t>(width) * 3;
    const uint8_t* src = wts.origin(img, width);
    __m256 vwx[kVec], vdx[kVec], left[kVec], right[kVec];  // left/right: I * (1 - dx), I' * dx of the top row
    for (int v = 0; v < kVec; ++v) {
        vwx[v] = _mm256_load_ps(wts.wx + 8 * v);
        vdx[v] = _mm256_load_ps(wts.dx + 8 * v);
        left[v] = _mm256_mul_ps(load8_as_float(src + 8 * v), vwx[v]);
        right[v] = _mm256_mul_ps(load8_as_float(src + 3 + 8 * v), vdx[v]);
    }
    for (int r = 0; r < P; ++r) {
        const uint8_t* bottom = src + static_cast<size_t>(r + 1) * row_stride;
        const __m256 w = _mm256_set1_ps(wts.wy[r]), d = _mm256_set1_ps(wts.dy[r]);
        uint8_t* out = dst + r * kLen;
        for (int v = 0; v < kVec; ++v) {
            const __m256 lb = _mm256_mul_ps(load8_as_float(bottom + 8 * v), vwx[v]);
            const __m256 rb = _mm256_mul_ps(load8_as_float(bottom + 3 + 8 * v), vdx[v]);
            __m256 s = _mm256_mul_ps(left[v], w);
            s = _mm256_add_ps(s, _mm256_mul_ps(right[v], w));
            s = _mm256_add_ps(s, _mm256_mul_ps(lb, d));
            s = _mm256_add_ps(s, _mm256_mul_ps(rb, d));
            store8_rounded(s, out + 8 * v);
            left[v] = lb;
            right[v] = rb;
        }
    }
    return true;
}

}  // namespace flipsampler
#endif
