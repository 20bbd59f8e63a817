// r = A x + c and g = Aᵀ r for a batch, reading A once (problems/linalg.py, normal_product).
//
// A: (B, m, n) row-major, x: (B, n), c: (B, m); writes r: (B, m), g: (B, n). Each instance's rows
// are cut into blocks of ROW_BLOCK rows; a block's work reads each row once while it sits in
// L1: r_j = a_j·x + c_j for 4 rows, then g += Σ r_j a_j for the same 4 rows. The (instance,
// block) items run in OpenMP threads (torch's pool); with more than one block per instance,
// each block writes its partial Aᵀr to `partial` (B, blocks, n), summed afterwards in block
// order. So an instance's numbers do not depend on the batch or the thread count.
#include <stdint.h>

constexpr int64_t ROW_BLOCK = 256;

extern "C" int64_t l2o_row_block() { return ROW_BLOCK; }

template <typename T>
static void block_product(int64_t rows, int64_t n, const T *A, const T *x, const T *c, T *r, T *g) {
    for (int64_t k = 0; k < n; ++k) g[k] = T(0);
    int64_t j = 0;
    for (; j + 4 <= rows; j += 4) {
        const T *a0 = A + j * n, *a1 = a0 + n, *a2 = a1 + n, *a3 = a2 + n;
        T d0 = 0, d1 = 0, d2 = 0, d3 = 0;
#pragma omp simd reduction(+ : d0, d1, d2, d3)
        for (int64_t k = 0; k < n; ++k) {
            const T xk = x[k];
            d0 += a0[k] * xk;
            d1 += a1[k] * xk;
            d2 += a2[k] * xk;
            d3 += a3[k] * xk;
        }
        d0 += c[j], d1 += c[j + 1], d2 += c[j + 2], d3 += c[j + 3];
        r[j] = d0, r[j + 1] = d1, r[j + 2] = d2, r[j + 3] = d3;
#pragma omp simd
        for (int64_t k = 0; k < n; ++k) g[k] += d0 * a0[k] + d1 * a1[k] + d2 * a2[k] + d3 * a3[k];
    }
    for (; j < rows; ++j) {
        const T *a0 = A + j * n;
        T d0 = 0;
#pragma omp simd reduction(+ : d0)
        for (int64_t k = 0; k < n; ++k) d0 += a0[k] * x[k];
        d0 += c[j];
        r[j] = d0;
#pragma omp simd
        for (int64_t k = 0; k < n; ++k) g[k] += d0 * a0[k];
    }
}

template <typename T>
static void normal_product(int64_t B, int64_t m, int64_t n, const T *A, const T *x, const T *c, T *r, T *g,
                           T *partial) {
    const int64_t blocks = (m + ROW_BLOCK - 1) / ROW_BLOCK;
#pragma omp parallel for schedule(static)
    for (int64_t item = 0; item < B * blocks; ++item) {
        const int64_t b = item / blocks, block = item % blocks, first = block * ROW_BLOCK;
        const int64_t rows = m - first < ROW_BLOCK ? m - first : ROW_BLOCK;
        T *out = blocks == 1 ? g + b * n : partial + item * n;
        block_product(rows, n, A + (b * m + first) * n, x + b * n, c + b * m + first, r + b * m + first, out);
    }
    if (blocks == 1) return;
#pragma omp parallel for schedule(static)
    for (int64_t b = 0; b < B; ++b) {
        T *out = g + b * n;
        const T *first = partial + b * blocks * n;
        for (int64_t k = 0; k < n; ++k) out[k] = first[k];
        for (int64_t block = 1; block < blocks; ++block) {
            const T *part = first + block * n;
#pragma omp simd
            for (int64_t k = 0; k < n; ++k) out[k] += part[k];
        }
    }
}

extern "C" void l2o_normal_product_f32(int64_t B, int64_t m, int64_t n, const float *A, const float *x,
                                       const float *c, float *r, float *g, float *partial) {
    normal_product(B, m, n, A, x, c, r, g, partial);
}

extern "C" void l2o_normal_product_f64(int64_t B, int64_t m, int64_t n, const double *A, const double *x,
                                       const double *c, double *r, double *g, double *partial) {
    normal_product(B, m, n, A, x, c, r, g, partial);
}
