// core: float32 NCHW tensors, a per-step arena, an eager autograd tape and the CPU kernels.
//
// Everything else in ibnas stands on this header. A training step looks like:
//
//     ib_ctx *ctx = ib_ctx_new();                 // arena + tape, reused every step
//     ib_ctx_reset(ctx);                          // forget last step's activations and tape
//     ib_tensor *x = ib_tensor_new(ctx, 4, (int[]){n, 3, h, w});
//     ib_tensor *y = ib_conv2d(ctx, x, w, NULL, 2, 1, 1, 1);   // w lives in an ib_params block
//     ib_tensor *loss = ib_cross_entropy(ctx, logits, labels, 0.1f, -1);
//     ib_backward(ctx, loss, NULL);               // replays the tape, ADDS dL/dw into w->grad
//
// Ops compute their output at once. When gradients are being recorded (ctx->recording) and an input
// requires a gradient, the op appends a node to the tape naming its op definition (ib_op) and what it
// saved; ib_backward walks the tape in reverse. Backward functions add the positive dL/dx into their
// inputs' grads, so a tensor used twice gets the sum. Activation grads are allocated lazily in the
// arena, zeroed, the first time something adds into them.
//
// Failures: a programming error (shapes that do not fit) is IB_ASSERT, always on, with file:line;
// anything from outside (files, user input) returns an ib_status with a message from ib_errmsg()
// naming the file and what is wrong. Library code never calls exit().
#ifndef IB_CORE_H
#define IB_CORE_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

// The public API (version, ib_status, ib_errmsg, ib_set_threads, ...) is defined there, once.
#include "include/ibnas.h"

#define IB_VERSION_STRING IBNAS_VERSION_STRING

// ---------------------------------------------------------------------------------------------
// Errors

