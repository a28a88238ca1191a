// ibnas: train and run mobile vision networks (the inverted-bottleneck family: IBN, Fused-IBN, Tucker,
// group-conv IBN) from C. This header is the library's whole public API; link with
// `pkg-config --cflags --libs ibnas` after `make install` (docs/API.md has every function with an example).
//
// A program trains a network, then loads, evaluates and runs it:
//
//     ib_train_opts o;                              // 1. train: data in, checkpoint out
//     ib_train_opts_default(&o);
//     o.arch = "mobilenetv2:0.5";                   //    a preset, an *.arch.json file or JSON text
//     o.data = "train.h5", o.val = "val.h5", o.out = "net.h5";
//     ib_train_report tr;
//     if (ib_train(&o, &tr)) fprintf(stderr, "%s\n", ib_errmsg());
//
//     ib_model *m;                                  // 2. load the checkpoint
//     ib_model_load(&m, "net.h5");
//     ib_dataset *ds;                               // 3. evaluate: top-1 / top-5
//     ib_dataset_load(&ds, "val.h5", NULL);
//     ib_eval_report er;
//     ib_eval(m, ds, NULL, &er);
//
//     float x[3 * 64 * 64], *logits = malloc(sizeof(float) * ib_model_classes(m));
//     ib_image_load("cat.png", 64, x);              // 4. infer: one image -> class scores
//     ib_model_forward(m, x, 1, 64, 64, logits);
//
// ib_model_create builds a network with fresh weights from an arch, ib_model_save writes it.
//
// Conventions. Every function that can fail returns an ib_status (IB_OK is 0) and leaves a message in
// ib_errmsg() naming the file and what is wrong; ib_strerror() gives the code's text. Handles are opaque:
// create them with the *_create / *_load / *_open functions, release them with the matching *_free /
// *_close. Images go in as float32 NCHW, RGB, normalised with ImageNet's mean and std in 0..255 units
// (mean 123.675, 116.28, 103.53; std 58.395, 57.12, 57.375), as ib_image_load writes them. The
// library never calls exit() and writes nothing on stdout; progress lines go to stderr when asked for.
// A model or dataset handle is used by one thread at a time; ib_errmsg() is per thread.
//
// The architecture search is here: search spaces (open, count, sample, check), latency tables (profile,
// model, predict, measure, validate), supernets (train, evaluate an arch with inherited weights, extract
// it as a model; ib_train_opts.init fine-tunes it) and the search itself (ib_search). Detection: ib_train
// with task "detect" (SSDLite), ib_eval_detect and the COCO evaluator ib_coco_eval. Segmentation: ib_train
// with task "segment" (DeepLabv3+-lite), ib_eval_segment. Any of them on an image file: ib_predict (top-5,
// boxes, a label map), drawn and written by the PNG writers (what `ibnas predict` does). A model goes out to
// other runtimes as ONNX (ib_model_export; docs/EXPORT.md). Tensors, layers and the
// training loop's pieces stay internal, so they can change without breaking programs built against this header.
#ifndef IBNAS_H
#define IBNAS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__) && !defined(_WIN32)
#define IBNAS_API __attribute__((visibility("default")))
#else
#define IBNAS_API
#endif

// ---------------------------------------------------------------------------------------------
// Version: of the header (macros) and of the library linked (ib_version), which may differ.

#define IBNAS_VERSION_MAJOR 0
#define IBNAS_VERSION_MINOR 1
#define IBNAS_VERSION_PATCH 0
#define IBNAS_VERSION_STRING "0.1.0"
#define IBNAS_VERSION (IBNAS_VERSION_MAJOR * 10000 + IBNAS_VERSION_MINOR * 100 + IBNAS_VERSION_PATCH)

IBNAS_API const char *ib_version(void);   // "0.1.0"

// ---------------------------------------------------------------------------------------------
// Errors

typedef enum {
    IB_OK = 0,
    IB_ERR_IO,           // a file could not be opened, read or written
    IB_ERR_FORMAT,       // a file's content is not what it should be (format name, version, shape)
    IB_ERR_ARG,          // a bad argument (option value, arch field)
    IB_ERR_NOMEM,        // an allocation failed
    IB_ERR_NOTFOUND,     // a named thing (dataset, tensor, key) is missing
    IB_ERR_INTERRUPTED,  // training stopped by Ctrl-C (its checkpoint holds the state to resume)
} ib_status;

IBNAS_API const char *ib_strerror(ib_status code);   // "i/o error", "format error", ...
IBNAS_API const char *ib_errmsg(void);               // the calling thread's last failure ("" if none)

// ---------------------------------------------------------------------------------------------
// Threads: one setting for the library's loops and its BLAS.

IBNAS_API void ib_set_threads(int n);   // n <= 0: the number of cores
IBNAS_API int ib_get_threads(void);

// ---------------------------------------------------------------------------------------------
// Distributed runs (docs/SCALE.md): the same program started N times by `mpirun -np N` is one job of N ranks.
// ib_train and ib_supernet_train then split every global batch across the ranks (data parallelism:
// rank r takes the r-th contiguous share, gradients summed over the ranks each step, rank 0 alone writes
// checkpoints, logs and progress), and ib_search scores each generation's subnets in parallel. MPI starts
// the first time any of these functions (or a training or search) runs, and only when the process was
// launched by an MPI launcher (its environment says so): a plain run stays one process and never touches MPI.
// A program that called MPI_Init itself keeps it: the library uses MPI_COMM_WORLD and leaves it open.

IBNAS_API int ib_dist_built(void);   // 1: the library was built with MPI; 0: one process only
IBNAS_API int ib_dist_rank(void);    // this process's rank, 0 .. size - 1 (0 outside mpirun)
IBNAS_API int ib_dist_size(void);    // ranks in the job (1 outside mpirun or without MPI)
// Ends MPI if the library started it: status 0 finalizes (every rank must call it), else MPI_Abort(status),
// so the other ranks do not wait for this one forever in a collective. A no-op in a one-process run. The
// library also finalizes at exit if it is never called.
IBNAS_API void ib_dist_finish(int status);

// ---------------------------------------------------------------------------------------------
// Models: a network with its weights.

typedef struct ib_model ib_model;

// A network with fresh weights (torchvision's initialisation, from `seed`). `arch`: "mobilenetv2",
// "mobilenetv2:WIDTH", a path to an *.arch.json file, or the arch's JSON text itself (starting with '{';
// docs/FORMATS.md). classes > 0 replaces the arch's class count (0 keeps it; mobilenetv2's is 1000).
IBNAS_API ib_status ib_model_create(ib_model **m, const char *arch, int classes, uint64_t seed);
// A checkpoint written by ib_model_save, ib_train or the command (`ibnas train`, tools/torch2ibnas.py).
IBNAS_API ib_status ib_model_load(ib_model **m, const char *path);
// Weights and arch, written to PATH.tmp and renamed (training state is not saved).
IBNAS_API ib_status ib_model_save(const ib_model *m, const char *path);
IBNAS_API void ib_model_free(ib_model *m);   // NULL is fine

