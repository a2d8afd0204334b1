/* Fused CPU kernels for the engine's hottest passes (engine/_native.py loads them with ctypes).
 *
 * numpy runs one pass over memory per operation; these run several operations in one pass, on the
 * contiguous float32/float64 arrays the engine owns. Each kernel works on a range of elements or
 * rows, so the engine's threads (engine/_parallel.py) split the work; ctypes releases the GIL.
 *
 * Rounding: no contraction into fused multiply-adds (built with -ffp-contract=off), so the
 * elementwise kernels (ReLU's gradient, Adam) do exactly the IEEE operations of the numpy code they
 * replace, in the same order, and give the same bits. Layer norm sums each row in LANES partial sums
 * combined in a fixed order: not numpy's order, but the same on every machine and thread count.
 */
#include <math.h>
#include <stdint.h>
#include <stddef.h>

#include "_pool.h"

#if defined(__x86_64__) && defined(__GNUC__) && defined(__linux__)
/* one build, the widest vectors the machine has (chosen once, when the library loads; an ifunc: ELF and glibc) */
#define VECTORIZED __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define VECTORIZED
#endif

#define LANES 16
/* the row helpers inlined even into a VECTORIZED clone (a call would run their baseline build) */
#define INLINE static inline __attribute__((always_inline))

#define KERNELS(T, S, SQRT)                                                                               \
                                                                                                      \
/* ReLU: x where x > 0 or x is nan, else 0 (numpy's maximum(x, 0), to the bit) */                   \
VECTORIZED void relu_##S(const T *restrict x, T *restrict out, int64_t n) {                           \
    for (int64_t i = 0; i < n; i++)                                                                   \
        out[i] = (x[i] > 0 || x[i] != x[i]) ? x[i] : (T)0;                                            \
}                                                                                                     \
                                                                                                      \
/* ReLU's gradient from its output: g where not (y <= 0) (nan passes), else an exact 0 */            \
VECTORIZED void relu_grad_##S(const T *restrict g, const T *restrict y, T *restrict out, int64_t n) {\
    for (int64_t i = 0; i < n; i++)                                                                   \
        out[i] = (y[i] <= 0) ? (T)0 : g[i];                                                           \
}                                                                                                     \
                                                                                                      \
/* One Adam/AdamW step over n elements, in place: the operations of optim/adam.py's numpy kernel, in  \
   its order. decay != 1: decoupled weight decay (p * 1 is p, so it is always applied); l2: L2 weight \
   decay into the gradient; vmax: amsgrad's running maximum, or NULL. Constants arrive as doubles and \
   are rounded to T first, as numpy rounds Python floats against a T array. */                       \
VECTORIZED void adam_##S(T *restrict p, const T *restrict grad, T *restrict m, T *restrict v,        \
                         T *restrict vmax, int64_t n, double decay, double l2, int maximize,          \
                         double lerp_w, double beta2, double one_m_beta2, double bc2_sqrt, double eps, \
                         double step_size) {                                                          \
    const T dc = (T)decay, wd = (T)l2, w = (T)lerp_w, w1 = (T)(1 - lerp_w), b2 = (T)beta2,          \
            ob2 = (T)one_m_beta2, bc = (T)bc2_sqrt, ep = (T)eps, ss = (T)step_size;                   \
    const int small_w = lerp_w < 0.5;                                                                 \
    if (l2 == 0.0 && !maximize && !vmax) { /* the usual case, a loop the compiler vectorizes */       \
        for (int64_t i = 0; i < n; i++) {                                                             \
            const T pi = p[i] * dc, gi = grad[i], mi = m[i];                                          \
            const T diff = gi - mi;                                                                   \
            const T m2 = small_w ? mi + diff * w : gi - diff * w1;                                    \
            const T v2 = v[i] * b2 + gi * gi * ob2;                                                   \
            const T denom = SQRT(v2) / bc + ep;                                                       \
            p[i] = pi - m2 / denom * ss;                                                              \
            m[i] = m2;                                                                                \
            v[i] = v2;                                                                                \
        }                                                                                             \
        return;                                                                                       \
    }                                                                                                 \
    for (int64_t i = 0; i < n; i++) {                                                                 \
        const T pi = p[i] * dc;                                                                       \
        T gi = grad[i];                                                                               \
        if (l2 != 0.0)                                                                                \
            gi = maximize ? pi * wd - gi : pi * wd + gi;                                              \
        else if (maximize)                                                                            \
            gi = -gi;                                                                                 \
        const T mi = m[i];                                                                            \
        const T diff = gi - mi;                                                                       \
        const T m2 = small_w ? mi + diff * w : gi - diff * w1;                                        \
        const T v2 = v[i] * b2 + gi * gi * ob2;                                                       \
        T top = v2;                                                                                   \
        if (vmax) {                                                                                   \
            const T old = vmax[i];                                                                    \
            top = (old >= v2 || old != old) ? old : v2; /* numpy's maximum: nan wins */               \
            vmax[i] = top;                                                                            \
        }                                                                                             \
        const T denom = SQRT(top) / bc + ep;                                                          \
        p[i] = pi - m2 / denom * ss;                                                                  \
        m[i] = m2;                                                                                    \
        v[i] = v2;                                                                                    \
    }                                                                                                 \
}                                                                                                     \
                                                                                                      \
