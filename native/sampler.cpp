// pybind11 bindings of the FLIP patch sampler core: module benchmark.flip._sampler_native.
// Called through benchmark/flip/sampler.py, which validates arguments; the checks here only guard memory safety.
// Heavy work runs with the GIL released; no global mutable state, so calls from several threads are safe.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <atomic>
#include <cstring>
#include <exception>
#include <mutex>
#include <thread>

#include "flip_mask.hpp"
#include "flip_sampler.hpp"

namespace py = pybind11;
namespace fs = flipsampler;

namespace {

using U8Array = py::array_t<uint8_t, py::array::c_style | py::array::forcecast>;
using F32Array = py::array_t<float, py::array::c_style | py::array::forcecast>;

struct ImageView {
    const uint8_t* data;
    int height, width, channels;
};

ImageView image_view(const U8Array& img) {
    if (img.ndim() != 3 || img.shape(0) < 1 || img.shape(1) < 1 || img.shape(2) < 1)
        throw std::invalid_argument("image must be uint8 [H, W, C] with non-zero sizes");
    if (img.shape(0) > (1 << 20) || img.shape(1) > (1 << 20) || img.shape(2) > 64)
        throw std::invalid_argument("image too large");
    return {img.data(), static_cast<int>(img.shape(0)), static_cast<int>(img.shape(1)), static_cast<int>(img.shape(2))};
}

std::vector<int> check_sizes(const std::vector<int>& sizes) {
    if (sizes.empty()) throw std::invalid_argument("patch_sizes must not be empty");
    for (size_t i = 0; i < sizes.size(); ++i) {
        if (sizes[i] < 1 || sizes[i] > 1024 || (i > 0 && sizes[i] <= sizes[i - 1]))
            throw std::invalid_argument("patch_sizes must be strictly increasing integers in [1, 1024]");
    }
    return sizes;
}

template <typename T>
py::array_t<T> to_array(const std::vector<T>& v, std::vector<py::ssize_t> shape) {
    py::array_t<T> a(shape);
    if (!v.empty()) std::memcpy(a.mutable_data(), v.data(), v.size() * sizeof(T));
    return a;
}

// Per-thread scratch space kept between calls (the grid's buffers and the extraction order): no allocation per
// object once warm. Only the thread that owns it touches it.
struct Workspace {
    fs::OverlapGrid grid{1.0f};
    std::vector<uint64_t> order;
};

Workspace& workspace() {
    static thread_local Workspace ws;
    return ws;
}

py::array_t<float> py_rho_to_position(F32Array rho, bool fix_axis_aligned) {
    if (rho.ndim() != 2 || rho.shape(1) != 5) throw std::invalid_argument("rho must have shape [n, 5]");
    const py::ssize_t n = rho.shape(0);
    py::array_t<float> out({n, static_cast<py::ssize_t>(6)});
    const float* src = rho.data();
    float* dst = out.mutable_data();
    {
        py::gil_scoped_release release;
        for (py::ssize_t i = 0; i < n; ++i) fs::rho_to_position(src + 5 * i, dst + 6 * i, fix_axis_aligned);
    }
    return out;
}

py::array_t<uint8_t> py_extract_patches(U8Array image, F32Array centers, int p, bool simd) {
    const ImageView im = image_view(image);
    if (p < 1 || p > 1024) throw std::invalid_argument("patch_size must be in [1, 1024]");
    if (centers.ndim() != 2 || centers.shape(1) != 2) throw std::invalid_argument("centers_px must be [n, 2]");
    const py::ssize_t n = centers.shape(0);
    const float* c = centers.data();
    for (py::ssize_t i = 0; i < n; ++i) {
        if (!fs::center_in_bounds(c[2 * i], c[2 * i + 1], p, im.height, im.width))
            throw std::invalid_argument("centre " + std::to_string(i) + " puts the patch outside the image");
    }
    py::array_t<uint8_t> out({n, static_cast<py::ssize_t>(p), static_cast<py::ssize_t>(p),
                              static_cast<py::ssize_t>(im.channels)});
    uint8_t* dst = out.mutable_data();
    {
        py::gil_scoped_release release;
        fs::extract_many(im.data, im.width, im.height, im.channels, c, static_cast<size_t>(n), p, dst,
                         workspace().order, simd);
    }
    return out;
}

// Runs fn(i) for i in [0, n) on up to num_threads threads (the caller's included); rethrows the first error.
template <typename Fn>
void parallel_for(py::ssize_t n, int num_threads, Fn&& fn) {
    std::atomic<py::ssize_t> next{0};
    std::exception_ptr error;
    std::mutex error_mutex;
    auto worker = [&]() {
        for (py::ssize_t i = next++; i < n; i = next++) {
            try {
                fn(i);
            } catch (...) {
                std::lock_guard<std::mutex> lock(error_mutex);
                if (!error) error = std::current_exception();
            }
        }
    };
    const int threads = static_cast<int>(std::max<py::ssize_t>(1, std::min<py::ssize_t>(num_threads, n)));
    std::vector<std::thread> pool;
    for (int t = 1; t < threads; ++t) pool.emplace_back(worker);
    worker();
    for (auto& t : pool) t.join();
    if (error) std::rethrow_exception(error);
}

// Output buffers of one object, one entry per patch size (numpy arrays allocated with the GIL held).
struct ObjectOutput {
    std::vector<uint8_t*> patches;
    std::vector<float*> coords;
};

py::list py_sample_patches_batch(py::list images, F32Array positions, py::array_t<int64_t, py::array::c_style | py::array::forcecast> image_index,
                                 py::array_t<uint32_t, py::array::c_style | py::array::forcecast> states, int num_tokens,
                                 std::vector<int> patch_sizes, float coverage, float threshold, int num_threads) {
    const std::vector<int> sizes = check_sizes(patch_sizes);
    if (num_tokens < 0 || num_tokens > (1 << 24)) throw std::invalid_argument("num_tokens must be in [0, 2**24]");
    if (!(std::isfinite(coverage) && coverage >= 0 && std::isfinite(threshold) && threshold >= 0))
        throw std::invalid_argument("coverage and max_overlap_threshold must be finite and >= 0");
    if (positions.ndim() != 2 || positions.shape(1) != 6) throw std::invalid_argument("positions must be [n, 6]");
    const py::ssize_t n = positions.shape(0);
    if (image_index.ndim() != 1 || image_index.shape(0) != n) throw std::invalid_argument("image_index must be [n]");
    if (states.ndim() != 2 || states.shape(0) != n || states.shape(1) != 4) throw std::invalid_argument("states must be [n, 4]");
    std::vector<U8Array> keep;  // keeps converted images alive while the GIL is released
    std::vector<ImageView> views;
    for (py::handle h : images) {
        keep.push_back(U8Array::ensure(h));
        if (!keep.back()) throw std::invalid_argument("images must be uint8 arrays");
        views.push_back(image_view(keep.back()));
    }
    const float* pos = positions.data();
    const int64_t* idx = image_index.data();
    const uint32_t* st = states.data();
    for (py::ssize_t i = 0; i < n; ++i) {
        if (idx[i] < 0 || idx[i] >= static_cast<int64_t>(views.size())) throw std::invalid_argument("image_index out of range");
        for (int k = 0; k < 6; ++k)
            if (!std::isfinite(pos[6 * i + k])) throw std::invalid_argument("positions contain NaN or inf");
        if (pos[6 * i + 2] < 0 || pos[6 * i + 3] < 0) throw std::invalid_argument("position sigmas must be >= 0");
    }
    // 1. Patch centres of every object (no GIL).
    std::vector<fs::ObjectSample> samples(static_cast<size_t>(n));
    {
        py::gil_scoped_release release;
        parallel_for(n, num_threads, [&](py::ssize_t i) {
            const ImageView& im = views[idx[i]];
            const fs::RngState s{st[4 * i], st[4 * i + 1], st[4 * i + 2], st[4 * i + 3]};
            const fs::GaussPx g = fs::sampler_params_px(pos + 6 * i, im.height, im.width);
            samples[i] = fs::sample_centers(im.height, im.width, g, num_tokens, sizes, coverage, threshold, s,
                                            workspace().grid);
        });
    }
    // 2. Result arrays (GIL held); patches and model-frame coordinates are written in place in step 3.
    py::list out;
    std::vector<ObjectOutput> dst(static_cast<size_t>(n));
    const py::ssize_t ns = static_cast<py::ssize_t>(sizes.size());
    for (py::ssize_t i = 0; i < n; ++i) {
        const fs::ObjectSample& r = samples[i];
        const py::ssize_t channels = views[idx[i]].channels;
        py::list patches, coords, indices, centers;
        int32_t start = 0;
        for (size_t si = 0; si < sizes.size(); ++si) {
            const py::ssize_t cnt = static_cast<py::ssize_t>(r.centers[si].size() / 2);
            const py::ssize_t p = sizes[si];
            py::array_t<uint8_t> pa({cnt, p, p, channels});
            py::array_t<float> co({cnt, static_cast<py::ssize_t>(2)});
            py::array_t<int32_t> ind(cnt);
            dst[i].patches.push_back(pa.mutable_data());
            dst[i].coords.push_back(co.mutable_data());
            int32_t* ip = ind.mutable_data();
            for (py::ssize_t k = 0; k < cnt; ++k) ip[k] = start + static_cast<int32_t>(k);
            start += static_cast<int32_t>(cnt);
            patches.append(std::move(pa));
            coords.append(std::move(co));
            indices.append(std::move(ind));
            centers.append(to_array(r.centers[si], {cnt, static_cast<py::ssize_t>(2)}));
        }
        out.append(py::make_tuple(std::move(patches), std::move(coords), std::move(indices), std::move(centers),
                                  to_array(r.planned, {ns})));
    }
    // 3. Bilinear patches and model-frame coordinates (no GIL).
    {
        py::gil_scoped_release release;
        parallel_for(n, num_threads, [&](py::ssize_t i) {
            const ImageView& im = views[idx[i]];
            const float ox = static_cast<float>(im.width) / 256.0f, oy = static_cast<float>(im.height) / 256.0f;
            for (size_t si = 0; si < sizes.size(); ++si) {
                const std::vector<float>& c = samples[i].centers[si];
                const size_t cnt = c.size() / 2;
                fs::extract_many(im.data, im.width, im.height, im.channels, c.data(), cnt, sizes[si], dst[i].patches[si],
                                 workspace().order);
                float* co = dst[i].coords[si];
                for (size_t k = 0; k < 2 * cnt; k += 2) {
                    co[k] = c[k] / 128.0f - ox;
                    co[k + 1] = c[k + 1] / 128.0f - oy;
                }
            }
        });
    }
    return out;
}

py::tuple py_boundary_distance_groups(U8Array mask) {
    if (mask.ndim() != 2 || mask.shape(0) < 1 || mask.shape(1) < 1) throw std::invalid_argument("mask must be [H, W]");
    const int h = static_cast<int>(mask.shape(0)), w = static_cast<int>(mask.shape(1));
    fs::MaskGroups g;
    {
        py::gil_scoped_release release;
        g = fs::boundary_distance_groups(mask.data(), h, w, w);
    }
    py::list ins, outs;
    for (int k = 0; k < fs::kMaskGroups; ++k) {
        ins.append(to_array(g.inside[k], {static_cast<py::ssize_t>(g.inside[k].size() / 2), static_cast<py::ssize_t>(2)}));
        outs.append(to_array(g.outside[k], {static_cast<py::ssize_t>(g.outside[k].size() / 2), static_cast<py::ssize_t>(2)}));
    }
    return py::make_tuple(ins, outs);
}

py::tuple py_sample_mask_pixels(U8Array mask, F32Array position, std::array<int, fs::kMaskGroups> per_group,
                                py::array_t<uint32_t, py::array::c_style | py::array::forcecast> state) {
    if (mask.ndim() != 2 || mask.shape(0) < 1 || mask.shape(1) < 1) throw std::invalid_argument("mask must be [H, W]");
    if (position.ndim() != 1 || position.shape(0) != 6) throw std::invalid_argument("position must be [6]");
    if (state.ndim() != 1 || state.shape(0) != 4) throw std::invalid_argument("state must be [4]");
    for (int k = 0; k < 6; ++k)
        if (!std::isfinite(position.data()[k])) throw std::invalid_argument("position contains NaN or inf");
    for (int v : per_group)
        if (v < 0) throw std::invalid_argument("samples_per_group must be >= 0");
    const fs::RngState s{state.data()[0], state.data()[1], state.data()[2], state.data()[3]};
    fs::MaskSample r;
    {
        py::gil_scoped_release release;
        r = fs::sample_mask_pixels(mask.data(), static_cast<int>(mask.shape(0)), static_cast<int>(mask.shape(1)),
                                   position.data(), per_group, s);
    }
    const py::ssize_t n = static_cast<py::ssize_t>(r.values.size());
    return py::make_tuple(to_array(r.values, {n}), to_array(r.coords, {n, static_cast<py::ssize_t>(2)}));
}

py::array_t<float> py_normals(py::array_t<uint32_t, py::array::c_style | py::array::forcecast> state, py::ssize_t n) {
    if (state.ndim() != 1 || state.shape(0) != 4) throw std::invalid_argument("state must be [4]");
    if (n < 0) throw std::invalid_argument("n must be >= 0");
    fs::KissZiggurat rng({state.data()[0], state.data()[1], state.data()[2], state.data()[3]});
    py::array_t<float> out(n);
    float* d = out.mutable_data();
    py::gil_scoped_release release;
    for (py::ssize_t i = 0; i < n; ++i) d[i] = rng.normal();
    return out;
}

// Testing aid: runs candidates (x, y, p) through one OverlapGrid; returns accepted flags (rejected = too much overlap).
py::array_t<bool> py_overlap_trace(float cell_size, F32Array xy, py::array_t<int32_t, py::array::c_style | py::array::forcecast> sizes,
                                   float threshold) {
    if (xy.ndim() != 2 || xy.shape(1) != 2 || sizes.ndim() != 1 || sizes.shape(0) != xy.shape(0))
        throw std::invalid_argument("xy must be [n, 2] and sizes [n]");
    if (!(cell_size > 0.0f)) throw std::invalid_argument("cell_size must be > 0");
    const py::ssize_t n = xy.shape(0);
    for (py::ssize_t i = 0; i < n; ++i) {
        const float x = xy.data()[2 * i], y = xy.data()[2 * i + 1];
        if (!(std::fabs(x) < 1e6f && std::fabs(y) < 1e6f) || sizes.data()[i] < 1 || sizes.data()[i] > 1024)
            throw std::invalid_argument("coordinates must be finite and small, sizes in [1, 1024]");
    }
    py::array_t<bool> out(n);
    fs::OverlapGrid grid(cell_size);
    for (py::ssize_t i = 0; i < n; ++i) {
        const float x = xy.data()[2 * i], y = xy.data()[2 * i + 1];
        const int p = sizes.data()[i];
        const bool reject = grid.too_much_overlap(x, y, p, threshold);
        if (!reject) grid.add(x, y, p);
        out.mutable_data()[i] = !reject;
    }
    return out;
}

}  // namespace