IBNAS_API const char *ib_model_name(const ib_model *m);     // the arch's name
IBNAS_API int ib_model_classes(const ib_model *m);          // logits per image
// The name of class c (0 <= c < classes) as the training data named it, recorded in the checkpoint by
// training (attribute class_names); NULL when the checkpoint has none (older ones, data without names).
IBNAS_API const char *ib_model_class_name(const ib_model *m, int c);
IBNAS_API int ib_model_input_size(const ib_model *m);       // the resolution it was built or trained for
IBNAS_API int64_t ib_model_param_count(const ib_model *m);  // trainable parameters
IBNAS_API char *ib_model_arch_json(const ib_model *m);      // the arch as JSON text; free() it (NULL: no memory)

// Eval-mode forward pass (batchnorm running statistics, no dropout): x holds n images (n, 3, h, w),
// normalised as above, h and w at least 8; logits receives (n, classes). Memory grows with n: pass large
// sets in batches.
IBNAS_API ib_status ib_model_forward(ib_model *m, const float *x, int n, int h, int w, float *logits);

// ---------------------------------------------------------------------------------------------
// Export: a model as a file other runtimes read (docs/EXPORT.md). ONNX now: ONNX Runtime, TensorRT,
// OpenVINO and the converters to TFLite take it.

typedef struct ib_export_opts {
    const char *format;   // "onnx" (the only one so far)
    int opset;            // ONNX operator set of the default domain, 11..21 (13)
    int res;              // input height and width written into the file; 0: the model's input size (a
                          // segmentation model's: the height x width it was trained at)
    int batch;            // images per run written into the file (1); 0: dynamic, a dimension named "N"
    int keep_bn;          // 1: BatchNormalization nodes after the convs; 0: folded into their weights (0)
} ib_export_opts;
IBNAS_API void ib_export_opts_default(ib_export_opts *o);

typedef struct ib_export_report {
    int nodes, initializers;   // of the graph written
    int64_t bytes;             // the file's size
    int height, width;         // the input size written
} ib_export_report;
// Writes the model as `path` (to PATH.tmp, then renamed): input "input" (batch, 3, res, res), normalised as
// ib_model_forward's, output "logits" (batch, classes); the eval-mode network (BN running statistics, no
// dropout), so a runtime gives ib_model_forward's logits. A segmentation model ("segment") is written with
// its head: input (batch, 3, H, W) at the size it was trained at (res, if given, makes it res x res),
// output "logits" (batch, classes, H, W), the per-pixel scores its evaluation takes the argmax of. The arch
// JSON and the input normalisation go into the file's metadata. opts NULL: ib_export_opts_default; r may be
// NULL.
IBNAS_API ib_status ib_model_export(const ib_model *m, const char *path, const ib_export_opts *opts,
                                    ib_export_report *r);

// ---------------------------------------------------------------------------------------------
// Data

typedef struct ib_dataset ib_dataset;

// Opens a dataset; the layout is recognised from the path: an HDF5 pack (*.h5, `ibnas pack`/`ibnas synth`),
// an image folder (ROOT/<class>/*.jpg|png), a Tiny ImageNet root, a COCO or YOLO root, segmentation
// pairs (docs/FORMATS.md). `split` picks the split of a root ("train", "val"; NULL: "train").
IBNAS_API ib_status ib_dataset_load(ib_dataset **ds, const char *path, const char *split);
// n synthetic scenes of size x size pixels (6 shape classes), generated on the fly: sample i of a seed
// is the same on every machine. size 8..4096.
IBNAS_API ib_status ib_dataset_synth(ib_dataset **ds, int n, int size, uint64_t seed);
#define IB_SYNTH_CLASSES 6   // synthetic scenes' shape classes; their masks use IB_SYNTH_CLASSES as the background id
// Writes scenes 0..n-1 of a seed at size x size into a pack (rendered in parallel, written in order;
// PATH.tmp, then renamed). annotations=0 stores images and labels only; 1 adds the boxes and masks.
// progress (may be NULL) is called after each group of scenes with the count written so far; *boxes (may
// be NULL) gets the total. `ibnas synth --out`.
typedef void (*ib_synth_progress_fn)(int64_t done, int64_t n, void *user);
IBNAS_API ib_status ib_synth_write_pack(const char *path, int64_t n, int size, uint64_t seed, int annotations,
                                        ib_synth_progress_fn progress, void *user, int64_t *boxes);
// Writes the same scenes as PNG files into the existing folder dir: DIR/NNNNNN.png (RGB) and
// DIR/NNNNNN.mask.png (8-bit gray, class ids, 6 the background). `ibnas synth --images`.
IBNAS_API ib_status ib_synth_write_images(const char *dir, int64_t n, int size, uint64_t seed);
IBNAS_API double ib_time_s(void);   // monotonic seconds
// Converts any dataset source into an HDF5 pack of size x size RGB images with its labels, boxes and
// masks, one image at a time (decoded and resized in parallel, written in order, so the pack does not
// depend on the thread count; PATH.tmp, then renamed). `ibnas pack`.
typedef struct ib_pack_opts {
    const char *format;     // imagefolder|tinyimagenet|coco|yolo|segpairs|pack|synth; NULL or "auto": guessed
    const char *split;      // split of a dataset root (NULL: "train")
    int size;               // output side, 8..4096 (required)
    const char *fit;        // "crop" (shorter side to size, centre crop), "stretch" (to size x size), or
                            // NULL/"auto": crop for classification sources, stretch for boxes and masks
    int skip_bad;           // 1: skip unreadable images (counted) instead of stopping at the first
    int ignore_index;       // segmentation: the mask value to ignore (0: the source's, 255)
    int synth_n;            // synth: scenes (1000)
    uint64_t synth_seed;    // synth: seed (0)
    ib_synth_progress_fn progress;   // called after each group of images with the count done (may be NULL)
    void *user;
} ib_pack_opts;
IBNAS_API void ib_pack_opts_default(ib_pack_opts *o);
typedef struct ib_pack_report {
    int64_t images, boxes, boxes_dropped, skipped;   // written; boxes kept; dropped by the crop; unreadable
    int classes, crop, has_labels, has_boxes, has_masks;
    double seconds;
    char source[1024];                               // the source as resolved (e.g. the COCO json read)
} ib_pack_report;
// src may be NULL for synth. r may be NULL.
IBNAS_API ib_status ib_pack(const char *src, const char *path, const ib_pack_opts *o, ib_pack_report *r);
IBNAS_API void ib_dataset_close(ib_dataset *ds);
IBNAS_API int64_t ib_dataset_size(const ib_dataset *ds);
IBNAS_API int ib_dataset_classes(const ib_dataset *ds);                     // 0 if the source has none
IBNAS_API const char *ib_dataset_class_name(const ib_dataset *ds, int c);   // 0 <= c < classes
// Image i as a network input: the centred square resized to res x res, normalised; x receives 3 * res * res
// floats (3, res, res). *label (may be NULL) receives its class, or -1 when it has none.
IBNAS_API ib_status ib_dataset_input(ib_dataset *ds, int64_t i, int res, float *x, int *label);

// An image file (PNG or JPEG) as a network input, prepared as ib_dataset_input does.
IBNAS_API ib_status ib_image_load(const char *path, int res, float *x);