INLINE T row_sum_##S(const T *x, int64_t n) {                                                         \
    T lane[LANES] = {0};                                                                              \
    int64_t i = 0;                                                                                    \
    for (; i + LANES <= n; i += LANES)                                                                \
        for (int j = 0; j < LANES; j++)                                                               \
            lane[j] += x[i + j];                                                                      \
    T s = 0;                                                                                          \
    for (; i < n; i++)                                                                                \
        s += x[i];                                                                                    \
    for (int j = 0; j < LANES; j++)                                                                   \
        s += lane[j];                                                                                 \
    return s;                                                                                         \
}                                                                                                     \
                                                                                                      \
INLINE T row_dot_##S(const T *x, const T *y, int64_t n) {                                             \
    T lane[LANES] = {0};                                                                              \
    int64_t i = 0;                                                                                    \
    for (; i + LANES <= n; i += LANES)                                                                \
        for (int j = 0; j < LANES; j++)                                                               \
            lane[j] += x[i + j] * y[i + j];                                                           \
    T s = 0;                                                                                          \
    for (; i < n; i++)                                                                                \
        s += x[i] * y[i];                                                                             \
    for (int j = 0; j < LANES; j++)                                                                   \
        s += lane[j];                                                                                 \
    return s;                                                                                         \
}                                                                                                     \
                                                                                                      \
/* Layer norm of rows [r0, r1) of x (rows of n): y = (x - mean) * rstd * w + b (w, b may be NULL);    \
   mean and rstd (one per row) are kept for the backward. */                                         \
VECTORIZED void layer_norm_##S(const T *restrict x, const T *restrict w, const T *restrict b,       \
                               T *restrict y, T *restrict mean, T *restrict rstd,                    \
                               int64_t r0, int64_t r1, int64_t n, double eps) {                      \
    for (int64_t r = r0; r < r1; r++) {                                                               \
        const T *xr = x + r * n;                                                                      \
        T *yr = y + r * n;                                                                            \
        T mu = row_sum_##S(xr, n) / (T)n;                                                             \
        for (int64_t i = 0; i < n; i++)                                                               \
            yr[i] = xr[i] - mu;                                                                       \
        T rs = (T)1 / SQRT(row_dot_##S(yr, yr, n) / (T)n + (T)eps);                                   \
        for (int64_t i = 0; i < n; i++) {                                                             \
            T t = yr[i] * rs;                                                                         \
            if (w)                                                                                    \
                t = t * w[i];                                                                         \
            if (b)                                                                                    \
                t = t + b[i];                                                                         \
            yr[i] = t;                                                                                \
        }                                                                                             \
        mean[r] = mu;                                                                                 \
        rstd[r] = rs;                                                                                 \
    }                                                                                                 \
}                                                                                                     \
                                                                                                      \
/* Layer norm's backward on rows [r0, r1): gx = (gh - mean(gh) - xhat * mean(gh * xhat)) * rstd with  \
   gh = g * w, xhat = (x - mean) * rstd; and the sums over these rows of g * xhat and of g, added   \
   into gw and gb (n each; NULL: not wanted). scratch: 2 * n values. */                              \
VECTORIZED void layer_norm_backward_##S(const T *restrict g, const T *restrict x, const T *restrict w, \
                                        const T *restrict mean, const T *restrict rstd, T *restrict gx, \
                                        T *restrict gw, T *restrict gb, T *restrict scratch,          \
                                        int64_t r0, int64_t r1, int64_t n) {                         \
    T *xhat = scratch, *gh = scratch + n;                                                             \
    for (int64_t r = r0; r < r1; r++) {                                                               \
        const T *gr = g + r * n, *xr = x + r * n;                                                     \
        const T mu = mean[r], rs = rstd[r];                                                           \
        for (int64_t i = 0; i < n; i++) {                                                             \
            xhat[i] = (xr[i] - mu) * rs;                                                              \
            gh[i] = w ? gr[i] * w[i] : gr[i];                                                         \
        }                                                                                             \
        if (gw)                                                                                       \
            for (int64_t i = 0; i < n; i++)                                                           \
                gw[i] += gr[i] * xhat[i];                                                             \
        if (gb)                                                                                       \
            for (int64_t i = 0; i < n; i++)                                                           \
                gb[i] += gr[i];                                                                       \
        if (!gx)                                                                                      \
            continue;                                                                                 \
        const T a = row_sum_##S(gh, n) / (T)n, c = row_dot_##S(gh, xhat, n) / (T)n;                  \
        T *gxr = gx + r * n;                                                                          \
        for (int64_t i = 0; i < n; i++)                                                               \
            gxr[i] = (gh[i] - a - xhat[i] * c) * rs;                                                  \
    }                                                                                                 \
}                                                                                                     \
                                                                                                      \
/* target[index[i]] += values[i] for i in [0, n), rows of width d, columns [c0, c1) only (threads split \
   the columns, so each element still receives its additions in index order, as numpy's add.at). The  \
   indices are in range (the caller checked). */                                                      \
VECTORIZED void index_add_rows_##S(T *restrict target, const int64_t *restrict index,                \
                                   const T *restrict values, int64_t n, int64_t d, int64_t c0,        \
                                   int64_t c1) {                                                      \
    for (int64_t i = 0; i < n; i++) {                                                                 \
        T *dst = target + index[i] * d;                                                               \
        const T *src = values + i * d;                                                                \
        for (int64_t c = c0; c < c1; c++)                                                             \
            dst[c] += src[c];                                                                         \
    }                                                                                                 \
}                                                                                                     \
                                                                                                      \
