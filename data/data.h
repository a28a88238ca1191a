// data: images and their annotations, from files to training batches. Decoding (PNG, JPEG), dataset
// readers behind one interface (image folders, Tiny ImageNet, COCO JSON, YOLO txt, segmentation pairs,
// HDF5 packs, synthetic scenes), augmentation, and a batch loader with a prefetch thread.
//
// One sample is an RGB uint8 image (HWC) with whatever the source knows: a class label, boxes, a mask.
// The same interface serves classification, detection and segmentation, so one source can feed all.
#ifndef IB_DATA_H
#define IB_DATA_H

#include "core/core.h"

// ---------------------------------------------------------------------------------------------
// Samples

typedef struct ib_box {
    float x0, y0, x1, y1;   // pixels, x1 > x0, y1 > y0, in the coordinates of the sample's image
    int32_t label;          // contiguous class id 0..C-1
    int32_t iscrowd;        // COCO's flag (0 elsewhere)
} ib_box;

typedef struct ib_sample {
    int h, w;               // image size
    uint8_t *rgb;           // h * w * 3, row-major HWC, malloc'd
    int32_t label;          // class id, or -1 when the source has none
    int n_boxes;
    ib_box *boxes;          // n_boxes, malloc'd (NULL when none)
    uint8_t *mask;          // h * w class ids (ignore_index where unlabelled), malloc'd, or NULL
    int64_t image_id;       // the source's id (COCO image id; otherwise the index)
} ib_sample;

void ib_sample_free(ib_sample *s);   // frees the buffers and zeroes the struct

// ---------------------------------------------------------------------------------------------
// Decoding: to RGB uint8 HWC. Gray, palette, RGBA (alpha dropped), 16-bit PNG; gray, RGB, CMYK JPEG.
// A corrupt or truncated file gives IB_ERR_FORMAT with a message naming it.

ib_status ib_decode_file(const char *path, uint8_t **rgb, int *h, int *w);
ib_status ib_decode_memory(const uint8_t *buf, size_t n, const char *name, uint8_t **rgb, int *h, int *w);
// Label masks: an 8-bit PNG's raw values (palette indices for palette images), h * w, no conversion.
ib_status ib_decode_png_indices(const char *path, uint8_t **idx, int *h, int *w);

// Encoding (encode.c): PNG files written to PATH.tmp and renamed; errors name the file. RGB uint8 HWC, or one
// byte per pixel: 8-bit gray (palette NULL) or an 8-bit palette PNG of n_colors (1..256) RGB triples, whose
// raw values are what ib_decode_png_indices reads back (a value >= n_colors is IB_ERR_ARG).
ib_status ib_png_write_rgb(const char *path, const uint8_t *rgb, int h, int w);
ib_status ib_png_write_indexed(const char *path, const uint8_t *idx, int h, int w, const uint8_t *palette, int n_colors);
// A label map as a palette PNG whose `classes` (1..256) colours are the class palette (ib_class_colour).
ib_status ib_png_write_classes(const char *path, const uint8_t *labels, int h, int w, int classes);

// Drawing (draw.c) on RGB uint8 HWC images, for the pictures `ibnas predict` writes.
// The fixed class palette: classes 0..19 take 20 distinct colours (docs/FORMATS.md "Class colours"), 20..255
// the PASCAL VOC colour map of the id.
void ib_class_colour(int c, uint8_t rgb[3]);
// The outline of the box x0, y0, x1, y1 (pixels, pixel (x, y) covers [x, x+1)), `thick` pixels wide, inside it.
void ib_draw_rect(uint8_t *rgb, int h, int w, float x0, float y0, float x1, float y1, int thick, const uint8_t c[3]);
// Text in a 3x5 bitmap font (digits, '.', '-', ':'; anything else is a space), `scale` image pixels a font
// pixel, on a filled label of colour bg at (x, y) (top left; moved inside the
// image when it would leave it), in black or white, whichever reads better on bg.
void ib_draw_label(uint8_t *rgb, int h, int w, int x, int y, const char *text, int scale, const uint8_t bg[3]);
// Blends each pixel's class colour over the image with weight alpha (0..1); pixels of class `skip` (-1: none)
// are left as they are.
void ib_draw_overlay(uint8_t *rgb, int h, int w, const uint8_t *labels, float alpha, int skip);

// ---------------------------------------------------------------------------------------------
// Datasets: one interface over every source.

typedef enum {
    IB_DS_AUTO = 0,        // guess from the path: *.h5 pack, a Tiny ImageNet root, a COCO json, ...
    IB_DS_IMAGEFOLDER,     // ROOT/<class>/*.{jpg,jpeg,png}, classes sorted by name
    IB_DS_TINYIMAGENET,    // ROOT/wnids.txt, train/<wnid>/images/*.JPEG, val/val_annotations.txt
    IB_DS_COCO,            // ROOT/annotations/instances_<split>.json + ROOT/images/<split>/
    IB_DS_YOLO,            // ROOT/images/<split>/*.jpg + ROOT/labels/<split>/*.txt, ROOT/names.txt
    IB_DS_SEGPAIRS,        // ROOT/<split>/ images + ROOT/<split>annot/ masks, or ROOT/<split>.txt lists
    IB_DS_PACK,            // an HDF5 pack (docs/FORMATS.md)
    IB_DS_SYNTH,           // synthetic scenes, generated on the fly
} ib_ds_format;

