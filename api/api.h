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
};

// The public options as the internal training config (string choices checked, IB_ERR_ARG naming them).
ib_status ib_api_train_cfg(const ib_train_opts *o, ib_train_cfg *cfg);
void ib_api_train_report(const ib_train_result *res, ib_train_report *r);

#endif
