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
// Not in this API yet: the architecture search (supernet training, latency tables, the search, subnet
// extraction), detection and segmentation. They are future work; they will join this header when they
// are built. Tensors, layers and the training loop's pieces stay internal, so they can change without
// breaking programs built against this header.
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
IBNAS_API int ib_model_input_size(const ib_model *m);       // the resolution it was built or trained for
IBNAS_API int64_t ib_model_param_count(const ib_model *m);  // trainable parameters
IBNAS_API char *ib_model_arch_json(const ib_model *m);      // the arch as JSON text; free() it (NULL: no memory)

// Eval-mode forward pass (batchnorm running statistics, no dropout): x holds n images (n, 3, h, w),
// normalised as above, h and w at least 8; logits receives (n, classes). Memory grows with n: pass large
// sets in batches.
IBNAS_API ib_status ib_model_forward(ib_model *m, const float *x, int n, int h, int w, float *logits);

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
// Training a classifier: data (paths, as ib_dataset_load reads them) in, a checkpoint out. The checkpoint
// is rewritten every epoch (atomically) with the training state, so `resume` continues a stopped run
// exactly; a CSV log gets a row per epoch. Start from ib_train_opts_default: its values are the Tiny
// ImageNet recipe of docs/TRAINING.md.

typedef struct ib_train_opts {
    const char *arch;          // as ib_model_create's (default "mobilenetv2")
    const char *data;          // training data (required; its split "train"); "synth" generates scenes
    const char *val;           // evaluated after every epoch (its split "val"); NULL: none
    const char *out;           // the checkpoint to write (required)
    const char *resume;        // a checkpoint of a stopped run to continue (usually `out`); NULL: none
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
} ib_train_opts;
IBNAS_API void ib_train_opts_default(ib_train_opts *o);

typedef struct ib_train_report {
    int epochs_done;
    long steps;
    double last_loss;               // mean training loss of the last finished epoch
    double val_top1, val_top5;      // of the last evaluation (-1 without val)
    double wall_s, img_per_s;
    int interrupted;                // stopped by Ctrl-C (then ib_train returned IB_ERR_INTERRUPTED)
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

#ifdef __cplusplus
}
#endif

#endif
