// KISS + ziggurat random numbers (the official FLIP generator), as object state: no globals, thread-safe.
// Mirrors benchmark/flip/sampler_reference.KissZiggurat operation by operation (bit-identical streams).
#pragma once

#include <array>
#include <cmath>
#include <cstdint>

namespace flipsampler {

// ------------------------------------------------------------------------------------------------------------
// KISS + ziggurat generator (Marsaglia & Tsang 2000, 128 strips; KISS as in Leong et al. 2005)
// ------------------------------------------------------------------------------------------------------------
struct ZigguratTables {
    uint32_t kn[128];
    float wn[128];
    float fn[128];
};

inline ZigguratTables make_ziggurat_tables() {
    ZigguratTables t{};
    double dn = 3.442619855899;
    double tn = dn;
    const double vn = 9.91256303526217e-03;
    const double m1 = 2147483648.0;
    const double q = vn / std::exp(-0.5 * dn * dn);
    t.kn[0] = static_cast<uint32_t>((dn / q) * m1);
    t.kn[1] = 0;
    t.wn[0] = static_cast<float>(q / m1);
    t.wn[127] = static_cast<float>(dn / m1);
    t.fn[0] = 1.0f;
    t.fn[127] = static_cast<float>(std::exp(-0.5 * dn * dn));
    for (int i = 126; i >= 1; --i) {
        dn = std::sqrt(-2.0 * std::log(vn / dn + std::exp(-0.5 * dn * dn)));
        t.kn[i + 1] = static_cast<uint32_t>((dn / tn) * m1);
        tn = dn;
        t.fn[i] = static_cast<float>(std::exp(-0.5 * dn * dn));
        t.wn[i] = static_cast<float>(dn / m1);
    }
    return t;
}

inline const ZigguratTables& ziggurat_tables() {
    static const ZigguratTables tables = make_ziggurat_tables();  // thread-safe one-time init, read-only after
    return tables;
}

using RngState = std::array<uint32_t, 4>;  // (jsr, jcong, w, z)

inline RngState seed_to_state(uint32_t seed) {
    return {seed ^ 0xCAFEBABEu, seed * 69069u + 1234567u, seed * 1664525u + 1013904223u, seed * 18000u + 987654321u};
}

class KissZiggurat {
  public:
    explicit KissZiggurat(const RngState& s) : jsr_(s[0]), jcong_(s[1]), w_(s[2]), z_(s[3]), t_(ziggurat_tables()) {}

    uint32_t shr3() {
        const uint32_t jz = jsr_;
        jsr_ ^= jsr_ << 13;
        jsr_ ^= jsr_ >> 17;
        jsr_ ^= jsr_ << 5;
        return jz + jsr_;
    }

    uint32_t kiss() {
        z_ = 36969u * (z_ & 65535u) + (z_ >> 16);
        w_ = 18000u * (w_ & 65535u) + (w_ >> 16);
        const uint32_t mwc = (z_ << 16) + w_;
        jcong_ = 69069u * jcong_ + 1234567u;
        return (mwc ^ jcong_) + shr3();
    }

    double uni64() { return 0.5 + static_cast<double>(static_cast<int32_t>(kiss())) * 0.2328306e-09; }
    float uniform() { return static_cast<float>(uni64()); }

    float normal() {
        const int32_t hz = static_cast<int32_t>(kiss());
        const uint32_t iz = static_cast<uint32_t>(hz) & 127u;
        if (std::fabs(static_cast<double>(hz)) < static_cast<double>(t_.kn[iz])) {
            return static_cast<float>(hz) * t_.wn[iz];
        }
        return nfix(hz, iz);
    }

  private:
    float nfix(int32_t hz, uint32_t iz) {
        const float r = 3.442620f;
        for (;;) {
            float x = static_cast<float>(hz) * t_.wn[iz];
            if (iz == 0) {
                float y;
                do {
                    x = static_cast<float>(-std::log(uni64()) * 0.2904764);
                    y = static_cast<float>(-std::log(uni64()));
                } while (y + y < x * x);
                return hz > 0 ? r + x : -r - x;
            }
            const double wedge = static_cast<double>(t_.fn[iz]) + uni64() * static_cast<double>(t_.fn[iz - 1] - t_.fn[iz]);
            if (wedge < std::exp(-0.5 * static_cast<double>(x) * static_cast<double>(x))) return x;
            hz = static_cast<int32_t>(kiss());
            iz = static_cast<uint32_t>(hz) & 127u;
            if (std::fabs(static_cast<double>(hz)) < static_cast<double>(t_.kn[iz])) {
                return static_cast<float>(hz) * t_.wn[iz];
            }
        }
    }

    uint32_t jsr_, jcong_, w_, z_;
    const ZigguratTables& t_;
};

}  // namespace flipsampler