/* The column sums of rows [r0, r1) of x (rows of n), into out (n): the first row copied, the others  \
   added in order, as numpy sums a leading axis. */                                                  \
VECTORIZED void sum_rows_##S(const T *restrict x, T *restrict out, int64_t r0, int64_t r1, int64_t n) { \
    for (int64_t i = 0; i < n; i++)                                                                   \
        out[i] = x[r0 * n + i];                                                                       \
    for (int64_t r = r0 + 1; r < r1; r++)                                                             \
        for (int64_t i = 0; i < n; i++)                                                               \
            out[i] += x[r * n + i];                                                                   \
}                                                                                                     \
                                                                                                      \
/* Softmax's backward on rows [r0, r1) of n: out = y * (g - sum(g * y)). */                          \
VECTORIZED void softmax_backward_##S(const T *restrict g, const T *restrict y, T *restrict out,     \
                                     int64_t r0, int64_t r1, int64_t n) {                             \
    for (int64_t r = r0; r < r1; r++) {                                                               \
        const T *gr = g + r * n, *yr = y + r * n;                                                     \
        T *o = out + r * n;                                                                           \
        const T s = row_dot_##S(gr, yr, n);                                                           \
        for (int64_t i = 0; i < n; i++)                                                               \
            o[i] = (gr[i] - s) * yr[i];                                                               \
    }                                                                                                 \
}                                                                                                     \
                                                                                                      \
/* Max pooling's gradient on planes [p0, p1): each window's g added at its maximum (arg), into gx,    \
   which this zeroes first; what falls in the padding is dropped. */                                 \
void max_pool_backward_##S(const T *restrict g, const int8_t *restrict arg, T *restrict gx,         \
                           int64_t p0, int64_t p1, int64_t h, int64_t w, int64_t ho, int64_t wo,      \
                           const int64_t *geo) {                                                      \
    const int64_t kw = geo[1], sh = geo[2], sw = geo[3], pt = geo[4], pl = geo[5], dh = geo[6],       \
                  dw = geo[7];                                                                        \
    for (int64_t p = p0; p < p1; p++) {                                                               \
        T *gp = gx + p * h * w;                                                                       \
        for (int64_t i = 0; i < h * w; i++)                                                           \
            gp[i] = 0;                                                                                \
        for (int64_t r = 0; r < ho; r++)                                                              \
            for (int64_t c = 0; c < wo; c++) {                                                        \
                const int64_t o = (p * ho + r) * wo + c, k = arg[o];                                  \
                const int64_t i = r * sh - pt + (k / kw) * dh, j = c * sw - pl + (k % kw) * dw;       \
                if (i >= 0 && i < h && j >= 0 && j < w)                                               \
                    gp[i * w + j] += g[o];                                                            \
            }                                                                                         \
    }                                                                                                 \
}

KERNELS(float, f32, sqrtf)
KERNELS(double, f64, sqrt)

/* ---- Direct convolution, float32, stride 1, one group (engine/ops/conv.py) -------------------------
 *
 * No columns. Each sample's input is copied once into zero-padded planes, one per channel, rows of
 * Wp = Wo + dw*(KW-1) values (it stays in cache), and outputs are computed on a grid of the same
 * width: grid position q = oh*Wp + ow, so what kernel offset (i, j) reads for q is plane[q + i*dh*Wp +
 * j*dw], and 16 consecutive grid positions are one vector load. The last Wp - Wo columns of each grid
 * row are not outputs (they are dropped when rows are copied out): the _Rows layout of conv.py, done
 * without building columns. A register tile holds OB output channels x PV vectors of positions,
 * accumulated over (input channel, kernel row, kernel column) with fused multiply-adds: PV loads and
 * OB broadcast weights, weights laid out (C*KH*KW, O). The transposed convolution (the input's
 * gradient) is this kernel on the output's gradient with the kernel flipped and C, O swapped. The
 * weight's gradient sums, per block of samples, grid vectors of products and reduces each sum's lanes
 * once. Sums run in a fixed order whatever the thread count, but not a GEMM's: results match the
 * column path to rounding, not in bits.
 */
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) && defined(__GNUC__) && defined(__linux__)
#define CONV_VECTORIZED __attribute__((target_clones("avx512f", "arch=haswell", "default")))
#else
#define CONV_VECTORIZED
#endif

#pragma GCC push_options
#pragma GCC optimize("fp-contract=fast") /* these kernels want FMAs: they replace GEMMs, not numpy passes */

typedef float vf __attribute__((vector_size(64), aligned(4))); /* 16 floats; loads need not be aligned */
typedef int32_t vi __attribute__((vector_size(64), aligned(4))); /* 16 ints: a comparison of two vf */
#define VW 16
#define OB 8 /* output channels per register tile */
#define PV 3 /* vectors of grid positions per register tile */

typedef struct {
    int64_t C, H, W, O, Ho, Wo, KH, KW, dh, dw, pt, pl;
    int64_t Hp, Wp, Q, Qv, plane; /* padded rows and width; grid positions, rounded up to whole tiles; plane size */
} conv_shape;

