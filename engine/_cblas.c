/* engine._cblas: one small matrix product on MKL's cblas_?gemm, called from Python with the least
 * overhead (engine/_blas.py's small path).
 *
 * Why a CPython module and not ctypes like the rest of the kernels: for an RNN's 32x128x128 products a
 * ctypes call with its pointer lookups (`a.ctypes.data`: ~1.4 us each) costs ~6 us, as much as MKL
 * saves over numpy's OpenBLAS in the layout that is slow there (`h @ W.T`: 15-24 us against MKL's
 * ~11). Here the arrays come in through the buffer protocol (~0.2 us each) and one vectorcall.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>

typedef void (*sgemm_fn)(int, int, int, int, int, int, float, const float *, int, const float *, int, float,
                         float *, int);
typedef void (*dgemm_fn)(int, int, int, int, int, int, double, const double *, int, const double *, int, double,
                         double *, int);

enum { ROW_MAJOR = 101, NO_TRANS = 111, TRANS = 112 };

/* A 2-D buffer's transpose flag and leading dimension: rows contiguous (NO_TRANS) or columns (TRANS). */
static int layout(const Py_buffer *v, int *trans, Py_ssize_t *ld) {
    const Py_ssize_t item = v->itemsize, s0 = v->strides[0], s1 = v->strides[1];
    if (s1 == item && s0 % item == 0 && s0 >= (v->shape[1] > 1 ? v->shape[1] : 1) * item) {
        *trans = NO_TRANS;
        *ld = s0 / item;
        return 1;
    }
    if (s0 == item && s1 % item == 0 && s1 >= (v->shape[0] > 1 ? v->shape[0] : 1) * item) {
        *trans = TRANS;
        *ld = s1 / item;
        return 1;
    }
    return 0;
}

/* gemm(function address, a, b, out): out = a @ b for 2-D float32 ('f') or float64 ('d') arrays of one
   dtype, a and b with contiguous rows or columns, out C-contiguous (m, n); sizes below 2**31. */
static PyObject *gemm(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    (void)self;
    if (nargs != 4) {
        PyErr_SetString(PyExc_TypeError, "gemm(function, a, b, out)");
        return NULL;
    }
    void *fn = PyLong_AsVoidPtr(args[0]);
    if (fn == NULL && PyErr_Occurred())
        return NULL;
    Py_buffer v[3];
    int got = 0;
    PyObject *result = NULL;
    for (; got < 3; got++)
        if (PyObject_GetBuffer(args[got + 1], &v[got], got == 2 ? PyBUF_RECORDS : PyBUF_RECORDS_RO) < 0)
            goto done;
    const char *fmt = v[0].format;
    int ta, tb, tc;
    Py_ssize_t lda, ldb, ldc;
    if (v[0].ndim != 2 || v[1].ndim != 2 || v[2].ndim != 2 || !fmt || fmt[1] || (fmt[0] != 'f' && fmt[0] != 'd') ||
        strcmp(fmt, v[1].format) || strcmp(fmt, v[2].format) || !layout(&v[0], &ta, &lda) ||
        !layout(&v[1], &tb, &ldb) || !layout(&v[2], &tc, &ldc) || tc != NO_TRANS) {
        PyErr_SetString(PyExc_ValueError, "gemm: 2-D float32/float64 arrays of one dtype with contiguous rows or "
                                          "columns, out with contiguous rows");
        goto done;
    }
    const Py_ssize_t m = v[0].shape[0], k = v[0].shape[1], n = v[1].shape[1];
    if (v[1].shape[0] != k || v[2].shape[0] != m || v[2].shape[1] != n || m > INT32_MAX || n > INT32_MAX ||
        k > INT32_MAX || lda > INT32_MAX || ldb > INT32_MAX || ldc > INT32_MAX) {
        PyErr_SetString(PyExc_ValueError, "gemm: shapes do not fit, or a size is 2**31 or more");
        goto done;
    }
    Py_BEGIN_ALLOW_THREADS
    if (fmt[0] == 'f')
        ((sgemm_fn)fn)(ROW_MAJOR, ta, tb, (int)m, (int)n, (int)k, 1.0f, v[0].buf, (int)lda, v[1].buf, (int)ldb, 0.0f,
                       v[2].buf, (int)ldc);
    else
        ((dgemm_fn)fn)(ROW_MAJOR, ta, tb, (int)m, (int)n, (int)k, 1.0, v[0].buf, (int)lda, v[1].buf, (int)ldb, 0.0,
                       v[2].buf, (int)ldc);
    Py_END_ALLOW_THREADS
    result = Py_NewRef(Py_None);
done:
    for (int i = 0; i < got; i++)
        PyBuffer_Release(&v[i]);
    return result;
}

static PyMethodDef methods[] = {
    {"gemm", (PyCFunction)(void (*)(void))gemm, METH_FASTCALL, "gemm(function, a, b, out): out = a @ b on MKL"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_cblas", NULL, -1, methods};

PyMODINIT_FUNC PyInit__cblas(void) { return PyModule_Create(&module); }
