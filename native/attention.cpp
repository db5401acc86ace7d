// Fused multi-head cross-attention of FLIP's pixel predictor on the CPU: module benchmark.flip._attention_native.
// Called through benchmark/flip/fast_decoder.py, which builds the layouts below; the checks here only guard memory
// safety. Per (run of query rows of one object, head) and tiles of up to 6 query rows:
//   scores = (q . K^T) * scale (+ per-key bias)  -> 6 x Tp block kept in a thread-local buffer (L1/L2),
//   p = exp(scores - row max) (two passes over the object's keys), out = (p . V) / sum(p).
// Register blocking: QK^T 6 rows x 16 keys (12 ymm accumulators), PV 6 rows x 16 value columns (12 accumulators).
// The exponential is Cephes' expf (range reduction + degree-6 polynomial, about 1 ulp), so results equal PyTorch's
// SDPA within float32 rounding. AVX2 + FMA only, selected per function (no -march flags) and checked at run time:
// supported() is false elsewhere and the caller uses SDPA. Never compiled with -ffast-math.
// Heavy work runs with the GIL released; no global mutable state, so calls from several threads are safe.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#if (defined(__x86_64__) || defined(__i386__)) && defined(__GNUC__)
#define FLIP_X86_KERNEL 1
#include <immintrin.h>
#endif

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <exception>
#include <limits>
#include <mutex>
#include <stdexcept>
#include <thread>
#include <vector>

namespace py = pybind11;

namespace {

constexpr int kTileRows = 6;   // query rows per register tile
constexpr int kKeyBlock = 16;  // keys per QK^T register tile (2 ymm); Tp is a multiple of it
constexpr int kBlockRows = 48; // query rows per work item (thread scheduling granularity)

struct Problem {
    const float* q;        // [n, q_stride]; head h of row r at q + r * q_stride + h * q_head
    int64_t q_stride, q_head;
    const float* keys_t;   // [B, H, Dk, Tp]: keys transposed, zero beyond each object's length
    const float* values;   // [B, H, Tp, Dv]
    const float* bias;     // [B, H, Tp] added to the scaled scores, or nullptr
    const int64_t* lengths;  // [B] keys per object (<= Tp)
    float* out;            // [n, H * Dv]
    int64_t heads, dk, dv, tp;
    float scale;
};

struct WorkItem {
    int64_t object, head, row0, rows;
};

#ifdef FLIP_X86_KERNEL
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2,fma"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx2,fma")
#endif

// exp on 8 lanes for x <= 0 (scores minus their row maximum), within about 1 ulp: x = n ln2 + r (Cody-Waite, two
// constants), exp(r) = 1 + r P5(r) on |r| <= ln2/2 (coefficients: a relative-error minimax fit, max error 2e-9 in
// exact arithmetic; 1.04 ulp evaluated in float32 over [-80, 0]), times 2^n added to the exponent bits.
// Below x = -80 the result is 0 (exp(-80) = 1.8e-35 against a row sum >= 1: nothing a float32 sum can see; it
// keeps P.V free of subnormal products), -inf (the masked padding keys) included.
// n is rounded by the magic number 1.5 * 2^23: t = x log2(e) + magic holds n in its low mantissa bits.
inline __m256 exp256(__m256 x) {
    const __m256 magic = _mm256_set1_ps(12582912.0f);
    const __m256 lo = _mm256_set1_ps(-80.0f);
    const __m256 underflow = _mm256_cmp_ps(x, lo, _CMP_LT_OQ);
    x = _mm256_max_ps(x, lo);
    const __m256 t = _mm256_fmadd_ps(x, _mm256_set1_ps(1.44269504088896341f), magic);
    const __m256 n = _mm256_sub_ps(t, magic);  // round(x log2 e), exact
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
    __m256 y = _mm256_set1_ps(0.0013843649066984653f);
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(0.008374156430363655f));
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(0.04166800156235695f));
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(0.16666431725025177f));
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(0.4999999403953552f));
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(1.0f));
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(1.0f));  // exp(r) in [0.70, 1.42]
    // + n << 23 (mod 2^32: n's two's complement sits in t's low bits) scales by 2^n
    const __m256 e = _mm256_castsi256_ps(
        _mm256_add_epi32(_mm256_castps_si256(y), _mm256_slli_epi32(_mm256_castps_si256(t), 23)));
    return _mm256_andnot_ps(underflow, e);
}