static conv_shape conv_shape_of(const int64_t *d) {
    conv_shape s = {d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7], d[8], d[9], d[10], d[11], 0, 0, 0, 0, 0};
    s.Hp = s.Ho + s.dh * (s.KH - 1);
    s.Wp = s.Wo + s.dw * (s.KW - 1);
    s.Q = s.Ho * s.Wp;
    s.Qv = (s.Q + PV * VW - 1) / (PV * VW) * (PV * VW);
    s.plane = s.Qv + s.dh * (s.KH - 1) * s.Wp + s.dw * (s.KW - 1); /* room for the last tile's reads */
    s.plane = (s.plane + VW - 1) / VW * VW; /* whole cache lines: each plane starts on one */
    return s;
}

/* n floats on whole cache lines (aligned_alloc wants a size that is a multiple of the alignment) */
static float *scratch(int64_t n) {
    float *p = aligned_alloc(64, (sizeof(float) * n + 63) / 64 * 64);
    if (!p)
        abort();
    return p;
}

/* rows rows of width values, from rows src_stride apart to rows dst_stride apart (short rows: an inline
   loop beats a memcpy call per row) */
static inline void copy_rows(float *dst, int64_t dst_stride, const float *src, int64_t src_stride, int64_t rows,
                             int64_t width) {
    for (int64_t r = 0; r < rows; r++)
        for (int64_t c = 0; c < width; c++)
            dst[r * dst_stride + c] = src[r * src_stride + c];
}

/* One sample (C, H, W) into C planes, zeros around, its top-left at (pt, pl); rows and columns beyond
   Hp x Wp (which no output reads) are left out. */
static void pad_sample(const float *x, float *xp, const conv_shape *s) {
    memset(xp, 0, sizeof(float) * s->C * s->plane);
    const int64_t w = s->W + s->pl > s->Wp ? s->Wp - s->pl : s->W;
    const int64_t h = s->H + s->pt > s->Hp ? s->Hp - s->pt : s->H;
    if (w <= 0 || h <= 0) /* a cropped output reads only padding */
        return;
    for (int64_t c = 0; c < s->C; c++)
        copy_rows(xp + c * s->plane + s->pt * s->Wp + s->pl, s->Wp, x + c * s->H * s->W, s->W, h, w);
}

/* Grid positions [q, q + PV*16) of output channels [o, o + nb): into out[k * Qv + ...]. */
static inline __attribute__((always_inline)) void conv_tile(const float *xp, const float *wt, const float *bias,
                                                            float *out, const conv_shape *s, int64_t o,
                                                            int64_t q, const int nb) {
    vf acc[OB][PV];
    for (int k = 0; k < nb; k++)
        for (int v = 0; v < PV; v++)
            acc[k][v] = (vf){0} + (bias ? bias[o + k] : 0.0f);
    const float *w = wt + o;
    for (int64_t c = 0; c < s->C; c++)
        for (int64_t i = 0; i < s->KH; i++) {
            const float *xr = xp + c * s->plane + i * s->dh * s->Wp + q;
            for (int64_t j = 0; j < s->KW; j++, w += s->O) {
                vf xv[PV];
                for (int v = 0; v < PV; v++)
                    xv[v] = *(const vf *)(xr + j * s->dw + v * VW);
                for (int k = 0; k < nb; k++)
                    for (int v = 0; v < PV; v++)
                        acc[k][v] += w[k] * xv[v];
            }
        }
    for (int k = 0; k < nb; k++)
        for (int v = 0; v < PV; v++)
            *(vf *)(out + (o + k) * s->Qv + q + v * VW) = acc[k][v];
}

#define TILE_CASE(NB) case NB: conv_tile(xp, wt, bias, grid, s, o, q, NB); break;

/* y (N, O, Ho, Wo) for samples [n0, n1) of x (N, C, H, W): weights wt (C*KH*KW, O), bias (O) or NULL;
   dims: C H W O Ho Wo KH KW dh dw pt pl. */
CONV_VECTORIZED void conv2d_f32(const float *restrict x, const float *restrict wt, const float *restrict bias,
                                float *restrict y, int64_t n0, int64_t n1, const int64_t *dims) {
    const conv_shape sh = conv_shape_of(dims), *s = &sh;
    float *xp = scratch(s->C * s->plane + s->O * s->Qv);
    float *grid = xp + s->C * s->plane;
    for (int64_t n = n0; n < n1; n++) {
        pad_sample(x + n * s->C * s->H * s->W, xp, s);
        for (int64_t o = 0; o < s->O; o += OB) {
            const int nb = s->O - o >= OB ? OB : (int)(s->O - o);
            for (int64_t q = 0; q < s->Qv; q += PV * VW)
                switch (nb) {
                    TILE_CASE(8) TILE_CASE(7) TILE_CASE(6) TILE_CASE(5)
                    TILE_CASE(4) TILE_CASE(3) TILE_CASE(2) TILE_CASE(1)
                }
        }
        for (int64_t o = 0; o < s->O; o++) /* the grid's rows, less their last Wp - Wo values */
            copy_rows(y + (n * s->O + o) * s->Ho * s->Wo, s->Wo, grid + o * s->Qv, s->Wp, s->Ho, s->Wo);
    }
    free(xp);
}

#define GB 8 /* output channels per weight-gradient tile */
#define KB 3 /* (input channel, kernel row, kernel column) triples per weight-gradient tile */

/* Sums over samples and grid positions for output channels [o, o + nb) and triples [k, k + kb): each
   a vector of partial sums whose lanes are added (in lane order) at the end. */
