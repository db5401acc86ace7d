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
// * cells live in dense 32 x 32 tiles found through a small hash (one lookup per tile row segment, not per cell);
// * chain pruning: a box's successor is the previous head of the box's LAST (bottom-right) cell, so it touches
//   that cell and its own last cell is >= componentwise; last cells are monotone along a chain, and once a chain's
//   last cell lies beyond the query's last cell plus the widest box span (in cells) no later box on it can overlap
//   the query, so the walk stops (the official walks are O(n) per cell);
// * summation: all terms are >= 0, so the official float32 running sum is monotone and its early exit equals
//   comparing the final float32 sum with the limit. Pass 1 sums the same float32 terms in float64 through
//   per-query memoised chain sums (every box visited once, runs of cells sharing a head counted at once) and decides
//   whenever the result is farther from the limit than the worst float32 rounding (n terms: n * 2^-24 * sum);
//   otherwise pass 2 replays the exact official float32 sequence.
// ------------------------------------------------------------------------------------------------------------
class OverlapGrid {
  public:
    explicit OverlapGrid(float cell_size) : cell_(cell_size) { rehash(16); }

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
                int32_t& head = tile(cx >> kTileBits, cy >> kTileBits, true)[local(cx, cy)];
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
        int32_t tile;  // -1: empty slot
    };

    // floor(v / cell) as int; the cells touched by accepted / queried boxes are small non-negative numbers
    // (boxes lie inside the image), and the truncate-and-adjust form equals std::floor for |q| < 2^31.
    int cell_of(float v) const {
        const float q = v / cell_;
        const int i = static_cast<int>(q);
        return i - (q < static_cast<float>(i) ? 1 : 0);
    }
    static int local(int cx, int cy) { return ((cy & (kTile - 1)) << kTileBits) | (cx & (kTile - 1)); }

    // Calls fn(head, run) for every maximal run of consecutive non-empty cells of a query row that share the same
    // head box, rows top to bottom and runs left to right (the official cell order).
    // After each row, stop() may end the scan early (returns true).
    template <typename Fn, typename Stop>
    void for_each_run(Fn&& fn, Stop&& stop) {
        for (int cy = qc0y_; cy <= qc1y_; ++cy) {
            int32_t run_head = -1;
            int run = 0;
            for (int cx = qc0x_; cx <= qc1x_;) {
                const int tx = cx >> kTileBits;
                const int seg_end = std::min(qc1x_, (tx << kTileBits) + kTile - 1);
                const int32_t* t = tile(tx, cy >> kTileBits, false);
                if (t == nullptr) {
                    cx = seg_end + 1;
                    continue;  // empty cells add nothing, so runs may continue across them
                }
                const int32_t* row = t + local(cx, cy);
                const int32_t* const row_end = row + (seg_end - cx + 1);
                cx = seg_end + 1;
                for (; row != row_end; ++row) {
                    const int32_t head = *row;
                    if (head < 0) continue;  // empty cell
                    if (head == run_head) {
                        ++run;
                    } else {
                        if (run > 0) fn(run_head, run);
                        run_head = head;
                        run = 1;
                    }
                }
            }
            if (run > 0) fn(run_head, run);
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
        const uint64_t k = key_of(tx, ty);
        if (k == last_key_ && last_tile_ >= 0) return &heads_[static_cast<size_t>(last_tile_) * kTile * kTile];
        size_t i = hash_of(k) & mask_;
        for (;; i = (i + 1) & mask_) {
            if (table_[i].tile < 0) break;
            if (table_[i].key == k) {
                last_key_ = k;
                last_tile_ = table_[i].tile;
                return &heads_[static_cast<size_t>(last_tile_) * kTile * kTile];
            }
        }
        if (!create) return nullptr;
        const int32_t id = static_cast<int32_t>(heads_.size() / (kTile * kTile));
        heads_.resize(heads_.size() + kTile * kTile, -1);
        table_[i] = Slot{k, id};
        if (static_cast<size_t>(id + 1) * 2 > table_.size()) rehash(table_.size() * 2);
        last_key_ = k;
        last_tile_ = id;
        return &heads_[static_cast<size_t>(id) * kTile * kTile];
    }

    void rehash(size_t n) {
        std::vector<Slot> old;
        old.swap(table_);
        table_.assign(n, Slot{0, -1});
        mask_ = n - 1;
        for (const Slot& s : old) {
            if (s.tile < 0) continue;
            size_t i = hash_of(s.key) & mask_;
            while (table_[i].tile >= 0) i = (i + 1) & mask_;
            table_[i] = s;
        }
    }

    float cell_;
    std::vector<Box> boxes_;
    std::vector<int32_t> stack_;
    int qc0x_ = 0, qc0y_ = 0, qc1x_ = 0, qc1y_ = 0;
    std::vector<int32_t> heads_;  // tiles of kTile * kTile chain heads (-1 = empty cell)
    std::vector<Slot> table_;
    size_t mask_ = 0;
    uint64_t last_key_ = 0;
    int32_t last_tile_ = -1;
    Box q_{};
    uint32_t query_ = 0;
    int span_x_ = 0, span_y_ = 0;
    int64_t stop_cx_ = 0, stop_cy_ = 0;
};

}  // namespace flipsampler
