// One thread setting for our OpenMP loops and OpenBLAS, and a monotonic clock.
#include "core.h"

#include <omp.h>
#include <time.h>
#include <unistd.h>

void openblas_set_num_threads(int num_threads);   // from OpenBLAS (its cblas.h declares it too)

static int n_threads = 0;

void ib_set_threads(int n) {
    if (n <= 0) {
        long c = sysconf(_SC_NPROCESSORS_ONLN);
        n = c > 0 ? (int)c : 1;
    }
    n_threads = n;
    omp_set_num_threads(n);
    openblas_set_num_threads(n);
}

int ib_get_threads(void) { return n_threads > 0 ? n_threads : omp_get_max_threads(); }

double ib_time_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}