static inline __attribute__((always_inline)) void weight_tile(const float *xps, const float *gps, float *gw,
                                                              const conv_shape *s, int64_t samples,
                                                              int64_t o, int64_t k, const int nb, const int kb) {
    int64_t off[KB];
    for (int b = 0; b < kb; b++) { /* where triple k + b reads, from a grid position */
        const int64_t t = k + b, c = t / (s->KH * s->KW), i = t / s->KW % s->KH, j = t % s->KW;
        off[b] = c * s->plane + i * s->dh * s->Wp + j * s->dw;
    }
    vf acc[GB][KB];
    for (int a = 0; a < nb; a++)
        for (int b = 0; b < kb; b++)
            acc[a][b] = (vf){0};
    for (int64_t n = 0; n < samples; n++) {
        const float *xp = xps + n * s->C * s->plane, *gp = gps + (n * s->O + o) * s->Qv;
        for (int64_t q = 0; q < s->Qv; q += VW) {
            vf gv[GB], xv[KB];
            for (int a = 0; a < nb; a++)
                gv[a] = *(const vf *)(gp + a * s->Qv + q);
            for (int b = 0; b < kb; b++)
                xv[b] = *(const vf *)(xp + off[b] + q);
            for (int a = 0; a < nb; a++)
                for (int b = 0; b < kb; b++)
                    acc[a][b] += gv[a] * xv[b];
        }
    }
    for (int a = 0; a < nb; a++)
        for (int b = 0; b < kb; b++) {
            float sum = 0;
            for (int l = 0; l < VW; l++)
                sum += acc[a][b][l];
            gw[(k + b) * s->O + o + a] = sum;
        }
}

#define WT_CASE(NB, KB_) case KB_: weight_tile(xps, gps, gw, s, samples, o, k, NB, KB_); break;
#define WT_CASES(NB)                                                                                 \
    switch (kb) { WT_CASE(NB, 3) WT_CASE(NB, 2) WT_CASE(NB, 1) }                                    \
    break;

/* The weight's gradient from samples [n0, n1) of x (N, C, H, W) and of the output's gradient g (N, O,
   Ho, Wo), written (not added) into gw (C*KH*KW, O); dims as conv2d_f32's. */
CONV_VECTORIZED void conv2d_weight_f32(const float *restrict x, const float *restrict g, float *restrict gw,
                                       int64_t n0, int64_t n1, const int64_t *dims) {
    const conv_shape sh = conv_shape_of(dims), *s = &sh;
    const int64_t samples = n1 - n0, K = s->C * s->KH * s->KW;
    float *xps = scratch(samples * (s->C * s->plane + s->O * s->Qv));
    float *gps = xps + samples * s->C * s->plane;
    memset(gps, 0, sizeof(float) * samples * s->O * s->Qv); /* the grid's extra columns and tail stay 0 */
    for (int64_t n = 0; n < samples; n++) {
        pad_sample(x + (n0 + n) * s->C * s->H * s->W, xps + n * s->C * s->plane, s);
        for (int64_t o = 0; o < s->O; o++)
            copy_rows(gps + (n * s->O + o) * s->Qv, s->Wp, g + ((n0 + n) * s->O + o) * s->Ho * s->Wo, s->Wo, s->Ho,
                      s->Wo);
    }
    for (int64_t o = 0; o < s->O; o += GB) {
        const int nb = s->O - o >= GB ? GB : (int)(s->O - o);
        for (int64_t k = 0; k < K; k += KB) {
            const int kb = K - k >= KB ? KB : (int)(K - k);
            switch (nb) {
            case 8: WT_CASES(8)
            case 7: WT_CASES(7)
            case 6: WT_CASES(6)
            case 5: WT_CASES(5)
            case 4: WT_CASES(4)
            case 3: WT_CASES(3)
            case 2: WT_CASES(2)
            default: WT_CASES(1)
            }
        }
    }
    free(xps);
}

#pragma GCC pop_options

/* ---- Attention's softmax, float32 (engine/nn/functional/attention.py's AttentionWeights) ------------
 *
 * numpy makes attention's weights softmax(s * scale + mask) in seven passes over the (..., L, S) scores
 * and their temporaries (7.7 of W3's 10 ms per layer's forward); here each row is done in the three
 * passes it needs while it sits in L1: scale, mask and the max; exp and the sum; the division.
 * exp is exp_f32 below: vectorizable, within 2 ulp of libm's (numpy's is within 1).
 */

#pragma GCC push_options
/* no trapping: lets the selects below (ranges, nan) become vector blends; values are unchanged */
#pragma GCC optimize("no-trapping-math")

/* e^x: n = round(x / ln 2), r = x - n ln 2 in two parts (Cody and Waite), e^r by Cephes' expf
   polynomial, times 2^n as two powers of two (so results down to denormals stay graded, not cut);
   inf above 88.72, 0 below -103.98, nan for nan. */
static inline float exp_f32(float x) {
    const float xc = x < -104.0f ? -104.0f : (x > 88.8f ? 88.8f : x); /* (nan passes, for the end) */
    const float round = 12582912.0f; /* 1.5 * 2^23: adding and subtracting it rounds to an integer */
    const float n = (xc * 1.44269504088896341f + round) - round;
    const float r = (xc - n * 0.693359375f) - n * -2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    const int32_t k = (int32_t)n, k1 = k >> 1, k2 = k - k1;
    const int32_t b1 = (k1 + 127) << 23, b2 = (k2 + 127) << 23;
    float s1, s2;
    memcpy(&s1, &b1, sizeof s1);
    memcpy(&s2, &b2, sizeof s2);
    float y = p * s1 * s2;
    y = x > 88.72283935546875f ? __builtin_inff() : y;
    y = x < -103.97208f ? 0.0f : y;
    return x != x ? x : y;
}