// Float arrays in HDF5 files (what `ibnas infer` reads and writes; h5py reads them as numpy arrays).
#define IB_ARRAY_MAX_DIMS 8
// Reads dataset `name` of the file as float32: *data is malloc'd (free() it), shape gets *ndim sizes.
IBNAS_API ib_status ib_array_load(const char *path, const char *name, float **data, int *ndim,
                                  int64_t shape[IB_ARRAY_MAX_DIMS]);
// Writes a new file holding one float32 dataset `name` (to PATH.tmp, then renamed over PATH).
IBNAS_API ib_status ib_array_save(const char *path, const char *name, const float *data, int ndim,
                                  const int64_t *shape);

// ---------------------------------------------------------------------------------------------
// Search spaces (*.space.json, docs/FORMATS.md "Search space"; search/spaces/ ships mobiledets, edgetpuv2,
// union and tiny): per stage an output width, stride, depth and the block choices its layers allow. A
// subnet is one choice per layer: an arch (docs/FORMATS.md "Arch") that ib_model_create builds.

typedef struct ib_space ib_space;

IBNAS_API ib_status ib_space_open(ib_space **s, const char *path);
IBNAS_API void ib_space_close(ib_space *s);   // NULL is fine
IBNAS_API const char *ib_space_name(const ib_space *s);
IBNAS_API int ib_space_layers(const ib_space *s);       // layers, so blocks of every subnet
IBNAS_API int ib_space_input_size(const ib_space *s);   // the resolution its subnets are made for
// The number of subnets, exactly, as a decimal string in buf (it outgrows 64 bits; 1024 bytes hold the
// count of any space, a shorter buf gets its leading digits); returns its log10.
IBNAS_API double ib_space_subnets(const ib_space *s, char *buf, size_t n);
// One subnet as arch JSON text (*arch_json malloc'd: free() it). `how`: "random" (each layer's choice
// uniform, from `seed`: the same seed gives the same subnet), "largest" or "smallest" (per layer the choice
// with the most / fewest multiply-accumulates at the space's input size). classes > 0 replaces the space's.
IBNAS_API ib_status ib_space_sample_arch(ib_space *s, const char *how, uint64_t seed, int classes, char **arch_json);
// IB_OK when the arch (a path to an *.arch.json or its JSON text) is one of the space's subnets; otherwise
// IB_ERR_ARG with a message naming the block and field ("a.arch.json: blocks[5].kernel: 7 is not allowed in
// stage 2 (3, 5)"), or the arch's own read error.
IBNAS_API ib_status ib_space_check_arch(ib_space *s, const char *arch);
// Multiply-accumulates of one image of res x res through an arch (as ib_model_create takes it: a preset, a
// path or JSON text): stem, blocks, head conv and classifier. res 0: the arch's input size.
IBNAS_API ib_status ib_arch_count_macs(const char *arch, int res, int64_t *macs);

// ---------------------------------------------------------------------------------------------
// Latency (docs/LATENCY.md): lookup tables per target, one CSV row per block configuration and input
// shape (docs/FORMATS.md "Latency table"). A subnet's predicted latency is the sum of its rows (with the
// table's correction for whole networks, when it has one). Tables come from three kinds of target:
// `cpu` measured here (ib_latency_profile), modelled accelerators (ib_latency_model: "edgetpu", "dsp"),
// or any CSV in the format (measured elsewhere, e.g. by this library built for a phone).

typedef struct ib_lut ib_lut;
IBNAS_API ib_status ib_lut_load(ib_lut **t, const char *path);
IBNAS_API void ib_lut_free(ib_lut *t);                       // NULL is fine
IBNAS_API const char *ib_lut_target(const ib_lut *t);        // its "# target:" comment ("" if none)
// "NAME=FILE.csv" or "FILE.csv", as the --lut flags take it: name receives NAME ("" without one) and *path
// points into spec. IB_ERR_ARG for an empty file or a name outside [A-Za-z0-9_.-].
IBNAS_API ib_status ib_lut_parse_spec(const char *spec, char *name, size_t n, const char **path);
// Parses and loads; name receives NAME, else the table's target, else the file name without ".csv".
IBNAS_API ib_status ib_lut_load_spec(ib_lut **t, const char *spec, char *name, size_t n);

// Predicted ms of an arch (as ib_model_create takes it: "mobilenetv2[:WIDTH]", a path or JSON text) at
// res x res; res 0: the table's resolution when its rows hold one stem size, else the arch's input size.
// IB_ERR_NOTFOUND naming the table and the missing row when the table lacks one.
IBNAS_API ib_status ib_lut_predict_arch(const ib_lut *t, const char *arch, int res, double *ms);

// The network a latency is of: the classifier (task NULL or "classify"); a segmenter (task "segment"): the
// backbone up to its last block at the head's high stride, then a DeepLabv3+-lite or BiFPN head up to the
// logits at the input size, as ibnas train --task segment builds it; or a detector (task "detect"): the whole
// backbone and head conv, then SSDLite with its default settings (docs/LATENCY.md "Segmenters and
// detectors"). The task's head is one table row (op deeplab, bifpn or ssdlite; docs/FORMATS.md), a detector's
// head conv another. Zeroed: the classifier.
typedef struct ib_latency_head {
    const char *task;          // NULL or "classify", "segment"
    const char *seg_head;      // "deeplab" (NULL too) or "bifpn"
    int seg_high_stride, seg_low_stride;   // 0: 16, 4
    int seg_head_width;        // deeplab: ASPP and decoder width; bifpn: every level's channels. 0: 64
    int seg_repeats;           // bifpn layers, 0: 2
    int classes;               // the head's class count (0: the space's or the arch's)
    int det_tap_block;         // detect: 1: SSDLite's stride-16 feature is the block output (as a detection supernet
                               // builds it); 0: MobileDets' expansion tap where the next block is an IBN (train's)
} ib_latency_head;

typedef struct ib_latency_row {
    int block;          // -1 the stem, 0.. the arch's blocks (skips have no row), n_blocks the head
    char key[128];      // the row's first eleven CSV columns
    double ms;
} ib_latency_row;
typedef struct ib_latency_term {
    char op[8];         // "ibn", "fused", "tucker", "gcibn", "stem", "head", or "skip" (skip layers)
    char kind;          // 'a': coef times the op's rows' summed ms; 'b': coef times its row (or layer) count
    double coef, x;     // the term adds coef * x ms
} ib_latency_term;
typedef struct ib_latency_prediction {
    double ms;          // what ib_lut_predict_arch gives
    double sum;         // the plain sum of the rows
    int corrected;      // 1 when the table's correction for this res was applied
    double a, b, c;     // the correction: ms = a * sum + b * n_rows + c + the per-op terms
    int res;            // the resolution used
    int n_rows;
    ib_latency_row *rows;   // malloc'd, n_rows entries in network order
    int n_terms;        // the correction's per-op terms (docs/FORMATS.md "Latency table"); 0 for a, b, c only
    ib_latency_term terms[16];
} ib_latency_prediction;
IBNAS_API ib_status ib_lut_predict_detail(const ib_lut *t, const char *arch, int res, ib_latency_prediction *p);
// The same for the network `head` names (NULL: the classifier): a segmenter's rows up to the head's stride, then
// its head's row (block n_blocks).
IBNAS_API ib_status ib_lut_predict_detail_head(const ib_lut *t, const char *arch, const ib_latency_head *head, int res,
                                               ib_latency_prediction *p);
