// search: what the architecture search is made of. Search spaces (*.space.json: per stage the width,
// stride, depth and the allowed block choices), the weight-sharing supernet over a space (one weight set
// per layer and op type, paths as views of it, sandwich or uniform path sampling, BN recalibration,
// extraction of a standalone checkpoint), latency tables per target (measured, modelled, imported) and
// the search strategies, which score subnets through a function they are handed so that search/ knows
// no task. docs/SEARCH.md explains the choices; docs/FORMATS.md the files.
#ifndef IB_SEARCH_H
#define IB_SEARCH_H

#include "data/loader.h"
#include "layers/layers.h"
#include "optim/optim.h"

// ---------------------------------------------------------------------------------------------
// Spaces (search/space.c). A space is a list of stages; a stage has `layers` layers, the first with
// the stage's stride, the rest stride 1; every layer maps to the stage's output width. A layer's
// choices are every combination of the stage's allowed fields for each allowed op:
//   ibn, fused: kernel x expand; gcibn: kernel x expand x groups; tucker: kernel x r_in x r_out;
//   skip: one choice, and only for layers after a stage's first (where stride 1 and in = out).
// An arch (ib_arch) is one choice per layer; its blocks are the space's layers in order, skips included.

#define IB_SPACE_FORMAT "ibnas-space"
#define IB_SPACE_VERSION 1
#define IB_SPACE_MAX_VALUES 8   // values per field of a stage

typedef struct ib_space_stage {
    int out, stride, layers;
    unsigned ops;                                // bit (1u << op) for each allowed ib_block_op
    int n_kernel, kernel[IB_SPACE_MAX_VALUES];   // ascending
    int n_expand, expand[IB_SPACE_MAX_VALUES];   // ascending (ibn, fused, gcibn)
    int n_groups, groups[IB_SPACE_MAX_VALUES];   // ascending (gcibn)
    int n_r_in, n_r_out;                         // ascending (tucker)
    float r_in[IB_SPACE_MAX_VALUES], r_out[IB_SPACE_MAX_VALUES];
} ib_space_stage;

typedef struct ib_space {
    char name[64];
    int input;                 // nominal input resolution
    int classes;               // class count of the archs it makes (a supernet replaces it by its data's)
    ib_act act;
    int stem_out, stem_kernel, stem_stride;
    int head_out;
    float dropout;
    int n_stages;
    ib_space_stage *stages;    // malloc'd
    int n_layers;              // the sum of the stages' layers
    // Choices of a BiFPN segmentation head searched with the backbone (Autoseg-EdgeTPU; "seg_head" in the
    // file): its layers, its width and (optional; n_seg_low 0: the head's flag) its finest level's stride,
    // ascending. n_seg_repeats 0: the space has none. They make one gene after the layers (ib_space_genes):
    // its choices are every (low stride, width, repeats) triple, low stride outermost (ib_space_head_choice).
    int n_seg_repeats, seg_repeats[IB_SPACE_MAX_VALUES];
    int n_seg_width, seg_width[IB_SPACE_MAX_VALUES];
    int n_seg_low, seg_low[IB_SPACE_MAX_VALUES];
} ib_space;

// Syntax errors give line and column, wrong fields their path ("stages[2].kernel"); `source` names the
// text (a file name) in messages.
ib_status ib_space_parse(ib_space *s, const char *json, const char *source);
ib_status ib_space_load(ib_space *s, const char *path);
void ib_space_free(ib_space *s);
char *ib_space_to_json(const ib_space *s);   // malloc'd; parses back to the same space

typedef struct ib_space_layer {
    int stage, index;          // the stage, and the layer's index within it
    int cin, cout, stride;
} ib_space_layer;
ib_space_layer ib_space_layer_info(const ib_space *s, int layer);   // 0 <= layer < n_layers

// The choices of a layer in a fixed order (ops in ib_block_op order; within an op, kernel outermost,
// then expand (then groups) or r_in then r_out, each ascending). Returns the count; fills up to `max`
// entries of out (out may be NULL). Each cfg has op, out, stride and its fields set; act IB_ACT_NONE.
int ib_space_choices(const ib_space *s, int layer, ib_block_cfg *out, int max);
// The number of subnets, exactly, as a decimal string (it outgrows 64 bits), and its log10.
void ib_space_count(const ib_space *s, char *buf, size_t n, double *log10_count);

// A choice vector has ib_space_genes entries: one per layer, then, when the space has seg_head choices, one
// for the head (ib_space_head_choices of them; 0 when it has none). Every function below that takes or fills
// a choice vector uses that many entries.
int ib_space_genes(const ib_space *s);
int ib_space_head_choices(const ib_space *s);
// The head gene's choice g (0 <= g < ib_space_head_choices) as BiFPN layers, width and finest stride (0 when
// the space does not choose it); and back (-1 when the space does not allow them).
void ib_space_head_choice(const ib_space *s, int g, int *repeats, int *width, int *low_stride);
int ib_space_head_index(const ib_space *s, int repeats, int width, int low_stride);
// choice[l] indexes ib_space_choices of layer l; the head gene sets the arch's seg_repeats and seg_width.
// The arch gets the space's stem, head, act and input;
// classes > 0 replaces the space's class count.
ib_status ib_space_arch(const ib_space *s, const int *choice, int classes, ib_arch *a);
// The choice indices of an arch; IB_ERR_ARG naming `source`, the block and the field when the arch is not
// one of the space's (wrong layer count, stem, head, width, stride, or a value the stage does not allow).
// choice may be NULL (a check only).
ib_status ib_space_check(const ib_space *s, const ib_arch *a, const char *source, int *choice);

