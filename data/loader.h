// data/loader.h: augmentation of samples (the image, its boxes and its mask move together) and the
// batch loader, whose worker threads read, augment and normalise samples into a ring of batches ahead
// of training. Randomness comes from (seed, epoch, sample index) only: any worker count, same batches.
#ifndef IB_LOADER_H
#define IB_LOADER_H

#include "data/data.h"

// ---------------------------------------------------------------------------------------------
// Deterministic sample transforms. Each replaces the sample's buffers (malloc) and transforms boxes
// and mask with the image; boxes are clipped to the new image and dropped when no area is left.
// They fail only on allocation (IB_ERR_NOMEM), leaving the sample unchanged.

// Crops rows [y0, y0 + h) and columns [x0, x0 + w); the window may extend past the image: the image
// is padded with 0, the mask with mask_fill (the ignore index). No resampling.
ib_status ib_sample_crop(ib_sample *s, int y0, int x0, int h, int w, int mask_fill);
// Crops the window [y0, y0 + ch) x [x0, x0 + cw) (inside the image) and resizes it to oh x ow: the
// image bilinearly (F.interpolate, align_corners=False, no antialias, as torchvision's tensor
// resized_crop with antialias off), the mask by nearest (src = floor(dst * in / out)).
ib_status ib_sample_resized_crop(ib_sample *s, int y0, int x0, int ch, int cw, int oh, int ow);
ib_status ib_sample_resize(ib_sample *s, int oh, int ow);   // the whole image
void ib_sample_hflip(ib_sample *s);                         // in place
// Normalises to float CHW: out[c][y][x] = (rgb - mean[c]) / std[c], mean and std in 0..255 units.
// image: (h, w, 3) uint8 -> out: (3, h, w) float
void ib_sample_normalize(const ib_sample *s, const float mean[3], const float std[3], float *out);

// ---------------------------------------------------------------------------------------------
// Random augmentations: each draws from r only, so a seed fixes the result.

// torchvision RandomResizedCrop: area fraction in scale, log-uniform aspect ratio in ratio, 10 tries,
// then a centre crop clamped to the ratio range; the window is resized to oh x ow.
ib_status ib_aug_random_resized_crop(ib_sample *s, ib_rng *r, int oh, int ow, const float scale[2],
                                     const float ratio[2]);
// The window alone (torchvision's get_params) for an h x w image: rows [*y0, *y0 + *ch), columns
// [*x0, *x0 + *cw).
void ib_aug_rrc_window(ib_rng *r, int h, int w, const float scale[2], const float ratio[2], int *y0, int *x0,
                       int *ch, int *cw);
// The Tiny ImageNet recipe's crop: pad by `pad` on every side (image 0, mask mask_fill), then take a
// ch x cw window at offsets y, x drawn (in that order) uniform in 0 .. h + 2 pad - ch (numpy's
// rng.integers(0, 2 pad + 1, 2) when ch == h). Where even the padded image is smaller than the
// window, the window holds the whole image at a uniform position (torchvision's pad_if_needed).
ib_status ib_aug_pad_crop(ib_sample *s, ib_rng *r, int pad, int ch, int cw, int mask_fill);
void ib_aug_hflip(ib_sample *s, ib_rng *r, float p);   // flips with probability p
// Resizes by a factor drawn uniform in [lo, hi] (both sides by the same factor, rounded).
ib_status ib_aug_scale_jitter(ib_sample *s, ib_rng *r, float lo, float hi);
// torchvision ColorJitter without hue: brightness, contrast and saturation factors drawn uniform in
// [max(0, 1 - v), 1 + v] (0 turns one off), applied in a random order, each step rounded to uint8
// (torchvision truncates there; rounding keeps the mean). Gray is 0.299 R + 0.587 G + 0.114 B.
void ib_aug_color_jitter(ib_sample *s, ib_rng *r, float brightness, float contrast, float saturation);
// SSD's detection crop (torchvision RandomIoUCrop): choose one of {keep the image, any patch, min IoU
// 0.1, 0.3, 0.5, 0.7, 0.9}; draw up to 40 patches of 0.3..1 of each side with aspect 0.5..2; accept
// one that holds some box centre and whose IoU with some such box reaches the minimum. Boxes whose
// centre lies in the patch are kept (clipped), the others dropped. A sample without boxes, or where
// 50 choices find no patch, is left as it is.
ib_status ib_aug_ssd_crop(ib_sample *s, ib_rng *r, int mask_fill);

// ---------------------------------------------------------------------------------------------
// An augmentation pipeline, applied in this order: scale jitter, crop, flip, colour jitter, resize
// to out_h x out_w (when the crop did not already give that size). Normalisation happens when the
// loader writes the sample into its batch.

typedef enum {
    IB_CROP_NONE = 0,   // resize the whole image
    IB_CROP_CENTER,     // the central window with the output's aspect ratio, then resize (eval)
    IB_CROP_PAD,        // ib_aug_pad_crop to out_h x out_w with `pad` (the Tiny ImageNet recipe)
    IB_CROP_RESIZED,    // ib_aug_random_resized_crop with rrc_scale, rrc_ratio
    IB_CROP_SSD,        // ib_aug_ssd_crop, then resize (detection)
} ib_crop_mode;