/* Rows [r0, r1) of s (rows of S; row r is row r % L of its (L, S) matrix), in place: softmax over the
   row of s * scale + mask (mask: (L, S), or NULL). A row's max that is not finite (every entry -inf,
   or an inf) is not subtracted, as in the numpy code; with safe, a row that sums to 0 (all -inf) gives
   zeros rather than nan (PyTorch's SDPA). */
VECTORIZED void attention_softmax_f32(float *restrict s, const float *restrict mask, int64_t r0, int64_t r1,
                                      int64_t L, int64_t S, double scale, int safe) {
    const float sc = (float)scale;
    for (int64_t r = r0; r < r1; r++) {
        float *row = s + r * S;
        if (mask) {
            const float *m = mask + (r % L) * S;
            for (int64_t j = 0; j < S; j++)
                row[j] = row[j] * sc + m[j];
        } else {
            for (int64_t j = 0; j < S; j++)
                row[j] = row[j] * sc;
        }
        /* the max, 16 running maxima in a vector (a nan is passed over: it makes its whole row nan
           below, whatever is subtracted, as in the numpy code) */
        const vf minus_inf = (vf){0} - __builtin_inff();
        vf top16 = minus_inf;
        int64_t i = 0;
        for (; i + VW <= S; i += VW) {
            const vf v = *(const vf *)(row + i);
            const vi greater = v > top16;
            top16 = (vf)((greater & (vi)v) | (~greater & (vi)top16));
        }
        float top = -__builtin_inff();
        for (; i < S; i++)
            top = row[i] > top ? row[i] : top;
        for (int j = 0; j < VW; j++)
            top = top16[j] > top ? top16[j] : top;
        /* a max that is not finite (all -inf, or an inf) is not subtracted */
        const float shift = top - top == 0.0f ? top : 0.0f;
        for (int64_t j = 0; j < S; j++)
            row[j] = exp_f32(row[j] - shift);
        float sum = row_sum_f32(row, S);
        if (safe && sum == 0.0f)
            sum = 1.0f;
        for (int64_t j = 0; j < S; j++)
            row[j] = row[j] / sum;
    }
}

#pragma GCC pop_options

/* ---- 2x2 max pooling at stride 2 (MaxPool2d(2), the usual one), float32, AVX-512 --------------------
 *
 * conv.py's max_windows does every kind of window in numpy: nine strided passes. Its rows here are
 * short (14 or 7 outputs in W2), too short for a compiler's vector loop, whose scalar remainder then
 * mispredicts on every comparison; so this is written with AVX-512 masks: one masked vector per 16
 * outputs of a row, the two input rows deinterleaved into the window's four values. max_windows'
 * exact rules: the max is a chain of numpy's maximum (a NaN wins), the offset the count of leading
 * offsets strictly below the max. Machines without AVX-512 keep the numpy code.
 */
#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define POOL_AVX512 __attribute__((target("avx512f")))

int max_pool_2x2_available(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f");
}

/* numpy's maximum(m, e): m where m >= e or m is NaN, else e */
POOL_AVX512 static inline __m512 max_np(__m512 m, __m512 e) {
    const __mmask16 keep = _mm512_cmp_ps_mask(m, e, _CMP_GE_OQ) | _mm512_cmp_ps_mask(m, m, _CMP_UNORD_Q);
    return _mm512_mask_blend_ps(keep, e, m);
}

/* planes [p0, p1) of (h, w) -> best and arg, (ho, wo) each, with w >= 2 * wo and h >= 2 * ho */
POOL_AVX512 void max_pool_2x2_f32(const float *restrict x, float *restrict best, int8_t *restrict arg,
                                  int64_t p0, int64_t p1, int64_t h, int64_t w, int64_t ho, int64_t wo) {
    const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    const __m512i odd = _mm512_add_epi32(even, _mm512_set1_epi32(1));
    const __m512i one = _mm512_set1_epi32(1);
    for (int64_t p = p0; p < p1; p++)
        for (int64_t r = 0; r < ho; r++) {
            const float *r0 = x + (p * h + 2 * r) * w, *r1 = r0 + w;
            float *b = best + (p * ho + r) * wo;
            int8_t *a = arg + (p * ho + r) * wo;
            for (int64_t c = 0; c < wo; c += 16) {
                const int n = wo - c < 16 ? (int)(wo - c) : 16;
                const __mmask16 out = (__mmask16)((1u << n) - 1);
                const __mmask16 lo = (__mmask16)(n >= 8 ? 0xFFFFu : (1u << (2 * n)) - 1);
                const __mmask16 hi = (__mmask16)(n > 8 ? (1u << (2 * n - 16)) - 1 : 0);
                const __m512 t_lo = _mm512_maskz_loadu_ps(lo, r0 + 2 * c), t_hi = _mm512_maskz_loadu_ps(hi, r0 + 2 * c + 16);
                const __m512 b_lo = _mm512_maskz_loadu_ps(lo, r1 + 2 * c), b_hi = _mm512_maskz_loadu_ps(hi, r1 + 2 * c + 16);
                const __m512 v0 = _mm512_permutex2var_ps(t_lo, even, t_hi), v1 = _mm512_permutex2var_ps(t_lo, odd, t_hi);
                const __m512 v2 = _mm512_permutex2var_ps(b_lo, even, b_hi), v3 = _mm512_permutex2var_ps(b_lo, odd, b_hi);
                const __m512 m = max_np(max_np(max_np(v0, v1), v2), v3);
                const __mmask16 l0 = _mm512_cmp_ps_mask(v0, m, _CMP_LT_OQ);
                const __mmask16 l1 = l0 & _mm512_cmp_ps_mask(v1, m, _CMP_LT_OQ);
                const __mmask16 l2 = l1 & _mm512_cmp_ps_mask(v2, m, _CMP_LT_OQ);
                __m512i k = _mm512_maskz_mov_epi32(l0, one);
                k = _mm512_add_epi32(k, _mm512_maskz_mov_epi32(l1, one));
                k = _mm512_add_epi32(k, _mm512_maskz_mov_epi32(l2, one));
                _mm512_mask_storeu_ps(b + c, out, m);
                _mm512_mask_cvtepi32_storeu_epi8(a + c, out, k);
            }
        }
}
#else
int max_pool_2x2_available(void) { return 0; }
void max_pool_2x2_f32(const float *x, float *best, int8_t *arg, int64_t p0, int64_t p1, int64_t h, int64_t w,
                      int64_t ho, int64_t wo) { (void)x; (void)best; (void)arg; (void)p0; (void)p1; (void)h; (void)w; (void)ho; (void)wo; }