typedef enum { IB_SAMPLE_RANDOM = 0, IB_SAMPLE_LARGEST, IB_SAMPLE_SMALLEST } ib_sample_kind;
// RANDOM: each layer's choice uniform over its choices (from r). LARGEST / SMALLEST: per layer the
// choice with the most / fewest multiply-accumulates at the space's input size (ties: the first), r unused.
void ib_space_sample(const ib_space *s, ib_sample_kind kind, ib_rng *r, int *choice);
// Strict fairness (FairNAS) over op types: n_paths paths (choices[p * n_layers + l]) in which, per layer,
// the op types come in a random order, each op's configuration (kernel, expansion, ...) uniform. With
// n_paths = ib_space_fair_paths(s), the most op types any layer allows, every op of every layer runs in
// exactly one path of a step where the layer allows that many (fewer: the order wraps around).
int ib_space_fair_paths(const ib_space *s);
void ib_space_sample_fair(const ib_space *s, ib_rng *r, int n_paths, int *choices);
// Op types chained along the path (--op-ramp): each layer keeps the op type of the last layer before it that
// chose between op types and did not skip, with probability 1 - q, else draws one of its non-skip op types
// uniformly; skip (where the layer allows it) with the probability uniform sampling over op types gives it,
// 1 / the layer's op types; each op's configuration uniform. q = 0: a path switches op type only where a
// layer lacks the one carried (one op type end to end where every layer allows it); q = 1: op types uniform
// per layer, independent of each other.
void ib_space_sample_chained(const ib_space *s, ib_rng *r, float q, int *choice);

// ---------------------------------------------------------------------------------------------
// Latency tables (search/lut.c): CSV rows `op,cin,cout,h,w,stride,kernel,expand,groups,r_in,r_out,ms`
// after '#' comment lines (docs/FORMATS.md, "Latency table"). op is a block op name, or "stem", "head"
// (the head conv, pool and classifier: cin = the last block's width, cout = classes, expand = head_out).

typedef struct ib_lut ib_lut;
ib_status ib_lut_load(ib_lut **t, const char *path);
void ib_lut_free(ib_lut *t);
const char *ib_lut_target(const ib_lut *t);   // the "# target:" comment's value ("cpu", "edgetpu", ...)
// The predicted latency of an arch at input res x res: the sum of the rows of its stem, every block and
// its head. IB_ERR_NOTFOUND naming the table and the missing row. A skip block costs 0.
ib_status ib_lut_predict(const ib_lut *t, const ib_arch *a, int res, double *ms);

// Rows, writing and look-ups (search/lut.c). A row's key is its first eleven columns; fields an op does
// not have are 0: ibn and fused have groups, r_in, r_out 0; tucker expand and groups 0; gcibn r_in,
// r_out 0. h, w is the input of the row's part: the image (res x res) for the stem, the block's input
// for a block, the last feature map for the head. Stem: cin 3, cout stem_out, stride, kernel of the
// stem. Head: cin the last width, cout classes, expand head_out (0: no head conv), stride and kernel 0.
// Ratios are kept to 1e-4 (0.25 and 0.75 exactly).
#define IB_LUT_FORMAT "ibnas-lut"
#define IB_LUT_VERSION 1
#define IB_LUT_HEADER "op,cin,cout,h,w,stride,kernel,expand,groups,r_in,r_out,ms"
// Row ops beside the ib_block_op values: the stem, the classifier head, and the segmentation heads
// (tasks/segment.c, ib_seg_lut_task): a DeepLabv3+-lite or BiFPN head on its backbone taps, up to the logits
// upsampled to the input. Their columns: cin the high tap's width, cout classes, h w the input (the logits'
// size), stride the high stride, kernel the low stride, expand the low tap's width, groups the head width
// (ASPP / BiFPN channels), r_in the decoder width (deeplab) or BiFPN layers, r_out the low-level reduction
// width (deeplab) or the summed widths of the taps between low and high (bifpn); the ASPP's dilations are
// not keyed (a dilated depthwise conv costs as an undilated one per output).
// A detector's SSDLite head (tasks/det_latency.c, ib_det_lut_task) is the row "ssdlite": cin the stride-16
// feature's width (the expansion's when it taps one), cout classes, h w the input, stride the extra levels
// built, kernel the default boxes per location, expand the expansion's input width (0: no expansion),
// groups the stride-32 feature's width, r_in the first extra level's width, r_out the others' summed; it
// covers the expansion's recomputation, the extra levels and every predictor. A detector also runs the
// arch's head conv: a "head" row with cout 0 is that conv alone (no pool, no classifier).
enum { IB_LUT_STEM = IB_BLOCK_SKIP + 1, IB_LUT_HEAD, IB_LUT_DEEPLAB, IB_LUT_BIFPN, IB_LUT_SSDLITE, IB_LUT_N_OPS };

typedef struct ib_lut_key {
    int op;                    // an ib_block_op other than skip, IB_LUT_STEM or IB_LUT_HEAD
    int cin, cout, h, w, stride, kernel, expand, groups;
    float r_in, r_out;
} ib_lut_key;

