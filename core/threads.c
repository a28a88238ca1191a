// One thread setting for the library's thread pool, OpenMP and OpenBLAS, the pool itself, and a monotonic
// clock.
//
// The pool (ib_parallel_for) runs the hot loops of a training step: a step of mobilenetv2 opens a few
// hundred parallel regions, and OpenMP's fork-join made each one wait for every thread of the team. On a
// shared machine a thread descheduled by another process then stalled every region (2 cores and one busy
// process: 44-67 img/s spinning, against 300 quiet), and sleeping waits cost a futex wake per region
// (20-40% slower quiet). So: items are claimed one at a time by whichever thread is running (the caller
// takes part), the caller waits only for items already claimed, never for a worker that has not woken,
// and an idle worker spins briefly (IDLE_SPIN_S) for the next region, then parks on a condition variable.
// Which thread runs an item never changes its numbers: an item computes its outputs whole.
//
// Claims go through one 64-bit word, the region's generation (high 32 bits) and the next item (low 32):
// a compare-and-swap that still sees the generation the worker read proves the region is still running,
// so a worker that wakes late can never run an item of a newer region with an older region's function.
#include "core.h"

#include <omp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

void openblas_set_num_threads(int num_threads);   // from OpenBLAS (its cblas.h declares it too)

#define MAX_WORKERS 256
#define IDLE_SPIN_S 100e-6   // how long an idle worker looks for the next region before it parks
#define CALLER_SPIN_S 50e-6   // how long the caller spins for the workers' last items before it sleeps
// Spinning pays on free cores (wakes cost tens of microseconds here) and costs on shared ones: a spinning
// thread burns its share of the core, and the scheduler then runs the other process when there is work.
// So the caller counts how often it is preempted (involuntary context switches) over every WATCH_LOOPS
// loops: above BUSY_SWITCHES_PER_S, nobody spins until the next look.
#define WATCH_LOOPS 64
#define BUSY_SWITCHES_PER_S 50.0

typedef struct {
    _Atomic(ib_par_fn) fn;
    _Atomic(void *) arg;
    _Atomic int64_t n;
} par_job;

static struct {
    pthread_mutex_t call;   // one region at a time; a second caller runs its loop alone
    _Atomic uint64_t state;   // generation << 32 | next item
    par_job job[2];   // the job of generation g is job[g & 1]: written before g is published
    _Atomic int64_t left;   // items of the current generation not finished yet
    _Atomic int caller_sleeps;   // the caller waits on done_cv for the last of them
    pthread_mutex_t done_mu;
    pthread_cond_t done_cv;
    pthread_mutex_t park_mu;
    pthread_cond_t park_cv;
    _Atomic int sleepers, stop;
    _Atomic int busy;   // the cores are shared: no spinning (see BUSY_SWITCHES_PER_S)
    int loops;   // loops run, for the look at the preemptions (the caller's, under `call`)
    long switches;
    double since;
    int workers;   // started; worker w runs with index w + 1 (the caller is 0)
    pthread_t tid[MAX_WORKERS];
} pool = {.call = PTHREAD_MUTEX_INITIALIZER,
          .done_mu = PTHREAD_MUTEX_INITIALIZER,
          .done_cv = PTHREAD_COND_INITIALIZER,
          .park_mu = PTHREAD_MUTEX_INITIALIZER,
          .park_cv = PTHREAD_COND_INITIALIZER};

static int n_threads = 0;
static _Thread_local int in_pool;   // a worker, or a caller inside a region: nested loops run alone

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

// Claims the next item of generation g (of n items): 1 and *item, or 0 when g is over or has no items left.
static int claim(uint32_t g, int64_t n, int64_t *item) {
    uint64_t s = atomic_load_explicit(&pool.state, memory_order_acquire);
    for (;;) {
        if ((uint32_t)(s >> 32) != g || (int64_t)(uint32_t)s >= n) return 0;
        if (atomic_compare_exchange_weak_explicit(&pool.state, &s, s + 1, memory_order_acq_rel,
                                                  memory_order_acquire)) {
            *item = (int64_t)(uint32_t)s;
            return 1;
        }
    }
}