IBNAS_API void ib_latency_prediction_free(ib_latency_prediction *p);

// Measuring this CPU: every row a space can use at res, each part timed alone on the inference path
// (eval mode, conv + BN + activation fused, batch 1, random weights, warm-up, median of repeats). An
// existing `out` keeps its rows and only missing ones are timed, so a stopped run resumes; the file is
// rewritten atomically every save_every rows. calibrate > 0 then times that many random subnets whole and
// stores a fitted correction for res (docs/LATENCY.md).
typedef struct ib_latency_profile_opts {
    const char *space;         // *.space.json (required)
    const char *out;           // the table (required)
    int res;                   // 0: the space's input size
    int threads;               // 1
    int classes;               // the head row's class count; 0: the space's
    int warmup, repeats;       // per row: 3, 15
    double min_ms;             // short rows run on past `repeats` until this much is timed (at most 8 x), 30
    const char *stat;          // "median" (default) of the repeats, or "min" (for a busy machine, docs/LATENCY.md)
    const char *clock;         // "wall" (default), or "cpu": the thread's CPU time (1 thread; for a busy machine)
    int rounds;                // 1: every row timed once; R > 1: the rows, then the calibration's subnets, are
                               // timed in R rounds over the list, each keeping its fastest round (a machine
                               // with slow spells: shared, throttling; docs/LATENCY.md, "Rounds")
    int warm_weights;          // 0 (default): each row's weights are flushed from the caches before every run,
                               // as a network too large for the last-level cache reads them; 1: only an
                               // L2-sized eviction (tables before 2026-12: weights then sat in L3)
    int save_every;            // 20
    int calibrate;             // subnets for the correction, 10; 0: none
    uint64_t calibrate_seed;   // 1000 (ib_latency_validate's default seed is 1)
    int calibrate_per_op;      // 1: the correction also scales each block op's rows (a ridge fit, docs/LATENCY.md);
                               // 0 (default): a and b only, which predicted held-out subnets as well or better
    int progress;              // 1: a progress bar on stderr; 0 (default)
    ib_latency_head head;      // task "segment": also the segmentation head's row over the space's taps
                               // (classes: the class count given above, else the space's)
    const char *archs;         // "mobilenetv2:1.0,a.arch.json": these networks' rows too (with head's task rows), e.g.
                               // for a search budgeted at a network outside the space; NULL: the space's alone
} ib_latency_profile_opts;
IBNAS_API void ib_latency_profile_opts_default(ib_latency_profile_opts *o);
typedef struct ib_latency_profile_report {
    int rows;                  // the space's rows at res
    int added;                 // rows timed by this call
    double wall_s;
} ib_latency_profile_report;
IBNAS_API ib_status ib_latency_profile(const ib_latency_profile_opts *o, ib_latency_profile_report *r);

// A modelled target's table for a space at res (0: the space's input): `target` is "edgetpu", "dsp" (the
// parameter files search/targets/NAME.target.json) or a path to such a file. classes 0: the space's.
// *rows (may be NULL) receives the number of rows written.
IBNAS_API ib_status ib_latency_model(const char *space, const char *target, int res, int classes, const char *out,
                                     int *rows);
// The same with a segmentation head's row (head NULL or a classifier: as ib_latency_model).
IBNAS_API ib_status ib_latency_model_head(const char *space, const char *target, int res, int classes,
                                          const ib_latency_head *head, const char *out, int *rows);
// The same with the rows of the networks in archs ("mobilenetv2:1.0,a.arch.json"; NULL: none) too: a search
// budgeted at a network outside the space (ib_search_opts.budgets).
IBNAS_API ib_status ib_latency_model_archs(const char *space, const char *target, int res, int classes,
                                           const ib_latency_head *head, const char *archs, const char *out, int *rows);

// End-to-end inference ms of an arch with random weights on this CPU: batch 1, eval mode, 3 warm-up passes,
// then the median of at least `repeats` (<= 0: 15) timed passes and on until 100 ms are timed (at most 8 x
// repeats), in 2 rounds, the faster round kept: as a latency table's calibration and ib_latency_validate
// time networks. Sets the library's threads to `threads` (ib_set_threads).
IBNAS_API ib_status ib_latency_measure(const char *arch, int res, int threads, int repeats, double *ms);
// The same for the network `head` names (NULL: the classifier): a segmenter of the arch, timed whole.
IBNAS_API ib_status ib_latency_measure_head(const char *arch, const ib_latency_head *head, int res, int threads,
                                            int repeats, double *ms);

// Validation of a cpu table: `samples` random subnets of the space (from seed), each predicted and measured
// end to end; errors are |predicted / measured - 1| in percent. With out_dir: OUT/validate.csv (one row
// per subnet) and OUT/validate.svg (predicted against measured, with the y = x line).
typedef struct ib_latency_validate_opts {
    const char *lut, *space;   // required
    const char *out_dir;       // NULL: no files
    int samples;               // 50
    int threads;               // 1
    int res;                   // 0: as ib_lut_predict_arch
    int classes;               // 0: the space's
    uint64_t seed;             // 1
    int warmup, repeats;       // per subnet: 3, 9 (statistic and clock: the table's "# stat:" and "# clock:")
    double min_ms;             // small subnets run on past `repeats` until this much is timed (at most 8 x), 100
    int rounds;                // passes over the subnets, each keeping its fastest; 0: the table's "# rounds:"
                               // (profile's rounds), else 2
    int recalibrate;           // N > 0: also time profile's N calibration subnets (seed 1000) in the same rounds,
                               // refit the correction on them and report the errors of that refit too: the
                               // table's rows judged at the machine's speed of the moment (docs/LATENCY.md)
    int progress;              // 0
} ib_latency_validate_opts;
IBNAS_API void ib_latency_validate_opts_default(ib_latency_validate_opts *o);
typedef struct ib_latency_validate_report {
    int samples, res;
    double mean_abs_pct_err, max_abs_pct_err, spearman;
    double wall_s;
    double *predicted, *measured;   // malloc'd, samples entries each
    // With recalibrate: the same for the predictions of the refitted correction (else 0 and NULL).
    double recal_mean_abs_pct_err, recal_max_abs_pct_err, recal_spearman, recal_a, recal_b;
    double *recal_predicted;
} ib_latency_validate_report;
IBNAS_API ib_status ib_latency_validate(const ib_latency_validate_opts *o, ib_latency_validate_report *r);
IBNAS_API void ib_latency_validate_report_free(ib_latency_validate_report *r);

// ---------------------------------------------------------------------------------------------
// Search (docs/SEARCH.md, "Search"): the best arch of a supernet's space under latency budgets on one or
// more targets. Subnets are scored by their inherited top-1 on a held-out part of the training data (the
// part the supernet left out of training) after BN recalibration on the rest; latency is predicted from
// each target's table. Writes per target OUT/TARGET/pareto.csv, pareto.svg, archs.svg and
// best-<budget>ms.arch.json for every budget, and OUT/summary.json, OUT/archs.svg, OUT/curve_<strategy>.csv.
// The state is saved after every generation: `resume` continues a stopped or killed search exactly.