const char *ib_lut_op_name(int op);                                 // "ibn" ... "stem", "head"
ib_lut_key ib_lut_key_block(const ib_block_cfg *cfg, int cin, int h, int w);   // skip: op IB_BLOCK_SKIP
ib_lut_key ib_lut_key_stem(const ib_arch *a, int res);
ib_lut_key ib_lut_key_head(const ib_arch *a, int cin, int h, int w);
// The key's first eleven CSV columns ("ibn,16,24,32,32,2,3,6,0,0,0"); returns buf.
const char *ib_lut_key_str(const ib_lut_key *k, char *buf, size_t n);
// The rows an arch at res x res uses, in network order (stem, non-skip blocks, head); block[i] gets the
// arch's block index of row i (-1 stem, n_blocks head), if not NULL. Returns the count (at most
// a->n_blocks + 2). Squeeze-excite has no column: ib_lut_predict rejects blocks with se > 0.
int ib_lut_arch_keys(const ib_arch *a, int res, ib_lut_key *keys, int *block);

// A task's network on the backbone, as latency tables see it: the backbone's first `cut` blocks, then the
// task's head as one row (`head`, e.g. a segmentation head's row) in place of the classifier head. A
// segmenter stops after its last block at the head's high stride: what follows never runs.
typedef struct ib_lut_task {
    int cut;              // blocks run (at most the arch's)
    int has_conv;         // 1: the arch's head conv runs too (a detector's stride-32 feature), row `conv`
    ib_lut_key conv;      // a "head" row with cout 0
    ib_lut_key head;      // the head's row
} ib_lut_task;
// Rows an arch's keys can take at most (ib_lut_arch_keys_task): stem, blocks, head conv and head.
#define IB_LUT_MAX_ROWS(n_blocks) ((n_blocks) + 3)
// As ib_lut_arch_keys, ib_lut_predict_sum and ib_lut_predict for the task's network (task NULL: the
// classifier). The correction of res applies as to a classifier (fitted on classifiers; docs/LATENCY.md).
int ib_lut_arch_keys_task(const ib_arch *a, int res, const ib_lut_task *task, ib_lut_key *keys, int *block);
ib_status ib_lut_predict_sum_task(const ib_lut *t, const ib_arch *a, int res, const ib_lut_task *task, double *sum,
                                  int *n_rows);
ib_status ib_lut_predict_task(const ib_lut *t, const ib_arch *a, int res, const ib_lut_task *task, double *ms);

// An empty table of `target` (the "# target:" comment). NULL when out of memory.
ib_lut *ib_lut_new(const char *target);
const char *ib_lut_path(const ib_lut *t);            // the file it was loaded from ("" if none)
int ib_lut_rows(const ib_lut *t);
// Row i (0 <= i < rows) in file / insertion order; its ms in *ms.
ib_lut_key ib_lut_row(const ib_lut *t, int i, double *ms);
int ib_lut_find(const ib_lut *t, const ib_lut_key *k, double *ms);   // 1 and *ms when present
ib_status ib_lut_set(ib_lut *t, const ib_lut_key *k, double ms);    // adds, or replaces the row's ms
// Comment lines "# key: value" (target, device, threads, batch, repeats, date, ibnas, correction, ...),
// kept in order; set replaces a key's value or appends it. NULL when absent.
const char *ib_lut_meta(const ib_lut *t, const char *key);
ib_status ib_lut_set_meta(ib_lut *t, const char *key, const char *value);
// Writes PATH.tmp and renames it over path, rows in table order.
ib_status ib_lut_save(const ib_lut *t, const char *path);

// The plain sum of an arch's rows (no correction) and the number of rows summed.
ib_status ib_lut_predict_sum(const ib_lut *t, const ib_arch *a, int res, double *sum, int *n_rows);
// The same by op (task NULL: the classifier's head): ms[op] and count[op] sum the rows of each op
// (ib_block_op values for blocks, IB_LUT_STEM, IB_LUT_HEAD and the task heads); count[IB_BLOCK_SKIP] is the
// number of skip layers (no row, ms 0).
typedef struct ib_lut_parts {
    double sum;                // the plain sum, in network order (as ib_lut_predict_sum)
    int n_rows;
    double ms[IB_LUT_N_OPS];
    int count[IB_LUT_N_OPS];
} ib_lut_parts;
ib_status ib_lut_predict_parts(const ib_lut *t, const ib_arch *a, int res, const ib_lut_task *task, ib_lut_parts *p);
// A correction measured on whole networks (docs/LATENCY.md): ms = a * sum + b * n_rows + c, plus per-op
// terms: + da[op] * ms[op] (the op's rows scaled by a + da[op] in all) + db[op] * count[op] (what each of
// its rows costs beyond b; for IB_BLOCK_SKIP, each skip layer). Stored as the comment
// "# correction: res=R a=A b=B c=C [OP.a=X] [OP.b=Y] ... <note>", one per resolution, with only the
// per-op terms that are not 0 (tables written before them have none and predict exactly as before).
// ib_lut_predict applies the one of its resolution when the table has it, else gives the plain sum.
typedef struct ib_lut_correction {
    double a, b, c;
    double da[IB_LUT_N_OPS], db[IB_LUT_N_OPS];
} ib_lut_correction;
int ib_lut_get_correction(const ib_lut *t, int res, ib_lut_correction *c);   // 1 when the table has one
// Replaces the correction of res (or adds it); note: free text after the numbers (may be NULL).
ib_status ib_lut_set_correction(ib_lut *t, int res, const ib_lut_correction *c, const char *note);
// The corrected ms of an arch's parts.
double ib_lut_correct(const ib_lut_correction *c, const ib_lut_parts *p);
// The fit on n subnets' parts and measured ms: least squares on the relative error (weights 1 / measured^2),
// through the origin (c = 0). First the global pair (a, b): a pure scale (b = 0) when n < 4 or when sum and
// n_rows are nearly proportional (identical subnets). Subnets that all have one row count are fitted too:
// b * n_rows is then their intercept. That is all when ridge < 0. Otherwise, with at least
// IB_LUT_FIT_PER_OP subnets, a scale per block op (da) is fitted jointly with a and b, each da shrunk
// toward 0 (the global fit) by a ridge penalty of `ridge` times its column's mean weighted square (0: plain
// least squares), so 10 to 20 subnets do not overfit; ops no subnet has keep 0, and a singular system or
// a per-op scale a + da that is not positive falls back to the global pair. Cross-validated on measured
// subnets (bench/lut_correction_cv.py, docs/LATENCY.md), the per-op scales predicted held-out subnets no
// better than the global pair at any penalty, so calibration fits the pair unless asked (IB_LUT_RIDGE).
#define IB_LUT_FIT_PER_OP 8
#define IB_LUT_RIDGE 1.0
ib_lut_correction ib_lut_fit_correction(const ib_lut_parts *p, const double *measured, int n, double ridge);

