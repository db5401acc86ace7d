// Overlap test of candidate patches against accepted ones: a spatial hash grid with the official FLIP semantics.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <vector>

namespace flipsampler {

// ------------------------------------------------------------------------------------------------------------
// Overlap grid with the official semantics (see sampler_reference.OverlapGrid)
//
// The official test adds, in float32, the overlap areas of the boxes met on each cell's chain (cells row-major,
// chains from their head) and rejects as soon as the running sum exceeds the limit. This code adds exactly the
// same float32 terms in exactly the same order (bit-exact decisions), with three exact shortcuts:
// * cells live in dense 32 x 32 tiles found through a dense directory over the image (a small hash elsewhere), one
//   lookup per tile row segment, not per cell;
// * chain pruning: a box's successor is the previous head of the box's LAST (bottom-right) cell, so it touches
//   that cell and its own last cell is >= componentwise; last cells are monotone along a chain, and once a chain's
//   last cell lies beyond the query's last cell plus the widest box span (in cells) no later box on it can overlap
//   the query, so the walk stops (the official walks go on to the chain's end);
// * a run of consecutive cells with the same head (a box covers many cells) walks the chain once and replays its
//   terms for every cell of the run. All terms are >= 0, so the float32 running sum never decreases and comparing
//   it with the limit once per cell decides exactly as the official comparison after every term.
// One grid serves many objects: reset() empties it without giving its buffers back (no allocation once warm).
// ------------------------------------------------------------------------------------------------------------
class OverlapGrid {
  public:
    explicit OverlapGrid(float cell_size) { reset(cell_size); }

    // Empties the grid for a new object, keeping every buffer's capacity (no allocation once warm). Hash slots and
    // directory entries of earlier objects are retired by an epoch number instead of being cleared.
    // extent_x, extent_y > 0 (the image size in pixels): tiles of cells in [0, extent] are found through a dense
    // directory instead of the hash (boxes of in-bounds patches lie there; anything else still works, via the hash).
    void reset(float cell_size, int extent_x = 0, int extent_y = 0) {
        cell_ = cell_size;
        boxes_.clear();
        num_tiles_ = 0;
        if (heads_.size() > kKeepHeads) std::vector<int32_t>().swap(heads_);  // an unusually large object: give back
        if (table_.empty()) rehash(16);
        if (++epoch_ == 0) {  // wrapped: clear the slots for real once every 2**32 objects
            for (Slot& s : table_) s.epoch = 0;
            std::fill(dir_.begin(), dir_.end(), 0);
            epoch_ = 1;
        }
        dir_w_ = dir_h_ = 0;
        const double tiles_x = static_cast<double>(extent_x) / cell_size / kTile + 2.0;
        const double tiles_y = static_cast<double>(extent_y) / cell_size / kTile + 2.0;
        if (extent_x > 0 && extent_y > 0 && tiles_x * tiles_y <= static_cast<double>(kMaxDir)) {
            dir_w_ = static_cast<uint32_t>(tiles_x);
            dir_h_ = static_cast<uint32_t>(tiles_y);
            const size_t need = static_cast<size_t>(dir_w_) * dir_h_;
            if (dir_.size() < need) dir_.resize(need, 0);  // new entries hold epoch 0: empty
        }
        last_tile_ = -1;
        span_x_ = span_y_ = 0;
    }

    void add(float x, float y, int p) {
        const float hs = static_cast<float>(p) / 2.0f;
        const int32_t idx = static_cast<int32_t>(boxes_.size());
        Box b{x - hs, y - hs, x + hs, y + hs, -1, 0, 0};
        const int cx0 = cell_of(b.x0), cy0 = cell_of(b.y0), cx1 = cell_of(b.x1), cy1 = cell_of(b.y1);
        b.last_cx = cx1;
        b.last_cy = cy1;
        span_x_ = std::max(span_x_, cx1 - cx0);
        span_y_ = std::max(span_y_, cy1 - cy0);
        // The official loop sets next = head(cell), then head(cell) = idx, for every cell in row-major order, so
        // next ends as the previous head of the last cell: read that once, then paint the cells row segment by
        // row segment (one tile lookup per segment).
        b.next = tile(tile_of(cx1), tile_of(cy1), true)[local(cx1, cy1)];
        boxes_.push_back(b);
        for (int cy = cy0; cy <= cy1; ++cy) {
            for (int cx = cx0; cx <= cx1;) {
                const int tx = tile_of(cx);
                const int seg_end = std::min(cx1, tx * kTile + kTile - 1);
                int32_t* row = tile(tx, tile_of(cy), true) + local(cx, cy);
                std::fill(row, row + (seg_end - cx + 1), idx);
                cx = seg_end + 1;
            }
        }
    }