inline float hmax(__m256 v) {
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    m = _mm_max_ss(m, _mm_shuffle_ps(m, m, 1));
    return _mm_cvtss_f32(m);
}

inline float hsum(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
    return _mm_cvtss_f32(s);
}

// One row of scores [tq] (tq a multiple of 16; keys t.. are padding) -> exp(score - max) in place; returns the sum.
// Four independent accumulators / exponentials in flight: the max and sum chains and the exp's long dependency
// chain would otherwise bound the loop by latency.
inline float softmax_row(float* s, int64_t t, int64_t tq) {
    const float neg_inf = -std::numeric_limits<float>::infinity();
    std::fill(s + t, s + tq, neg_inf);
    __m256 m0 = _mm256_set1_ps(neg_inf), m1 = m0, m2 = m0, m3 = m0;
    int64_t j = 0;
    for (; j + 32 <= tq; j += 32) {
        m0 = _mm256_max_ps(m0, _mm256_loadu_ps(s + j));
        m1 = _mm256_max_ps(m1, _mm256_loadu_ps(s + j + 8));
        m2 = _mm256_max_ps(m2, _mm256_loadu_ps(s + j + 16));
        m3 = _mm256_max_ps(m3, _mm256_loadu_ps(s + j + 24));
    }
    for (; j < tq; j += 16) {
        m0 = _mm256_max_ps(m0, _mm256_loadu_ps(s + j));
        m1 = _mm256_max_ps(m1, _mm256_loadu_ps(s + j + 8));
    }
    const __m256 mx = _mm256_set1_ps(hmax(_mm256_max_ps(_mm256_max_ps(m0, m1), _mm256_max_ps(m2, m3))));
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    j = 0;
    for (; j + 32 <= tq; j += 32) {
        const __m256 e0 = exp256(_mm256_sub_ps(_mm256_loadu_ps(s + j), mx));
        const __m256 e1 = exp256(_mm256_sub_ps(_mm256_loadu_ps(s + j + 8), mx));
        const __m256 e2 = exp256(_mm256_sub_ps(_mm256_loadu_ps(s + j + 16), mx));
        const __m256 e3 = exp256(_mm256_sub_ps(_mm256_loadu_ps(s + j + 24), mx));
        _mm256_storeu_ps(s + j, e0);
        _mm256_storeu_ps(s + j + 8, e1);
        _mm256_storeu_ps(s + j + 16, e2);
        _mm256_storeu_ps(s + j + 24, e3);
        a0 = _mm256_add_ps(a0, e0);
        a1 = _mm256_add_ps(a1, e1);
        a2 = _mm256_add_ps(a2, e2);
        a3 = _mm256_add_ps(a3, e3);
    }
    for (; j < tq; j += 16) {
        const __m256 e0 = exp256(_mm256_sub_ps(_mm256_loadu_ps(s + j), mx));
        const __m256 e1 = exp256(_mm256_sub_ps(_mm256_loadu_ps(s + j + 8), mx));
        _mm256_storeu_ps(s + j, e0);
        _mm256_storeu_ps(s + j + 8, e1);
        a0 = _mm256_add_ps(a0, e0);
        a1 = _mm256_add_ps(a1, e1);
    }
    return hsum(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
}

// scores[i][j:j+16] = (q_i . K^T[:, j:j+16]) * scale (+ bias[j:j+16]) for the M rows of a tile.
template <int M>
inline void qk_tile(const float* const* q, const float* kt, int64_t tp, int64_t dk, float scale, const float* bias,
                    float* scores, int64_t j) {
    __m256 acc[M][2];
    for (int i = 0; i < M; ++i) acc[i][0] = acc[i][1] = _mm256_setzero_ps();
    const float* col = kt + j;
    for (int64_t d = 0; d < dk; ++d, col += tp) {
        const __m256 k0 = _mm256_loadu_ps(col), k1 = _mm256_loadu_ps(col + 8);
        for (int i = 0; i < M; ++i) {
            const __m256 qv = _mm256_broadcast_ss(q[i] + d);
            acc[i][0] = _mm256_fmadd_ps(qv, k0, acc[i][0]);
            acc[i][1] = _mm256_fmadd_ps(qv, k1, acc[i][1]);
        }
    }
    const __m256 s = _mm256_set1_ps(scale);
    if (scale == 1.0f && !bias) {  // the caller folded a power-of-two scale into K^T (exact)
        for (int i = 0; i < M; ++i) {
            _mm256_storeu_ps(scores + i * tp + j, acc[i][0]);
            _mm256_storeu_ps(scores + i * tp + j + 8, acc[i][1]);
        }
    } else if (bias) {
        const __m256 b0 = _mm256_loadu_ps(bias + j), b1 = _mm256_loadu_ps(bias + j + 8);
        for (int i = 0; i < M; ++i) {
            _mm256_storeu_ps(scores + i * tp + j, _mm256_add_ps(_mm256_mul_ps(acc[i][0], s), b0));
            _mm256_storeu_ps(scores + i * tp + j + 8, _mm256_add_ps(_mm256_mul_ps(acc[i][1], s), b1));
        }
    } else {
        for (int i = 0; i < M; ++i) {
            _mm256_storeu_ps(scores + i * tp + j, _mm256_mul_ps(acc[i][0], s));
            _mm256_storeu_ps(scores + i * tp + j + 8, _mm256_mul_ps(acc[i][1], s));
        }
    }
}

// out_i[c:c+8*NV] = (sum_k p_i[k] V[k, c:c+8*NV]) / sum_i for the M rows of a tile (keys 0..t-1).
template <int M, int NV>
inline void pv_tile(const float* p, int64_t tp, const float* v, int64_t dv, int64_t t, const float* sums,
                    float* const* out, int64_t c) {
    __m256 acc[M][NV];
    for (int i = 0; i < M; ++i)
        for (int n = 0; n < NV; ++n) acc[i][n] = _mm256_setzero_ps();
    const float* row = v + c;
    for (int64_t k = 0; k < t; ++k, row += dv) {
        __m256 vk[NV];
        for (int n = 0; n < NV; ++n) vk[n] = _mm256_loadu_ps(row + 8 * n);
        for (int i = 0; i < M; ++i) {
            const __m256 pb = _mm256_broadcast_ss(p + i * tp + k);
            for (int n = 0; n < NV; ++n) acc[i][n] = _mm256_fmadd_ps(pb, vk[n], acc[i][n]);
        }
    }
    for (int i = 0; i < M; ++i) {
        const __m256 sum = _mm256_set1_ps(sums[i]);
        for (int n = 0; n < NV; ++n) _mm256_storeu_ps(out[i] + c + 8 * n, _mm256_div_ps(acc[i][n], sum));
    }
}

// One tile of M query rows of object b, head h: rows r0 .. r0 + M - 1 of q / out. scores: M * tp floats.
template <int M>
void attend_tile(const Problem& pb, int64_t b, int64_t h, int64_t r0, float* scores) {
    const int64_t tp = pb.tp, t = pb.lengths[b];
    const int64_t bh = b * pb.heads + h;
    const float* kt = pb.keys_t + bh * pb.dk * tp;
    const float* v = pb.values + bh * tp * pb.dv;
    const float* bias = pb.bias ? pb.bias + bh * tp : nullptr;
    const float* q[M];
    float* out[M];
    for (int i = 0; i < M; ++i) {
        q[i] = pb.q + (r0 + i) * pb.q_stride + h * pb.q_head;
        out[i] = pb.out + (r0 + i) * pb.heads * pb.dv + h * pb.dv;
    }
    // key blocks holding real keys only (an object shorter than the longest skips the others)
    const int64_t tq = (t + kKeyBlock - 1) / kKeyBlock * kKeyBlock;
    for (int64_t j = 0; j < tq; j += kKeyBlock) qk_tile<M>(q, kt, tp, pb.dk, pb.scale, bias, scores, j);
    float sums[M];
    for (int i = 0; i < M; ++i) sums[i] = softmax_row(scores + i * tp, t, tq);
    int64_t c = 0;
    for (; c + 16 <= pb.dv; c += 16) pv_tile<M, 2>(scores, tp, v, pb.dv, t, sums, out, c);
    if (c < pb.dv) pv_tile<M, 1>(scores, tp, v, pb.dv, t, sums, out, c);
}

void run_item(const Problem& pb, const WorkItem& w, float* scores) {
    if (pb.lengths[w.object] == 0) {  // no keys: zero output (SDPA would give NaN; the caller never asks)
        for (int64_t r = w.row0; r < w.row0 + w.rows; ++r)
            std::fill_n(pb.out + r * pb.heads * pb.dv + w.head * pb.dv, pb.dv, 0.0f);
        return;
    }
    int64_t r = w.row0;
    const int64_t end = w.row0 + w.rows;
    for (; r + kTileRows <= end; r += kTileRows) attend_tile<kTileRows>(pb, w.object, w.head, r, scores);
    switch (end - r) {
        case 5: attend_tile<5>(pb, w.object, w.head, r, scores); break;
        case 4: attend_tile<4>(pb, w.object, w.head, r, scores); break;
        case 3: attend_tile<3>(pb, w.object, w.head, r, scores); break;
        case 2: attend_tile<2>(pb, w.object, w.head, r, scores); break;
        case 1: attend_tile<1>(pb, w.object, w.head, r, scores); break;
        default: break;
    }
}

#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif
#endif  // FLIP_X86_KERNEL

bool cpu_supported() {
#ifdef FLIP_X86_KERNEL
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
    return false;
#endif
}

void check(bool ok, const char* what) {
    if (!ok) throw std::invalid_argument(what);
}

// The data of a C-contiguous array of dtype T (never a converted copy: out is written in place).
template <typename T>
const T* data_of(const py::array& a, const char* what) {
    check(a.dtype().is(py::dtype::of<T>()) && (a.flags() & py::array::c_style), what);
    return static_cast<const T*>(a.data());
}

// q: float32 [n, W] (head h reads columns h * q_head .. h * q_head + Dk - 1; q_head = 0: every head shares them);
// keys_t: [B, H, Dk, Tp]; values: [B, H, Tp, Dv]; bias: [B, H, Tp] or None; lengths: int64 [B];
// segments: int64 [S, 2] (object, count), consecutive runs of q's rows; out: float32 [n, H * Dv], written.
void py_attend(const py::array& q, int64_t q_head, const py::array& keys_t, const py::array& values,
               const py::object& bias_obj, const py::array& lengths, const py::array& segments, double scale,
               py::array& out, int num_threads) {
    if (!cpu_supported()) throw std::runtime_error("the native attention kernel needs a CPU with AVX2 and FMA");
#ifdef FLIP_X86_KERNEL
    const float* q_data = data_of<float>(q, "q must be C-contiguous float32");
    const float* k_data = data_of<float>(keys_t, "keys_t must be C-contiguous float32");
    const float* v_data = data_of<float>(values, "values must be C-contiguous float32");
    const int64_t* len = data_of<int64_t>(lengths, "lengths must be C-contiguous int64");
    const int64_t* seg = data_of<int64_t>(segments, "segments must be C-contiguous int64");
    data_of<float>(out, "out must be C-contiguous float32");
    check(q.ndim() == 2, "q must be float32 [n, W]");
    check(keys_t.ndim() == 4 && values.ndim() == 4, "keys_t / values must be 4-D");
    const int64_t b = keys_t.shape(0), h = keys_t.shape(1), dk = keys_t.shape(2), tp = keys_t.shape(3);
    const int64_t dv = values.shape(3), n = q.shape(0);
    check(values.shape(0) == b && values.shape(1) == h && values.shape(2) == tp, "values must be [B, H, Tp, Dv]");
    check(tp % kKeyBlock == 0, "Tp must be a multiple of 16");
    check(dk >= 1 && dv % 8 == 0 && dv >= 8, "Dv must be a positive multiple of 8");
    check(q_head >= 0 && (h - 1) * q_head + dk <= q.shape(1), "q is too narrow for the heads");
    check(lengths.ndim() == 1 && lengths.shape(0) == b, "lengths must be int64 [B]");
    check(segments.ndim() == 2 && segments.shape(1) == 2, "segments must be int64 [S, 2]");
    check(out.ndim() == 2 && out.shape(0) == n && out.shape(1) == h * dv, "out must be float32 [n, H * Dv]");
    check(out.writeable(), "out must be writeable");
    const float* bias = nullptr;
    py::array bias_arr;
    if (!bias_obj.is_none()) {
        bias_arr = bias_obj.cast<py::array>();
        bias = data_of<float>(bias_arr, "bias must be C-contiguous float32");
        check(bias_arr.ndim() == 3 && bias_arr.shape(0) == b && bias_arr.shape(1) == h && bias_arr.shape(2) == tp,
              "bias must be float32 [B, H, Tp]");
    }
    for (int64_t k = 0; k < b; ++k) check(len[k] >= 0 && len[k] <= tp, "lengths must lie in [0, Tp]");
    std::vector<WorkItem> items;
    int64_t row = 0;
    for (int64_t s = 0; s < segments.shape(0); ++s) {
        const int64_t obj = seg[2 * s], count = seg[2 * s + 1];
        check(obj >= 0 && obj < b && count >= 0, "segments must name objects in [0, B) with counts >= 0");
        check(row + count <= n, "segments cover more rows than q has");
        for (int64_t head = 0; head < h; ++head)
            for (int64_t r = 0; r < count; r += kBlockRows)
                items.push_back({obj, head, row + r, std::min<int64_t>(kBlockRows, count - r)});
        row += count;
    }
    check(row == n, "segments must cover every row of q");
    const Problem pb{q_data, q.shape(1), q_head, k_data, v_data, bias, len, static_cast<float*>(out.mutable_data()),
                     h, dk, dv, tp, static_cast<float>(scale)};
    const int workers = static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(num_threads, items.size())));
    py::gil_scoped_release release;
    if (workers == 1) {
        std::vector<float> scores(static_cast<size_t>(kTileRows * tp));
        for (const WorkItem& w : items) run_item(pb, w, scores.data());
        return;
    }
    std::atomic<size_t> next{0};
    std::exception_ptr error;
    std::mutex error_mutex;
    auto worker = [&]() {
        try {
            std::vector<float> scores(static_cast<size_t>(kTileRows * tp));
            for (size_t i = next++; i < items.size(); i = next++) run_item(pb, items[i], scores.data());
        } catch (...) {
            std::lock_guard<std::mutex> lock(error_mutex);
            if (!error) error = std::current_exception();
        }
    };
    std::vector<std::thread> threads;
    for (int k = 1; k < workers; ++k) threads.emplace_back(worker);
    worker();
    for (auto& th : threads) th.join();
    if (error) std::rethrow_exception(error);
#endif
}

}  // namespace

PYBIND11_MODULE(_attention_native, m) {
    m.doc() = "Fused attention of FLIP's pixel predictor (AVX2 + FMA). Use benchmark.flip.fast_decoder.";
    m.def("supported", &cpu_supported, "Whether this CPU runs the kernel (AVX2 and FMA).");
    m.def("attend", &py_attend, py::arg("q"), py::arg("q_head"), py::arg("keys_t"), py::arg("values"),
          py::arg("bias"), py::arg("lengths"), py::arg("segments"), py::arg("scale"), py::arg("out"),
          py::arg("num_threads") = 1);
    m.attr("TILE_ROWS") = kTileRows;
    m.attr("KEY_BLOCK") = kKeyBlock;
}