// "NAME=FILE.csv" or "FILE.csv" (the --lut flag of latency and search verbs). name receives NAME, or ""
// when there is none (then use the table's target); *path points into spec. IB_ERR_ARG for an empty path
// or a name outside [A-Za-z0-9_.-].
ib_status ib_lut_parse_spec(const char *spec, char *name, size_t n, const char **path);
// Parses the spec and loads the table; name receives NAME or, without one, the table's target (or the
// file name without its directory and ".csv" when the table names no target).
ib_status ib_lut_load_spec(ib_lut **t, const char *spec, char *name, size_t n);

// Spearman's rank correlation of x and y (average ranks for ties); 0 when n < 2 or a side is constant.
double ib_spearman(const double *x, const double *y, int n);

// ---------------------------------------------------------------------------------------------
// Filling tables (search/latency.c: measuring on this CPU; search/target.c: modelled targets).

// Every row a space at res x res can use, without repeats, in network order: the stem, each layer's
// choices (ib_space_choices) at the input size that layer sees, the head (cout = classes, or the space's
// when classes <= 0). *keys is malloc'd; returns the count, or -1 when out of memory.
int ib_lut_space_keys(const ib_space *s, int res, int classes, ib_lut_key **keys);

// Times one row's part alone on the inference path (eval mode, recording off, so conv + BN + activation
// run fused), batch 1, random weights and input, with the network activation act: `warmup` untimed
// runs, then the median (or the minimum) of `repeats` (each a forward pass between two clock reads; the
// arena is reset outside the timed part). The minimum is the statistic for a busy machine: a run that
// another process pre-empted only ever comes out slower, and a whole network (milliseconds) is pre-empted
// far more often than one block (microseconds), which biases medians of the two apart. The thread count
// is the caller's (ib_set_threads). A table records its statistic and clock ("# stat: median",
// "# clock: wall").
typedef enum { IB_LUT_MEDIAN = 0, IB_LUT_MIN } ib_lut_stat;
const char *ib_lut_stat_name(ib_lut_stat s);            // "median", "min"
int ib_lut_stat_parse(const char *name, ib_lut_stat *s);   // 1 on success
// The clock: wall time (latency, the default), or the calling thread's CPU time (one thread only): the time
// the thread ran, which excludes the time other processes held the core, so a shared machine measures
// what an idle one would (docs/LATENCY.md, "Measuring on a busy machine").
typedef enum { IB_LUT_WALL = 0, IB_LUT_THREAD_CPU } ib_lut_clock;
const char *ib_lut_clock_name(ib_lut_clock c);              // "wall", "cpu"
int ib_lut_clock_parse(const char *name, ib_lut_clock *c);   // 1 on success
typedef struct ib_lut_timing {
    int warmup, repeats;
    ib_lut_stat stat;
    ib_lut_clock clock;
    // Bytes of a scratch buffer written before every run, then the input read again: a block inside a
    // network finds its input in cache (its producer just wrote it) but its weights evicted by the rest of
    // the network; a block timed in a loop finds both hot. 0: no eviction.
    size_t evict_bytes;
    // More runs for short parts: timing goes on past `repeats` until min_ms of timed runs (at most 8 x
    // repeats), so a 50 us block's median is of hundreds of runs, not 15. 0: exactly `repeats`.
    double min_ms;
    // 1: before every run the part's own weights and buffers (the `weights` given to ib_lut_time_forward)
    // are flushed from every cache level, so it reads them from memory as a block of a network whose
    // weights outgrow the last-level cache does (a mobile network's usually do: 3 to 35 M weights). Without
    // it a block timed alone after the eviction above still finds its weights in L3 (docs/LATENCY.md, "Cold
    // weights"). Where the CPU has no user-level flush, the eviction buffer is all there is.
    int cold;
    // A list (a table's rows, a set of networks) is timed in `rounds` rounds over it, each item keeping its
    // fastest round's statistic: a slow spell of a shared or throttling machine lasts a second or more, and
    // rounds far apart in time let every item meet a fast one (docs/LATENCY.md, "Rounds"). 0: the default,
    // 1 for a table's rows and IB_LUT_PASSES for networks.
    int rounds;
} ib_lut_timing;
ib_status ib_lut_time_row(const ib_lut_key *k, ib_act act, const ib_lut_timing *tm, double *ms);
// The same for a whole network (stem, blocks, head, pool, classifier) at res x res (evict_bytes 0: a
// network evicts its own weights).
ib_status ib_lut_time_arch(const ib_arch *a, int res, const ib_lut_timing *tm, double *ms);
// Times fwd(user, ctx, x) as rows are timed (tm's warm-up, repeats, statistic and clock), on a random input x
// of shape (1, c, h, w); fwd may ignore x and use tensors of its own (a head on several features). weights:
// the parameter sets fwd reads, a NULL-terminated list, flushed before each run when tm->cold (NULL: none; a
// whole network evicts its own).
typedef ib_tensor *(*ib_lut_forward_fn)(void *user, ib_ctx *ctx, ib_tensor *x);
ib_status ib_lut_time_forward(ib_lut_forward_fn fwd, void *user, int c, int h, int w, const ib_lut_timing *tm,
                              const ib_params *const *weights, double *ms);