typedef struct ib_search_opts {
    const char *supernet;      // a file ib_supernet_train wrote (required)
    const char *data;          // training data (as ib_dataset_load takes it); NULL: the data the supernet records
    double holdout;            // the held-out fraction scored on; 0 (default): the supernet's own (else 0.1)
    const char *luts;          // "cpu=cpu.csv,edgetpu=edgetpu.csv"; a bare path is named by its table's target
    const char *budgets;       // ms: "8,12" for every target, or per target "cpu=8,12;edgetpu=3,4" (required). A budget
                               // may be a network ("cpu=mobilenetv2:1.0", an arch file): its latency predicted by the
                               // target's table as the search's archs are (verify: measured beside them)
    const char *strategy;      // "evolution" (default), "random" or "tunas"
    const char *ops;           // "ibn,skip": the op types the search may pick, a part of the supernet's space (MobileDets
                               // searched IBN alone for mobile CPUs); NULL: every op of the space
    int population;            // evolution's population / random's first samples, 32
    int generations;           // 20 (tunas: policy steps)
    int sample;                // evolution's tournament size, 8
    int batch;                 // per generation and budget: children, samples or policy samples, 16
    double tunas_beta;         // tunas: reward = top-1 + beta * |latency / budget - 1|, beta < 0; -0.5
    uint64_t seed;             // 0
    int res;                   // search resolution (scoring and latency); 0: the space's input size
    int calib_batches;         // BN recalibration batches per subnet (of 64 images), 20
    int eval_images;           // at most this many held-out images per score (the first of the part); 0: all
    const char *task;          // NULL: the supernet's own; "classify", "detect" or "segment" must be the one it was
                               // trained for
    const char *metric;        // the score. Classification: "top1" (default) or "loss" (minus the held-out
                               // cross-entropy, which separates subnets closer than top-1 on a few thousand images
                               // can). Detection (a supernet trained with task "detect"): "ap50" (default), "ap",
                               // "ap75" of the path with the supernet's SSDLite head, or "loss" (minus its held-out
                               // multibox loss). Segmentation (task "segment"): "miou" (default), "pixel_acc" or
                               // "loss" (minus the pixel cross-entropy) of the path with the supernet's segmentation
                               // head at res x res. NULL: the task's default
    const char *baselines;     // drawn on the plots: "mobilenetv2:0.35,hand.arch.json=0.61" (=SCORE optional); archs of the space are scored and seed evolution; NULL: none
    const char *out;           // output folder (required)
    int resume;                // 1: continue OUT/state.json (an existing state without it is an error)
    int progress;              // a line per generation on stderr, 1
    int threads;               // 0: every core
    int workers;               // data loading threads, 2
    int max_generations;       // stop after this many generations in this call (resumable); 0: no limit
    const char *latency_of;    // "task" (default, NULL too): a detection or segmentation supernet's archs are predicted
                               // and budgeted as the detector or segmenter they deploy (docs/LATENCY.md); "backbone":
                               // as the whole classifier, every layer counted (a pick several tasks will fine-tune)
    int latency_res;           // latency (tables, budgets, MACs and the picks' input size) at this resolution, scoring
                               // at res: a supernet trained and scored small, searched under the latency of the size it
                               // deploys at (the tables must hold that size's rows); 0: res
    int verify;                // N > 0: measured picks. When the search finishes, on each target whose table was
                               // measured on this CPU, the N best-scored archs predicted within the budget x (1 +
                               // verify_slack) are timed end to end (the task's network as it deploys, the table's
                               // threads) beside the budget's network, in interleaved rounds; the pick is the
                               // best-scored one measured within the budget (docs/SEARCH.md, "Measured picks"). 0: off
    double verify_slack;       // 0.05
} ib_search_opts;
IBNAS_API void ib_search_opts_default(ib_search_opts *o);

#define IB_SEARCH_MAX_RESULTS 64
typedef struct ib_search_arch {
    char target[64];
    double budget_ms;
    int found;                 // 0: no scored arch met the budget
    double score, ms;          // held-out score (top-1, minus the loss, AP50 / AP / AP75, mIoU or pixel accuracy:
                               // score_name) and predicted latency
    int64_t macs;
    char arch_file[512];       // OUT/TARGET/best-<budget>ms.arch.json
    char budget_of[96];        // the budget's network ("mobilenetv2:1.0"; "": a budget in ms)
    int verified;              // verify: 1 the pick measured within the budget; 0 none of the archs timed did (the
                               // table's pick is kept); -1 not measured (verify 0, a table of another device)
    double measured_ms;        // the pick's measured latency (NAN: not timed)
    double budget_measured_ms; // the budget's network measured beside it, or the budget in ms (NAN: not measured)
} ib_search_arch;

typedef struct ib_search_report {
    int generations_done;
    int64_t subnets_scored;    // distinct subnets, over every call of a resumed search
    int finished;              // 0: stopped early (max_generations, Ctrl-C); resume to go on
    int interrupted;           // stopped by Ctrl-C (ib_search returned IB_ERR_INTERRUPTED)
    double wall_s;             // of this call
    int n_results;
    ib_search_arch results[IB_SEARCH_MAX_RESULTS];   // per target, per budget
    char score_name[16];       // what score is: "top-1", "-loss", "AP50", "AP", "AP75", "mIoU", "pixel_acc"
} ib_search_report;

// While it runs, the first Ctrl-C finishes the subnet being scored, saves the state, writes the outputs so
// far and returns IB_ERR_INTERRUPTED; the previous SIGINT handler is restored on return.
IBNAS_API ib_status ib_search(const ib_search_opts *o, ib_search_report *r);

// ---------------------------------------------------------------------------------------------
// Training a classifier: data (paths, as ib_dataset_load reads them) in, a checkpoint out. The checkpoint
// is rewritten every epoch (atomically) with the training state, so `resume` continues a stopped run
// exactly; a CSV log gets a row per epoch. Start from ib_train_opts_default: its values are the Tiny
// ImageNet recipe of docs/TRAINING.md.

