// Training-side helpers of FLIP: boundary-distance groups of mask pixels and sparse mask-pixel sampling.
// Mirrors benchmark/flip/sampler_reference (boundary_distance_map, boundary_distance_groups, sample_mask_pixels).
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>
#include "flip_rng.hpp"

namespace flipsampler {

// ------------------------------------------------------------------------------------------------------------
// Training-side helpers: boundary distance (exact L1 transform) and mask-pixel sampling
// ------------------------------------------------------------------------------------------------------------
inline std::vector<int32_t> boundary_distance_map(const uint8_t* m, int h, int w) {
    const size_t n = static_cast<size_t>(h) * w;
    const int64_t big = 4LL * (h + w) + 4;
    std::vector<int64_t> g(n, big);
    bool any = false;
    for (int i = 0; i < h; ++i) {
        for (int j = 0; j < w; ++j) {
            const bool v = m[static_cast<size_t>(i) * w + j] != 0;
            const bool seed = (i > 0 && (m[static_cast<size_t>(i - 1) * w + j] != 0) != v) ||
                              (i + 1 < h && (m[static_cast<size_t>(i + 1) * w + j] != 0) != v) ||
                              (j > 0 && (m[static_cast<size_t>(i) * w + j - 1] != 0) != v) ||
                              (j + 1 < w && (m[static_cast<size_t>(i) * w + j + 1] != 0) != v);
            if (seed) {
                g[static_cast<size_t>(i) * w + j] = 0;
                any = true;
            }
        }
    }
    std::vector<int32_t> out(n, h + w);
    if (!any) return out;
    for (int i = 0; i < h; ++i) {
        int64_t* row = g.data() + static_cast<size_t>(i) * w;
        for (int j = 1; j < w; ++j) row[j] = std::min(row[j], row[j - 1] + 1);
        for (int j = w - 2; j >= 0; --j) row[j] = std::min(row[j], row[j + 1] + 1);
    }
    for (int i = 1; i < h; ++i)
        for (int j = 0; j < w; ++j)
            g[static_cast<size_t>(i) * w + j] =
                std::min(g[static_cast<size_t>(i) * w + j], g[static_cast<size_t>(i - 1) * w + j] + 1);
    for (int i = h - 2; i >= 0; --i)
        for (int j = 0; j < w; ++j)
            g[static_cast<size_t>(i) * w + j] =
                std::min(g[static_cast<size_t>(i) * w + j], g[static_cast<size_t>(i + 1) * w + j] + 1);
    for (size_t k = 0; k < n; ++k) out[k] = static_cast<int32_t>(g[k]);
    return out;
}

constexpr int kMaskGroups = 7;

struct MaskGroups {
    std::array<std::vector<float>, kMaskGroups> inside, outside;  // x0, y0, x1, y1, ...
};

// m: row-major crop of the mask (stride = full width), size h x w.
inline MaskGroups boundary_distance_groups(const uint8_t* m, int h, int w, int stride) {
    std::vector<uint8_t> crop(static_cast<size_t>(h) * w);
    for (int i = 0; i < h; ++i)
        for (int j = 0; j < w; ++j) crop[static_cast<size_t>(i) * w + j] = m[static_cast<size_t>(i) * stride + j] != 0;
    const std::vector<int32_t> dist = boundary_distance_map(crop.data(), h, w);
    const int64_t bounds[kMaskGroups] = {2, 4, 8, 16, 32, 64, static_cast<int64_t>(h) * w};
    MaskGroups out;
    for (int i = 0; i < h; ++i) {
        for (int j = 0; j < w; ++j) {
            const size_t k = static_cast<size_t>(i) * w + j;
            auto& groups = crop[k] ? out.inside : out.outside;
            for (int gi = 0; gi < kMaskGroups; ++gi) {
                if (dist[k] <= bounds[gi]) {
                    groups[gi].push_back(static_cast<float>(j));
                    groups[gi].push_back(static_cast<float>(i));
                }
            }
        }
    }
    return out;
}

struct MaskSample {
    std::vector<uint8_t> values;
    std::vector<float> coords;  // model frame, x0, y0, ...
};

// Throws std::invalid_argument when the crop misses the mask or lacks a needed kind of pixel.
inline MaskSample sample_mask_pixels(const uint8_t* mask, int height, int width, const float* position,
                                     const std::array<int, kMaskGroups>& per_group, const RngState& state) {
    const float mu_x = static_cast<float>((static_cast<double>(position[0]) + 1) * width / 2);
    const float mu_y = static_cast<float>((static_cast<double>(position[1]) + 1) * height / 2);
    const float s_x = static_cast<float>(static_cast<double>(position[2]) * width / 2);
    const float s_y = static_cast<float>(static_cast<double>(position[3]) * height / 2);
    const float s = s_x > s_y ? s_x : s_y;
    const float lo_x = std::floor(mu_x - 5.0f * s), lo_y = std::floor(mu_y - 5.0f * s);
    const float hi_x = std::ceil(mu_x + 5.0f * s), hi_y = std::ceil(mu_y + 5.0f * s);
    if (!(std::isfinite(lo_x) && std::isfinite(lo_y) && std::isfinite(hi_x) && std::isfinite(hi_y)))
        throw std::invalid_argument("non-finite crop box (check the position)");
    int x_min = static_cast<int>(std::max(0.0, std::min(static_cast<double>(lo_x), static_cast<double>(width))));
    int y_min = static_cast<int>(std::max(0.0, std::min(static_cast<double>(lo_y), static_cast<double>(height))));
    int x_max = static_cast<int>(std::min(static_cast<double>(width - 1), std::max(static_cast<double>(hi_x), -1.0)));
    int y_max = static_cast<int>(std::min(static_cast<double>(height - 1), std::max(static_cast<double>(hi_y), -1.0)));
    if (x_max - x_min + 1 <= 0 || y_max - y_min + 1 <= 0)
        throw std::invalid_argument("the 5-sigma box around the object misses the mask");
    if (x_max - x_min + 1 > width * 0.9 && y_max - y_min + 1 > height * 0.9) {
        x_min = 0;
        y_min = 0;
        x_max = width - 1;
        y_max = height - 1;
    }
    const MaskGroups groups = boundary_distance_groups(mask + static_cast<size_t>(y_min) * width + x_min,
                                                       y_max - y_min + 1, x_max - x_min + 1, width);
    KissZiggurat rng(state);
    MaskSample out;
    const float fx = static_cast<float>(x_min), fy = static_cast<float>(y_min);
    const float ox = static_cast<float>(width) / 256.0f, oy = static_cast<float>(height) / 256.0f;
    for (int g = 0; g < kMaskGroups; ++g) {
        const int need = per_group[g];
        for (int is_inside = 1; is_inside >= 0; --is_inside) {
            const int todo = is_inside ? need / 2 : need - need / 2;
            const auto& src_groups = is_inside ? groups.inside : groups.outside;
            int got = 0;
            for (int offset = 0; offset < kMaskGroups && got < todo; ++offset) {
                for (int src : {g - offset, g + offset}) {
                    if (src < 0 || src >= kMaskGroups || got >= todo || src_groups[src].empty()) continue;
                    const std::vector<float>& pts = src_groups[src];
                    const uint32_t count = static_cast<uint32_t>(pts.size() / 2);
                    for (int k = got; k < todo; ++k) {
                        const uint32_t idx = rng.shr3() % count;
                        const float px = rng.uniform() - 0.5f;
                        const float py = rng.uniform() - 0.5f;
                        const float x = (pts[2 * idx] + px) + fx;
                        const float y = (pts[2 * idx + 1] + py) + fy;
                        out.values.push_back(static_cast<uint8_t>(is_inside));
                        out.coords.push_back(x / 128.0f - ox);
                        out.coords.push_back(y / 128.0f - oy);
                    }
                    got = todo;
                }
            }
            if (got < todo)
                throw std::invalid_argument(std::string("no mask pixel ") + (is_inside ? "inside" : "outside") +
                                            " the object in the sampling crop");
        }
    }
    return out;
}

}  // namespace flipsampler