// Writes back and drops [p, p + bytes) from every cache level (x86 clflush, arm64 dc civac); 0 when this
// CPU has no user-level flush and nothing was done, else 1.
int ib_cache_flush(const void *p, size_t bytes);
// What profiles evict by default: 4 x the L2 cache (sysconf; 4 MiB when unknown).
size_t ib_lut_default_evict_bytes(void);
// This CPU's name as a measured table records it ("# device:"): /proc/cpuinfo's "model name", or "unknown".
void ib_lut_device_name(char *buf, size_t n);
// Times n networks in tm->rounds passes over the list (0: IB_LUT_PASSES) and keeps each one's smallest
// result: a burst of another process's work lasts seconds, and a pass over the list takes long enough that
// a network disturbed in one pass is not in the next (calibration and validation use this).
#define IB_LUT_PASSES 2
int ib_lut_net_rounds(const ib_lut_timing *tm);
// The rounds a measured table's rows were timed in (its "# rounds:"; 1 when it has none).
int ib_lut_rounds(const ib_lut *t);
ib_status ib_lut_time_archs(const ib_arch *archs, int n, int res, const ib_lut_timing *tm, double *ms,
                            void (*progress)(void *user, int done, int total, const char *what), void *user,
                            const char *what);

// Profiling a space on this CPU: every row of ib_lut_space_keys that `out` does not hold yet is timed
// and added (a run that was stopped resumes; a table of another target or thread count is refused), the
// table is rewritten atomically every save_every new rows and at the end, and with calibrate > 0
// ib_lut_calibrate fits the correction of this res (when rows were added or the table has none).
// Comments: target cpu, device, threads, batch, repeats, stat, clock, act, simd, date, ibnas.
typedef struct ib_lut_profile_cfg {
    const ib_space *space;
    int res;                   // input resolution
    int classes;               // the head row's; <= 0: the space's
    ib_lut_timing timing;      // per row: warmup 3, repeats 15, median, wall, evict ib_lut_default_evict_bytes(),
                               // min_ms 30
    int save_every;            // 20
    int calibrate;             // subnets measured for the correction; 0 (default): none
    uint64_t calibrate_seed;   // 1000 (validation's default seed is 1: other subnets)
    double calibrate_ridge;    // -1 (default): a and b only; >= 0: per-op scales too, with this penalty
    int calibrate_repeats;     // per subnet, 9
    double calibrate_min_ms;   // per subnet, 100 (the validation's defaults)
    void (*progress)(void *user, int done, int total, const char *what);   // NULL: quiet
    void *user;
    const char *out;
    // Rows beside the space's, timed by time_extra when missing (a task's head: ib_seg_lut_task, ib_seg_time_row)
    int n_extra;
    const ib_lut_key *extra;
    ib_status (*time_extra)(void *user, const ib_lut_key *k, const ib_lut_timing *tm, double *ms);
    void *extra_user;
} ib_lut_profile_cfg;
void ib_lut_profile_cfg_default(ib_lut_profile_cfg *c);
ib_status ib_lut_profile(const ib_lut_profile_cfg *c, int *added, int *total);
// The n subnets a calibration of seed times (IB_SAMPLE_RANDOM from seed) into archs[n], zeroed by the caller.
ib_status ib_lut_calib_archs(const ib_space *s, int classes, int n, uint64_t seed, ib_arch *archs);
// Samples n subnets (IB_SAMPLE_RANDOM from seed), times each whole, fits the correction
// (ib_lut_fit_correction with ridge; < 0: a and b only) and stores it as the table's correction for res.
ib_status ib_lut_calibrate(ib_lut *t, const ib_space *s, int res, int classes, int n, uint64_t seed, double ridge,
                           const ib_lut_timing *tm, void (*progress)(void *user, int done, int total, const char *what),
                           void *user);

// Modelled targets: parameters from a documented JSON file (search/targets/NAME.target.json, format
// "ibnas-target" 1; docs/LATENCY.md has the equations). kind "systolic" (an EdgeTPU-like MAC array) or
// "vector" (a DSP-like wide-vector processor).
typedef struct ib_target ib_target;
// `name_or_path`: a file, or a name looked up as NAME.target.json in $IBNAS_TARGETS, ./search/targets,
// and search/targets beside the running binary (BIN/../search/targets, BIN/../../search/targets).
ib_status ib_target_load(ib_target **t, const char *name_or_path);
void ib_target_free(ib_target *t);
const char *ib_target_name(const ib_target *t);
const char *ib_target_file(const ib_target *t);
// A row's modelled ms. Each conv (ib_block_convs; the stem's, the head's 1x1 conv and classifier) costs
// max(compute, memory) + a per-op overhead; residual adds and the pool are memory only.
double ib_target_row_ms(const ib_target *t, const ib_lut_key *k);
// One conv alone at input h x w (for reports and tests): its ms, and the compute utilisation in [0, 1].
double ib_target_conv_ms(const ib_target *t, const ib_conv_shape *c, int h, int w, double *utilisation);
// Writes the modelled rows of a space at res into `out` (its other rows and comments are kept when it
// exists and is a table of the same target; another target's table is refused). *rows: the space's count.
// extra: more rows to model beside the space's (a segmentation head's, ib_seg_lut_task), n_extra of them.
ib_status ib_lut_model_space(const ib_target *t, const ib_space *s, int res, int classes, const ib_lut_key *extra,
                             int n_extra, const char *out, int *rows);