typedef struct ib_aug_opts {
    int out_h, out_w;            // every sample leaves at this size
    ib_crop_mode crop;
    int pad;                     // IB_CROP_PAD
    float rrc_scale[2];          // IB_CROP_RESIZED, default (0.08, 1)
    float rrc_ratio[2];          // default (3/4, 4/3)
    float scale_jitter[2];       // resize factor range; {0, 0}: off. Meant for IB_CROP_PAD (random
                                 // scale, then a fixed crop: the segmentation recipe); the other
                                 // crops end in a resize to the output size that undoes it
    float hflip_p;
    float brightness, contrast, saturation;
    float mean[3], std[3];       // 0..255 units
    int mask_fill;               // the ignore index written where crops pad the mask (the loader
                                 // sets it to the dataset's)
} ib_aug_opts;

// Defaults: out 224, no crop, no flip, no jitter, ImageNet mean/std, RRC ranges as torchvision,
// mask_fill 255.
void ib_aug_opts_default(ib_aug_opts *o, int out_h, int out_w);
ib_status ib_aug_apply(const ib_aug_opts *o, ib_sample *s, ib_rng *r);

// ---------------------------------------------------------------------------------------------
// The loader: batches of an ib_dataset, prepared by `workers` threads into a ring of `prefetch`
// batches while the consumer trains on the previous one.
//
//     ib_loader *l;
//     ib_loader_open(&l, ds, &opts);
//     for (int e = 0; e < epochs; e++) {
//         ib_loader_start_epoch(l, e);
//         const ib_batch *b;
//         while ((st = ib_loader_next(l, &b)) == IB_OK && b) { ib_tensor x; ib_batch_tensor(b, &x); ... }
//         if (st) return st;   // ib_errmsg() names the file that failed
//     }
//     ib_loader_close(l);

typedef struct ib_loader_opts {
    int batch_size;
    int shuffle;            // a new order each epoch, from (seed, epoch)
    int drop_last;          // drop the last batch when it would be short
    int workers;            // threads; 0 prepares each batch inside ib_loader_next (no threads)
    int prefetch;           // batches in the ring, 2 .. 8 (default 3)
    uint64_t seed;
    ib_aug_opts aug;
    int want_boxes;         // -1 (default): when the dataset has boxes; 0 or 1 to force
    int want_masks;         // -1 (default): when the dataset has masks
    int shard_count;        // > 1: one rank's share of every batch (data parallelism, docs/SCALE.md): of each
    int shard_rank;         // batch of batch_size the loader yields the shard_rank-th of shard_count contiguous
                            // parts (batch_size / shard_count samples, the same ones and augmented the same as in
                            // the whole batch); batch_size must divide by shard_count and drop_last be set.
                            // 0 or 1 (default): whole batches
} ib_loader_opts;

// Defaults: batch 64, shuffle, no drop_last, 2 workers, prefetch 3, seed 0, ib_aug_opts_default.
void ib_loader_opts_default(ib_loader_opts *o, int out_h, int out_w);

typedef struct ib_batch {
    int n, h, w;              // n samples (short only for the last batch without drop_last)
    float *x;                 // (n, 3, h, w) normalised
    int32_t *labels;          // n (-1 where the source has none)
    int64_t *indices;         // n dataset indices
    int64_t *image_ids;       // n
    int32_t *src_h, *src_w;   // n: image sizes as read, before augmentation (to map boxes back)
    int64_t *box_offsets;     // n + 1 when boxes are loaded, else NULL: image i owns boxes
    ib_box *boxes;            //   [box_offsets[i], box_offsets[i+1]), in output pixels
    int32_t *masks;           // (n, h, w) class ids, ignore index kept, or NULL
    int64_t epoch, step;      // step: the batch's number within the epoch
} ib_batch;

// x as a (n, 3, h, w) tensor header over the batch's memory (valid as long as the batch).
void ib_batch_tensor(const ib_batch *b, ib_tensor *t);

typedef struct ib_loader ib_loader;
// The loader does not own ds; close the loader first.
ib_status ib_loader_open(ib_loader **l, ib_dataset *ds, const ib_loader_opts *opts);
// Begins epoch `epoch` (any order: a resumed run starts at its epoch); abandons an unfinished one.
void ib_loader_start_epoch(ib_loader *l, int64_t epoch);
// Next batch of the epoch in *b (valid until the next ib_loader_next or ib_loader_start_epoch), or
// *b = NULL at the epoch's end.
// A failed read or augmentation returns its status with its message (ib_errmsg()); the epoch is over.
ib_status ib_loader_next(ib_loader *l, const ib_batch **b);
int64_t ib_loader_batches(const ib_loader *l);   // batches per epoch
// The stream sample `index` of epoch `epoch` draws its augmentation from (to reproduce one sample).
void ib_loader_sample_rng(uint64_t seed, int64_t epoch, int64_t index, ib_rng *r);
void ib_loader_close(ib_loader *l);

#endif