    bool too_much_overlap(float x, float y, int p, float threshold) {
        const float hs = static_cast<float>(p) / 2.0f;
        q_ = Box{x - hs, y - hs, x + hs, y + hs, -1, 0, 0};
        const float pf = static_cast<float>(p);
        const float limit = (pf * pf) * threshold;
        const int qc0x = cell_of(q_.x0), qc0y = cell_of(q_.y0), qc1x = cell_of(q_.x1), qc1y = cell_of(q_.y1);
        const int64_t stop_cx = static_cast<int64_t>(qc1x) + span_x_ + 1;  // +1: margin, pruning stays conservative
        const int64_t stop_cy = static_cast<int64_t>(qc1y) + span_y_ + 1;
        if (terms_.size() < boxes_.size()) terms_.resize(2 * boxes_.size());  // a chain holds each box at most once
        float* const terms = terms_.data();
        float total = 0.0f;
        int32_t run_head = -1;  // head of the current run of cells and its chain's terms (none for empty cells)
        int num_terms = 0;
        for (int cy = qc0y; cy <= qc1y; ++cy) {
            for (int cx = qc0x; cx <= qc1x;) {
                const int tx = tile_of(cx);
                const int seg_end = std::min(qc1x, tx * kTile + kTile - 1);
                const int32_t* t = tile(tx, tile_of(cy), false);
                if (t == nullptr) {  // a tile of empty cells adds nothing
                    cx = seg_end + 1;
                    continue;
                }
                const int32_t* row = t + local(cx, cy);
                const int32_t* const row_end = row + (seg_end - cx + 1);
                cx = seg_end + 1;
                for (; row != row_end; ++row) {
                    if (*row != run_head) {
                        run_head = *row;
                        num_terms = 0;
                        for (int32_t bi = run_head; bi != -1;) {
                            const Box& b = boxes_[bi];
                            if (b.last_cx > stop_cx || b.last_cy > stop_cy) break;  // nothing further can overlap
                            if (hits(b)) terms[num_terms++] = term(b);
                            bi = b.next;
                        }
                    }
                    for (int k = 0; k < num_terms; ++k) total = total + terms[k];
                    if (total > limit) return true;
                }
            }
        }
        return false;
    }

  private:
    static constexpr int kTileBits = 5;
    static constexpr int kTile = 1 << kTileBits;
    static constexpr size_t kKeepHeads = size_t{1} << 21;  // tile memory kept between objects (8 MiB)
    static constexpr size_t kMaxDir = size_t{1} << 20;     // directory entries at most (8 MiB)

    struct Box {
        float x0, y0, x1, y1;
        int32_t next;
        int32_t last_cx, last_cy;  // the box's last (bottom-right) cell
    };
    struct Slot {
        uint64_t key;
        int32_t tile;
        uint32_t epoch;  // the slot is in use only when this equals the grid's epoch
    };

    // floor(v / cell) as int; the cells touched by accepted / queried boxes are small non-negative numbers
    // (boxes lie inside the image), and the truncate-and-adjust form equals std::floor for |q| < 2^31.
    int cell_of(float v) const {
        const float q = v / cell_;
        const int i = static_cast<int>(q);
        return i - (q < static_cast<float>(i) ? 1 : 0);
    }
    // Tile of a cell: floor(c / kTile) (cells can be negative in the general case).
    static int tile_of(int c) { return c >= 0 ? c / kTile : -((-(c + 1)) / kTile) - 1; }
    static int local(int cx, int cy) { return ((cy & (kTile - 1)) << kTileBits) | (cx & (kTile - 1)); }