// ---------------------------------------------------------------------------------------------
// The supernet (search/supernet.c). For each layer and each op the layer allows, one block of weights
// at the op's largest configuration (kernel, expansion, tucker ratios) under "features.<l+1>.<op>";
// gcibn keeps one dense KxK weight from which every group count takes diagonal blocks. A path (one
// arch of the space) is an ordinary ib_net whose tensors are views of those weights, made in a context's
// arena: its forward and backward are the standalone network's code, and gradients land in the shared
// weights. The stem, head and classifier are shared whole.

typedef struct ib_supernet {
    ib_space space;
    ib_arch base;              // stem, head, act, classes, input (blocks unused)
    ib_params ps;
    ib_cba stem;
    ib_cba head;
    int has_head;
    ib_linear_mod fc;
    ib_block *layers;          // [n_layers * IB_BLOCK_SKIP]: layer l, op o at [l * IB_BLOCK_SKIP + o]; unused ops zeroed
    int *by_data, n_by_data;   // the indices in ps of its parameters (not buffers), in the order of their data
    ib_rng dropout_rng;
    // What training recorded (saved with the supernet): the training data's path (NULL if unknown), and
    // the held-out part of it that training left out for scoring subnets: ib_dataset_split(data, 0,
    // holdout, split_seed) is held out, (holdout, 1) was trained on and serves BN recalibration.
    char *train_data;
    double holdout;
    uint64_t split_seed;
    char sampling[16];         // the path sampling that trained it ("fair", "sandwich", "uniform"; "" unknown)
    char path_grads[8];        // fair sampling's rule ("mean", "sum"; "" unknown or not fair: files before 2026-12-02)
    char task[16];             // its file's "task" attribute: "" (classification) or the task whose head it carries
    char *path;                // the file it was loaded from (the task's head is read from it); NULL: built here
    int file_version;          // the file's format version (ib_supernet_load; a version 1 file is converted); 0: built here
} ib_supernet;

ib_status ib_supernet_build(ib_supernet *sn, const ib_space *space, int classes);   // registers, allocates
void ib_supernet_init_weights(ib_supernet *sn, uint64_t seed);
void ib_supernet_free(ib_supernet *sn);

// The path of `choice` as a network over views of the supernet's tensors, allocated in ctx's arena and
// valid until ctx is reset. In training mode with recording on, its gradients go into sn->ps's grads.
// path->ps is empty: use the supernet's for optimizers and checkpoints.
void ib_supernet_path(ib_ctx *ctx, ib_supernet *sn, const int *choice, ib_net *path);
// The pieces a path is made of, for heads shared the same way (tasks/seg_supernet.c): a shared conv seen as
// a narrower one (first output and input channels, centred kernel; a contiguous copy whose gradient flows
// back into the slice), a BN as its first c channels (views: running statistics land in the shared buffers),
// a conv + BN at cout outputs (and cin inputs; depthwise when the shared one is), and a standalone conv + BN
// given a view's values (ib_supernet_extract's copy).
ib_conv ib_supernet_conv_view(ib_ctx *ctx, const ib_conv *full, ib_conv_shape cs);
ib_bn ib_supernet_bn_view(ib_ctx *ctx, const ib_bn *full, int c);
ib_cba ib_supernet_cba_view(ib_ctx *ctx, const ib_cba *full, int cin, int cout);
void ib_supernet_copy_cba(ib_cba *dst, const ib_cba *src);
void ib_supernet_copy_tensor(ib_tensor *dst, const ib_tensor *src);   // same count of values, src any strides

// The weights a training step changes: those its paths ran, no more (docs/SEARCH.md, "Cost of a path step").
// active (sn->ps.n entries): 1 for a tensor some path ran whole, 2 for one the paths read slices of (its elements
// marked in elem, a byte per element of sn->ps, zero elsewhere), 0 for one no path ran. ib_optim_step_active steps
// exactly those (with clear, zeroing their gradients: only those got one, so the next step starts from zero).
// clear: 1 for the stem, head and classifier, 0 for every layer op's tensors, their element marks zeroed
// (start from active and elem all zero); add: what `path`, an ib_supernet_path of sn, reads (its first
// path->arch.n_blocks blocks: a task's loss may run fewer, ib_sn_task.ran); top: the head conv (unless `head`)
// and the classifier back to 0, for a task's step, whose loss runs no classifier (and, segmentation, no head conv).
void ib_supernet_active_clear(const ib_supernet *sn, uint8_t *active, uint8_t *elem);
void ib_supernet_active_add(const ib_supernet *sn, const ib_net *path, uint8_t *active, uint8_t *elem);
void ib_supernet_active_top(const ib_supernet *sn, int head, uint8_t *active);

