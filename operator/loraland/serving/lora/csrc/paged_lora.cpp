// loraland::add_paged_lora, the LoRA op on CPU: y[i] += B_p (A_p x[i]) for every page p
// of row i, read from the paged pools of loraland/serving/lora/ops.py, for one token per
// row (decode) or several (prefill).
//
// Why a kernel: in the embedding_bag form the A side is a bag of `in` table rows of PAGE
// floats each, so a rank-8 page costs `in` index steps of 8 multiply-adds, and A and B are
// two passes over the batch; the gathered prefill form copies every row's pages before
// its two bmm. Here each page is read once, contiguously (its A block, then its B rows),
// in place, with AVX2/FMA intrinsics where the build targets them (a portable loop the
// compiler vectorises elsewhere). Decode streams the next page in while the current one
// computes, and splits rows across torch's intra-op threads by pages, not by rows, so a
// rank-64 row (8 pages) next to rank-4 ones does not leave a thread idle; prefill splits
// them by token rows.
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>
#include <torch/library.h>

#include <algorithm>
#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#endif
#include <initializer_list>
#include <vector>

namespace {

constexpr int64_t kPage = 8;  // ops.PAGE

inline void prefetch(const float* begin, int64_t floats) {
  const char* bytes = reinterpret_cast<const char*>(begin);
  // One prefetch per 512 bytes starts the hardware streams; one per cache line costs
  // more instructions than it saves.
  for (int64_t offset = 0; offset < floats * 4; offset += 512) __builtin_prefetch(bytes + offset);
}

// The page a decode step reads after the current one, brought in a few cache lines at a
// time while the current page computes: in a batch on many adapters the pages come from
// memory, and issuing all of a page's lines at once (or only one per 512 bytes) left the
// kernel waiting on them (32 rows on 40 adapters of ranks 4-64, 120 modules of the
// embedded model: 26.6 ms a step with whole-page prefetches, 23.1 spread). The lines go
// to L2, not L1 (locality 2, prefetcht1): a 576-wide page is 24-37 KB, so it and the
// next overflow a 32 KB L1, and prefetching into L1 evicted lines of the page being
// read. benchmarks/serving/lora_step.py --mixed before and after: every row on its own
// rank-8 adapter 6.54 ms a step -> 4.65, 40 adapters of ranks 4-64 16.72 -> 11.24
// (pages scattered) and 12.92 -> 10.55 (each adapter's pages one run); locality 1
// measured the same, 0 (non-temporal) and looking two pages ahead no better.
constexpr int kLookaheadLocality = 2;

struct Lookahead {
  const char* a = nullptr;
  int64_t a_bytes = 0;
  const char* b = nullptr;
  int64_t b_bytes = 0;
  int64_t next = 0;  // bytes of a, then b, issued so far

