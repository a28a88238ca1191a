// ibnas eval: top-1 / top-5 of a checkpoint on a dataset.
#include "cli/cli.h"
#include "tasks/tasks.h"

#include <string.h>

static const char *usage_text =
    "usage: ibnas eval --task classify --model CKPT.h5 --data PACK.h5|DIR [flags]\n\n"
    "Evaluates in eval mode (BN running statistics). Images are resized (centre crop keeping the aspect)\n"
    "to --res, normalised with ImageNet's mean and std.\n";

int cmd_eval(int argc, char **argv) {
    const char *task = "classify", *model = NULL, *data = NULL, *split = "val";
    int res = 0, batch = 100, threads = 0, workers = 2, per_class = 0, json = 0, quiet = 0;
    const cli_flag flags[] = {
        {"--task", F_STR, &task, "classify (default)"},
        {"--model", F_STR, &model, "checkpoint (required)"},
        {"--data", F_STR, &data, "dataset: a pack (.h5) or any folder layout ibnas reads (required)"},
        {"--split", F_STR, &split, "split of a dataset root (default val)"},
        {"--res", F_INT, &res, "input resolution (default: the arch's input size)"},
        {"--batch", F_INT, &batch, "batch size (default 100)"},
        {"--threads", F_INT, &threads, "threads (default: all cores)"},
        {"--workers", F_INT, &workers, "data loading threads (default 2)"},
        {"--per-class", F_BOOL, &per_class, "also report each class's top-1"},
        {"--json", F_BOOL, &json, "print one JSON object on stdout"},
        {"--quiet", F_BOOL, &quiet, "no progress output"},
        {NULL, 0, NULL, NULL},
    };
    int r = cli_parse("eval", argc, argv, flags, usage_text);
    if (r) return r < 0 ? 0 : r;
    if (strcmp(task, "classify")) {
        fprintf(stderr, "ibnas eval: --task %s is not built yet (classify is)\n", task);
        return 2;
    }
    if (!model || !data) {
        fprintf(stderr, "ibnas eval: --model and --data are required (ibnas eval --help)\n");
        return 2;
    }
    ib_set_threads(threads);
    ib_net net;
    ib_status s = ib_ckpt_load(&net, model);
    if (s) return cli_report("eval", s);
    ib_dataset *ds;
    ib_ds_opts o;
    memset(&o, 0, sizeof o);
    o.split = split;
    o.ignore_index = 255;
    if ((s = ib_dataset_open(&ds, data, &o))) {
        ib_net_free(&net);
        return cli_report("eval", s);
    }
    ib_eval_cfg ec;
    ib_eval_cfg_default(&ec);
    ec.res = res > 0 ? res : net.arch.input;
    ec.batch = batch;
    ec.workers = workers;
    ec.per_class = per_class;
    ec.progress = !quiet && !json;
    ib_cls_metrics m;
    s = ib_eval_classify(&net, ds, &ec, &m);
    if (!s) {
        if (json) {
            printf("{\"task\": \"classify\", \"images\": %lld, \"top1\": %.6f, \"top5\": %.6f, \"loss\": %.6f", (long long)m.images,
                   m.top1, m.top5, m.loss);
            if (per_class) {
                printf(", \"per_class\": {");
                for (int c = 0; c < m.n_classes; c++)
                    printf("%s\"%s\": %.6f", c ? ", " : "", c < ib_dataset_classes(ds) ? ib_dataset_class_name(ds, c) : "?",
                           m.per_class_total[c] ? (double)m.per_class_correct[c] / (double)m.per_class_total[c] : 0.0);
                printf("}");
            }
            printf("}\n");
        } else {
            printf("images %lld  top1 %.4f  top5 %.4f  loss %.4f\n", (long long)m.images, m.top1, m.top5, m.loss);
            if (per_class)
                for (int c = 0; c < m.n_classes; c++)
                    if (m.per_class_total[c])
                        printf("  %-24s %.4f (%lld images)\n", c < ib_dataset_classes(ds) ? ib_dataset_class_name(ds, c) : "?",
                               (double)m.per_class_correct[c] / (double)m.per_class_total[c], (long long)m.per_class_total[c]);
        }
    }
    ib_cls_metrics_free(&m);
    ib_dataset_close(ds);
    ib_net_free(&net);
    return s ? cli_report("eval", s) : 0;
}