// --path-grads mean: a fair step takes, per weight, the mean of the gradients of the paths that ran it instead of
// their sum (the default; docs/SEARCH.md, "Fair steps: sum or mean"): with the sum, the stem, head and classifier,
// which every path runs, step at n_paths times the rate of a layer's op, which one path runs. uses (a byte per
// element of sn->ps, zero at first): uses_add counts the elements of the layers `path` reads; grad_mean divides each gradient of a layer
// tensor the step ran (active, as ib_supernet_active_add left it) by its count, and those of the stem, head and
// classifier by n_paths, and zeroes the counts.
void ib_supernet_uses_add(const ib_supernet *sn, const ib_net *path, uint8_t *uses);
void ib_supernet_grad_mean(const ib_supernet *sn, int n_paths, uint8_t *active, uint8_t *uses);

// A standalone network of the path `choice` (ib_net_build of its arch, then the path's weights and BN
// statistics copied in), e.g. for a checkpoint: it computes what the path computes.
ib_status ib_supernet_extract(ib_supernet *sn, const int *choice, ib_net *net);

// BN recalibration of a network (a path, or any ib_net): forward passes in training mode over `batches`
// seeded batches of calib (centre-cropped, unaugmented), each BN's momentum set so that the running
// statistics end as the exact average over those batches. Nothing is recorded; weights do not change.
typedef struct ib_recal_cfg {
    int res, batches, batch, workers;   // res, 20, 64, 2
    uint64_t seed;                      // which images: the same seed, the same batches
    float mean[3], std[3];              // normalisation (ImageNet's)
    ib_ctx *ctx;                        // a context for the passes (reset on each; NULL: one of its own)
} ib_recal_cfg;
void ib_recal_cfg_default(ib_recal_cfg *c, int res);
ib_status ib_recalibrate_bn(ib_net *net, ib_dataset *calib, const ib_recal_cfg *cfg);
// The same over any set of BNs (a task head's, tasks/tasks.h): momentum(user, m) sets the momentum of every
// BN to recalibrate, forward(ctx, user, x) runs a batch through them (ctx in training mode, nothing
// recorded). Their running statistics end as the exact average over the batches; the momentum is then 0.1.
typedef struct ib_recal_pass {
    void (*momentum)(void *user, float m);
    void (*forward)(ib_ctx *ctx, void *user, ib_tensor *x);
    void *user;
} ib_recal_pass;
ib_status ib_recalibrate_pass(const ib_recal_pass *p, ib_dataset *calib, const ib_recal_cfg *cfg);
// The loader of the calibration batches (what both use): cfg->batch centre-cropped, unaugmented images a
// batch, shuffled by cfg->seed, the last partial batch dropped; IB_ERR_ARG when calib makes no batch.
ib_status ib_recal_loader_open(ib_loader **l, ib_dataset *calib, const ib_recal_cfg *cfg);

#define IB_SUPERNET_FORMAT "ibnas-supernet"
// Version 2 (2026-12-03): the block convs' 5x5 kernels are stored centre first (core.h, ib_view_centre_first);
// version 1 files, plain, are converted on load (weights only: resume needs the optimizer state as it was).
#define IB_SUPERNET_VERSION 2
ib_status ib_supernet_save(const ib_supernet *sn, const char *path, ib_status (*extra)(ib_h5 *f, void *user),
                           void *user);
// Builds the supernet from the file's space and loads its tensors.
ib_status ib_supernet_load(ib_supernet *sn, const char *path);

// ---------------------------------------------------------------------------------------------
// Search strategies (search/strategy.c). A search walks choice vectors (int choice[n_layers], indices
// into ib_space_choices) of a space and scores them through a function it is handed, so search/ knows
// no task (tasks/ hands top-1 on a held-out split; detection could hand mAP). Every target (a name and
// its latency table) has budgets in ms; the predicted latency of a choice is ib_lut_predict of its arch
// at the search resolution. One run serves every target and budget: a track per (target, budget) steers
// the strategy, and the scores are shared through a cache keyed by the choice vector (the score does not
// depend on the target), so an arch is scored once. The arch chosen for a budget is the best-scored arch
// of the whole run whose predicted latency on that target is within the budget.
//   evolution: regularised evolution (Real et al. 2019, "Regularized Evolution for Image Classifier
//     Architecture Search") per track: P in-budget archs, then per generation `batch` cycles of
//     tournament (best of S drawn from the population), mutation of one or two layers' choices
//     (resampled while over the budget, at most max_tries times), and the oldest member dropped.
//   random: `population` in-budget archs, then `batch` per generation, uniform with rejection (baseline).
//   tunas: TuNAS's REINFORCE (Bender et al. 2020, "Can weight sharing outperform random architecture
//     search?") per track: a softmax over each layer's choices, `batch` archs sampled per step, reward
//     score + beta * |latency / budget - 1| (beta < 0, the absolute reward), a moving-average baseline,
//     Adam on the logits; the result is the best scored in-budget arch and, reported beside it, the
//     policy's argmax arch.
// State (RNG, history of scored archs, populations, policies, generation) is saved atomically to
// OUT/state.json after every generation; a killed or interrupted run resumes to the same result as an
// uninterrupted one. Outputs: docs/SEARCH.md, "Search".

typedef ib_status (*ib_score_fn)(void *user, const int *choice, double *score);   // higher is better; finite

typedef enum { IB_SEARCH_EVOLUTION = 0, IB_SEARCH_RANDOM, IB_SEARCH_TUNAS } ib_search_strategy;
const char *ib_search_strategy_name(ib_search_strategy s);   // "evolution", "random", "tunas"
int ib_search_strategy_parse(const char *name, ib_search_strategy *s);   // 1 on success

#define IB_SEARCH_MAX_TARGETS 8
#define IB_SEARCH_MAX_BUDGETS 8

