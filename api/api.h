// api: what the public API's files (api/*.c) share privately: the model handle's layout and the mapping
// of the public training options onto the internal ones.
#ifndef IB_API_H
#define IB_API_H

#include "tasks/segment.h"
#include "tasks/tasks.h"

struct ib_model {
    ib_net net;
    ib_ctx *ctx;   // forward passes, created on the first one
    ib_seg_head *seg;   // segmentation models: the head (its tensors are in net.ps); NULL otherwise
    struct ib_detector *det;   // task "detect": the detector (its backbone is det->net; net is then unused)
};
// The model's backbone network (the detector's for a detection model).
ib_net *ib_api_model_net(const ib_model *m);

// The image of s cropped (IB_CROP_CENTER as evaluation of a classifier, IB_CROP_NONE the whole
// image as detection and segmentation) and resized to oh x ow, normalised with the ImageNet mean and std as
// evaluation does, into x (3 * oh * ow floats). Frees the sample.
ib_status ib_api_sample_input(ib_sample *s, ib_crop_mode crop, int oh, int ow, float *x);

// The index of `v` in names (n of them), or an IB_ERR_ARG "FIELD 'v' is not one of a, b, ..." naming the choices.
ib_status ib_api_choose(const char *field, const char *v, const char *const *names, int n, int *out);
// The public options as the internal training config (string choices checked, IB_ERR_ARG naming them).
ib_status ib_api_train_cfg(const ib_train_opts *o, ib_train_cfg *cfg);
void ib_api_train_report(const ib_train_result *res, ib_train_report *r);
// Detection (api/detect.c): the det_* defaults of ib_train_opts, and ib_train for task "detect".
void ib_api_detect_opts_default(ib_train_opts *o);
ib_status ib_api_train_detect(const ib_train_opts *o, const ib_train_cfg *c, ib_train_report *r);
// The SSDLite settings of o's det_* fields, checked.
struct ib_ssd_cfg;
ib_status ib_api_ssd_cfg(const ib_train_opts *o, int classes, struct ib_ssd_cfg *ssd);
// Segmentation (api/api.c): the head settings of o's seg_* fields, checked (ib_train and supernets alike).
ib_status ib_api_seg_head_cfg(const ib_train_opts *o, ib_seg_head_cfg *h);
// The same from the fields themselves (the latency verbs' head): kind NULL deeplab, 0s the defaults.
ib_status ib_api_seg_head_fields(const char *kind, int high_stride, int low_stride, int width, int repeats,
                                 ib_seg_head_cfg *h);

#endif