typedef struct ib_train_opts {
    const char *arch;          // as ib_model_create's; NULL (the default): "mobilenetv2", or with init its network
    const char *task;          // "classify" (default, NULL too), "detect" (SSDLite on the arch: docs/DETECTION.md)
                               // or "segment" (docs/SEGMENTATION.md)
    const char *data;          // training data (required; its split "train"); "synth" generates scenes
    const char *val;           // evaluated after every epoch (its split "val"); NULL: none
    const char *out;           // the checkpoint to write (required)
    const char *resume;        // a checkpoint of a stopped run to continue (usually `out`); NULL: none
    const char *init;          // a checkpoint to start from (fine-tuning, e.g. an extracted subnet): its network
                               // and weights replace `arch`'s fresh ones; NULL: none. A classifier of other
                               // classes, a segmentation checkpoint, or init with an arch: the network (arch's,
                               // else init's with a classifier for the data's classes) starts initialised and
                               // takes every tensor of init with the same name and shape
    const char *log;           // CSV log; NULL: OUT.csv
    int classes;               // 0: the training data's class count
    int epochs, batch, res;    // 10, 64, 64
    float lr;                  // peak learning rate, 0.1
    const char *optimizer;     // "sgd" (default), "rmsprop" (TensorFlow's), "rmsprop_torch", "adamw"
    float momentum;            // sgd and rmsprop, 0.9
    int nesterov;              // sgd: Nesterov momentum, 1
    float weight_decay;        // 4e-5
    int no_decay_bn_bias;      // 1: no weight decay on batchnorm parameters and biases; 0
    const char *schedule;      // "cosine" (default, per step), "step", "constant"
    float warmup_epochs;       // linear warm-up, 1 (must be shorter than the run for cosine)
    float step_gamma, step_epochs;   // "step": lr *= gamma every step_epochs epochs (0.97, 2.4)
    float label_smoothing;     // 0.1
    float ema;                 // weight EMA decay (e.g. 0.9999; evaluation then uses it); 0: off
    float clip;                // gradient clipping to this global norm; 0: off
    const char *aug;           // "padcrop" (default: pad, random crop, flip), "rrc" (random-resized crop, flip), "none"
    int pad;                   // padcrop's padding, 4
    uint64_t seed;             // initialisation, data order and augmentation, 0
    int threads;               // 0: every core
    int workers;               // data loading threads, 2
    int progress;              // 1 (default): a progress bar and a line per epoch on stderr
    long max_steps;            // stop after this many steps, saving a resumable checkpoint; 0: no limit
    // Under mpirun (ib_dist_size() > 1; classification and classification supernets): batch is the global batch,
    // a multiple of the rank count, and each rank trains on its share (docs/SCALE.md).
    int sync_bn;               // 1: batchnorm statistics over the whole global batch (every rank's share), so N
                               // ranks train as one process does; 0 (default): each rank's share alone

    // Segmentation (task "segment"): the backbone is `arch` or `init`'s network (a classification checkpoint,
    // an extracted subnet or a segmentation checkpoint), cut at the head's stride; label_smoothing, aug and
    // pad are unused. Data must carry masks (a pack from `ibnas synth`, CamVid lists, image+mask folders).
    const char *seg_head;      // "deeplab" (default: DeepLabv3+-lite) or "bifpn" (EfficientDet's BiFPN)
    int seg_high_stride;       // deeplab: the ASPP's feature stride; bifpn: the coarsest level's. 16 (or 32); 0: 16
    int seg_low_stride;        // deeplab: the decoder's low-level feature; bifpn: the finest level (the logits'
                               // stride). 4 (or 8); 0: 4
    int seg_head_width;        // deeplab: ASPP and decoder width; bifpn: every level's channels. 0: 64
    int seg_repeats;           // bifpn: BiFPN layers stacked; 0: 2
    int seg_height, seg_width; // training and validation size; 0: res
    const char *seg_aug;       // "flip" (default: resize, random flip), "scale" (jitter 0.5..2, crop, flip), "none"
    const char *class_weights; // NULL or "none" (default), "median" (median frequency from the training masks)
    int fast_argmax;           // validation with the fast argmax (argmax at low resolution, labels upsampled)
    // Detection (task "detect"): the SSDLite head's default boxes, matching, loss and post-processing.
    // aug for detection: "none", "padcrop" (a random horizontal flip), "rrc" (SSD's random crop + flip).
    // init may be a classification checkpoint (its backbone is reused, the head is new) or a detection one.
    float det_min_scale, det_max_scale;   // default-box scales of the first and last level, 0.2, 0.95
    const char *det_ratios;    // aspect ratios w/h, "1,2,0.5" (ratio 1 also gets the scale between levels)
    float det_match_iou;       // an anchor is positive at IoU >= this, 0.5 (each box's best anchor always is)
    float det_neg_ratio;       // hard negatives per positive, 3
    float det_nms_iou;         // per-class NMS IoU threshold, 0.6
    float det_score_thr;       // detections scored below are dropped, 0.01
    int det_max_dets;          // detections per image, 100
    const char *det_loss;      // "ssd" (default: softmax cross-entropy, det_neg_ratio hard negatives per positive) or
                               // "focal" (RetinaNet's sigmoid focal loss over every anchor; scores are then sigmoids)
    float det_focal_alpha, det_focal_gamma;   // the focal loss's alpha and gamma, 0.25, 2
} ib_train_opts;
IBNAS_API void ib_train_opts_default(ib_train_opts *o);

typedef struct ib_train_report {
    int epochs_done;
    long steps;
    double last_loss;               // mean training loss of the last finished epoch
    double val_top1, val_top5;      // of the last evaluation (-1 without val)
    double wall_s, img_per_s;
    int interrupted;                // stopped by Ctrl-C (then ib_train returned IB_ERR_INTERRUPTED)
    // Segmentation
    double val_miou, val_pixel_acc; // of the last evaluation (-1 without val or for other tasks)
    // Detection: the twelve COCO numbers of the last evaluation (ib_coco_eval's order; -1 without val);
    // val_top1 then holds AP50 and val_top5 AP.
    double val_coco[12];
} ib_train_report;

// Runs the whole training. While it runs, the first Ctrl-C (SIGINT) finishes the step, saves the
// checkpoint and returns IB_ERR_INTERRUPTED; the previous SIGINT handler is restored on return.
IBNAS_API ib_status ib_train(const ib_train_opts *o, ib_train_report *r);

// ---------------------------------------------------------------------------------------------
// Evaluating a classifier: top-1 / top-5 on a labelled dataset.

typedef struct ib_eval_opts {
    int res;          // images are centre-cropped and resized to res x res; 0 (default): the model's input size
    int batch;        // 100
    int workers;      // data loading threads, 2
    int per_class;    // 1: fill the per-class counts; 0 (default)
    int progress;     // 1: a progress bar on stderr; 0 (default)
} ib_eval_opts;
IBNAS_API void ib_eval_opts_default(ib_eval_opts *o);

typedef struct ib_eval_report {
    int64_t images;
    double top1, top5;             // fractions
    double loss;                   // mean cross-entropy
    int classes;                   // the model's
    int64_t *per_class_total;      // per_class: images of each class (classes entries), else NULL
    int64_t *per_class_correct;    // per_class: of which top-1 correct
} ib_eval_report;

// opts NULL: ib_eval_opts_default. Release r with ib_eval_report_free (also after a failure).
IBNAS_API ib_status ib_eval(ib_model *m, ib_dataset *ds, const ib_eval_opts *opts, ib_eval_report *r);
IBNAS_API void ib_eval_report_free(ib_eval_report *r);


// ---------------------------------------------------------------------------------------------
// Segmentation (docs/SEGMENTATION.md): a model trained with task "segment" (ib_model_task gives "segment")
// scored on a dataset with masks: the confusion matrix over every labelled pixel (the ignore index left out)
// at the evaluation size, per-class IoU = TP / (TP + FP + FN), mIoU over the classes present in the ground
// truth or the prediction, pixel accuracy.

IBNAS_API const char *ib_model_task(const ib_model *m);   // "classify" or "segment"

typedef struct ib_seg_eval_opts {
    int height, width;  // images resized (masks nearest) to this size; 0 (default): the size the model trained at
    int batch;          // 8
    int workers;        // data loading threads, 2
    int fast_argmax;    // 1: argmax of the low-resolution logits, labels upsampled nearest; 0 (default): logits
                        // upsampled bilinearly to the input size, then the argmax
    int progress;       // 1: a progress bar on stderr; 0 (default)
    const char *pred_out;   // a folder (made when missing; its parent must exist): each image's predicted labels as
                            // NAME.png, a palette PNG at the evaluation size (ib_png_write_labels); NAME is the image
                            // file's name without its extension, or the image's index as six digits; NULL: none
} ib_seg_eval_opts;
IBNAS_API void ib_seg_eval_opts_default(ib_seg_eval_opts *o);

