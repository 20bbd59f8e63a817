// The coordinate-wise LSTM network's deployment forward (l2o/rules/native_network.py): one step
// over rows, float32, in AVX-512 or AVX2 registers, every layer of a group of V/4 rows in
// registers; H = Vq + 4. For GoMathL2O's shape, also its whole drop-in step (features, network,
// update: l2o_gomath_rows).
#include <stdint.h>
#include <string.h>
#include <cmath>
#include <immintrin.h>

#if defined(__AVX512F__) && defined(__AVX512DQ__)
#define L2O_AVX512 1
constexpr int V = 16;             // floats per vector
#elif defined(__AVX2__) && defined(__FMA__)
#define L2O_AVX512 0
constexpr int V = 8;
#else
#error "the fused kernel needs AVX-512 F and DQ (-mavx512f -mavx512dq) or AVX2 and FMA (-mavx2 -mfma)"
#endif

#ifndef F0
#error "compile with -DF0= -DH= -DL= -DK= -DHIDDEN="
#endif
constexpr int Q = H / V;          // full vectors per gate; the 4 remaining units of all 4 gates share NR
static_assert(H % V == 4, "the fused kernel takes H = Vq + 4 hidden units");
constexpr int ROWS = V / 4;       // rows per group: a block of ROWS rows × 4 units fills one vector
constexpr int NR = 16 / V;        // vectors per row of the last 4 units of i, f, g, o
constexpr int NV = 4 * Q + NR;    // gate vectors per row: [i f g o] per block of V units, then the rest
constexpr int GP = NV * V;        // = 4H
constexpr int B = H / 4;          // blocks of 4 hidden units: a block of ROWS rows fills one vector
constexpr int REGISTERS = L2O_AVX512 ? 32 : 16;
static_assert(K >= 1 && K <= 4, "the heads of a group fill one vector: at most 4 heads");

typedef float vec __attribute__((vector_size(4 * V)));

static inline vec splat(float a) { return a - (vec){}; }
static inline vec load(const float *p) { vec v; memcpy(&v, p, sizeof v); return v; }
static inline void store(float *p, vec v) { memcpy(p, &v, sizeof v); }

extern "C" int l2o_vector_width() { return V; }

// 2^s ≈ 1 + s(c₁ + s(c₂ + s c₃)) for |s| ≤ 1/32 (AVX-512's σ) or 1/16 (AVX2's): a degree-3
// polynomial fitted for relative error on that interval, the coefficients rounded to float32
// (1.6e-9, 0.5 ulp in float32 Horner, for 1/32; 3.8e-8 for 1/16).
#if L2O_AVX512
constexpr float EXP2_COEFFICIENTS[3] = {0.69314718f, 0.24023429f, 0.05550214f};
#else
constexpr float EXP2_COEFFICIENTS[3] = {0.6931471824645996f, 0.24026407301425934f, 0.05549890175461769f};
#endif
static inline vec exp2_polynomial(vec s) {
    vec p = splat(EXP2_COEFFICIENTS[2]);
    p = p * s + splat(EXP2_COEFFICIENTS[1]);
    p = p * s + splat(EXP2_COEFFICIENTS[0]);
    return p * s + splat(1.0f);
}