PYBIND11_MODULE(_sampler_native, m) {
    m.doc() = "FLIP patch sampler (C++ core). Use benchmark.flip.sampler, which validates inputs.";
    m.def("rho_to_position", &py_rho_to_position, py::arg("rho"), py::arg("fix_axis_aligned") = false);
    m.def("extract_patches", &py_extract_patches, py::arg("image"), py::arg("centers_px"), py::arg("patch_size"),
          py::arg("simd") = true, "simd=False: the portable kernels even where explicit-SIMD ones exist (tests).");
    m.def("sample_patches_batch", &py_sample_patches_batch, py::arg("images"), py::arg("positions"),
          py::arg("image_index"), py::arg("states"), py::arg("num_tokens"), py::arg("patch_sizes"),
          py::arg("coverage"), py::arg("max_overlap_threshold"), py::arg("num_threads") = 1);
    m.def("boundary_distance_groups", &py_boundary_distance_groups, py::arg("mask"));
    m.def("sample_mask_pixels", &py_sample_mask_pixels, py::arg("mask"), py::arg("position"),
          py::arg("samples_per_group"), py::arg("state"));
    m.def("overlap_trace", &py_overlap_trace, py::arg("cell_size"), py::arg("xy"), py::arg("sizes"),
          py::arg("threshold"), "Testing aid: accept flags of candidates run through one overlap grid.");
    m.def("normals", &py_normals, py::arg("state"), py::arg("n"),
          "n standard normals (float32) of the KISS + ziggurat generator started at state (jsr, jcong, w, z).");
}
