// FLIP foveal patch sampler: candidate stream and per-object sampling loop (re-implementation of the official
// FLIP ext/ sampler). The executable specification is benchmark/flip/sampler_reference.py; every step follows it
// operation by operation so that the two agree bit-for-bit. Build with -ffp-contract=off (no implicit fused
// multiply-add): the only fused operations are explicit std::fma calls, which the Python side emulates exactly.
//
// Frames: C-sampler pixel frame = continuous pixel coordinates, pixel (row i, col j) at (x=j, y=i);
// model frame = (x / 128 - W / 256, y / 128 - H / 256). All state lives in objects: no globals, thread-safe.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>
#include "flip_extract.hpp"
#include "flip_overlap.hpp"
#include "flip_params.hpp"
#include "flip_rng.hpp"

namespace flipsampler {

// ------------------------------------------------------------------------------------------------------------
// Sampler
// ------------------------------------------------------------------------------------------------------------
struct ObjectSample {
    std::vector<std::vector<float>> centers;  // per size: x0, y0, x1, y1, ... (C-sampler pixel frame)
    std::vector<int32_t> planned;
};

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
#define FLIPSAMPLER_FMA_CLONES __attribute__((target_clones("fma", "default")))
#else
#define FLIPSAMPLER_FMA_CLONES
#endif

constexpr int kGaussBuffer = 256;
constexpr int kGaussRefillAt = 240;

class CandidateStream {
  public:
    CandidateStream(KissZiggurat& rng, const GaussPx& g) : rng_(rng), g_(g) { fill(); }

    void next(float* x, float* y) {
        if (pos_ >= kGaussRefillAt) fill();
        *x = xs_[pos_];
        *y = ys_[pos_];
        ++pos_;
    }

  private:
    // The FMA clone inlines std::fma as one instruction; the default one calls libm's exact fmaf (same results).
    FLIPSAMPLER_FMA_CLONES void fill() {
        for (int i = 0; i < kGaussBuffer; ++i) {
            float zx = rng_.normal();
            float zy = rng_.normal();
            zx = zx * g_.s_x;
            zy = zy * g_.s_y;
            // These fused operations reproduce the official (-O3 -march=native) build on the reference cases.
            xs_[i] = std::fma(-g_.rot_b, zy, std::fma(g_.rot_a, zx, g_.mu_x));
            ys_[i] = std::fma(g_.rot_b, zx, g_.rot_a * zy) + g_.mu_y;
        }
        pos_ = 0;
    }

    KissZiggurat& rng_;
    GaussPx g_;
    float xs_[kGaussBuffer];
    float ys_[kGaussBuffer];
    int pos_ = 0;
};

// grid: scratch space, reset here (pass the same grid for every object of a thread: no allocation once warm).
inline ObjectSample sample_centers(int height, int width, const GaussPx& g, int num_tokens,
                                   const std::vector<int>& sizes, float coverage, float threshold,
                                   const RngState& state, OverlapGrid& grid) {
    ObjectSample out;
    out.planned = plan_patches(g.s_x, g.s_y, num_tokens, sizes, coverage);
    const size_t most = static_cast<size_t>(
        std::max_element(out.planned.begin(), out.planned.end()) - out.planned.begin());
    grid.reset(static_cast<float>(sizes[most]) / 2.0f, width, height);
    KissZiggurat rng(state);
    CandidateStream stream(rng, g);
    out.centers.resize(sizes.size());
    for (size_t si = 0; si < sizes.size(); ++si) {
        const int p = sizes[si];
        const int target = out.planned[si];
        const long long max_attempts = 10LL * target;
        std::vector<float>& acc = out.centers[si];
        acc.reserve(2 * static_cast<size_t>(target));
        int count = 0;
        for (long long attempts = 0; count < target && attempts < max_attempts; ++attempts) {
            float x, y;
            stream.next(&x, &y);
            if (!center_in_bounds(x, y, p, height, width)) continue;
            if (grid.too_much_overlap(x, y, p, threshold)) continue;
            grid.add(x, y, p);
            acc.push_back(x);
            acc.push_back(y);
            ++count;
        }
    }
    return out;
}

}  // namespace flipsampler