static void *worker_main(void *p) {
    const int index = (int)(intptr_t)p;
    in_pool = 1;
    uint32_t seen = (uint32_t)(atomic_load(&pool.state) >> 32);
    for (;;) {
        uint32_t g;
        double t0 = ib_time_s();
        for (int spins = 0;; spins++) {
            g = (uint32_t)(atomic_load_explicit(&pool.state, memory_order_acquire) >> 32);
            if (g != seen || atomic_load_explicit(&pool.stop, memory_order_relaxed)) break;
            cpu_relax();
            if ((spins & 63) == 63 &&
                (atomic_load_explicit(&pool.busy, memory_order_relaxed) || ib_time_s() - t0 > IDLE_SPIN_S)) {
                pthread_mutex_lock(&pool.park_mu);
                atomic_fetch_add(&pool.sleepers, 1);
                while ((uint32_t)(atomic_load(&pool.state) >> 32) == seen && !atomic_load(&pool.stop))
                    pthread_cond_wait(&pool.park_cv, &pool.park_mu);
                atomic_fetch_sub(&pool.sleepers, 1);
                pthread_mutex_unlock(&pool.park_mu);
                t0 = ib_time_s();
            }
        }
        if (atomic_load(&pool.stop)) return NULL;
        seen = g;
        const par_job *j = &pool.job[g & 1];
        ib_par_fn fn = atomic_load_explicit(&j->fn, memory_order_relaxed);
        void *arg = atomic_load_explicit(&j->arg, memory_order_relaxed);
        int64_t n = atomic_load_explicit(&j->n, memory_order_relaxed), item;
        // The job read above is g's if a claim of g succeeds: g + 2 overwrites it only after g + 1 began.
        while (claim(g, n, &item)) {
            fn(arg, item, index);
            if (atomic_fetch_sub(&pool.left, 1) == 1 && atomic_load(&pool.caller_sleeps)) {
                pthread_mutex_lock(&pool.done_mu);   // the caller is in pthread_cond_wait, or sees left == 0
                pthread_cond_signal(&pool.done_cv);
                pthread_mutex_unlock(&pool.done_mu);
            }
        }
    }
}

static void pool_stop(void) {
    if (!pool.workers) return;
    pthread_mutex_lock(&pool.park_mu);
    atomic_store(&pool.stop, 1);
    pthread_cond_broadcast(&pool.park_cv);
    pthread_mutex_unlock(&pool.park_mu);
    for (int w = 0; w < pool.workers; w++) pthread_join(pool.tid[w], NULL);
    pool.workers = 0;
    atomic_store(&pool.stop, 0);
}

// Starts n workers (the caller holds pool.call, or no region can run).
static void pool_start(int n) {
    static int registered;
    if (n > 0 && !registered) registered = !atexit(pool_stop);   // joined at exit: no thread outlives main
    if (n > MAX_WORKERS) n = MAX_WORKERS;
    for (int w = 0; w < n; w++) {
        if (pthread_create(&pool.tid[w], NULL, worker_main, (void *)(intptr_t)(w + 1))) break;   // fewer, then
        pool.workers = w + 1;
    }
}

void ib_set_threads(int n) {
    if (n <= 0) {
        long c = sysconf(_SC_NPROCESSORS_ONLN);
        n = c > 0 ? (int)c : 1;
    }
    n_threads = n;
    omp_set_num_threads(n);   // the few OpenMP loops left (data tools: pack, synth)
    // One thread: BLAS (the linear layers) is never called inside a pool item, and its OpenMP team would
    // compete with the pool's workers for the cores.
    openblas_set_num_threads(1);
    pthread_mutex_lock(&pool.call);
    if (pool.workers != n - 1) {
        pool_stop();
        pool_start(n - 1);
    }
    pthread_mutex_unlock(&pool.call);
}

int ib_get_threads(void) { return n_threads > 0 ? n_threads : omp_get_max_threads(); }

int ib_pool_threads(void) {
    if (n_threads <= 0) ib_set_threads(0);
    return pool.workers + 1;
}