typedef struct ib_seg_eval_report {
    int64_t images, pixels;    // pixels counted (not ignored)
    int classes;
    double miou, pixel_acc;
    double *iou;               // classes entries, malloc'd; NAN for a class absent from ground truth and prediction
    int64_t *confusion;        // classes x classes (row: ground truth, column: prediction), malloc'd
    double loss;               // mean pixel cross-entropy (-1 with fast_argmax)
    double head_ms, total_ms;  // per image: the last layers (upsampling + argmax) and the whole prediction
} ib_seg_eval_report;
// opts NULL: the defaults. Release r with ib_seg_eval_report_free (also after a failure).
IBNAS_API ib_status ib_eval_segment(ib_model *m, ib_dataset *ds, const ib_seg_eval_opts *opts, ib_seg_eval_report *r);
IBNAS_API void ib_seg_eval_report_free(ib_seg_eval_report *r);
// The metric alone on two folders of label PNGs (8-bit gray or palette; the raw values are the labels): every
// *.png of gt_dir against the file of the same name in pred_dir, which must have the same size. Fills r as
// ib_eval_segment does (images: the pairs; loss -1, no times). A missing prediction, a size mismatch or a
// value outside 0..classes-1 (ground truth: unless it is ignore_index) fails naming the file.
IBNAS_API ib_status ib_miou_dirs(const char *gt_dir, const char *pred_dir, int classes, int ignore_index,
                                 ib_seg_eval_report *r);

// ---------------------------------------------------------------------------------------------
// Supernets: one weight-sharing network over every arch of a search space (docs/SEARCH.md). Train it
// once, then score any arch of the space with inherited weights (after BN recalibration on training
// images), and extract an arch as a standalone checkpoint that ib_model_load, ib_eval and ib_train's
// `init` take.

typedef struct ib_supernet ib_supernet;

typedef struct ib_supernet_train_opts {
    ib_train_opts train;       // data, val, out, resume, epochs, lr, ... as for a network (arch unused; init: a
                               // supernet file of the same space whose tensors, matched by name and shape, start
                               // this one: a classification supernet's backbone for a detection one).
                               // train.task "detect": one SSDLite head (det_*) shared by every path; "segment": one
                               // segmentation head (seg_head, seg_*_stride, seg_head_width, seg_repeats, seg_aug,
                               // class_weights; at res x res) shared by every path, pixel cross-entropy, scored by mIoU.
                               // Both with any sampling; sandwich then trains every path from the labels (the
                               // sandwich rule without in-place distillation: kd is unused).
    const char *space;         // the *.space.json (required unless resuming)
    const char *sampling;      // "fair" (default: a path per op type of the layers, each op of each layer in
                               // exactly one, all from the labels; path_grads says how their gradients
                               // combine), "sandwich" (largest, smallest and `paths`
                               // random paths a step, the smaller ones distilled from the largest) or "uniform"
                               // (one random path a step); docs/SEARCH.md says why fair is the default
    int paths;                 // sandwich's random paths per step, 2
    float op_ramp;             // uniform and sandwich's random paths: 0 (default) draws each layer's op independently;
                               // E > 0 chains op types along a path, a layer switching from the op type before it
                               // with a probability rising from 0 to 1 over the first E epochs (docs/SEARCH.md)
    float kd;                  // weight of the distillation loss, 1
    double holdout;            // fraction of the training data never trained on, kept for scoring archs (0.1)
    int calib_batches;         // per-epoch evaluation of the largest and smallest paths: BN recalibration batches, 10
    const char *path_grads;    // fair sampling's step: "sum" of the paths' gradients (FairNAS's) or "mean" (each
                               // weight's mean over the paths that ran it: stabler on deep spaces, ranks worse on the
                               // tiny one; docs/SEARCH.md); NULL: "sum", or on resume what the file was trained with
} ib_supernet_train_opts;
IBNAS_API void ib_supernet_train_opts_default(ib_supernet_train_opts *o);

typedef struct ib_supernet_train_report {
    ib_train_report train;     // val_top1 / val_top5: the largest path's (with a task: its first two metrics)
    double smallest_top1;      // the smallest path's (with a task: its score, AP50 or mIoU; -1 without val)
} ib_supernet_train_report;
// As ib_train: a checkpoint every epoch, a CSV log row per epoch (with the largest and smallest paths'
// top-1), Ctrl-C saves and returns IB_ERR_INTERRUPTED, `resume` continues exactly.
IBNAS_API ib_status ib_supernet_train(const ib_supernet_train_opts *o, ib_supernet_train_report *r);

IBNAS_API ib_status ib_supernet_open(ib_supernet **sn, const char *path);   // a file ib_supernet_train wrote
IBNAS_API void ib_supernet_close(ib_supernet *sn);                           // NULL is fine
IBNAS_API int ib_supernet_classes(const ib_supernet *sn);
IBNAS_API int ib_supernet_input_size(const ib_supernet *sn);   // the space's nominal input resolution

typedef struct ib_supernet_eval_opts {
    const char *calib;         // BN recalibration data (a path as ib_dataset_load takes); NULL: the training data
                               // the supernet records, less its held-out part. Never the evaluation data.
    int calib_batches;         // 20
    int calib_batch;           // 64
    uint64_t calib_seed;       // which calibration images (a seeded shuffle), 0
    int res;                   // 0: the space's input size
    int batch, workers;        // evaluation batch 100, loader threads 2
    int progress;              // 0
} ib_supernet_eval_opts;
IBNAS_API void ib_supernet_eval_opts_default(ib_supernet_eval_opts *o);
// `arch`: a path to an *.arch.json or its JSON text; it must be an arch of the supernet's space. Recalibrates
// the arch's BN statistics (in the supernet, overwriting what an earlier call left), then evaluates it.
IBNAS_API ib_status ib_supernet_evaluate(ib_supernet *sn, const char *arch, ib_dataset *ds,
                                         const ib_supernet_eval_opts *o, ib_eval_report *r);
// A supernet trained for a task other than classification (ib_supernet_train with train.task "detect" or
// "segment") carries that task's head, shared by every path; ib_supernet_evaluate refuses it (its classifier
// never trained) and ib_supernet_evaluate_task scores an arch's path with the head instead, after the same BN
// recalibration (calibration data opened as the task needs it: with boxes or masks) followed by the head's BN
// recalibration on the same batches with that path's features (the shared head's statistics are then this
// path's, until another path is scored).
IBNAS_API const char *ib_supernet_task(const ib_supernet *sn);   // "classify", "detect" or "segment"
typedef struct ib_supernet_task_report {
    char task[16];             // "detect" or "segment"
    char names[3][16];         // the metrics' names: "AP50", "AP", "AP75" (detect); "mIoU", "pixel_acc", "loss" (segment:
                               // mIoU over the classes present, pixel accuracy, mean pixel cross-entropy)
    double metrics[3];         // metrics[0] is the score ib_search ranks subnets by (higher is better)
    double loss;               // the task's training loss on the data (detect: the multibox loss weighted by
                               // matched anchors; segment: the pixel cross-entropy): ib_search's metric "loss"
} ib_supernet_task_report;
IBNAS_API ib_status ib_supernet_evaluate_task(ib_supernet *sn, const char *arch, ib_dataset *ds,
                                              const ib_supernet_eval_opts *o, ib_supernet_task_report *r);
