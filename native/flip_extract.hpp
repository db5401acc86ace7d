// Bilinear patch extraction with the official rule (float32 left to right, no FMA, roundf half away from zero).
// Mirrors benchmark/flip/sampler_reference.extract_patches bit-for-bit. Build with -ffp-contract=off.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

#include "flip_extract_simd.hpp"
#include "flip_patch_weights.hpp"

// Hot loops are compiled twice (AVX2 and baseline x86-64) and picked at load time; without FMA contraction the
// results are identical on both paths. Other compilers / targets get the plain version.
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
#define FLIPSAMPLER_SIMD_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define FLIPSAMPLER_SIMD_CLONES
#endif

namespace flipsampler {

// ------------------------------------------------------------------------------------------------------------
// Bilinear extraction (official rule: float32 left to right, roundf)
// ------------------------------------------------------------------------------------------------------------
inline bool center_in_bounds(float x, float y, int p, int height, int width) {
    const float hp = static_cast<float>(p) / 2.0f;
    return x - hp >= 0.0f && x + hp < static_cast<float>(width - 1) && y - hp >= 0.0f &&
           y + hp < static_cast<float>(height - 1);
}

// roundf for 0 <= v < 2**22 (half away from zero). v + 0.5f is exact for v >= 0.5 (or rounds within the same
// integer part), and v < 0.5 rounds to 0; avoids the floor(v + 0.5) pitfall at 0.49999997 and a libm call.
inline uint8_t round_to_u8(float v) {
    const int r = static_cast<int>(v + 0.5f);
    return static_cast<uint8_t>(r & -static_cast<int>(v >= 0.5f));  // branch-free so the row loops vectorise
}

// Writes one p x p x C patch to dst. Precondition: center_in_bounds(cx, cy, p, H, W) (all reads in the image).
// Per value (float32, left to right, no FMA): v = I00*(1-dx)*(1-dy) + I01*dx*(1-dy) + I10*(1-dx)*dy + I11*dx*dy.
// Column weights do not depend on the row, so they are expanded once per patch (one entry per output byte of a
// row); when the columns' left neighbours are consecutive pixels (the usual case) a row is a contiguous run of
// bytes and the loop vectorises. The arithmetic per value is the same in both paths.
// RGB patch of compile-time size P (the official sizes): same arithmetic, constant trip counts so the compiler
// unrolls and vectorises whole rows. The products I*(1-dx) and I'*dx of an image row are the same float32 values
// for the output row that reads it as its top row and for the one that reads it as its bottom row, so they are
// computed once per image row (P + 1 rows) and then scaled by (1-dy) or dy. Returns false (nothing written) when
// the columns' or the rows' neighbours are not consecutive pixels; the generic path handles that case.
template <int P>
__attribute__((always_inline)) inline bool extract_patch_rgb(const uint8_t* img, int width, float cx, float cy,
                                                            uint8_t* dst) {
    constexpr int kLen = P * 3;
    RgbPatchWeights<P> wts;
    if (!wts.set(cx, cy)) return false;
    const float* const wx = wts.wx;
    const float* const dx = wts.dx;
    const size_t row_stride = static_cast<size_t>(width) * 3;
    const uint8_t* src = wts.origin(img, width);
    alignas(32) float left[2][kLen], right[2][kLen];  // image rows r and r + 1: I * (1 - dx) and I' * dx
    for (int j = 0; j < kLen; ++j) {
        left[0][j] = static_cast<float>(src[j]) * wx[j];
        right[0][j] = static_cast<float>(src[j + 3]) * dx[j];
    }
    for (int r = 0; r < P; ++r) {
        const float* __restrict lt = left[r & 1];
        const float* __restrict rt = right[r & 1];
        float* __restrict lb = left[(r + 1) & 1];
        float* __restrict rb = right[(r + 1) & 1];
        const uint8_t* __restrict b = src + static_cast<size_t>(r + 1) * row_stride;
        for (int j = 0; j < kLen; ++j) {
            lb[j] = static_cast<float>(b[j]) * wx[j];
            rb[j] = static_cast<float>(b[j + 3]) * dx[j];
        }
        const float w = wts.wy[r], d = wts.dy[r];
        uint8_t* __restrict out = dst + r * kLen;
        for (int j = 0; j < kLen; ++j) {
            float v = lt[j] * w;
            v = v + rt[j] * w;
            v = v + lb[j] * d;
            v = v + rb[j] * d;
            out[j] = round_to_u8(v);
        }
    }
    return true;
}

FLIPSAMPLER_SIMD_CLONES inline void extract_patch(const uint8_t* img, int width, int channels, float cx, float cy, int p, uint8_t* dst) {
    if (channels == 3) {
        switch (p) {
            case 1: if (extract_patch_rgb<1>(img, width, cx, cy, dst)) return; break;
            case 2: if (extract_patch_rgb<2>(img, width, cx, cy, dst)) return; break;
            case 4: if (extract_patch_rgb<4>(img, width, cx, cy, dst)) return; break;
            case 8: if (extract_patch_rgb<8>(img, width, cx, cy, dst)) return; break;
            case 16: if (extract_patch_rgb<16>(img, width, cx, cy, dst)) return; break;
            default: break;
        }
    }
    const float hp = static_cast<float>(p) / 2.0f;
    const int row_len = p * channels;
    constexpr int kStack = 16 * 4;  // p * C up to this uses the stack (no allocation per patch)
    float wx_stack[kStack], dx_stack[kStack];
    int off_stack[kStack];
    std::vector<float> wx_heap, dx_heap;
    std::vector<int> off_heap;
    float* __restrict wx = wx_stack;
    float* __restrict dx = dx_stack;
    int* off = off_stack;
    if (row_len > kStack) {
        wx_heap.resize(static_cast<size_t>(row_len));
        dx_heap.resize(static_cast<size_t>(row_len));
        off_heap.resize(static_cast<size_t>(row_len));
        wx = wx_heap.data();
        dx = dx_heap.data();
        off = off_heap.data();
    }
    bool contiguous = true;
    int x_first = 0;
    for (int c = 0; c < p; ++c) {
        const float x = cx + ((static_cast<float>(c) - hp) + 0.5f);
        const int x0 = static_cast<int>(x);
        const float d = x - static_cast<float>(x0);
        if (c == 0) x_first = x0;
        contiguous = contiguous && (x0 == x_first + c);
        for (int k = 0; k < channels; ++k) {
            wx[c * channels + k] = 1.0f - d;
            dx[c * channels + k] = d;
            off[c * channels + k] = x0 * channels + k;
        }
    }
    const size_t row_stride = static_cast<size_t>(width) * channels;
    for (int r = 0; r < p; ++r) {
        const float y = cy + ((static_cast<float>(r) - hp) + 0.5f);
        const int y0 = static_cast<int>(y);
        const float dy = y - static_cast<float>(y0);
        const float wy = 1.0f - dy;
        const uint8_t* row0 = img + static_cast<size_t>(y0) * row_stride;
        const uint8_t* row1 = row0 + row_stride;
        uint8_t* __restrict out = dst + static_cast<size_t>(r) * row_len;
        if (contiguous) {
            const uint8_t* __restrict a = row0 + static_cast<size_t>(x_first) * channels;
            const uint8_t* __restrict b = row1 + static_cast<size_t>(x_first) * channels;
            const uint8_t* __restrict a1 = a + channels;
            const uint8_t* __restrict b1 = b + channels;
            for (int j = 0; j < row_len; ++j) {
                float v = static_cast<float>(a[j]) * wx[j] * wy;
                v = v + static_cast<float>(a1[j]) * dx[j] * wy;
                v = v + static_cast<float>(b[j]) * wx[j] * dy;
                v = v + static_cast<float>(b1[j]) * dx[j] * dy;
                out[j] = round_to_u8(v);
            }
        } else {
            for (int j = 0; j < row_len; ++j) {
                const int o = off[j];
                float v = static_cast<float>(row0[o]) * wx[j] * wy;
                v = v + static_cast<float>(row0[o + channels]) * dx[j] * wy;
                v = v + static_cast<float>(row1[o]) * wx[j] * dy;
                v = v + static_cast<float>(row1[o + channels]) * dx[j] * dy;
                out[j] = round_to_u8(v);
            }
        }
    }
}

// Reads the first and last byte of every image row a patch will read and returns their sum (so the reads are
// not optimised away). On images larger than the caches, a pass of these independent loads over all patches
// brings the rows in with many cache misses in flight; the extraction that follows then finds them cached
// (measured: about 2x faster on 4096^2 RGB than extraction alone; software prefetch hints gave nothing).
inline unsigned touch_patch_rows(const uint8_t* img, int width, int channels, float cx, float cy, int p) {
    const int x0 = static_cast<int>(cx - static_cast<float>(p) / 2.0f);
    const int y0 = static_cast<int>(cy - static_cast<float>(p) / 2.0f);
    const size_t row_stride = static_cast<size_t>(width) * channels;
    const size_t last = static_cast<size_t>(p + 1) * channels - 1;
    unsigned sum = 0;
    for (int r = 0; r <= p; ++r) {
        const uint8_t* row = img + static_cast<size_t>(y0 + r) * row_stride + static_cast<size_t>(x0) * channels;
        sum += row[0] + row[last];
    }
    return sum;
}

// One patch: the explicit-SIMD path where the CPU has it (RGB, sizes 8 and 16), else extract_patch.
inline void extract_one(const uint8_t* img, int width, int channels, float cx, float cy, int p, bool simd,
                        uint8_t* dst) {
#ifdef FLIPSAMPLER_HAVE_X86_SIMD
    if (simd) {
        if (p == 16 ? extract_patch_rgb_avx2<16>(img, width, cx, cy, dst)
                    : extract_patch_rgb_avx2<8>(img, width, cx, cy, dst))
            return;
    }
#else
    (void)simd;
#endif
    extract_patch(img, width, channels, cx, cy, p, dst);
}

// Extracts n patches (centres xy interleaved, all in bounds) into out (n * p * p * C bytes, input order). On images
// larger than the caches the patches are visited in row order of their centres (neighbouring patches reuse cached
// image rows) after a pass that touches their rows (see touch_patch_rows); the visiting order changes no output.
// order: scratch space. use_simd=false forces the portable kernels (tests compare both paths).
inline void extract_many(const uint8_t* img, int width, int height, int channels, const float* centers, size_t n,
                         int p, uint8_t* out, std::vector<uint64_t>& order, bool use_simd = true) {
    const size_t stride = static_cast<size_t>(p) * p * channels;
#ifdef FLIPSAMPLER_HAVE_X86_SIMD
    const bool simd = use_simd && channels == 3 && (p == 8 || p == 16) && cpu_has_avx2();
#else
    const bool simd = false;
    (void)use_simd;
#endif
    constexpr size_t kCacheBytes = size_t{4} << 20;
    if (static_cast<size_t>(width) * height * channels <= kCacheBytes) {
        for (size_t i = 0; i < n; ++i)
            extract_one(img, width, channels, centers[2 * i], centers[2 * i + 1], p, simd, out + i * stride);
        return;
    }
    // Sort key: the centre's y (non-negative float: its bits order like the value) above the index.
    order.resize(n);
    for (size_t i = 0; i < n; ++i) {
        uint32_t ybits;
        std::memcpy(&ybits, &centers[2 * i + 1], sizeof ybits);
        order[i] = (static_cast<uint64_t>(ybits) << 32) | static_cast<uint32_t>(i);
    }
    std::sort(order.begin(), order.end());
    unsigned touched = 0;
    for (size_t k = 0; k < n; ++k) {
        const uint32_t j = static_cast<uint32_t>(order[k]);
        touched += touch_patch_rows(img, width, channels, centers[2 * j], centers[2 * j + 1], p);
    }
    volatile unsigned sink = touched;  // keeps the touching loads
    (void)sink;
    for (size_t k = 0; k < n; ++k) {
        const uint32_t i = static_cast<uint32_t>(order[k]);
        extract_one(img, width, channels, centers[2 * i], centers[2 * i + 1], p, simd, out + i * stride);
    }
}

}  // namespace flipsampler