#endif

/* ---- Tasks: each kernel as the thread pool (_pool.c) runs it ----------------------------------------
 *
 * A task reads its arguments from an array in the order its comment gives (engine/_native.py packs
 * them: arrays by address, sizes as integers, constants as doubles) and does the range [s, e) of its
 * work: elements, rows, planes, samples or blocks, as the comment says.
 */
#define ARG_P(idx, T) ((T)a[idx].p)
#define ARG_I(idx) (a[idx].i)
#define ARG_D(idx) (a[idx].d)

#define TASKS(T, S)                                                                                   \
/* x, out: elements */                                                                                \
void relu_##S##_task(const pool_arg *a, int64_t s, int64_t e) {                                      \
    relu_##S(ARG_P(0, const T *) + s, ARG_P(1, T *) + s, e - s);                                      \
}                                                                                                     \
/* g, y, out: elements */                                                                             \
void relu_grad_##S##_task(const pool_arg *a, int64_t s, int64_t e) {                                 \
    relu_grad_##S(ARG_P(0, const T *) + s, ARG_P(1, const T *) + s, ARG_P(2, T *) + s, e - s);         \
}                                                                                                     \
/* p, grad, m, v, vmax (or NULL); decay, l2, maximize (integer), lerp_w, beta2, 1 - beta2, bc2_sqrt, \
   eps, step_size: elements */                                                                        \
void adam_##S##_task(const pool_arg *a, int64_t s, int64_t e) {                                      \
    T *vmax = ARG_P(4, T *);                                                                          \
    adam_##S(ARG_P(0, T *) + s, ARG_P(1, const T *) + s, ARG_P(2, T *) + s, ARG_P(3, T *) + s,        \
             vmax ? vmax + s : NULL, e - s, ARG_D(5), ARG_D(6), (int)ARG_I(7), ARG_D(8), ARG_D(9),    \
             ARG_D(10), ARG_D(11), ARG_D(12), ARG_D(13));                                             \
}                                                                                                     \
/* x, w, b, y, mean, rstd, n, eps: rows */                                                            \
void layer_norm_##S##_task(const pool_arg *a, int64_t s, int64_t e) {                                \
    layer_norm_##S(ARG_P(0, const T *), ARG_P(1, const T *), ARG_P(2, const T *), ARG_P(3, T *),      \
                   ARG_P(4, T *), ARG_P(5, T *), s, e, ARG_I(6), ARG_D(7));                           \
}                                                                                                     \
/* g, x, w, mean, rstd, gx, gw, gb, rows, n, rows per block: blocks of rows, block k's sums of the    \
   weight gradients into row k of gw and gb (each NULL or zeroed, one row per block) */              \
void layer_norm_backward_##S##_task(const pool_arg *a, int64_t s, int64_t e) {                       \
    const int64_t rows = ARG_I(8), n = ARG_I(9), per = ARG_I(10);                                    \
    T *gw = ARG_P(6, T *), *gb = ARG_P(7, T *);                                                       \
    T *scratch = malloc(sizeof(T) * 2 * (n > 0 ? n : 1));                                             \
    if (!scratch)                                                                                     \
        abort();                                                                                      \
    for (int64_t k = s; k < e; k++)                                                                   \
        layer_norm_backward_##S(ARG_P(0, const T *), ARG_P(1, const T *), ARG_P(2, const T *),        \
                                ARG_P(3, const T *), ARG_P(4, const T *), ARG_P(5, T *),              \
                                gw ? gw + k * n : NULL, gb ? gb + k * n : NULL, scratch, k * per,     \
                                (k + 1) * per < rows ? (k + 1) * per : rows, n);                      \
    free(scratch);                                                                                    \
}                                                                                                     \
/* target, index, values, count, d: columns */                                                       \
void index_add_rows_##S##_task(const pool_arg *a, int64_t s, int64_t e) {                            \
    index_add_rows_##S(ARG_P(0, T *), ARG_P(1, const int64_t *), ARG_P(2, const T *), ARG_I(3),       \
                       ARG_I(4), s, e);                                                               \
}                                                                                                     \
/* x, partial sums, rows, n, rows per block: blocks of rows, block k's column sums into row k */       \
void sum_rows_##S##_task(const pool_arg *a, int64_t s, int64_t e) {                                  \
    const int64_t rows = ARG_I(2), n = ARG_I(3), per = ARG_I(4);                                     \
    for (int64_t k = s; k < e; k++)                                                                   \
        sum_rows_##S(ARG_P(0, const T *), ARG_P(1, T *) + k * n, k * per,                             \
                     (k + 1) * per < rows ? (k + 1) * per : rows, n);                                 \
}                                                                                                     \
/* g, y, out, n: rows */                                                                              \
void softmax_backward_##S##_task(const pool_arg *a, int64_t s, int64_t e) {                          \
    softmax_backward_##S(ARG_P(0, const T *), ARG_P(1, const T *), ARG_P(2, T *), s, e, ARG_I(3));    \
}                                                                                                     \
/* g, arg, gx, h, w, ho, wo, geometry: planes */                                                      \
void max_pool_backward_##S##_task(const pool_arg *a, int64_t s, int64_t e) {                         \
    max_pool_backward_##S(ARG_P(0, const T *), ARG_P(1, const int8_t *), ARG_P(2, T *), s, e,         \
                          ARG_I(3), ARG_I(4), ARG_I(5), ARG_I(6), ARG_P(7, const int64_t *));         \
}