// The arch as a standalone network with the supernet's weights and BN statistics recalibrated as
// ib_supernet_evaluate does (same options, same numbers): ib_eval of it gives what ib_supernet_evaluate gave.
IBNAS_API ib_status ib_supernet_extract_model(ib_supernet *sn, const char *arch, const ib_supernet_eval_opts *o,
                                              ib_model **m);
// A detection or segmentation supernet's arch as a checkpoint of its task (what ibnas train --task detect|segment
// writes): the path's weights and the shared head's, BN statistics recalibrated for path and head exactly as
// ib_supernet_evaluate_task does with the same options (calibration data opened as the task needs it: boxes or
// masks), written to out (PATH.tmp, renamed). eval --task ... gives the numbers supernet eval gave; fine-tune
// with train --task ... --init out. A detector keeps the supernet's stride-16 tap (the block output).
IBNAS_API ib_status ib_supernet_extract_task(ib_supernet *sn, const char *arch, const ib_supernet_eval_opts *o,
                                             const char *out);

// ---------------------------------------------------------------------------------------------
// Detection (docs/DETECTION.md): the COCO bbox evaluator.

// The twelve numbers pycocotools' COCOeval (iouType "bbox") gives, in its stats order:
// AP AP50 AP75 APs APm APl AR1 AR10 AR100 ARs ARm ARl (-1 where it gives -1: no ground truth in an area
// range). gt_json: COCO instances (images, categories, annotations with area and iscrowd); dets_json: the
// COCO results format, a list of {"image_id", "category_id", "bbox": [x, y, w, h], "score"}.
#define IB_COCO_NSTATS 12
IBNAS_API ib_status ib_coco_eval(const char *gt_json, const char *dets_json, double stats[IB_COCO_NSTATS]);
IBNAS_API const char *ib_coco_stat_name(int i);   // "AP", "AP50", ... ; NULL outside 0..11

// A model's task: "classify" or "detect" (a checkpoint ib_train wrote with task "detect").
IBNAS_API const char *ib_model_task(const ib_model *m);

// Evaluating a detector on a dataset with boxes (a pack, a COCO or YOLO root): each image resized whole to
// res x res, detections decoded, per-class NMS, mapped back to the image's pixels and scored against its
// boxes (area = the box's area, crowd flags as the source gives them) by ib_coco_eval's evaluator.
typedef struct ib_det_eval_opts {
    int res;                   // 0 (default): the model's input size
    int batch;                 // 32
    int workers;               // 2
    int progress;              // 0
    const char *dets_out;      // write the detections here in the COCO results format; NULL: none
} ib_det_eval_opts;
IBNAS_API void ib_det_eval_opts_default(ib_det_eval_opts *o);
typedef struct ib_det_eval_report {
    int64_t images;
    double coco[IB_COCO_NSTATS];   // AP AP50 AP75 APs APm APl AR1 AR10 AR100 ARs ARm ARl
} ib_det_eval_report;
// opts NULL: the defaults.
IBNAS_API ib_status ib_eval_detect(ib_model *m, ib_dataset *ds, const ib_det_eval_opts *opts, ib_det_eval_report *r);

// ---------------------------------------------------------------------------------------------
// Prediction: one image in, the answer of the model's task out (what `ibnas predict` prints and draws).
// Classify: the top classes with their softmax probabilities (the image centre-cropped and resized to res,
// as ib_image_load and ib_eval prepare it). Detect: boxes in the image's own pixels (the image resized whole
// to res x res, decoded and NMSed as ib_eval_detect does, mapped back). Segment: a class id per pixel of the
// image (resized whole to the evaluation size, the logits upsampled bilinearly to the image's size, then the
// argmax; at the evaluation size that is ib_eval_segment's prediction).

// An image file (PNG or JPEG) as RGB bytes, row-major HWC (*rgb malloc'd, h * w * 3: free() it).
IBNAS_API ib_status ib_image_read(const char *path, uint8_t **rgb, int *h, int *w);
// PNG files, written to PATH.tmp and renamed; a failure names the file and leaves nothing under PATH.
IBNAS_API ib_status ib_png_write_rgb(const char *path, const uint8_t *rgb, int h, int w);
// A label map, one byte per pixel: classes > 0 (up to 256): an 8-bit palette PNG whose colours are the class
// palette (ib_class_color), every value below classes; classes 0: 8-bit gray. Either way the raw values are
// the class ids (what `ibnas miou` and segmentation datasets read).
IBNAS_API ib_status ib_png_write_labels(const char *path, const uint8_t *labels, int h, int w, int classes);
// The fixed class palette (docs/FORMATS.md "Class colours"): 20 distinct colours for classes 0..19, then the
// PASCAL VOC colour map of the id.
IBNAS_API void ib_class_color(int c, uint8_t rgb[3]);

#define IB_PREDICT_TOP 5
typedef struct ib_predict_opts {
    int res;              // the network's input: res x res; 0 (default): the size the model was built or trained at
    float score_thresh;   // detect: boxes scored below are left out, 0.3
} ib_predict_opts;
IBNAS_API void ib_predict_opts_default(ib_predict_opts *o);

typedef struct ib_detection {
    float x0, y0, x1, y1;   // pixels of the image (pixel (x, y) covers [x, x+1) x [y, y+1))
    float score;
    int label;              // 0..classes-1
} ib_detection;

typedef struct ib_prediction {
    const char *task;                  // "classify", "detect" or "segment"
    int height, width;                 // the image's
    int classes;                       // the model's
    int n_top;                         // classify: min(IB_PREDICT_TOP, classes) entries, most probable first
    int top_class[IB_PREDICT_TOP];
    float top_prob[IB_PREDICT_TOP];
    int n_dets;                        // detect: by score, highest first (malloc'd)
    ib_detection *dets;
    uint8_t *labels;                   // segment: height * width class ids, row-major (malloc'd)
} ib_prediction;
// rgb: h x w RGB bytes (ib_image_read). Release p with ib_prediction_free (also after a failure).
IBNAS_API ib_status ib_predict(ib_model *m, const uint8_t *rgb, int h, int w, const ib_predict_opts *opts,
                               ib_prediction *p);
IBNAS_API void ib_prediction_free(ib_prediction *p);

// Drawing on an RGB image in place, as `ibnas predict` does: each box outlined in its class colour with a
// label "CLASS SCORE" in a small bitmap font; or each pixel's class colour blended in with weight alpha
// (0..1), pixels of class skip (-1: none) left as they are.
IBNAS_API void ib_draw_detections(uint8_t *rgb, int h, int w, const ib_detection *d, int n);
// The same with "NAME SCORE" labels where m (NULL: none) has class names (ib_model_class_name).
IBNAS_API void ib_draw_detections_named(uint8_t *rgb, int h, int w, const ib_detection *d, int n, const ib_model *m);
IBNAS_API void ib_draw_segmentation(uint8_t *rgb, int h, int w, const uint8_t *labels, float alpha, int skip);

#ifdef __cplusplus
}
#endif

#endif
