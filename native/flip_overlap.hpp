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
// Same accept/reject decisions as the reference (bit-exact), with three exact shortcuts:
// * cells live in dense 32 x 32 tiles found through a dense directory over the image (a small hash elsewhere), one
//   lookup per tile row segment, not per cell;
// * chain pruning: a box's successor is the previous head of the box's LAST (bottom-right) cell, so it touches
//   that cell and its own last cell is >= componentwise; last cells are monotone along a chain, and once a chain's
//   last cell lies beyond the query's last cell plus the widest box span (in cells) no later box on it can overlap
//   the query, so the walk stops (the official walks are O(n) per cell);
// * summation: all terms are >= 0, so the official float32 running sum is monotone and its early exit equals
//   comparing the final float32 sum with the limit. Pass 1 sums the same float32 terms in float64 through
//   per-query memoised chain sums (every box visited once, runs of cells sharing a head counted at once) and decides
//   whenever the result is farther from the limit than the worst float32 rounding (n terms: n * 2^-24 * sum);
//   otherwise pass 2 replays the exact official float32 sequence.
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
        query_ = 0;
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
        boxes_.push_back(b);
        for (int cy = cy0; cy <= cy1; ++cy) {
            for (int cx = cx0; cx <= cx1; ++cx) {
                int32_t& head = tile(tile_of(cx), tile_of(cy), true)[local(cx, cy)];
                boxes_[idx].next = head;
                head = idx;
            }
        }
    }

    bool too_much_overlap(float x, float y, int p, float threshold) {
        const float hs = static_cast<float>(p) / 2.0f;
        q_ = Box{x - hs, y - hs, x + hs, y + hs, -1, 0, 0};
        ++query_;
        const float pf = static_cast<float>(p);
        const float limit = (pf * pf) * threshold;
        qc0x_ = cell_of(q_.x0);
        qc0y_ = cell_of(q_.y0);
        qc1x_ = cell_of(q_.x1);
        qc1y_ = cell_of(q_.y1);
        stop_cx_ = static_cast<int64_t>(qc1x_) + span_x_ + 1;  // +1: margin, pruning stays conservative
        stop_cy_ = static_cast<int64_t>(qc1y_) + span_y_ + 1;
        // Pass 1: the same terms summed in float64 through per-query memoised chain sums (each box once).
        // Terms are >= 0, so the official float32 running sum is monotone and its early exit is equivalent to
        // comparing the final float32 sum; that sum differs from the float64 one by at most n * 2^-24 * sum.
        double sum = 0.0;
        uint64_t n = 0;
        const double dlimit = static_cast<double>(limit);
        bool over = false;
        for_each_run(
            [&](int32_t head, int run) {  // run: consecutive cells of a row sharing this head box
                Box& h = boxes_[head];
                if (h.head_stamp != query_) {  // chain sum from this head, once per query
                    const int32_t bi = first_hit(head);
                    h.head_stamp = query_;
                    h.head_sum = 0.0;
                    h.head_count = 0;
                    if (bi != -1) {
                        aggregate(bi);
                        h.head_sum = boxes_[bi].agg_sum;
                        h.head_count = boxes_[bi].agg_count;
                    }
                }
                sum += h.head_sum * run;
                n += static_cast<uint64_t>(h.head_count) * static_cast<uint64_t>(run);
            },
            [&]() {  // end of a row: stop as soon as the float32 sum is certainly over the limit
                over = sum - (static_cast<double>(n) * sum * 1.2e-7 + 1e-30) > dlimit;
                return over;
            });
        if (over) return true;
        const double bound = static_cast<double>(n) * sum * 1.2e-7 + 1e-30;
        if (sum + bound <= dlimit) return false;
        // Pass 2 (rare, too close to call): the exact official float32 sequence.
        float total = 0.0f;
        for_each_run(
            [&](int32_t head, int run) {
                for (int k = 0; k < run; ++k) {
                    for (int32_t bi = first_hit(head); bi != -1 && !over; bi = first_hit(boxes_[bi].next)) {
                        total = total + term(boxes_[bi]);
                        over = total > limit;
                    }
                }
            },
            [&]() { return over; });
        return over;
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
        // per-query memo (valid when the stamp equals the current query id)
        uint32_t stamp = 0, agg_stamp = 0;
        int32_t memo = -1;
        uint32_t agg_count = 0, head_stamp = 0, head_count = 0;
        double agg_sum = 0.0, head_sum = 0.0;
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

    // Calls fn(head, run) for every maximal run of consecutive non-empty cells of a query row that share the same
    // head box, rows top to bottom and runs left to right (the official cell order).
    // After each row, stop() may end the scan early (returns true).
    // A row's runs are first collected without data-dependent branches (run k: run_heads_[k], run_counts_[k];
    // slot 0 collects the empty cells before the first run), then handed to fn.
    template <typename Fn, typename Stop>
    void for_each_run(Fn&& fn, Stop&& stop) {
        const size_t slots = static_cast<size_t>(qc1x_ - qc0x_) + 2;
        if (run_heads_.size() < slots) {
            run_heads_.resize(slots);
            run_counts_.resize(slots);
        }
        int32_t* const heads = run_heads_.data();
        int32_t* const counts = run_counts_.data();
        for (int cy = qc0y_; cy <= qc1y_; ++cy) {
            int k = 0;
            int32_t cur = -1;  // head of the current run (-1: none yet)
            int32_t cnt = 0;   // its length so far
            heads[0] = -1;
            counts[0] = 0;
            for (int cx = qc0x_; cx <= qc1x_;) {
                const int tx = tile_of(cx);
                const int seg_end = std::min(qc1x_, tx * kTile + kTile - 1);
                const int32_t* t = tile(tx, tile_of(cy), false);
                if (t == nullptr) {
                    cx = seg_end + 1;
                    continue;  // empty cells add nothing, so runs may continue across them
                }
                const int32_t* row = t + local(cx, cy);
                const int32_t* const row_end = row + (seg_end - cx + 1);
                cx = seg_end + 1;
                for (; row != row_end; ++row) {
                    const int32_t head = *row;
                    const int valid = head >= 0;  // empty cells (-1) neither end nor extend a run
                    const int is_new = valid & (head != cur);
                    k += is_new;  // masks instead of conditionals: compilers would turn those into branches
                    cnt = ((cnt + valid) & (is_new - 1)) | is_new;
                    cur ^= (cur ^ head) & -valid;
                    heads[k] = cur;
                    counts[k] = cnt;
                }
            }
            for (int r = 1; r <= k; ++r) fn(heads[r], counts[r]);
            if (stop()) return;
        }
    }

    // Overlap area of box b with the query, float32 as in the official code.
    float term(const Box& b) const {
        const float ow = (q_.x1 < b.x1 ? q_.x1 : b.x1) - (q_.x0 > b.x0 ? q_.x0 : b.x0);
        const float oh = (q_.y1 < b.y1 ? q_.y1 : b.y1) - (q_.y0 > b.y0 ? q_.y0 : b.y0);
        return ow * oh;
    }

    // For a contributing box bi: float64 sum and count of the terms of bi and of every contributing box after it
    // on its chain, memoised per query.
    void aggregate(int32_t bi) {
        stack_.clear();
        while (bi != -1 && boxes_[bi].agg_stamp != query_) {
            stack_.push_back(bi);
            bi = first_hit(boxes_[bi].next);
        }
        double s = bi == -1 ? 0.0 : boxes_[bi].agg_sum;
        uint32_t c = bi == -1 ? 0 : boxes_[bi].agg_count;
        while (!stack_.empty()) {
            Box& t = boxes_[stack_.back()];
            stack_.pop_back();
            s += static_cast<double>(term(t));
            ++c;
            t.agg_stamp = query_;
            t.agg_sum = s;
            t.agg_count = c;
        }
    }

    bool hits(const Box& b) const {
        const float eps = 1e-6f;
        return !(q_.x1 < b.x0 + eps || q_.x0 > b.x1 - eps || q_.y1 < b.y0 + eps || q_.y0 > b.y1 - eps);
    }

    // First box at or after bi on its chain that overlaps the current query (-1 if none), memoised per query.
    int32_t first_hit(int32_t bi) {
        int32_t r = -1;
        const int32_t start = bi;
        while (bi != -1) {
            Box& b = boxes_[bi];
            if (b.stamp == query_) {
                r = b.memo;
                break;
            }
            if (b.last_cx > stop_cx_ || b.last_cy > stop_cy_) break;  // nothing further can overlap (see above)
            if (hits(b)) {
                b.stamp = query_;
                b.memo = bi;
                r = bi;
                break;
            }
            bi = b.next;
        }
        for (int32_t v = start; v != bi; v = boxes_[v].next) {  // path compression for this query
            boxes_[v].stamp = query_;
            boxes_[v].memo = r;
        }
        return r;
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
    std::vector<int32_t> stack_;
    std::vector<int32_t> run_heads_, run_counts_;  // one query row's runs (for_each_run)
    int qc0x_ = 0, qc0y_ = 0, qc1x_ = 0, qc1y_ = 0;
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
    uint32_t query_ = 0;
    int span_x_ = 0, span_y_ = 0;
    int64_t stop_cx_ = 0, stop_cy_ = 0;
};

}  // namespace flipsampler
