// rho -> position, pixel-frame sampler parameters and the per-size patch budget (official FLIP arithmetic).
// Mirrors benchmark/flip/sampler_reference (rho_to_position, sampler_params_px, plan_patches). Build with
// -ffp-contract=off: the only fused operations are the explicit std::fma calls.
#pragma once

#include <cmath>
#include <cstdint>
#include <vector>

namespace flipsampler {

// ------------------------------------------------------------------------------------------------------------
// rho -> position (normalized frame)
// ------------------------------------------------------------------------------------------------------------
inline void rho_to_position(const float* rho, float* out, bool fix_axis_aligned) {
    const float vx = rho[2], vy = rho[3], cxy = rho[4];
    const float tiny = 1e-16f;
    const float d = vx - vy;
    const float s = vx + vy;
    const float term = std::sqrt(std::fmax(std::fma(d, d, 4.0f * (cxy * cxy)), tiny));
    const float sigma_minor = std::sqrt(std::fmax((s - term) * 0.5f, tiny));
    const float sigma_major = std::sqrt(std::fmax((s + term) * 0.5f, tiny));
    const float a0 = (cxy + cxy) / std::fmax(d + term, tiny);
    const float scale = std::sqrt(std::fmax(std::fma(a0, a0, 1.0f), tiny));
    float rot_b = 1.0f / scale;
    float rot_a = a0 * rot_b;
    if (fix_axis_aligned && cxy == 0.0f && vy > vx) {
        rot_a = 1.0f;
        rot_b = 0.0f;
    }
    out[0] = rho[0];
    out[1] = rho[1];
    out[2] = sigma_minor;
    out[3] = sigma_major;
    out[4] = rot_a;
    out[5] = rot_b;
}

// Sampler parameters in the C-sampler pixel frame (see sampler_reference.sampler_params_px).
struct GaussPx {
    float mu_x, mu_y, s_x, s_y, rot_a, rot_b;
};

inline GaussPx sampler_params_px(const float* p, int height, int width) {
    const float w = static_cast<float>(width), h = static_cast<float>(height);
    const float sqrt2 = std::sqrt(2.0f);
    GaussPx g{};
    g.mu_x = (p[0] + 1.0f) * w / 2.0f;
    g.mu_y = (p[1] + 1.0f) * h / 2.0f;
    g.s_x = (p[2] * sqrt2) * w / 2.0f;
    g.s_y = (p[3] * sqrt2) * h / 2.0f;
    float ra = -p[4], rb = p[5];
    const float ss = ra * ra + rb * rb;
    const float scale = static_cast<float>(std::sqrt(static_cast<double>(ss)));
    if (scale > 1e-16f) {
        ra = ra / scale;
        rb = rb / scale;
    }
    g.rot_a = ra;
    g.rot_b = rb;
    return g;
}

// ------------------------------------------------------------------------------------------------------------
// Patch budget (coarse to fine)
// ------------------------------------------------------------------------------------------------------------
inline std::vector<int32_t> plan_patches(float sx, float sy, int num_tokens, const std::vector<int>& sizes,
                                         float coverage) {
    const float area = static_cast<float>(2.0 * M_PI * static_cast<double>(sx) * static_cast<double>(sy));
    std::vector<int32_t> out(sizes.size(), 0);
    int remaining = num_tokens;
    for (int i = static_cast<int>(sizes.size()) - 1; i >= 0; --i) {
        const float p = static_cast<float>(sizes[i]);
        const float avg = (area * coverage) / (p * p);
        const float rem = static_cast<float>(remaining);
        const float n = avg < rem ? avg : rem;
        const int32_t ni = n > 0.0f ? static_cast<int32_t>(n) : 0;
        out[i] = ni;
        remaining -= ni;
    }
    return out;
}

}  // namespace flipsampler