  void issue(int64_t lines) {
    for (int64_t i = 0; i < lines && a != nullptr; ++i, next += 64) {
      if (next < a_bytes)
        __builtin_prefetch(a + next, 0, kLookaheadLocality);
      else if (next - a_bytes < b_bytes)
        __builtin_prefetch(b + (next - a_bytes), 0, kLookaheadLocality);
      else
        a = nullptr;
    }
  }
  // Lines per step of a loop of `steps` steps that issue all of them.
  int64_t per_step(int64_t steps) const {
    return a == nullptr ? 0 : (a_bytes + b_bytes + 64 * steps - 1) / (64 * std::max<int64_t>(steps, 1));
  }
};

#if defined(__AVX2__) && defined(__FMA__)
// One page for one token row: hidden = A_p x (PAGE values), then y += B_p hidden. A's page
// is [in, PAGE]: one 8-float register per input, eight accumulators so the FMAs pipeline;
// B's rows are summed in two chains per 8 outputs.
static_assert(kPage == 8, "the AVX2 kernel holds one page row in one register");
inline void add_page(float* y, const float* x, const float* a, const float* b, int64_t d_in,
                     int64_t d_out, Lookahead* ahead = nullptr) {
  __m256 h[8];
  for (auto& acc : h) acc = _mm256_setzero_ps();
  const int64_t lines = ahead == nullptr ? 0 : ahead->per_step(d_in / 8);
  int64_t k = 0;
  for (; k + 8 <= d_in; k += 8) {
    if (lines) ahead->issue(lines);
    for (int u = 0; u < 8; ++u)
      h[u] = _mm256_fmadd_ps(_mm256_set1_ps(x[k + u]), _mm256_loadu_ps(a + (k + u) * kPage), h[u]);
  }
  for (; k < d_in; ++k)
    h[0] = _mm256_fmadd_ps(_mm256_set1_ps(x[k]), _mm256_loadu_ps(a + k * kPage), h[0]);
  if (ahead != nullptr) ahead->issue(ahead->per_step(1));  // whatever a short loop left
  alignas(32) float hidden[kPage];
  _mm256_store_ps(hidden, _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(h[0], h[1]), _mm256_add_ps(h[2], h[3])),
                                        _mm256_add_ps(_mm256_add_ps(h[4], h[5]), _mm256_add_ps(h[6], h[7]))));
  __m256 g[kPage];
  for (int j = 0; j < kPage; ++j) g[j] = _mm256_set1_ps(hidden[j]);
  int64_t c = 0;
  for (; c + 8 <= d_out; c += 8) {
    const float* rows = b + c;
    __m256 even = _mm256_mul_ps(g[0], _mm256_loadu_ps(rows));
    __m256 odd = _mm256_mul_ps(g[1], _mm256_loadu_ps(rows + d_out));
    for (int j = 2; j < kPage; j += 2) {
      even = _mm256_fmadd_ps(g[j], _mm256_loadu_ps(rows + j * d_out), even);
      odd = _mm256_fmadd_ps(g[j + 1], _mm256_loadu_ps(rows + (j + 1) * d_out), odd);
    }
    _mm256_storeu_ps(y + c, _mm256_add_ps(_mm256_loadu_ps(y + c), _mm256_add_ps(even, odd)));
  }
  for (; c < d_out; ++c) {
    float sum = 0.f;
    for (int j = 0; j < kPage; ++j) sum += hidden[j] * b[j * d_out + c];
    y[c] += sum;
  }
}
// `T` token rows of one batch row (consecutive rows of x and y) through one page, in
// prefill: each load of the page's A and B serves all T. Four rows at a time ran
// 1.3-1.5x faster than one (16 prompts x 17 tokens, or 4 x 60, on ranks 4-64 or 8);
// eight gained nothing more.
template <int T>
inline void add_page_rows(float* y, const float* x, const float* a, const float* b,
                          int64_t d_in, int64_t d_out) {
  __m256 h[T][2];
  for (int t = 0; t < T; ++t) h[t][0] = h[t][1] = _mm256_setzero_ps();
  int64_t k = 0;
  for (; k + 2 <= d_in; k += 2) {
    const __m256 a0 = _mm256_loadu_ps(a + k * kPage), a1 = _mm256_loadu_ps(a + (k + 1) * kPage);
    for (int t = 0; t < T; ++t) {
      h[t][0] = _mm256_fmadd_ps(_mm256_set1_ps(x[t * d_in + k]), a0, h[t][0]);
      h[t][1] = _mm256_fmadd_ps(_mm256_set1_ps(x[t * d_in + k + 1]), a1, h[t][1]);
    }
  }
  if (k < d_in) {
    const __m256 a0 = _mm256_loadu_ps(a + k * kPage);
    for (int t = 0; t < T; ++t)
      h[t][0] = _mm256_fmadd_ps(_mm256_set1_ps(x[t * d_in + k]), a0, h[t][0]);
  }
  alignas(32) float hidden[T][kPage];
  for (int t = 0; t < T; ++t) _mm256_store_ps(hidden[t], _mm256_add_ps(h[t][0], h[t][1]));
  int64_t c = 0;
  for (; c + 8 <= d_out; c += 8) {
    __m256 rows[kPage];
    for (int j = 0; j < kPage; ++j) rows[j] = _mm256_loadu_ps(b + j * d_out + c);
    for (int t = 0; t < T; ++t) {
      __m256 even = _mm256_mul_ps(_mm256_set1_ps(hidden[t][0]), rows[0]);
      __m256 odd = _mm256_mul_ps(_mm256_set1_ps(hidden[t][1]), rows[1]);
      for (int j = 2; j < kPage; j += 2) {
        even = _mm256_fmadd_ps(_mm256_set1_ps(hidden[t][j]), rows[j], even);
        odd = _mm256_fmadd_ps(_mm256_set1_ps(hidden[t][j + 1]), rows[j + 1], odd);
      }
      float* out = y + t * d_out + c;
      _mm256_storeu_ps(out, _mm256_add_ps(_mm256_loadu_ps(out), _mm256_add_ps(even, odd)));
    }
  }
  for (; c < d_out; ++c)
    for (int t = 0; t < T; ++t) {
      float sum = 0.f;
      for (int j = 0; j < kPage; ++j) sum += hidden[t][j] * b[j * d_out + c];
      y[t * d_out + c] += sum;
    }
}
constexpr int64_t kTokenBlock = 4;