    // Overlap area of box b with the query, float32 as in the official code.
    float term(const Box& b) const {
        const float ow = (q_.x1 < b.x1 ? q_.x1 : b.x1) - (q_.x0 > b.x0 ? q_.x0 : b.x0);
        const float oh = (q_.y1 < b.y1 ? q_.y1 : b.y1) - (q_.y0 > b.y0 ? q_.y0 : b.y0);
        return ow * oh;
    }

    bool hits(const Box& b) const {
        const float eps = 1e-6f;
        return !(q_.x1 < b.x0 + eps || q_.x0 > b.x1 - eps || q_.y1 < b.y0 + eps || q_.y0 > b.y1 - eps);
    }

    static uint64_t key_of(int tx, int ty) {
        return (static_cast<uint64_t>(static_cast<uint32_t>(tx)) << 32) | static_cast<uint32_t>(ty);
    }
    static size_t hash_of(uint64_t k) {
        k ^= k >> 33;
        k *= 0xff51afd7ed558ccdULL;
        k ^= k >> 33;
        return static_cast<size_t>(k);
    }

    int32_t* tile(int tx, int ty, bool create) {
        if (static_cast<uint32_t>(tx) < dir_w_ && static_cast<uint32_t>(ty) < dir_h_) {
            uint64_t& e = dir_[static_cast<size_t>(ty) * dir_w_ + static_cast<uint32_t>(tx)];
            if ((e >> 32) == epoch_) return &heads_[static_cast<size_t>(static_cast<uint32_t>(e)) * kTile * kTile];
            if (!create) return nullptr;
            const int32_t id = new_tile();
            e = (static_cast<uint64_t>(epoch_) << 32) | static_cast<uint32_t>(id);
            return &heads_[static_cast<size_t>(id) * kTile * kTile];
        }
        const uint64_t k = key_of(tx, ty);
        if (k == last_key_ && last_tile_ >= 0) return &heads_[static_cast<size_t>(last_tile_) * kTile * kTile];
        size_t i = hash_of(k) & mask_;
        for (;; i = (i + 1) & mask_) {
            if (table_[i].epoch != epoch_) break;
            if (table_[i].key == k) {
                last_key_ = k;
                last_tile_ = table_[i].tile;
                return &heads_[static_cast<size_t>(last_tile_) * kTile * kTile];
            }
        }
        if (!create) return nullptr;
        const int32_t id = new_tile();
        table_[i] = Slot{k, id, epoch_};
        if (static_cast<size_t>(num_tiles_) * 2 > table_.size()) rehash(table_.size() * 2);
        last_key_ = k;
        last_tile_ = id;
        return &heads_[static_cast<size_t>(id) * kTile * kTile];
    }

    // A fresh tile of empty cells (-1); returns its id.
    int32_t new_tile() {
        const int32_t id = num_tiles_++;
        const size_t end = static_cast<size_t>(num_tiles_) * kTile * kTile;
        if (heads_.size() < end) heads_.resize(std::max(end, 2 * heads_.size()));
        std::fill(heads_.begin() + (end - kTile * kTile), heads_.begin() + end, -1);
        return id;
    }

    void rehash(size_t n) {
        std::vector<Slot> old;
        old.swap(table_);
        table_.assign(n, Slot{0, -1, 0});
        mask_ = n - 1;
        for (const Slot& s : old) {
            if (s.epoch != epoch_) continue;
            size_t i = hash_of(s.key) & mask_;
            while (table_[i].epoch == epoch_) i = (i + 1) & mask_;
            table_[i] = s;
        }
    }

    float cell_ = 1.0f;
    std::vector<Box> boxes_;
    std::vector<float> terms_;  // the overlap terms of the current run's chain (too_much_overlap)
    std::vector<int32_t> heads_;  // tiles of kTile * kTile chain heads (-1 = empty cell); first num_tiles_ in use
    int32_t num_tiles_ = 0;
    std::vector<Slot> table_;
    uint32_t epoch_ = 0;
    std::vector<uint64_t> dir_;  // dense tile directory: (epoch << 32) | tile id, row-major dir_w_ x dir_h_
    uint32_t dir_w_ = 0, dir_h_ = 0;
    size_t mask_ = 0;
    uint64_t last_key_ = 0;
    int32_t last_tile_ = -1;
    Box q_{};
    int span_x_ = 0, span_y_ = 0;
};

}  // namespace flipsampler
