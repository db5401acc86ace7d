// Bilinear weights of an RGB patch (official rule, float32, no FMA), shared by the portable and the SIMD kernels.
#pragma once

#include <cstddef>
#include <cstdint>

namespace flipsampler {

// Weights of an RGB patch of compile-time size P centred at (cx, cy) (C-sampler pixel frame): column c samples
// x = cx + ((c - P/2) + 0.5) between pixels x0 = (int)x and x0 + 1 with weights 1 - dx and dx, rows likewise.
// Column weights are expanded per output byte of a row (3 channels). set() returns false when the columns' or the
// rows' left/top neighbours are not consecutive pixels (the callers' generic path handles that case).
template <int P>
struct RgbPatchWeights {
    static constexpr int kLen = P * 3;
    alignas(32) float wx[kLen], dx[kLen];
    float wy[P], dy[P];
    int x_first = 0, y_first = 0;

    bool set(float cx, float cy) {
        const float hp = static_cast<float>(P) / 2.0f;
        for (int c = 0; c < P; ++c) {
            const float x = cx + ((static_cast<float>(c) - hp) + 0.5f);
            const int x0 = static_cast<int>(x);
            const float d = x - static_cast<float>(x0);
            if (c == 0) x_first = x0;
            if (x0 != x_first + c) return false;
            for (int k = 0; k < 3; ++k) {
                wx[c * 3 + k] = 1.0f - d;
                dx[c * 3 + k] = d;
            }
        }
        for (int r = 0; r < P; ++r) {
            const float y = cy + ((static_cast<float>(r) - hp) + 0.5f);
            const int y0 = static_cast<int>(y);
            if (r == 0) y_first = y0;
            if (y0 != y_first + r) return false;
            dy[r] = y - static_cast<float>(y0);
            wy[r] = 1.0f - dy[r];
        }
        return true;
    }

    // The patch's top-left source pixel in an RGB image of the given width.
    const uint8_t* origin(const uint8_t* img, int width) const {
        return img + (static_cast<size_t>(y_first) * static_cast<size_t>(width) + static_cast<size_t>(x_first)) * 3;
    }
};

}  // namespace flipsampler