// Up to kTokenBlock token rows through one page.
inline void add_page_block(float* y, const float* x, const float* a, const float* b,
                           int64_t d_in, int64_t d_out, int64_t count) {
  switch (count) {
    case 4: return add_page_rows<4>(y, x, a, b, d_in, d_out);
    case 3: return add_page_rows<3>(y, x, a, b, d_in, d_out);
    case 2: return add_page_rows<2>(y, x, a, b, d_in, d_out);
    default: return add_page(y, x, a, b, d_in, d_out);
  }
}
#else
// Portable form of the same (the compiler vectorises the PAGE-wide inner loops): four
// accumulators over `in`, so the adds pipeline.
inline void add_page(float* y, const float* x, const float* a, const float* b, int64_t d_in,
                     int64_t d_out, Lookahead* ahead = nullptr) {
  float h0[kPage] = {0}, h1[kPage] = {0}, h2[kPage] = {0}, h3[kPage] = {0};
  const int64_t lines = ahead == nullptr ? 0 : ahead->per_step(d_in / 4);
  int64_t k = 0;
  for (; k + 4 <= d_in; k += 4) {
    if (lines) ahead->issue(lines);
    const float* rows = a + k * kPage;  // A's page is [in, PAGE]: PAGE floats per input
    for (int j = 0; j < kPage; ++j) {
      h0[j] += x[k] * rows[j];
      h1[j] += x[k + 1] * rows[kPage + j];
      h2[j] += x[k + 2] * rows[2 * kPage + j];
      h3[j] += x[k + 3] * rows[3 * kPage + j];
    }
  }
  for (; k < d_in; ++k)
    for (int j = 0; j < kPage; ++j) h0[j] += x[k] * a[k * kPage + j];
  if (ahead != nullptr) ahead->issue(ahead->per_step(1));
  float hidden[kPage];
  for (int j = 0; j < kPage; ++j) hidden[j] = (h0[j] + h1[j]) + (h2[j] + h3[j]);
  for (int64_t c = 0; c < d_out; ++c) {
    float sum = 0.f;
    for (int j = 0; j < kPage; ++j) sum += hidden[j] * b[j * d_out + c];
    y[c] += sum;
  }
}

constexpr int64_t kTokenBlock = 1;

inline void add_page_block(float* y, const float* x, const float* a, const float* b,
                           int64_t d_in, int64_t d_out, int64_t count) {
  for (int64_t t = 0; t < count; ++t) add_page(y + t * d_out, x + t * d_in, a, b, d_in, d_out);
}
#endif

// Whether page[q] was listed in the `window` entries before it: then it is in cache
// already (rows on one adapter), and prefetching it again only costs instructions.
inline bool listed_recently(const int64_t* page, int64_t q, int64_t window = 16) {
  for (int64_t w = q - 1; w >= 0 && w >= q - window; --w)
    if (page[w] == page[q]) return true;
  return false;
}