TASKS(float, f32)
TASKS(double, f64)

/* s, mask (or NULL), L, S, scale, safe (integer): rows */
void attention_softmax_f32_task(const pool_arg *a, int64_t s, int64_t e) {
    attention_softmax_f32(ARG_P(0, float *), ARG_P(1, const float *), s, e, ARG_I(2), ARG_I(3), ARG_D(4),
                          (int)ARG_I(5));
}

/* x, best, arg, h, w, ho, wo: planes */
void max_pool_2x2_f32_task(const pool_arg *a, int64_t s, int64_t e) {
    max_pool_2x2_f32(ARG_P(0, const float *), ARG_P(1, float *), ARG_P(2, int8_t *), s, e, ARG_I(3), ARG_I(4),
                     ARG_I(5), ARG_I(6));
}

/* x, wt, bias (or NULL), y, dims: samples */
void conv2d_f32_task(const pool_arg *a, int64_t s, int64_t e) {
    conv2d_f32(ARG_P(0, const float *), ARG_P(1, const float *), ARG_P(2, const float *), ARG_P(3, float *), s, e,
               ARG_P(4, const int64_t *));
}

/* x, g, parts, samples per block, samples, floats per part, dims: blocks of samples, block k's
   gradient into part k */
void conv2d_weight_f32_task(const pool_arg *a, int64_t s, int64_t e) {
    const int64_t step = ARG_I(3), samples = ARG_I(4), size = ARG_I(5);
    for (int64_t k = s; k < e; k++)
        conv2d_weight_f32(ARG_P(0, const float *), ARG_P(1, const float *), ARG_P(2, float *) + k * size, k * step,
                          (k + 1) * step < samples ? (k + 1) * step : samples, ARG_P(6, const int64_t *));
}

/* One part of a split matrix product on MKL (engine/_blas.py): cblas_sgemm or cblas_dgemm, double
   (integer), trans_a, trans_b, by_rows, m, n, k, lda, ldb, a, b, c, and the bytes from one row (by_rows)
   or column of op(A), op(B) and C to the next, bias (n values, or NULL: C = bias + A B in one pass):
   rows of C, or columns. C is row-major with n per row. */
typedef void (*sgemm_fn)(int, int, int, int, int, int, float, const float *, int, const float *, int, float,
                         float *, int);
typedef void (*dgemm_fn)(int, int, int, int, int, int, double, const double *, int, const double *, int, double,
                         double *, int);

void gemm_task(const pool_arg *a, int64_t s, int64_t e) {
    const int is_double = (int)ARG_I(1), ta = (int)ARG_I(2), tb = (int)ARG_I(3), by_rows = (int)ARG_I(4);
    const int64_t m = ARG_I(5), n = ARG_I(6), k = ARG_I(7), lda = ARG_I(8), ldb = ARG_I(9);
    const char *pa = ARG_P(10, const char *) + s * ARG_I(13), *pb = ARG_P(11, const char *) + s * ARG_I(14);
    char *pc = ARG_P(12, char *) + s * ARG_I(15);
    const char *bias = ARG_P(16, const char *);
    const int64_t rows = by_rows ? e - s : m, cols = by_rows ? n : e - s;
    const size_t item = is_double ? sizeof(double) : sizeof(float);
    if (bias)
        for (int64_t r = 0; r < rows; r++)
            memcpy(pc + r * n * item, bias + (by_rows ? 0 : s * item), cols * item);
    const int row_major = 101;
    if (is_double)
        ((dgemm_fn)ARG_P(0, void *))(row_major, ta, tb, (int)rows, (int)cols, (int)k, 1.0, (const double *)pa,
                                     (int)lda, (const double *)pb, (int)ldb, bias ? 1.0 : 0.0, (double *)pc, (int)n);
    else
        ((sgemm_fn)ARG_P(0, void *))(row_major, ta, tb, (int)rows, (int)cols, (int)k, 1.0f, (const float *)pa,
                                     (int)lda, (const float *)pb, (int)ldb, bias ? 1.0f : 0.0f, (float *)pc, (int)n);
}
