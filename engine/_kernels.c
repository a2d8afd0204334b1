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

#if defined(__x86_64__) && defined(__GNUC__) && defined(__linux__)
/* one build, the widest vectors the machine has (chosen once, when the library loads; an ifunc: ELF and glibc) */
#define VECTORIZED __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define VECTORIZED
#endif

#define LANES 16

#define KERNELS(T, S, SQRT)                                                                               \
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
static inline T row_sum_##S(const T *x, int64_t n) {                                                 \
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
static inline T row_dot_##S(const T *x, const T *y, int64_t n) {                                     \
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
