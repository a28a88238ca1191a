// Train a small classifier on synthetic scenes with the library's C API, then evaluate it: the whole
// loop by hand (dataset, loader, network, optimizer, schedule, backward), as a model for your own
// programs. Usage: train_classifier [EPOCHS [THREADS]]   (no data to download: scenes are generated)
#include "tasks/tasks.h"

#include <stdio.h>
#include <stdlib.h>

static ib_dataset *open_synth(int n, uint64_t seed) {
    ib_ds_opts o = {.format = IB_DS_SYNTH, .synth_n = n, .synth_size = 32, .synth_seed = seed};
    ib_dataset *ds;
    if (ib_dataset_open(&ds, "synth", &o)) {
        fprintf(stderr, "synth: %s\n", ib_errmsg());
        exit(1);
    }
    return ds;
}

int main(int argc, char **argv) {
    int epochs = argc > 1 ? atoi(argv[1]) : 3;
    ib_set_threads(argc > 2 ? atoi(argv[2]) : 0);

    // Data: 3000 training scenes and 600 held-out ones (another seed), 32x32.
    ib_dataset *train = open_synth(3000, 1), *val = open_synth(600, 2);
    ib_loader_opts lo;
    ib_loader_opts_default(&lo, 32, 32);
    lo.batch_size = 50;
    lo.drop_last = 1;
    lo.aug.crop = IB_CROP_PAD;   // random crop with 2-pixel padding, and flips
    lo.aug.pad = 2;
    lo.aug.hflip_p = 0.5f;
    ib_loader *loader;
    if (ib_loader_open(&loader, train, &lo)) return fprintf(stderr, "%s\n", ib_errmsg()), 1;

    // Network: a small arch written inline (an *.arch.json file works the same through ib_arch_load).
    const char *json =
        "{\"format\": \"ibnas-arch\", \"version\": 1, \"name\": \"tiny\", \"classes\": 6, \"input\": 32,"
        " \"stem\": {\"out\": 16, \"kernel\": 3, \"stride\": 1},"
        " \"blocks\": [{\"op\": \"fused\", \"kernel\": 3, \"expand\": 2, \"out\": 24, \"stride\": 2},"
        "              {\"op\": \"ibn\", \"kernel\": 5, \"expand\": 4, \"out\": 32, \"stride\": 2},"
        "              {\"op\": \"ibn\", \"kernel\": 3, \"expand\": 4, \"out\": 32, \"stride\": 1},"
        "              {\"op\": \"tucker\", \"kernel\": 3, \"r_in\": 0.25, \"r_out\": 0.75, \"out\": 64, \"stride\": 2}],"
        " \"head\": {\"out\": 128, \"dropout\": 0.1}}";
    ib_arch arch;
    ib_net net;
    if (ib_arch_parse(&arch, json, "inline") || ib_net_build(&net, &arch)) return fprintf(stderr, "%s\n", ib_errmsg()), 1;
    ib_arch_free(&arch);
    ib_net_init_weights(&net, 0);
    printf("network: %lld parameters\n", (long long)ib_net_param_count(&net));

    // Optimizer and schedule: SGD with Nesterov momentum, warm-up then cosine.
    ib_optim_cfg oc = ib_optim_cfg_default(IB_OPTIM_SGD, 0);
    oc.momentum = 0.9f, oc.nesterov = 1, oc.weight_decay = 4e-5f;
    ib_optim *opt = ib_optim_new(&oc, &net.ps);
    long spe = (long)ib_loader_batches(loader);
    ib_schedule sch = {.kind = IB_LR_COSINE, .base_lr = 0.1, .warmup_steps = spe / 2, .total_steps = epochs * spe};

    ib_ctx *ctx = ib_ctx_new();   // the per-step arena and tape, reused every step
    long step = 0;
    for (int e = 0; e < epochs; e++) {
        ib_loader_start_epoch(loader, e);
        const ib_batch *b;
        double loss_sum = 0;
        int n = 0;
        while (ib_loader_next(loader, &b) == IB_OK && b) {
            ib_ctx_reset(ctx);
            ctx->training = 1;
            ib_tensor x;
            ib_batch_tensor(b, &x);
            ib_tensor *logits = ib_net_forward(ctx, &net, &x);
            ib_tensor *loss = ib_cross_entropy(ctx, logits, b->labels, 0.1f, -1);
            ib_params_zero_grad(&net.ps);
            ib_backward(ctx, loss, NULL);
            ib_optim_step(opt, ib_lr_at(&sch, step++));
            loss_sum += loss->data[0];
            n++;
        }
        // Evaluate on the held-out scenes (eval mode: BN running statistics, nothing recorded).
        ib_eval_cfg ec;
        ib_eval_cfg_default(&ec);
        ec.res = 32;
        ib_cls_metrics m;
        if (ib_eval_classify(&net, val, &ec, &m)) return fprintf(stderr, "%s\n", ib_errmsg()), 1;
        printf("epoch %d: train loss %.4f, held-out top-1 %.3f (chance %.3f)\n", e + 1, loss_sum / n, m.top1, 1.0 / 6);
        ib_cls_metrics_free(&m);
    }
    if (ib_ckpt_save(&net, "/tmp/train_classifier.h5", NULL, NULL)) return fprintf(stderr, "%s\n", ib_errmsg()), 1;
    printf("saved /tmp/train_classifier.h5 (ibnas eval --model /tmp/train_classifier.h5 --data ...)\n");
    ib_ctx_free(ctx);
    ib_optim_free(opt);
    ib_net_free(&net);
    ib_loader_close(loader);
    ib_dataset_close(train);
    ib_dataset_close(val);
    return 0;
}
