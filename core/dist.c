// The collectives of a distributed run (docs/SCALE.md), over MPI_COMM_WORLD. MPI starts lazily, the first
// time a rank, a size or a collective is asked for, and only in a process an MPI launcher started (Open MPI's
// mpirun sets OMPI_COMM_WORLD_SIZE, MPICH's and Slurm's PMI launchers PMI_SIZE, PMIx ones PMIX_RANK): a plain
// run never initialises MPI, so it costs nothing (Open MPI's singleton start spawns a runtime daemon and can
// print warnings). Without MPI (-DIB_NO_MPI, `make MPI=0` or no libopenmpi-dev) every function is the
// one-rank case. Counts above INT_MAX go in pieces, as MPI counts are int.
#include "core.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

#ifndef IB_NO_MPI
#include <mpi.h>

static int state = -1;     // -1: not looked at yet; 0: one process; 1: MPI running
static int we_started;     // 1: MPI_Init was ours, so MPI_Finalize is ours too
static int rank_, size_ = 1;

static void finish_at_exit(void) { ib_dist_finish(0); }

static int launched(void) {
    static const char *const vars[] = {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK", NULL};
    for (int i = 0; vars[i]; i++)
        if (getenv(vars[i])) return 1;
    return 0;
}

static int up(void) {
    if (state >= 0) return state;
    int init = 0, fin = 0;
    MPI_Initialized(&init);
    MPI_Finalized(&fin);
    state = 0;
    if (fin || (!init && !launched())) return state;
    if (!init) {
        int provided;
        if (MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS) return state;
        we_started = 1;
        atexit(finish_at_exit);
    }
    MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
    MPI_Comm_size(MPI_COMM_WORLD, &size_);
    state = 1;
    return state;
}

int ib_dist_built(void) { return 1; }
int ib_dist_rank(void) { return up() ? rank_ : 0; }
int ib_dist_size(void) { return up() ? size_ : 1; }

void ib_dist_finish(int status) {
    if (state != 1 || !we_started) return;
    int fin = 0;
    MPI_Finalized(&fin);
    if (fin) return;
    if (status && size_ > 1) MPI_Abort(MPI_COMM_WORLD, status);
    MPI_Finalize();
}

static void allreduce(void *x, int64_t n, MPI_Datatype t, size_t elem) {
    if (!up() || size_ == 1) return;
    for (int64_t off = 0; off < n;) {
        int k = n - off > INT_MAX ? INT_MAX : (int)(n - off);
        MPI_Allreduce(MPI_IN_PLACE, (char *)x + (size_t)off * elem, k, t, MPI_SUM, MPI_COMM_WORLD);
        off += k;
    }
}

void ib_dist_allreduce_f32(float *x, int64_t n) { allreduce(x, n, MPI_FLOAT, sizeof(float)); }
void ib_dist_allreduce_f64(double *x, int64_t n) { allreduce(x, n, MPI_DOUBLE, sizeof(double)); }

void ib_dist_bcast(void *p, int64_t bytes, int root) {
    if (!up() || size_ == 1) return;
    for (int64_t off = 0; off < bytes;) {
        int k = bytes - off > INT_MAX ? INT_MAX : (int)(bytes - off);
        MPI_Bcast((char *)p + off, k, MPI_BYTE, root, MPI_COMM_WORLD);
        off += k;
    }
}

void ib_dist_allgather(const void *mine, int64_t bytes, void *all) {
    if (!up() || size_ == 1) {
        if (all != mine) memmove(all, mine, (size_t)bytes);
        return;
    }
    IB_ASSERT(bytes <= INT_MAX, "ib_dist_allgather: %lld bytes a rank is more than one call takes", (long long)bytes);
    MPI_Allgather(mine, (int)bytes, MPI_BYTE, all, (int)bytes, MPI_BYTE, MPI_COMM_WORLD);
}

void ib_dist_barrier(void) {
    if (up() && size_ > 1) MPI_Barrier(MPI_COMM_WORLD);
}

#else   // one process

int ib_dist_built(void) { return 0; }
int ib_dist_rank(void) { return 0; }
int ib_dist_size(void) { return 1; }
void ib_dist_finish(int status) { (void)status; }
void ib_dist_allreduce_f32(float *x, int64_t n) { (void)x, (void)n; }
void ib_dist_allreduce_f64(double *x, int64_t n) { (void)x, (void)n; }
void ib_dist_bcast(void *p, int64_t bytes, int root) { (void)p, (void)bytes, (void)root; }
void ib_dist_allgather(const void *mine, int64_t bytes, void *all) {
    if (all != mine) memmove(all, mine, (size_t)bytes);
}
void ib_dist_barrier(void) {}

#endif