// ib_status and ib_errmsg() (the last message recorded on this thread) are in include/ibnas.h.
// Records a message for the calling thread and returns `code`, so `return ib_fail(IB_ERR_IO, ...)`.
ib_status ib_fail(ib_status code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
const char *ib_status_name(ib_status code);   // the same text as the public ib_strerror

_Noreturn void ib_assert_fail(const char *file, int line, const char *cond, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
#define IB_ASSERT(cond, ...) \
    do { if (!(cond)) ib_assert_fail(__FILE__, __LINE__, #cond, __VA_ARGS__); } while (0)

// ---------------------------------------------------------------------------------------------
// Arena: bump allocation, 64-byte aligned. Grows by chunks; on reset the chunks are merged into one
// so that from the second step on a training loop does no allocation at all.

typedef struct ib_arena ib_arena;
ib_arena *ib_arena_new(size_t initial_bytes);
void ib_arena_free(ib_arena *a);
void *ib_arena_alloc(ib_arena *a, size_t bytes);        // uninitialised
void *ib_arena_calloc(ib_arena *a, size_t bytes);       // zeroed
void ib_arena_reset(ib_arena *a);
size_t ib_arena_used(const ib_arena *a);
size_t ib_arena_peak(const ib_arena *a);                // high-water mark over the arena's life
// Reuse within a step (activation grads during backward): give_back marks a block from this arena
// free (anything else is ignored); calloc_reuse returns a zeroed block, taken from the free ones when
// one fits, else as ib_arena_calloc; alloc_reuse the same block uninitialised. Reset forgets the free blocks.
void ib_arena_give_back(ib_arena *a, void *p, size_t bytes);
void *ib_arena_calloc_reuse(ib_arena *a, size_t bytes);
void *ib_arena_alloc_reuse(ib_arena *a, size_t bytes);
// A scratch scope (one backward function): at _end, everything allocated since _begin is given back
// except the blocks that ib_arena_(c)alloc_reuse returned (the grads).
// Scopes do not nest: _open says whether one is open.
void ib_arena_scope_begin(ib_arena *a);
void ib_arena_scope_end(ib_arena *a);
int ib_arena_scope_open(const ib_arena *a);

// ---------------------------------------------------------------------------------------------
// Tensors: float32, up to 4 dims, shape and strides in elements. NCHW for images.

#define IB_MAX_DIMS 4

typedef struct ib_tensor {
    float *data;
    float *grad;              // NULL until something adds into it (activations) or set (params)
    int ndim;
    int shape[IB_MAX_DIMS];
    int64_t stride[IB_MAX_DIMS];
    int requires_grad;
    struct ib_tensor *base;   // for views: the tensor whose memory this one aliases
    const char *name;         // parameters: the dotted name; otherwise NULL
    // A group-block view (ib_view_group_blocks; 0 otherwise): dim 0 is `blocks` runs of shape[0] / blocks rows,
    // run j starting block_stride elements after run j - 1, rows within a run stride[0] apart.
    int blocks;
    int64_t block_stride;
    // Centre-first 5x5 kernels (ib_view_centre_first). centre_first: this tensor (O, I, 5, 5) holds each output
    // row as the 3x3 centre taps of its I input channels (I x 9, row-major), then their 16 outer taps (I x 16,
    // row-major); its strides are those of the plain layout, so only views made by ib_view_centre_first read it.
    // ring > 0: a 5x5 view of such a tensor: the strides give the centre taps (stride[1] 9, stride[2] 3,
    // stride[3] 1) and a row's outer taps start `ring` floats after its centre taps, input channel c's at c * 16
    // (a group-block view's block j at j * ring_block_stride after block 0's).
    int centre_first;
    int64_t ring, ring_block_stride;
} ib_tensor;

typedef struct ib_node ib_node;
typedef struct ib_ctx ib_ctx;

// An op definition: one const instance per op, pointed at by the tape nodes it records.
typedef struct ib_op {
    const char *name;
    void (*backward)(ib_ctx *ctx, ib_node *node);
} ib_op;

#define IB_MAX_INPUTS 6
struct ib_node {
    const ib_op *op;
    ib_tensor *out;
    ib_tensor *in[IB_MAX_INPUTS];
    int n_in;
    void *saved;              // op-specific state, in the arena
};

struct ib_ctx {
    ib_arena *arena;
    ib_node *tape;
    int tape_len, tape_cap;
    int recording;            // 1: ops record nodes for inputs that require grad; 0: inference
    int training;             // layers read this: batchnorm uses batch statistics when set
    int release_grads;        // 1: ib_backward gives each node's output grad back to the arena once the
                              // node's backward has run, and the backward functions' scratch after each
                              // call; later grads reuse the memory (a training step's peak drops by most
                              // of the activations' grads). The grads of op outputs are then gone after
                              // backward. 0 (default): everything is kept to the reset.
    int sync_bn;              // 1: training batchnorm takes its statistics over every rank's batch (core/dist.c
                              // allreduces of the per-channel sums in forward and backward), so N ranks of
                              // B/N images normalise as one process of B (--sync-bn). Every rank must then run
                              // the same batchnorms in the same order. 0 (default): this process's batch.
};

ib_ctx *ib_ctx_new(void);
void ib_ctx_free(ib_ctx *ctx);
void ib_ctx_reset(ib_ctx *ctx);   // drops every arena tensor and the tape

int64_t ib_numel(const ib_tensor *t);
int ib_is_contiguous(const ib_tensor *t);
int ib_same_shape(const ib_tensor *a, const ib_tensor *b);
// "[2, 3, 5, 5]" into buf (returns buf), for messages.
const char *ib_shape_str(const ib_tensor *t, char *buf, size_t n);

// New contiguous tensors in the arena. _new is uninitialised, _zeros zeroed.
ib_tensor *ib_tensor_new(ib_ctx *ctx, int ndim, const int *shape);
ib_tensor *ib_tensor_zeros(ib_ctx *ctx, int ndim, const int *shape);
ib_tensor *ib_tensor_like(ib_ctx *ctx, const ib_tensor *t);        // same shape, uninitialised
// Fill a tensor header for external memory (no allocation); strides are contiguous.
void ib_tensor_init(ib_tensor *t, float *data, int ndim, const int *shape);

// The gradient buffer of t, allocated in the arena and zeroed if t has none yet.
float *ib_grad(ib_ctx *ctx, ib_tensor *t);

// Views alias the memory (data and grad) of their base; writing the view's grad writes the base's.
// This is how the supernet shares weights: a small kernel is the centre of the largest one, a small
// width the first channels. Views are generally not contiguous; ib_contiguous copies one for the
// kernels, and its backward adds the gradient back into the slice of the larger tensor. ib_conv2d takes
// a view as its weight without that: channel slices and group blocks are read in place, a kernel's centre is
// copied into scratch inside the conv's forward and backward, a depthwise one through ib_contiguous.
//   ib_view_slice: dims 0 and 1 keep [0, n0) and [0, n1); dims 2 and 3 keep the centred k2 x k3
//   window (k2, k3 of the same parity as the base's size). n < 0 or k < 0 keeps the whole dim.
ib_tensor *ib_view_slice(ib_ctx *ctx, ib_tensor *t, int n0, int n1, int k2, int k3);
//   ib_view_range: dim `dim` keeps [start, start + len) (for groups and channel splits).
ib_tensor *ib_view_range(ib_ctx *ctx, ib_tensor *t, int dim, int start, int len);
//   ib_view_group_blocks: a g-group conv's weight (hid, cin/g, k, k) inside a dense (hid_max, cin, K, K) one
//   (K - k even): group j's rows are the first hid/g of rows [j hid_max/g, (j+1) hid_max/g), its input channels
//   [j cin/g, (j+1) cin/g), its kernel the centred k x k. ib_conv2d reads it in place when k == K.
ib_tensor *ib_view_group_blocks(ib_ctx *ctx, ib_tensor *t, int hid, int groups, int k);
//   ib_view_centre_first: the weight of a conv with n0 output rows, n1 input channels a group and a k x k kernel
//   (k 3 or 5) in a centre-first tensor t (t->centre_first, above), as ib_view_slice (groups 1) or
//   ib_view_group_blocks (groups > 1) take it from a plain one. k 3: an ordinary strided view whose rows are
//   contiguous (ib_conv2d reads it in place: a 3x3 path of a 5x5 weight reads 9 of every 25 floats, not all of
//   them). k 5: a ring view (t->ring > 0): ib_conv2d reads it in place (its forward through a table of each
//   plain-order column's offset, so it sums as the plain conv does); ib_tensor_read gives it in the plain order; ib_view_mark and
//   ib_view_count mark its elements.
ib_tensor *ib_view_centre_first(ib_ctx *ctx, ib_tensor *t, int n0, int n1, int k, int groups);
// The centre-first tap order: plain tap kh * 5 + kw is ring tap ib__ring_tap[kh * 5 + kw] (0..8 the centre taps,
// 9..24 the outer ones, each group row-major); ib__ring_plain is the inverse.
extern const signed char ib__ring_tap[25], ib__ring_plain[25];
// The plain 5x5 layout (O, I, 5, 5) of n rows of the centre-first one (O = n, I = cin), or back (to_centre_first).
void ib_centre_first_permute(float *data, int64_t n, int cin, int to_centre_first);
//   ib_reshape: a contiguous tensor seen with another shape of the same numel (no copy).
ib_tensor *ib_reshape(ib_ctx *ctx, ib_tensor *t, int ndim, const int *shape);
//   ib_contiguous: t itself if contiguous, else a contiguous copy (recorded).
ib_tensor *ib_contiguous(ib_ctx *ctx, ib_tensor *t);
// t's values in row-major order into dst (numel floats), whatever t's strides; nothing recorded.
void ib_tensor_read(const ib_tensor *t, float *dst);
// Sets mask[e - origin] for every element e of t (a tensor or any view; origin at or before t->data), e.g. the
// weights of a shared block that a supernet path reads.
void ib_view_mark(const ib_tensor *t, const float *origin, uint8_t *mask);
// Adds 1 to count[e - origin] for every element e of t (at most 255), e.g. how many of a step's paths read a weight.
void ib_view_count(const ib_tensor *t, const float *origin, uint8_t *count);
// The first index in [i, n) whose byte of mask is set (set = 1) or zero (set = 0), else n.
int64_t ib_mask_next(const uint8_t *mask, int64_t i, int64_t n, int set);

// Autograd.
// Appends a node for `op` if recording and any input requires grad; marks `out` as requiring grad
// then. Returns the node (so the op can set node->saved) or NULL when nothing was recorded.
ib_node *ib_record(ib_ctx *ctx, const ib_op *op, ib_tensor *out, int n_in, ib_tensor *const *in);
// Seeds out's grad with `seed` (NULL: ones, the usual scalar loss) and replays the tape in reverse.
// Nodes whose output received no gradient are skipped. The tape is left in place; reset the ctx.
void ib_backward(ib_ctx *ctx, ib_tensor *out, const float *seed);

// Profiling (ibnas bench --profile). ib_prof_hook is NULL by default, which costs one test per op. When
// set, it is called on the calling thread after each op's forward (from ib_record, recorded or not),
// after each backward function ib_backward runs, and by ib_prof_scope when a network moves on to its
// next part; the hook keeps its own clock and charges the time since its previous event to this one.
// Set it only while one thread runs ops (the hook is global).
typedef struct ib_prof_event {
    const ib_op *op;            // NULL for a scope change (the time since the last event is no op's)
    const ib_tensor *out;       // the op's output and inputs (NULL, 0 for a scope change)
    ib_tensor *const *in;
    int n_in;
    int backward;               // 0: an op's forward ended; 1: its backward function ended
    int tape_index;             // the node's index in ctx->tape, -1 if nothing was recorded
    int scope;                  // forward: the current ib_prof_scope; a scope change: the one being left
} ib_prof_event;
extern void (*ib_prof_hook)(const ib_prof_event *e);
// Networks number their parts (ib_net_features: 0 the stem, i + 1 block i, n + 1 the head, n + 2 pool
// and classifier; -1 outside a network). Costs a test when no hook is set.
void ib_prof_scope(int scope);

// ---------------------------------------------------------------------------------------------
// Parameters: every parameter of a model in one contiguous block, their grads in another, and the
// buffers (batchnorm running statistics) in a third. Register first, then ib_params_alloc once.
// Optimizers loop over ps->data / ps->grad flat; checkpoints write each named tensor.

typedef struct ib_params {
    int n, cap;
    ib_tensor **t;           // stable pointers, malloc'd at registration
    int *is_buffer;          // 1 for buffers (no grad, not optimised)
    int *no_decay;           // 1 for BN weights/biases and conv/linear biases
    float *data, *grad;      // the parameter block and its gradient block (numel_params each; grad has
                             // IB_GRAD_SPARE more floats after it, zeroed by nobody, where a data-parallel
                             // step packs its scalars to sum them in the gradient's one allreduce)
    float *buf;              // the buffer block (numel_buffers)
    int64_t numel_params, numel_buffers;
} ib_params;

#define IB_GRAD_SPARE 4

void ib_params_init(ib_params *ps);
void ib_params_free(ib_params *ps);
// The returned tensor has no data until ib_params_alloc. `name` is copied.
ib_tensor *ib_params_add(ib_params *ps, const char *name, int ndim, const int *shape, int no_decay);
ib_tensor *ib_params_add_buffer(ib_params *ps, const char *name, int ndim, const int *shape);
ib_status ib_params_alloc(ib_params *ps);     // zero-filled
void ib_params_zero_grad(ib_params *ps);
ib_tensor *ib_params_find(const ib_params *ps, const char *name);
// Copies into every tensor of dst (parameters and buffers, allocated) the data of src's tensor of the same
// name and shape; returns how many were copied.
int ib_params_copy_matching(ib_params *dst, const ib_params *src);

// ---------------------------------------------------------------------------------------------
// RNG: PCG32 (O'Neill). A stream is a pure function of its seed, so results never depend on the
// thread count: random numbers are drawn on one thread, then work is split.

typedef struct ib_rng { uint64_t state, inc; } ib_rng;
void ib_rng_seed(ib_rng *r, uint64_t seed, uint64_t stream);
uint32_t ib_rng_u32(ib_rng *r);
uint32_t ib_rng_below(ib_rng *r, uint32_t n);             // uniform in [0, n), unbiased
float ib_rng_uniform(ib_rng *r);                          // [0, 1), 24 bits
float ib_rng_normal(ib_rng *r);                           // N(0, 1), Box-Muller
void ib_rng_fill_uniform(ib_rng *r, float *x, int64_t n, float lo, float hi);
void ib_rng_fill_normal(ib_rng *r, float *x, int64_t n, float mean, float std);
void ib_rng_shuffle(ib_rng *r, int *idx, int n);

// ---------------------------------------------------------------------------------------------
// Threads: one setting for our pool, the few OpenMP loops left (pack, synth) and OpenBLAS.

// ib_set_threads(n) (n <= 0: the number of cores) and ib_get_threads() are in include/ibnas.h.
// ib_time_s (monotonic seconds): include/ibnas.h.

// The library's thread pool (core/threads.c), for the loops of a training step: fn(arg, item, worker) for
// every item in [0, n), in any order, on any of ib_pool_threads() threads (worker, below that count, picks
// per-thread scratch); returns when all are done. An item computes its outputs whole, so the numbers never
// depend on the threads. Inside an item, from a second thread while a loop runs, or with one thread it is
// a plain loop. Never call BLAS inside an item: OpenBLAS's OpenMP build gave wrong sums when two threads
// called it at once. BLAS runs on one thread (ib_set_threads); the convolutions use core/simd.h's GEMM.
typedef void (*ib_par_fn)(void *arg, int64_t item, int worker);
void ib_parallel_for(int64_t n, ib_par_fn fn, void *arg);
// [0, n) in ranges of at least min_grain (about four per thread when n is large): fn(arg, lo, hi, worker).
// A loop of at most min_grain runs on the caller alone.
typedef void (*ib_range_fn)(void *arg, int64_t lo, int64_t hi, int worker);
void ib_parallel_range(int64_t n, int64_t min_grain, ib_range_fn fn, void *arg);
// The min_grain that gives a range at least `work` values when each item holds `per_item` of them:
// work / per_item + 1 (per_item <= 0 counts as 1).
int64_t ib_grain(int64_t work, int64_t per_item);
int ib_pool_threads(void);

// ---------------------------------------------------------------------------------------------
// Distributed (core/dist.c): the collectives data-parallel training and distributed search need, over
// MPI_COMM_WORLD when the library is built with MPI and launched by mpirun, and trivial otherwise (one
// rank: the sums are the data, a broadcast leaves it). ib_dist_rank, ib_dist_size, ib_dist_finish:
// include/ibnas.h. Every rank must make the same calls in the same order; call from one thread at a time
// (MPI_THREAD_FUNNELED), never inside a pool item (ib_parallel_for).
void ib_dist_allreduce_f32(float *x, int64_t n);    // in place: x = the elementwise sum over the ranks
void ib_dist_allreduce_f64(double *x, int64_t n);
void ib_dist_bcast(void *p, int64_t bytes, int root);   // root's bytes to every rank
// Each rank's `bytes` bytes of mine, in rank order, into all (size * bytes) on every rank.
void ib_dist_allgather(const void *mine, int64_t bytes, void *all);
void ib_dist_barrier(void);

// ---------------------------------------------------------------------------------------------
// Files written whole (core/fileio.c): ib_wfile_open creates PATH.tmp (its name written to tmp);
// ib_wfile_commit flushes, fsyncs and closes it and renames it over PATH, or removes it and returns
// IB_ERR_IO naming PATH and the system's reason (a full disk: "No space left on device"). A write
// that failed on the way sets the stream's error flag, which the commit reports; PATH is then as it
// was. ib_wfile_discard closes and removes it instead. ib_write_file does all three for one buffer.
FILE *ib_wfile_open(const char *path, char *tmp, size_t tmp_size, ib_status *s);
ib_status ib_wfile_commit(FILE *f, const char *tmp, const char *path);
void ib_wfile_discard(FILE *f, const char *tmp);
ib_status ib_write_file(const char *path, const void *data, size_t n);
// fsync of a file by name: 0, or -1 with errno.
int ib_fsync_path(const char *path);

// ---------------------------------------------------------------------------------------------
// HDF5 tensor I/O. Files being created are built in memory and written by ib_h5_close as PATH.tmp,
// synced and renamed (ib_write_file), so a crash or a full disk never leaves a half-written file under
// the final name. Dataset names are paths ("params/features.0.0.weight"); groups along the path are
// created as needed.

typedef struct ib_h5 ib_h5;
ib_status ib_h5_create(ib_h5 **f, const char *path);
ib_status ib_h5_open(ib_h5 **f, const char *path);        // read-only
ib_status ib_h5_close(ib_h5 *f);                          // commit (write and rename) a created file
void ib_h5_abort(ib_h5 *f);                               // drop a created file unwritten
// Can ib_h5_create write `path` (its temporary file beside it, and path not a folder)? Tried with a real
// file, made and removed, so a missing or read-only folder is known before hours of work, not after.
ib_status ib_h5_check_creatable(const char *path);
// IB_OK when dataset `name` is stored as float32; else IB_ERR_FORMAT naming the file, the dataset and its
// type (a float64 array read as float32 would be converted without a word).
ib_status ib_h5_check_f32(ib_h5 *f, const char *name);
const char *ib_h5_path(const ib_h5 *f);
int ib_h5_exists(ib_h5 *f, const char *name);
ib_status ib_h5_write(ib_h5 *f, const char *name, const ib_tensor *t);
ib_status ib_h5_write_f32(ib_h5 *f, const char *name, const float *x, int ndim, const int *shape);
ib_status ib_h5_write_i32(ib_h5 *f, const char *name, const int32_t *x, int ndim, const int *shape);
ib_status ib_h5_write_i64(ib_h5 *f, const char *name, const int64_t *x, int ndim, const int *shape);
// Dataset rank and shape (shape may be NULL); up to 8 dims.
ib_status ib_h5_shape(ib_h5 *f, const char *name, int *ndim, int64_t *shape);
// Reads a float32 dataset into a new arena tensor (rank <= 4).
ib_status ib_h5_read(ib_h5 *f, const char *name, ib_ctx *ctx, ib_tensor **out);
// Reads into an existing contiguous tensor; the dataset's shape must equal t's.
ib_status ib_h5_read_into(ib_h5 *f, const char *name, ib_tensor *t);
ib_status ib_h5_read_f32(ib_h5 *f, const char *name, float *x, int64_t n);   // n: expected numel
ib_status ib_h5_read_i32(ib_h5 *f, const char *name, int32_t *x, int64_t n);
ib_status ib_h5_read_i64(ib_h5 *f, const char *name, int64_t *x, int64_t n);
// Attributes on a group or dataset (`obj` "/" for the file root).
ib_status ib_h5_set_attr_str(ib_h5 *f, const char *obj, const char *attr, const char *value);
ib_status ib_h5_set_attr_i64(ib_h5 *f, const char *obj, const char *attr, int64_t value);
ib_status ib_h5_set_attr_f64(ib_h5 *f, const char *obj, const char *attr, double value);
// String attributes are returned malloc'd (caller frees).
ib_status ib_h5_attr_str(ib_h5 *f, const char *obj, const char *attr, char **value);
ib_status ib_h5_attr_i64(ib_h5 *f, const char *obj, const char *attr, int64_t *value);
ib_status ib_h5_attr_f64(ib_h5 *f, const char *obj, const char *attr, double *value);
// Calls fn for each direct member name of a group, in name order.
ib_status ib_h5_list(ib_h5 *f, const char *group, void (*fn)(const char *name, void *user), void *user);

// ---------------------------------------------------------------------------------------------
// Ops. Inputs must be contiguous (IB_ASSERT) except for ib_contiguous. Shapes in comments.

// Matmul and linear (OpenBLAS).
// a: (M, K), b: (K, N) -> (M, N)
ib_tensor *ib_matmul(ib_ctx *ctx, ib_tensor *a, ib_tensor *b);
// x: (N, in), w: (out, in), b: (out) or NULL -> (N, out)
ib_tensor *ib_linear(ib_ctx *ctx, ib_tensor *x, ib_tensor *w, ib_tensor *b);

// Convolution, square kernels, symmetric padding, PyTorch semantics.
// x: (N, Cin, H, W), w: (Cout, Cin/groups, K, K), b: (Cout) or NULL -> (N, Cout, Ho, Wo),
// Ho = (H + 2*pad - dil*(K-1) - 1) / stride + 1. groups == Cin == Cout uses the depthwise kernel.
// w may be a view (the one input that may): see "Views" above.
ib_tensor *ib_conv2d(ib_ctx *ctx, ib_tensor *x, ib_tensor *w, ib_tensor *b,
                     int stride, int pad, int dilation, int groups);
// x: (N, C, H, W), w: (C, 1, K, K), b: (C) or NULL -> (N, C, Ho, Wo); direct loops, no im2col.
ib_tensor *ib_dwconv2d(ib_ctx *ctx, ib_tensor *x, ib_tensor *w, ib_tensor *b,
                       int stride, int pad, int dilation);

// Batch normalisation over (N, H, W) per channel. x: (N, C, H, W) or (N, C); gamma, beta: (C);
// running_mean, running_var: (C) buffers (no grad). training: normalise with the batch statistics
// (biased variance) and update running = (1 - momentum) * running + momentum * batch (unbiased
// variance), as torch.nn.BatchNorm2d; otherwise normalise with the running statistics.
ib_tensor *ib_batchnorm(ib_ctx *ctx, ib_tensor *x, ib_tensor *gamma, ib_tensor *beta,
                        ib_tensor *running_mean, ib_tensor *running_var,
                        int training, float momentum, float eps);

// Fused ops: an activation applied in the producing op's own pass over its output, with the numbers of
// the separate ops (ib_relu, ib_relu6, ib_hswish).
typedef enum { IB_FUSE_NONE = 0, IB_FUSE_RELU, IB_FUSE_RELU6, IB_FUSE_HSWISH } ib_fuse_act;
// act(ib_batchnorm(...)) as one op (training or eval), equal to the two ops bit for bit. Its backward
// recomputes the pre-activation from x, so it keeps no tensor but its output.
ib_tensor *ib_batchnorm_act(ib_ctx *ctx, ib_tensor *x, ib_tensor *gamma, ib_tensor *beta,
                            ib_tensor *running_mean, ib_tensor *running_var,
                            int training, float momentum, float eps, ib_fuse_act act);
// Inference: act(batchnorm_eval(conv2d(x, w, b))) in one pass over the output, equal to the three ops
// bit for bit; the BN (running statistics, gamma/beta may be NULL) is applied per channel where the
// conv stores its result, so nothing is folded into, or cached beside, the weights. When the tape
// records and an input requires grad it runs the three ops instead.
ib_tensor *ib_conv2d_bn_act(ib_ctx *ctx, ib_tensor *x, ib_tensor *w, ib_tensor *b, int stride, int pad,
                            int dilation, int groups, ib_tensor *gamma, ib_tensor *beta,
                            ib_tensor *running_mean, ib_tensor *running_var, float eps, ib_fuse_act act);
// The depthwise-conv and batchnorm kernels exist as "avx512", "avx2" and "portable" C; the best this
// CPU runs is used unless IBNAS_SIMD names another. Returns 0 (and changes nothing) for a version the
// CPU lacks or an unknown name; "auto" picks the best again.
int ib_simd_select(const char *name);
const char *ib_simd_name(void);

// Elementwise activations, any shape.
ib_tensor *ib_relu(ib_ctx *ctx, ib_tensor *x);
ib_tensor *ib_relu6(ib_ctx *ctx, ib_tensor *x);
ib_tensor *ib_hswish(ib_ctx *ctx, ib_tensor *x);     // x * relu6(x + 3) / 6
ib_tensor *ib_hsigmoid(ib_ctx *ctx, ib_tensor *x);   // relu6(x + 3) / 6
ib_tensor *ib_sigmoid(ib_ctx *ctx, ib_tensor *x);
// a + b, same shape.
ib_tensor *ib_add(ib_ctx *ctx, ib_tensor *a, ib_tensor *b);
// x * s per channel (squeeze-excite). x: (N, C, H, W), s: (N, C, 1, 1) -> (N, C, H, W)
ib_tensor *ib_mul_channel(ib_ctx *ctx, ib_tensor *x, ib_tensor *s);
// Fast normalised fusion (EfficientDet's BiFPN): y = sum_i a_i xs[i], a_i = relu(w_i) / (eps + sum_j relu(w_j)).
// xs[i]: same shape (n <= IB_MAX_INPUTS - 1), w: (n) -> y like xs[0]. dw is 0 where w_i <= 0 (relu's kink).
ib_tensor *ib_weighted_sum(ib_ctx *ctx, int n, ib_tensor *const *xs, ib_tensor *w, float eps);
// The coefficients ib_weighted_sum applies, a_i = relu(w_i) / (eps + sum_j relu(w_j)) in double (the sum
// uses a_i rounded to float); returns the denominator. a: n doubles. The ONNX exporter folds them.
double ib_weighted_sum_coeffs(const float *w, int n, float eps, double *a);
// Concatenation along dim 1. xs[i]: (N, Ci, H, W) -> (N, sum Ci, H, W)
ib_tensor *ib_concat(ib_ctx *ctx, int n, ib_tensor *const *xs);

// Pooling. x: (N, C, H, W).
ib_tensor *ib_global_avg_pool(ib_ctx *ctx, ib_tensor *x);                  // -> (N, C, 1, 1)
// count_include_pad = true, as PyTorch's default; floor mode.
ib_tensor *ib_avg_pool(ib_ctx *ctx, ib_tensor *x, int k, int stride, int pad);
// Padding is -inf; ties go to the first maximum in scan order (PyTorch's choice).
ib_tensor *ib_max_pool(ib_ctx *ctx, ib_tensor *x, int k, int stride, int pad);

// Resize to (Ho, Wo) with PyTorch's F.interpolate(size=...) semantics. bilinear: align_corners=False
// (half-pixel centres, source coordinate clamped at 0). nearest: src = floor(dst * in / out).
ib_tensor *ib_resize_bilinear(ib_ctx *ctx, ib_tensor *x, int ho, int wo);
ib_tensor *ib_resize_nearest(ib_ctx *ctx, ib_tensor *x, int ho, int wo);

// Losses; each returns a scalar tensor (ndim 1, shape [1]).
// Softmax cross-entropy. logits: (N, C) with targets[N], or (N, C, H, W) with targets[N*H*W]
// (per pixel, row-major N, H, W). Targets equal to ignore_index (use -1 for none) are skipped; the
// mean is over the rest. label_smoothing eps as torch: (1 - eps) * nll + eps * mean_c(-log p_c).
ib_tensor *ib_cross_entropy(ib_ctx *ctx, ib_tensor *logits, const int32_t *targets,
                            float label_smoothing, int ignore_index);
// KL(softmax(teacher) || softmax(student)) summed over classes, mean over rows ('batchmean').
// student, teacher: (N, C). Gradients flow into both if they require grad (usually the teacher
// is detached: created with requires_grad 0, or computed with recording off).
ib_tensor *ib_kl_div_softmax(ib_ctx *ctx, ib_tensor *student, ib_tensor *teacher);
// Smooth-L1 (Huber with beta, as torch.nn.functional.smooth_l1_loss). pred, target: same shape.
// The mean of zero elements is 0 (torch: NaN).
typedef enum { IB_REDUCE_MEAN = 0, IB_REDUCE_SUM = 1 } ib_reduce;
ib_tensor *ib_smooth_l1(ib_ctx *ctx, ib_tensor *pred, ib_tensor *target, float beta, ib_reduce red);
// Sum of all elements -> scalar (for tests and custom losses).
ib_tensor *ib_sum(ib_ctx *ctx, ib_tensor *x);

#endif