typedef struct ib_ds_opts {
    ib_ds_format format;
    const char *split;      // "train", "val", "test"; NULL: "train"
    int skip_bad;           // 1: skip unreadable files (counted); 0: the first one is an error
    int ignore_index;       // segmentation: the mask value to ignore (CamVid: 11); default 255
    // synth only
    int synth_n, synth_size;
    uint64_t synth_seed;
} ib_ds_opts;

typedef struct ib_dataset ib_dataset;

// Opens a source. Errors name the path and what is wrong (missing folder, malformed JSON with line and
// column, a class id out of range, a label file for a missing image).
ib_status ib_dataset_open(ib_dataset **ds, const char *path, const ib_ds_opts *opts);
void ib_dataset_close(ib_dataset *ds);
int64_t ib_dataset_size(const ib_dataset *ds);
int ib_dataset_classes(const ib_dataset *ds);                   // class count (0 if unknown)
const char *ib_dataset_class_name(const ib_dataset *ds, int c); // e.g. the wnid or COCO name
int ib_dataset_ignore_index(const ib_dataset *ds);
int64_t ib_dataset_skipped(const ib_dataset *ds);               // files skipped as unreadable so far
const char *ib_dataset_path(const ib_dataset *ds);
// The source's own id of contiguous class c (COCO's category_id); c itself for other sources.
int64_t ib_dataset_category_id(const ib_dataset *ds, int c);
// Reads sample i (0 <= i < size) into *s (caller frees with ib_sample_free). Safe to call from several
// threads at once (sources that cannot, e.g. HDF5, serialise internally).
ib_status ib_dataset_get(ib_dataset *ds, int64_t i, ib_sample *s);
// A name for sample i's output files: its image file's name without folder and extension when the source
// reads files (image folders, segmentation pairs), else its index as six digits ("000042").
void ib_dataset_sample_name(ib_dataset *ds, int64_t i, char *buf, size_t n);

// How a source is implemented (readers fill this in; users never need it).
typedef struct ib_dataset_vtable {
    const char *name;
    ib_status (*get)(ib_dataset *ds, int64_t i, ib_sample *s);
    void (*close)(ib_dataset *ds);
    const char *(*file)(ib_dataset *ds, int64_t i);   // optional: the file sample i is read from (NULL: none)
} ib_dataset_vtable;

struct ib_dataset {
    const ib_dataset_vtable *vt;
    void *impl;                 // the reader's own state
    char *path;
    int64_t size;
    int n_classes;
    char **class_names;         // n_classes strings (owned)
    int ignore_index;
    int64_t skipped;
    int has_labels, has_boxes, has_masks;
    uint8_t *bad;               // skip_bad: 1 for samples found unreadable (NULL: errors go up)
};

// A view of part of `base`: the samples whose seeded hash of their index falls in [lo, hi) of [0, 1), in
// index order. split(b, 0, f, seed) and split(b, f, 1, seed) partition b (a held-out part of the training
// data and the rest). The view reads through base, which must outlive it; close it with ib_dataset_close.
ib_status ib_dataset_split(ib_dataset **out, ib_dataset *base, double lo, double hi, uint64_t seed);

// ---------------------------------------------------------------------------------------------
// HDF5 packs (docs/FORMATS.md): /images uint8 [N,H,W,3] (chunked per image, compressed), /labels int32
// [N]; detection: /boxes float32 [M,4], /box_labels int32 [M], /box_offsets int64 [N+1]; segmentation:
// /masks uint8 [N,H,W] with attribute ignore_index; class names as the attribute class_names
// (newline-separated); attributes format = "ibnas-pack", version = 1.

typedef struct ib_pack_writer ib_pack_writer;
// Every image added must be h x w. has_boxes/has_masks say which optional datasets the pack carries.
ib_status ib_pack_writer_open(ib_pack_writer **pw, const char *path, int h, int w, int has_boxes, int has_masks,
                              int n_classes, const char *const *class_names, int ignore_index);
ib_status ib_pack_writer_add(ib_pack_writer *pw, const ib_sample *s);
ib_status ib_pack_writer_close(ib_pack_writer *pw);   // writes the index datasets and renames into place
void ib_pack_writer_abort(ib_pack_writer *pw);        // deletes the half-written file

// Fits a sample to size x size for a pack: crop=1 resizes the short side to size then takes the centre
// (classification), crop=0 stretches (detection/segmentation keep the whole scene). Boxes follow the
// image; boxes left with no area are dropped and counted in *dropped_boxes (may be NULL). Masks are
// resized nearest. out is allocated (ib_sample_free).
ib_status ib_sample_fit(const ib_sample *in, int size, int crop, ib_sample *out, int *dropped_boxes);

// ---------------------------------------------------------------------------------------------
// Synthetic scenes: procedural shapes (several classes, filled and outlined, rotated, scaled, overlapping)
// over textured, noisy backgrounds. Sample i of a seed is a pure function of (seed, i, size): the same
// on every machine and thread count. The class label is the largest shape's class; every shape has a box;
// the mask gives each pixel the class of the top shape covering it, or the background class.

// IB_SYNTH_CLASSES (6 shape classes; masks use it as the background id): include/ibnas.h.
const char *ib_synth_class_name(int c);
void ib_synth_render(uint64_t seed, int64_t i, int size, ib_sample *s);   // allocates s's buffers

// ib_synth_write_pack and ib_synth_write_images: include/ibnas.h.

#endif
