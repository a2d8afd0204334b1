/* The thread pool's interface (engine/_pool.c): a task is a function of an argument array and a range
 * of work [start, stop); engine/_native.py packs the arguments, 8 bytes each, in the order the task
 * reads them. */
#ifndef ENGINE_POOL_H
#define ENGINE_POOL_H
#include <stdint.h>

typedef union { int64_t i; double d; void *p; } pool_arg;
typedef void (*pool_task)(const pool_arg *args, int64_t start, int64_t stop);

/* task over [0, n) in `parts` ranges, one on the calling thread; returns the parts run */
int pool_run(pool_task task, const pool_arg *args, int64_t n, int64_t parts);

#endif