#if L2O_AVX512
// σ(x) = 1 / (1 + 2^t) for t = −x log₂e, which the gates' weights already compute (they are
// scaled by −log₂e, the g rows by −2 log₂e). t is capped at 127 so that 1 + 2^t stays finite
// for the reciprocal (σ ≈ 6e-39 there); NaN propagates (`min` returns its second operand for
// NaN), as in torch's σ. Adding 1.5 · 2^19 (whose ulp is 1/16) rounds t to q, a multiple of 1/16,
// and leaves 16q's last 4 bits j in the sum's, which index the table 2^(j/16) (`permutexvar`
// reads an index's low 4 bits); `reduce` gives s = t − q (|s| ≤ 1/32, exact; 0 for ±∞). Then
// 2^t = 2^(j/16) 2^⌊q⌋ · 2^s by `scalef` and the polynomial: 2^−∞ = 0, so σ(∞) = 1. 1/d by rcp14
// and one Newton step r + r(1 − dr). 13 vector operations, 2 of them additions (off the FMA
// ports), within 3.1 ulp of the exact 1 / (1 + 2^t) (0.46 ulp on average).
static inline vec sigmoid_of_exponent(vec t) {
    const __m512 magic = _mm512_set1_ps(786432.0f);  // 1.5 · 2^19: its ulp is 1/16
    const __m512 table = _mm512_setr_ps(  // 2^(j/16), rounded to float32
        1.0f, 1.0442737340927124f, 1.0905077457427979f, 1.1387885808944702f, 1.1892070770263672f,
        1.2418577671051025f, 1.2968395948410034f, 1.3542555570602417f, 1.4142135381698608f, 1.4768261909484863f,
        1.5422108173370361f, 1.610490322113037f, 1.6817928552627563f, 1.7562521696090698f, 1.8340080976486206f,
        1.9152065515518188f);
    __m512 capped = _mm512_min_ps(_mm512_set1_ps(127.0f), (__m512)t);
    __m512 y = _mm512_add_ps(capped, magic);
    __m512 q = _mm512_sub_ps(y, magic);
    __m512 s = _mm512_reduce_ps(capped, (4 << 4) | _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 e = _mm512_scalef_ps(_mm512_permutexvar_ps(_mm512_castps_si512(y), table), q);
    __m512 d = _mm512_fmadd_ps(e, (__m512)exp2_polynomial((vec)s), _mm512_set1_ps(1.0f));
    __m512 r = _mm512_rcp14_ps(d);
    return (vec)_mm512_fmadd_ps(r, _mm512_fnmadd_ps(d, r, _mm512_set1_ps(1.0f)), r);
}
#else
// σ(x) = 1 / (1 + 2^t) as on AVX-512 (above), from AVX2's operations: t is clamped to
// [−126, 127], so that 2^⌊q⌋ is a normal float's exponent and 1 + 2^t finite (NaN propagates
// through both: `min` and `max` return their second operand for NaN, and s = NaN). Adding
// 1.5 · 2^20 (whose ulp is 1/8) rounds t to q, a multiple of 1/8, and its bits less the constant's
// are n = 8q, whose last 3 bits j index the table 2^(j/8) (`permutevar8x32` reads an index's low 3
// bits) and whose others, ⌊q⌋, are added to the table entry's exponent field; s = t − q exactly
// (|s| ≤ 1/16). 1/d by `rcp` (12 bits) and two Newton steps r + r(1 − dr): with one, σ of a
// saturated gate was 1 − 2^−24, not 1 (an open forget gate shrank c), and σ was within 3.3 ulp
// of the exact 1 / (1 + 2^t) (0.76 on average); with two, σ(∞) = 1 and 2.7 ulp (0.31 on average;
// as close as `div_ps`, which took 390 against 309 ns a row in one thread).
static inline vec sigmoid_of_exponent(vec t) {
    const __m256 magic = _mm256_set1_ps(1572864.0f);  // 1.5 · 2^20: its ulp is 1/8
    const __m256 table = _mm256_setr_ps(  // 2^(j/8), rounded to float32
        1.0f, 1.0905077457427979f, 1.1892070770263672f, 1.2968395948410034f, 1.4142135381698608f,
        1.5422108173370361f, 1.6817928552627563f, 1.8340080976486206f);
    __m256 capped = _mm256_max_ps(_mm256_set1_ps(-126.0f), _mm256_min_ps(_mm256_set1_ps(127.0f), (__m256)t));
    __m256 y = _mm256_add_ps(capped, magic);
    __m256 s = _mm256_sub_ps(capped, _mm256_sub_ps(y, magic));
    __m256i n = _mm256_sub_epi32(_mm256_castps_si256(y), _mm256_castps_si256(magic));
    __m256i scale = _mm256_slli_epi32(_mm256_and_si256(n, _mm256_set1_epi32(~7)), 20);  // ⌊q⌋ << 23
    __m256 e = _mm256_castsi256_ps(_mm256_add_epi32(
        _mm256_castps_si256(_mm256_permutevar8x32_ps(table, _mm256_castps_si256(y))), scale));
    __m256 d = _mm256_fmadd_ps(e, (__m256)exp2_polynomial((vec)s), _mm256_set1_ps(1.0f));
    __m256 r = _mm256_rcp_ps(d);
    r = _mm256_fmadd_ps(r, _mm256_fnmadd_ps(d, r, _mm256_set1_ps(1.0f)), r);
    return (vec)_mm256_fmadd_ps(r, _mm256_fnmadd_ps(d, r, _mm256_set1_ps(1.0f)), r);
}
#endif

constexpr float MINUS_2_LOG2E = -2.88539008177792681f;  // tanh(c) = 2σ(2c) − 1, 2σ(2c) from t = −2c log₂e

// acc[i] (ROWS × NO vectors) += a (ROWS × KA: row i's input k at a[i·SA + k·SK]) W (KA × NO·V):
// with the NO weight vectors of an input in registers for all ROWS rows where the accumulators
// and they fit (AVX-512's 32 registers), else row by row with the weights read from L1 (AVX2's 16).
template <int NO, int KA, int SA, int SK = 1>
static inline void accumulate(vec (&acc)[ROWS][NO], const float *a, const float *w) {
    if constexpr ((ROWS + 1) * NO < REGISTERS) {
        for (int k = 0; k < KA; k++) {
            vec wk[NO];
            for (int j = 0; j < NO; j++) wk[j] = load(w + (k * NO + j) * V);
            for (int i = 0; i < ROWS; i++) {
                vec s = splat(a[i * SA + k * SK]);
                for (int j = 0; j < NO; j++) acc[i][j] += s * wk[j];
            }
        }
    } else {
        for (int i = 0; i < ROWS; i++)
            for (int k = 0; k < KA; k++) {
                vec s = splat(a[i * SA + k * SK]);
                for (int j = 0; j < NO; j++) acc[i][j] += s * load(w + (k * NO + j) * V);
            }
    }
}

// c' = s_f c + s_i (2 s_g − 1), h' = s_o (2σ(2c') − 1) = s_o tanh(c').
static inline void cell(vec i, vec f, vec g, vec o, vec c, vec &c_next, vec &h_next) {
    c_next = f * c + i * (splat(2.0f) * g - splat(1.0f));
    h_next = o * (splat(2.0f) * sigmoid_of_exponent(c_next * splat(MINUS_2_LOG2E)) - splat(1.0f));
}

// ROWS × ROWS blocks of 4 floats: out[b] lane-block a = in[a] lane-block b.
static inline void transpose_blocks(const vec (&in)[ROWS], vec (&out)[ROWS]) {
#if L2O_AVX512
    vec t0 = __builtin_shufflevector(in[0], in[1], 0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23);
    vec t1 = __builtin_shufflevector(in[0], in[1], 8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31);
    vec t2 = __builtin_shufflevector(in[2], in[3], 0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23);
    vec t3 = __builtin_shufflevector(in[2], in[3], 8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31);
    out[0] = __builtin_shufflevector(t0, t2, 0, 1, 2, 3, 8, 9, 10, 11, 16, 17, 18, 19, 24, 25, 26, 27);
    out[1] = __builtin_shufflevector(t0, t2, 4, 5, 6, 7, 12, 13, 14, 15, 20, 21, 22, 23, 28, 29, 30, 31);
    out[2] = __builtin_shufflevector(t1, t3, 0, 1, 2, 3, 8, 9, 10, 11, 16, 17, 18, 19, 24, 25, 26, 27);
    out[3] = __builtin_shufflevector(t1, t3, 4, 5, 6, 7, 12, 13, 14, 15, 20, 21, 22, 23, 28, 29, 30, 31);
#else
    out[0] = __builtin_shufflevector(in[0], in[1], 0, 1, 2, 3, 8, 9, 10, 11);
    out[1] = __builtin_shufflevector(in[0], in[1], 4, 5, 6, 7, 12, 13, 14, 15);
#endif
}

// One layer for ROWS rows: x (ROWS × KX: row i's input k at x[i·XR + k·XK]), h, c, h_out, c_out
// (ROWS × H, stride H); w ((KX + H) × GP): −log₂e [W_ih | W_hh]ᵀ with the g rows doubled and the
// gate columns grouped (per block of V units i, f, g, o; then the last 4 units of i, f, g, o, in
// NR vectors); bias (GP).
template <int KX, int XR = KX, int XK = 1>
static inline void layer(const float *x, const float *h, const float *c, float *h_out, float *c_out,
                         const float *w, const float *bias) {
    vec acc[ROWS][NV];
    for (int i = 0; i < ROWS; i++)
        for (int j = 0; j < NV; j++) acc[i][j] = load(bias + j * V);
    accumulate<NV, KX, XR, XK>(acc, x, w);
    accumulate<NV, H, H>(acc, h, w + KX * GP);
    for (int i = 0; i < ROWS; i++)
        for (int j = 0; j < NV; j++) acc[i][j] = sigmoid_of_exponent(acc[i][j]);
    for (int i = 0; i < ROWS; i++)
        for (int b = 0; b < Q; b++) {
            vec c_next, h_next;
            cell(acc[i][4 * b], acc[i][4 * b + 1], acc[i][4 * b + 2], acc[i][4 * b + 3],
                 load(c + i * H + b * V), c_next, h_next);
            store(c_out + i * H + b * V, c_next);
            store(h_out + i * H + b * V, h_next);
        }
    vec gate[4];  // gate[0] = [i of the ROWS rows' last 4 units], then f, g, o
    for (int p = 0; p < NR; p++) {
        vec rest[ROWS], blocks[ROWS];
        for (int i = 0; i < ROWS; i++) rest[i] = acc[i][4 * Q + p];
        transpose_blocks(rest, blocks);
        for (int a = 0; a < ROWS; a++) gate[p * ROWS + a] = blocks[a];
    }
    alignas(64) float tail[V], c_tail[V], h_tail[V];
    for (int i = 0; i < ROWS; i++) memcpy(tail + 4 * i, c + i * H + Q * V, 4 * sizeof(float));
    vec c_next, h_next;
    cell(gate[0], gate[1], gate[2], gate[3], load(tail), c_next, h_next);
    store(c_tail, c_next);
    store(h_tail, h_next);
    for (int i = 0; i < ROWS; i++) {
        memcpy(c_out + i * H + Q * V, c_tail + 4 * i, 4 * sizeof(float));
        memcpy(h_out + i * H + Q * V, h_tail + 4 * i, 4 * sizeof(float));
    }
}

// ROWS rows × H (row stride H) as B block vectors: t[b] lane 4i + v = x[i][4b + v].
static inline void row_blocks(const float *x, vec (&t)[B]) {
    for (int q = 0; q < Q; q++) {
        vec rows[ROWS], blocks[ROWS];
        for (int i = 0; i < ROWS; i++) rows[i] = load(x + i * H + q * V);
        transpose_blocks(rows, blocks);
        for (int a = 0; a < ROWS; a++) t[ROWS * q + a] = blocks[a];
    }
    alignas(64) float tail[V];
    for (int i = 0; i < ROWS; i++) memcpy(tail + 4 * i, x + i * H + Q * V, 4 * sizeof(float));
    t[B - 1] = load(tail);
}

// Lane v of each block of 4 lanes, broadcast within its block.
template <int v>
static inline vec block_lane(vec t) {
#if L2O_AVX512
    return (vec)_mm512_permute_ps((__m512)t, v * 0x55);
#else
    return (vec)_mm256_permute_ps((__m256)t, v * 0x55);
#endif
}

// acc lane 4i + u += Σ_k x[i][k] W[k][u] for 4 outputs u of ROWS rows i at once, from x's blocks
// t: lane v of each row's block broadcast within its 4 lanes (k = 4b + v, in order); w (H × V):
// row k = W[k][0..3] repeated for the ROWS rows.
static inline vec blocked_product(const vec (&t)[B], const float *w, vec acc) {
    for (int b = 0; b < B; b++) {
        acc += block_lane<0>(t[b]) * load(w + (4 * b) * V);
        acc += block_lane<1>(t[b]) * load(w + (4 * b + 1) * V);
        acc += block_lane<2>(t[b]) * load(w + (4 * b + 2) * V);
        acc += block_lane<3>(t[b]) * load(w + (4 * b + 3) * V);
    }
    return acc;
}

// maxps(0, v): NaN stays NaN (0 > NaN is false), as torch's ReLU keeps it.
static inline vec relu(vec v) { return splat(0.0f) > v ? splat(0.0f) : v; }

// Lanes 4i + k (row i, head k) to ROWS·k + i (head-major).
static inline vec head_major(vec v) {
#if L2O_AVX512
    return __builtin_shufflevector(v, v, 0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
#else
    return __builtin_shufflevector(v, v, 0, 4, 1, 5, 2, 6, 3, 7);
#endif
}

// The network's weights as the kernel reads them (native_network.py's PackedWeights): w[l],
// bias[l]: layer l's as `layer` takes them; wh (H × Vq), bh (Vq): the hidden layer's first Vq
// units transposed; wt (H × V), bt (V): its last 4 units, and wo (H × V), bo (V): the heads
// (zero past K), each row repeated for ROWS rows as `blocked_product` takes them.
struct Weights {
    const float *const *w, *const *bias;
    const float *wh, *bh, *wt, *bt, *wo, *bo;
};

// The network for ROWS rows: x (ROWS × F0: row i's input k at x[i·XR + k·XK]); h, c, h_out,
// c_out: layer l's rows at + l·stride. Returns the heads' outputs, lane ROWS·k + i for head k of
// row i. The heads (and the hidden layer's last 4 units) run on blocks of ROWS rows × 4 outputs,
// one vector for all the rows instead of a padded vector per row. (A template so that H = 4,
// QN = 0, discards the row-by-row part.)
template <int XR, int XK, int QN = Q>
static inline vec network(const float *x, const float *h, const float *c, float *h_out, float *c_out, int64_t stride,
                          const Weights &weights) {
    layer<F0, XR, XK>(x, h, c, h_out, c_out, weights.w[0], weights.bias[0]);
    for (int l = 1; l < L; l++)
        layer<H>(h_out + (l - 1) * stride, h + l * stride, c + l * stride, h_out + l * stride, c_out + l * stride,
                 weights.w[l], weights.bias[l]);
    const float *top = h_out + (L - 1) * stride;
    vec blocks[B];
    row_blocks(top, blocks);
    if constexpr (HIDDEN) {  // the hidden layer's outputs replace `blocks`: its last 4 units first
        const vec tail = relu(blocked_product(blocks, weights.wt, load(weights.bt)));
        if constexpr (QN > 0) {  // its first Vq units row by row (from `top`), then in blocks
            vec hidden[ROWS][QN];
            for (int i = 0; i < ROWS; i++)
                for (int j = 0; j < QN; j++) hidden[i][j] = load(weights.bh + j * V);
            accumulate<QN, H, H>(hidden, top, weights.wh);
            for (int q = 0; q < QN; q++) {
                vec rows[ROWS], out[ROWS];
                for (int i = 0; i < ROWS; i++) rows[i] = relu(hidden[i][q]);
                transpose_blocks(rows, out);
                for (int a = 0; a < ROWS; a++) blocks[ROWS * q + a] = out[a];
            }
        }
        blocks[B - 1] = tail;
    }
    return head_major(blocked_product(blocks, weights.wo, load(weights.bo)));
}

// The groups of ROWS rows run in OpenMP's threads (torch's own pool: the process has loaded its
// libgomp), from PARALLEL_ROWS rows on.
constexpr int64_t PARALLEL_ROWS = 8192, PREFETCH_ROWS = 32;
constexpr int LINE = 16;  // floats per cache line

// Denormals flushed to zero (MXCSR FTZ and DAZ) in the thread while it lives, then its own mode
// again: saturated cells (|c'| > 44 gives 2^t below 2^-126) and tiny σ made denormal operands
// that each cost a microcode assist, and a 1M-parameter step ran 101 against 79 ms. A flushed
// value is below 1.2e-38 in magnitude, so no output moves by more than that.
struct FlushDenormals {
    unsigned saved = _mm_getcsr();
    FlushDenormals() { _mm_setcsr(saved | _MM_FLUSH_ZERO_ON | _MM_DENORMALS_ZERO_ON); }
    ~FlushDenormals() { _mm_setcsr(saved); }
};

// A call's per-row arrays besides the states: NI read, IW floats a row, and NO written, OW floats a row.
template <int NI, int IW, int NO, int OW>
struct RowArrays {
    const float *in[NI];
    float *out[NO];
};

// `group` (ROWS rows' arrays, from RowArrays at their rows; their h, c, h_out, c_out, layer
// stride) over `rows` rows; h, c, h_out, c_out: layer l's rows at + l·layer_stride (rows × H,
// row stride H).
template <int NI, int IW, int NO, int OW, class Group>
static void run_rows(int64_t rows, int64_t layer_stride, const float *h, const float *c, float *h_out, float *c_out,
                     const RowArrays<NI, IW, NO, OW> &arrays, Group group) {
    int64_t groups = rows / ROWS;
#pragma omp parallel if (rows >= PARALLEL_ROWS)
    {
    FlushDenormals flushed;
#pragma omp for schedule(static)
    for (int64_t g = 0; g < groups; g++) {
        int64_t r = g * ROWS;
        // the states' lines PREFETCH_ROWS rows ahead, for reading (h, c) and writing (h_out,
        // c_out): a 1M-row step took 64-69 instead of 79-86 ms on 2 cores (the hardware
        // prefetchers do not keep up with 8 streams a thread); rows in cache do not change. Past
        // the last rows the addresses point nowhere, which a prefetch ignores.
        int64_t ahead = (r + PREFETCH_ROWS) * H;
        for (int l = 0; l < L; l++)
            for (int line = 0; line < ROWS * H; line += LINE) {
                _mm_prefetch((const char *)(h + l * layer_stride + ahead + line), _MM_HINT_T0);
                _mm_prefetch((const char *)(c + l * layer_stride + ahead + line), _MM_HINT_T0);
                _mm_prefetch((const char *)(h_out + l * layer_stride + ahead + line), _MM_HINT_ET0);
                _mm_prefetch((const char *)(c_out + l * layer_stride + ahead + line), _MM_HINT_ET0);
            }
        const float *in[NI];
        float *out[NO];
        for (int j = 0; j < NI; j++) in[j] = arrays.in[j] + r * IW;
        for (int j = 0; j < NO; j++) out[j] = arrays.out[j] + r * OW;
        group(in, out, h + r * H, c + r * H, h_out + r * H, c_out + r * H, layer_stride);
    }
    }
    int64_t r = groups * ROWS;
    if (r == rows) return;
    FlushDenormals flushed;  // as every other row
    // the last 1 to ROWS − 1 rows through zero-padded copies (each row's arithmetic is the same)
    int n = (int)(rows - r);
    float ins[NI][ROWS * IW] = {}, outs[NO][ROWS * OW], hs[L * ROWS * H] = {}, cs[L * ROWS * H] = {};
    float h_outs[L * ROWS * H], c_outs[L * ROWS * H];
    const float *in[NI];
    float *out[NO];
    for (int j = 0; j < NI; j++) in[j] = (const float *)memcpy(ins[j], arrays.in[j] + r * IW, n * IW * sizeof(float));
    for (int j = 0; j < NO; j++) out[j] = outs[j];
    for (int l = 0; l < L; l++) {
        memcpy(hs + l * ROWS * H, h + l * layer_stride + r * H, n * H * sizeof(float));
        memcpy(cs + l * ROWS * H, c + l * layer_stride + r * H, n * H * sizeof(float));
    }
    group(in, out, hs, cs, h_outs, c_outs, ROWS * H);
    for (int j = 0; j < NO; j++) memcpy(arrays.out[j] + r * OW, outs[j], n * OW * sizeof(float));
    for (int l = 0; l < L; l++) {
        memcpy(h_out + l * layer_stride + r * H, h_outs + l * ROWS * H, n * H * sizeof(float));
        memcpy(c_out + l * layer_stride + r * H, c_outs + l * ROWS * H, n * H * sizeof(float));
    }
}

// The network on `rows` rows: x (rows × F0) in; raw: head k's rows at + k·raw_stride.
extern "C" void l2o_network_rows(int64_t rows, int64_t layer_stride, const float *x, const float *h,
                                 const float *c, float *h_out, float *c_out, float *raw, int64_t raw_stride,
                                 const float *const *w, const float *const *bias,
                                 const float *wh, const float *bh, const float *wt, const float *bt,
                                 const float *wo, const float *bo) {
    const Weights weights{w, bias, wh, bh, wt, bt, wo, bo};
    RowArrays<1, F0, K, 1> arrays{{x}, {}};
    for (int k = 0; k < K; k++) arrays.out[k] = raw + k * raw_stride;
    run_rows(rows, layer_stride, h, c, h_out, c_out, arrays,
             [&](const float *const *in, float *const *out, const float *hg, const float *cg, float *h_outg,
                 float *c_outg, int64_t stride) {
                 alignas(64) float heads[V];
                 store(heads, network<F0, 1>(in[0], hg, cg, h_outg, c_outg, stride, weights));
                 for (int k = 0; k < K; k++) memcpy(out[k], heads + ROWS * k, ROWS * sizeof(float));
             });
}

#if F0 == 3 && K == 3
// GoMathL2O's step (l2o/rules/gomath.py) on `rows` coordinates of one instance, around the network:
// its features [g / s₀, lower / s₁, upper / s₂] in ([lower, upper] = ∂(λ|x|): λ sign(x) at x ≠ 0,
// ∓λ at x = 0), and from its heads r, q, b out
//   R = ρ_R σ(r) α, Q = ρ_Q σ(q), B = ρ_B σ(b)   (ρ: 2 × the scale for "sigmoid", the scale for "sigmoid1"),
//   u = x − R g − Q V,  x' = sign(u) max(|u| − Rλ, 0),  V' = B V + (1 − B)(x − x'),
// in torch's order of operations, with fused multiply-adds where the compiler contracts them.
// constants: s₀, s₁, s₂ (each at least the smallest normal float), λ, α, ρ_R, ρ_Q, ρ_B.
constexpr float MINUS_LOG2E = -1.44269504088896341f;

typedef float group_vec __attribute__((vector_size(4 * ROWS)));  // a group's values of one quantity
typedef int32_t group_bits __attribute__((vector_size(4 * ROWS)));

static inline group_vec load_group(const float *p) { group_vec v; memcpy(&v, p, sizeof v); return v; }
static inline void store_group(float *p, group_vec v) { memcpy(p, &v, sizeof v); }
static inline group_vec splat_group(float a) { return a - (group_vec){}; }
static inline group_vec lanes(vec v, int block) {  // lanes ROWS·block … ROWS·block + ROWS − 1 of v
    alignas(64) float all[V];
    store(all, v);
    return load_group(all + ROWS * block);
}

// The features of a group's rows, planar (features[ROWS·k + i]: feature k of row i): g / s₀;
// λ sign(x) / s₁ at x ≠ 0, else ∓λ / s₁ (sign(NaN) = 0, as torch's): ±λ / s₁ exactly, so
// chosen, not computed.
static inline void gomath_features(const float *x, const float *g, const float *k, float *features) {
    const group_vec xs = load_group(x), lower = splat_group(k[3] / k[1]), upper = splat_group(k[3] / k[2]);
    store_group(features, load_group(g) / splat_group(k[0]));
    store_group(features + ROWS, xs > splat_group(0.0f) ? lower : -lower);
    store_group(features + 2 * ROWS, xs < splat_group(0.0f) ? -upper : upper);
}

// R, Q, B from the heads' σ (lanes ROWS·k + i), then x' and V' of a group's rows; relu as
// `maxps(0, ·)` does it, which keeps NaN (0 > NaN is false), and sign(u)·r as r with u's sign
// (u = ±0 gives ±0 where torch gives +0).
static inline void gomath_update(vec heads, const float *x, const float *g, const float *v, float *x_out,
                                 float *v_out, const float *k) {
    const vec sigma = sigmoid_of_exponent(heads * splat(MINUS_LOG2E));
    const group_vec R = lanes(sigma, 0) * splat_group(k[5]) * splat_group(k[4]);
    const group_vec Q = lanes(sigma, 1) * splat_group(k[6]), Bv = lanes(sigma, 2) * splat_group(k[7]);
    const group_vec xs = load_group(x), vs = load_group(v), zero = splat_group(0.0f);
    const group_vec u = xs - R * load_group(g) - Q * vs;
    const group_bits sign = (group_bits)splat_group(-0.0f);
    const group_vec excess = (group_vec)((group_bits)u & ~sign) - R * splat_group(k[3]);
    const group_vec shrunk = zero > excess ? zero : excess;
    const group_vec x_next = (group_vec)((group_bits)shrunk | ((group_bits)u & sign));
    store_group(x_out, x_next);
    store_group(v_out, Bv * vs + (splat_group(1.0f) - Bv) * (xs - x_next));
}

extern "C" void l2o_gomath_rows(int64_t rows, int64_t layer_stride, const float *x, const float *grad,
                                const float *history, const float *h, const float *c, float *h_out, float *c_out,
                                float *x_out, float *history_out, const float *constants,
                                const float *const *w, const float *const *bias,
                                const float *wh, const float *bh, const float *wt, const float *bt,
                                const float *wo, const float *bo) {
    const Weights weights{w, bias, wh, bh, wt, bt, wo, bo};
    float k[8];
    memcpy(k, constants, sizeof k);
    const RowArrays<3, 1, 2, 1> arrays{{x, grad, history}, {x_out, history_out}};
    run_rows(rows, layer_stride, h, c, h_out, c_out, arrays,
             [&](const float *const *in, float *const *out, const float *hg, const float *cg, float *h_outg,
                 float *c_outg, int64_t stride) {
                 alignas(64) float features[ROWS * F0];
                 gomath_features(in[0], in[1], k, features);
                 const vec heads = network<1, ROWS>(features, hg, cg, h_outg, c_outg, stride, weights);
                 gomath_update(heads, in[0], in[1], in[2], out[0], out[1], k);
             });
}
#endif