typedef struct ib_search_target {
    const char *name;                              // "cpu": a folder under out, a column in the reports
    const ib_lut *lut;
    int n_budgets;
    double budget_ms[IB_SEARCH_MAX_BUDGETS];       // positive
    // A budget given as a network ("mobilenetv2:1.0"): budget_ms is its prediction from lut (as the search's
    // archs are predicted), and a verification times it beside the candidates (NULL: a budget in ms)
    const ib_arch *budget_ref[IB_SEARCH_MAX_BUDGETS];
    const char *budget_label[IB_SEARCH_MAX_BUDGETS];   // the reference's name for the reports
    int timed;                                     // 1: cfg->time_arch measures this target (a table of this CPU)
} ib_search_target;

// A reference network drawn on the plots and listed in the summary (mobilenetv2 at a width).
typedef struct ib_search_baseline {
    const char *label;        // "mobilenetv2:0.35"
    const ib_arch *arch;      // its latency comes from each target's table (a missing row is reported, not an error)
    double score;             // NAN: none given
} ib_search_baseline;

typedef struct ib_search_cfg {
    const ib_space *space;
    int classes;              // of the archs (ib_space_arch); 0: the space's
    int res;                  // latency and MACs at res x res; 0: the space's input
    int n_targets;
    ib_search_target targets[IB_SEARCH_MAX_TARGETS];
    ib_search_strategy strategy;
    int population;           // evolution: P; random: the first generation's samples (32)
    int sample;               // evolution: tournament size S (8)
    int generations;          // generations after the first population (tunas: policy steps) (20)
    int batch;                // per generation and track: children, samples, or archs per policy step (16)
    int max_tries;            // draws before an over-budget child or sample is given up (200)
    unsigned ops;             // the op types the search may pick, bit 1u << op per ib_block_op (MobileDets searched
                              // IBN alone for CPUs); 0: every op of the space
    double tunas_beta;        // -0.5
    double tunas_lr;          // Adam's step on the logits, 0.05
    double tunas_baseline;    // the baseline's moving-average momentum, 0.9
    uint64_t seed;
    ib_score_fn score;
    void *user;
    const char *score_label;  // the plots' y axis ("score")
    int n_baselines;
    const ib_search_baseline *baselines;
    const char *out;          // folder (created): state.json, summary.json, curve_<strategy>.csv, TARGET/...
    int resume;               // 1: continue OUT/state.json; 0: start afresh (an existing state is an error)
    int progress;             // a line per generation on stderr
    int max_generations;      // stop (state saved, outputs written) after this many generations in this call; 0: no limit
    int handle_sigint;        // 1: the first Ctrl-C finishes the scoring under way, saves, returns IB_ERR_INTERRUPTED
    // The task's network as the tables see it (a segmenter: ib_seg_lut_task), for the space's archs and each
    // baseline; NULL: the classifier. It may depend only on widths and strides: every arch of the space shares
    // the space's first answer.
    ib_status (*lut_task)(void *user, const ib_arch *a, int res, ib_lut_task *out);
    void *lut_task_user;
    // Measured picks (docs/SEARCH.md, "Measured picks"). verify > 0: when the search finishes, on each timed
    // target and budget, the `verify` best-scored archs predicted within budget x (1 + verify_slack) and the
    // budget's reference network are timed on this machine in verify_rounds interleaved rounds (each keeping its
    // fastest); the pick is the best-scored arch measured within the reference's measured latency (a budget in
    // ms: within the budget). None within: the table's pick stays, reported unverified. 0: the table's pick.
    int verify;
    double verify_slack;      // 0.05
    int verify_rounds;        // 3
    // One end-to-end latency of a on target t at res x res, ms (the task's network, as it deploys).
    ib_status (*time_arch)(void *user, int target, const ib_arch *a, int res, double *ms);
    void *time_user;
} ib_search_cfg;
void ib_search_cfg_default(ib_search_cfg *c);

typedef struct ib_search_pick {
    int target;               // index into cfg->targets
    int budget;               // index into its budget_ms (and budget_ref)
    double budget_ms;
    int found;                // 0: no scored arch within the budget
    double score, ms;
    int64_t macs;
    char arch_file[512];      // OUT/TARGET/best-<budget>ms.arch.json (empty when not found)
    // cfg->verify: 1 the pick measured within the budget, 0 none of the timed archs did (the table's pick is
    // kept), -1 not verified (verify 0, an untimed target, a search stopped early)
    int verified;
    double measured_ms;       // the pick's measured latency (NAN: not timed)
    double budget_measured_ms;   // the reference's measured latency, or the budget in ms; NAN: not verified
    int timed;                // archs timed for this budget
} ib_search_pick;

typedef struct ib_search_result {
    int generations_done;     // generations completed after the first population
    int64_t scored;           // distinct subnets scored
    int finished;             // all generations done (0: stopped by max_generations or Ctrl-C)
    int interrupted;
    double wall_s;            // of this call
    int n_picks;
    ib_search_pick picks[IB_SEARCH_MAX_TARGETS * IB_SEARCH_MAX_BUDGETS];
} ib_search_result;

// Runs (or resumes) the search and writes its outputs. A score function's failure stops the run with
// its status, the state of the last finished generation kept for a resume.
ib_status ib_search_run(const ib_search_cfg *cfg, ib_search_result *res);

// "ibn:k3e4", "fused:k5e8", "tucker:k3i0.25o0.75", "gcibn:k3e4g2", "skip": one block, for reports.
void ib_search_block_str(const ib_block_cfg *b, char *buf, size_t n);

#endif