// y[r * tokens + t] += B_p A_p x[r * tokens + t] for every page p = pages[q] of batch row
// r = owner[q] and every token t < tokens (decode: tokens = 1).
at::Tensor add_paged_lora(at::Tensor y, const at::Tensor& x, const at::Tensor& a_pages,
                          const at::Tensor& b_rows, const at::Tensor& pages,
                          const at::Tensor& owner, int64_t tokens) {
  for (const at::Tensor* t : std::initializer_list<const at::Tensor*>{&y, &x, &a_pages, &b_rows})
    TORCH_CHECK(t->device().is_cpu() && t->scalar_type() == at::kFloat && t->is_contiguous(),
                "add_paged_lora: y, x, a_pages and b_rows must be contiguous float32 CPU tensors");
  TORCH_CHECK(pages.scalar_type() == at::kLong && owner.scalar_type() == at::kLong &&
                  pages.dim() == 1 && owner.sizes() == pages.sizes() && pages.is_contiguous() &&
                  owner.is_contiguous(),
              "add_paged_lora: pages and owner must be int64 vectors of one length");
  TORCH_CHECK(tokens >= 1 && x.dim() == 2 && y.dim() == 2 && x.size(0) == y.size(0) &&
                  x.size(0) % tokens == 0,
              "add_paged_lora: x is [rows * tokens, in] and y is [rows * tokens, out]");
  const int64_t rows = x.size(0) / tokens, d_in = x.size(1), d_out = y.size(1);
  TORCH_CHECK(a_pages.dim() == 2 && a_pages.size(1) == kPage && a_pages.size(0) % d_in == 0 &&
                  b_rows.dim() == 2 && b_rows.size(1) == d_out &&
                  b_rows.size(0) == a_pages.size(0) / d_in * kPage,
              "add_paged_lora: pools must be a_pages [pages * in, 8] and b_rows [pages * 8, out]");
  const int64_t pool_pages = b_rows.size(0) / kPage, n = pages.size(0);
  const int64_t* page = pages.data_ptr<int64_t>();
  const int64_t* row_of = owner.data_ptr<int64_t>();
  for (int64_t q = 0; q < n; ++q) {
    TORCH_CHECK(0 <= page[q] && page[q] < pool_pages, "add_paged_lora: page ", page[q],
                " outside the pool's ", pool_pages);
    TORCH_CHECK(0 <= row_of[q] && row_of[q] < rows && (q == 0 || row_of[q - 1] <= row_of[q]),
                "add_paged_lora: owner must list rows in [0, ", rows, ") in order");
  }
  const float* xs = x.data_ptr<float>();
  const float* a = a_pages.data_ptr<float>();
  const float* b = b_rows.data_ptr<float>();
  float* ys = y.data_ptr<float>();
  const int64_t a_page = d_in * kPage, b_page = kPage * d_out;
  if (tokens == 1) {
    at::parallel_for(0, n, 1, [&](int64_t lo, int64_t hi) {
      // A chunk owns the rows whose first page it holds, so no two threads write one row.
      int64_t q = lo;
      while (q > 0 && q < hi && row_of[q - 1] == row_of[q]) ++q;
      if (q == hi) return;  // every page here continues a row an earlier chunk owns
      int64_t end = hi;
      while (end < n && row_of[end] == row_of[end - 1]) ++end;
      prefetch(a + page[q] * a_page, a_page);
      prefetch(b + page[q] * b_page, b_page);
      for (; q < end; ++q) {
        Lookahead ahead;
        if (q + 1 < end && !listed_recently(page, q + 1)) {
          ahead.a = reinterpret_cast<const char*>(a + page[q + 1] * a_page);
          ahead.a_bytes = a_page * 4;
          ahead.b = reinterpret_cast<const char*>(b + page[q + 1] * b_page);
          ahead.b_bytes = b_page * 4;
        }
        add_page(ys + row_of[q] * d_out, xs + row_of[q] * d_in, a + page[q] * a_page,
                 b + page[q] * b_page, d_in, d_out, &ahead);
      }
    });
    return y;
  }
  // Several tokens per row (prefill): the work unit is a block of up to kTokenBlock token
  // rows of one batch row with all its pages, so no two threads write one token row.
  std::vector<int64_t> first(rows + 1, n);
  for (int64_t q = n - 1; q >= 0; --q) first[row_of[q]] = q;
  for (int64_t r = rows - 1; r >= 0; --r) first[r] = std::min(first[r], first[r + 1]);
  at::parallel_for(0, rows * tokens, 1, [&](int64_t lo, int64_t hi) {
    for (int64_t token_row = lo; token_row < hi;) {
      const int64_t r = token_row / tokens;
      const int64_t count = std::min({kTokenBlock, hi - token_row, (r + 1) * tokens - token_row});
      for (int64_t q = first[r]; q < first[r + 1]; ++q)
        add_page_block(ys + token_row * d_out, xs + token_row * d_in, a + page[q] * a_page,
                       b + page[q] * b_page, d_in, d_out, count);
      token_row += count;
    }
  });
  return y;
}

}  // namespace

TORCH_LIBRARY(loraland, m) {
  m.def(
      "add_paged_lora(Tensor(a!) y, Tensor x, Tensor a_pages, Tensor b_rows, Tensor pages, "
      "Tensor owner, int tokens=1) -> Tensor(a!)");
}

TORCH_LIBRARY_IMPL(loraland, CPU, m) { m.impl("add_paged_lora", &add_paged_lora); }
