/* The engine's CPU thread pool, in C: every kernel of _kernels.c and the parts of a split MKL product
 * (engine/_native.py, engine/_blas.py) run on it.
 *
 * Why not Python threads (engine/_parallel.py, which still splits numpy's own passes): a Python
 * worker is woken through a futex and then needs the GIL, and on a virtual machine that takes 30-80 us,
 * as long as half of a 2 MB pass. A split kernel then finished no sooner than an unsplit one (a 2 MB
 * copy: 47 us per half, 118 us split through Python threads, 55 us here, PyTorch's OpenMP 52 us).
 *
 * A job is a task (a function of an argument array and a range [start, stop)) cut into parts, one
 * per thread. Parts are claimed, not assigned: the caller takes the first, wakes the workers, and
 * every thread (the caller too) then claims the next unclaimed part until none is left; the caller
 * returns when all are done. So a part no worker has started (a worker not yet awake, or its core
 * taken by another process) is done by the caller rather than waited for. Workers wait for the next
 * job spinning for SPIN_NS, so a training step's kernels, which come back to back, find them awake;
 * then they sleep on a condition variable, so an idle process holds no core (OpenBLAS spinning 0.1 s
 * after each GEMM slowed everything else on the machine: docs/engine.md, "Threads"). While spinning
 * they yield the core to any other thread that wants it.
 *
 * One job at a time: a second thread asking while one runs (the API's threads, a DataLoader) runs its
 * job on its own thread. A forked child starts with no workers and creates them on first use.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <time.h>

#include "_pool.h"

#define MAX_WORKERS 255
#define SPIN_NS 200000 /* how long an idle worker waits for the next job before it sleeps */

static pthread_mutex_t job_lock = PTHREAD_MUTEX_INITIALIZER;  /* held by the thread running a job */
static pthread_mutex_t sleep_lock = PTHREAD_MUTEX_INITIALIZER; /* guards sleeping; with wake */
static pthread_cond_t wake = PTHREAD_COND_INITIALIZER;

/* The claim word: the job's number (bumped once per job; what idle workers wait on), its number of
   parts and the next unclaimed part, in one word. A thread claims a part by raising `next` with a
   compare-and-swap on the whole word, so it can never claim a part of another job than the one it
   read: a claimed part keeps its job running (the caller waits for it), and so keeps the job's
   fields below valid while the part runs. */
static atomic_uint_fast64_t claim;
#define JOB(c) ((c) >> 32)
#define PARTS(c) ((int)(((c) >> 16) & 0xFFFF))
#define NEXT(c) ((int)((c) & 0xFFFF))

static atomic_int pending;    /* parts of the current job not yet done */
static int workers, sleeping; /* workers started; workers asleep on wake */
static int fork_handler_set;

/* the current job: written before the claim word is published (release), read after a claim (acquire) */
static pool_task job_task;
static const pool_arg *job_args;
static int64_t job_n;

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

static int64_t now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

/* Claim and run parts of job `job` until none is left unclaimed. */
static void run_parts(uint64_t job) {
    uint64_t c = atomic_load_explicit(&claim, memory_order_acquire);
    while (JOB(c) == job && NEXT(c) < PARTS(c)) {
        if (!atomic_compare_exchange_weak_explicit(&claim, &c, c + 1, memory_order_acq_rel, memory_order_acquire))
            continue; /* c now holds the word another thread left: look again */
        const int64_t parts = PARTS(c), i = NEXT(c);
        job_task(job_args, job_n * i / parts, job_n * (i + 1) / parts);
        atomic_fetch_sub_explicit(&pending, 1, memory_order_release);
        c = atomic_load_explicit(&claim, memory_order_acquire);
    }
}

/* The number of the job after `seen`: spinning up to SPIN_NS, then asleep until a job wakes it. */
static uint64_t next_job(uint64_t seen) {
    const int64_t until = now_ns() + SPIN_NS;
    for (int spins = 1;; spins++) {
        const uint64_t job = JOB(atomic_load_explicit(&claim, memory_order_acquire));
        if (job != seen)
            return job;
        cpu_relax();
        if (spins % 64 == 0) {
            if (now_ns() > until)
                break;
            sched_yield(); /* a thread that has work on this core goes first */
        }
    }
    pthread_mutex_lock(&sleep_lock);
    sleeping++;
    uint64_t job;
    while ((job = JOB(atomic_load_explicit(&claim, memory_order_acquire))) == seen)
        pthread_cond_wait(&wake, &sleep_lock);
    sleeping--;
    pthread_mutex_unlock(&sleep_lock);
    return job;
}

static void *worker_main(void *arg) {
    uint64_t seen = (uint64_t)(uintptr_t)arg; /* the job running when it was started: not its to join */
    for (;;) {
        seen = next_job(seen);
        run_parts(seen);
    }
    return NULL;
}

static void forget_workers(void) { /* in a forked child: the parent's threads are not here */
    pthread_mutex_t unlocked = PTHREAD_MUTEX_INITIALIZER;
    pthread_cond_t fresh = PTHREAD_COND_INITIALIZER;
    job_lock = unlocked;
    sleep_lock = unlocked;
    wake = fresh;
    workers = sleeping = 0;
}

/* Workers up to `wanted` (job_lock held); how many there are. */
static int ensure_workers(int wanted) {
    if (!fork_handler_set) {
        pthread_atfork(NULL, NULL, forget_workers);
        fork_handler_set = 1;
    }
    while (workers < wanted) {
        const uint64_t job = JOB(atomic_load(&claim));
        pthread_t thread;
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        const int failed = pthread_create(&thread, &attr, worker_main, (void *)(uintptr_t)job);
        pthread_attr_destroy(&attr);
        if (failed)
            break;
        workers++;
    }
    return workers;
}

int pool_run(pool_task task, const pool_arg *args, int64_t n, int64_t parts) {
    if (parts > n)
        parts = n;
    if (parts > MAX_WORKERS + 1)
        parts = MAX_WORKERS + 1;
    if (parts <= 1 || pthread_mutex_trylock(&job_lock) != 0) {
        task(args, 0, n);
        return 1;
    }
    const int have = ensure_workers((int)parts - 1);
    if (parts > have + 1)
        parts = have + 1;
    job_task = task;
    job_args = args;
    job_n = n;
    atomic_store_explicit(&pending, (int)parts, memory_order_relaxed);
    const uint64_t job = (JOB(atomic_load_explicit(&claim, memory_order_relaxed)) + 1) & 0xFFFFFFFFu;
    /* part 0 claimed by the caller already, so the job is never without a thread at work */
    atomic_store_explicit(&claim, job << 32 | (uint64_t)parts << 16 | 1, memory_order_release);
    pthread_mutex_lock(&sleep_lock);
    if (sleeping)
        pthread_cond_broadcast(&wake);
    pthread_mutex_unlock(&sleep_lock);
    task(args, 0, n / parts);
    atomic_fetch_sub_explicit(&pending, 1, memory_order_release);
    run_parts(job); /* the parts no worker has claimed yet */
    for (int spins = 1; atomic_load_explicit(&pending, memory_order_acquire) > 0; spins++) {
        cpu_relax();
        if (spins % 64 == 0)
            sched_yield(); /* a worker descheduled onto this core gets it */
    }
    pthread_mutex_unlock(&job_lock);
    return (int)parts;
}