// The caller's involuntary context switches per second since the last look decide pool.busy.
static void watch_preemption(void) {
    struct rusage ru;
    if (getrusage(RUSAGE_THREAD, &ru)) return;
    double now = ib_time_s();
    if (pool.since > 0 && now > pool.since)
        atomic_store(&pool.busy, (double)(ru.ru_nivcsw - pool.switches) / (now - pool.since) > BUSY_SWITCHES_PER_S);
    pool.switches = ru.ru_nivcsw;
    pool.since = now;
}

void ib_parallel_for(int64_t n, ib_par_fn fn, void *arg) {
    if (n <= 0) return;
    if (n_threads <= 0) ib_set_threads(0);
    IB_ASSERT(n < ((int64_t)1 << 32), "ib_parallel_for: %lld items", (long long)n);
    if (n == 1 || in_pool || pool.workers == 0 || pthread_mutex_trylock(&pool.call)) {
        for (int64_t i = 0; i < n; i++) fn(arg, i, 0);
        return;
    }
    in_pool = 1;
    uint32_t g = (uint32_t)(atomic_load(&pool.state) >> 32) + 1;
    par_job *j = &pool.job[g & 1];
    atomic_store_explicit(&j->fn, fn, memory_order_relaxed);
    atomic_store_explicit(&j->arg, arg, memory_order_relaxed);
    atomic_store_explicit(&j->n, n, memory_order_relaxed);
    atomic_store_explicit(&pool.left, n, memory_order_relaxed);
    atomic_store(&pool.state, (uint64_t)g << 32);   // publishes the job (sequentially consistent, against sleepers)
    if (atomic_load(&pool.sleepers) > 0) {
        pthread_mutex_lock(&pool.park_mu);
        pthread_cond_broadcast(&pool.park_cv);
        pthread_mutex_unlock(&pool.park_mu);
    }
    int64_t item;
    while (claim(g, n, &item)) {
        fn(arg, item, 0);
        atomic_fetch_sub(&pool.left, 1);
    }
    // The rest were claimed by workers: wait for those only, spinning briefly, then asleep until the worker
    // that finishes the last item wakes us (a sleeping caller frees its core for whatever shares it; a
    // yield there lost whole time slices to a competing process).
    double t0 = ib_time_s();
    for (int spins = 1; atomic_load_explicit(&pool.left, memory_order_acquire) > 0; spins++) {
        cpu_relax();
        if ((spins & 63) == 0 &&
            (atomic_load_explicit(&pool.busy, memory_order_relaxed) || ib_time_s() - t0 > CALLER_SPIN_S)) {
            pthread_mutex_lock(&pool.done_mu);
            atomic_store(&pool.caller_sleeps, 1);
            while (atomic_load(&pool.left) > 0) pthread_cond_wait(&pool.done_cv, &pool.done_mu);
            atomic_store(&pool.caller_sleeps, 0);
            pthread_mutex_unlock(&pool.done_mu);
        }
    }
    if (++pool.loops % WATCH_LOOPS == 0) watch_preemption();
    in_pool = 0;
    pthread_mutex_unlock(&pool.call);
}

typedef struct {
    ib_range_fn fn;
    void *arg;
    int64_t n, grain;
} range_job;

static void range_item(void *p, int64_t item, int worker) {
    const range_job *r = p;
    int64_t lo = item * r->grain, hi = lo + r->grain < r->n ? lo + r->grain : r->n;
    r->fn(r->arg, lo, hi, worker);
}

int64_t ib_grain(int64_t work, int64_t per_item) { return work / (per_item > 0 ? per_item : 1) + 1; }

void ib_parallel_range(int64_t n, int64_t min_grain, ib_range_fn fn, void *arg) {
    if (n <= 0) return;
    int64_t want = 4 * (int64_t)ib_pool_threads(), grain = (n + want - 1) / want;
    if (grain < min_grain) grain = min_grain;
    if (grain < 1) grain = 1;
    if (grain >= n) {
        fn(arg, 0, n, 0);
        return;
    }
    range_job r = {fn, arg, n, grain};
    ib_parallel_for((n + grain - 1) / grain, range_item, &r);
}

double ib_time_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}
