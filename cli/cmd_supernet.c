// ibnas supernet train | eval: the weight-sharing supernet of a search space (docs/SEARCH.md), over the
// public API (ib_supernet_train, ib_supernet_open, ib_supernet_evaluate).
#include "cli/cli.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

static const char *train_usage =
    "usage: ibnas supernet train --space S.space.json --data D [--val V] --out SUPERNET.h5 [flags]\n\n"
    "Trains one weight-sharing supernet over every arch of the space. Each step runs the sampled paths\n"
    "only: with --sampling fair (default; FairNAS's strict fairness) as many paths as a layer has op\n"
    "types, each op of each layer in exactly one of them, all learning from the labels, each weight\n"
    "stepped on the sum (or with --path-grads mean, the mean) of the gradients of the paths that ran it; with --sampling\n"
    "sandwich the largest, the smallest and --paths random ones, the smaller distilled from the largest's\n"
    "soft targets; with --sampling uniform one random path. Fair is the default because it is the one\n"
    "whose inherited scores rank subnets as training them alone does on the tiny space (docs/SEARCH.md);\n"
    "on the 22-layer mobiledets space fair and uniform stay at chance and sandwich with --clip 2 learns\n"
    "(docs/SEARCH.md, \"Why the mobiledets supernet does not learn\"). --holdout F keeps a\n"
    "seeded fraction of the training data out of training, for scoring subnets (ibnas search). Progress,\n"
    "the CSV log (with the largest and smallest paths' validation top-1 after BN recalibration), a\n"
    "checkpoint every epoch, Ctrl-C and --resume work as in ibnas train. --task detect trains the supernet as\n"
    "an SSDLite backbone (MobileDets): one head on every path's stride-16 block output and stride-32 feature,\n"
    "the multibox loss (--det-* as in ibnas train --task detect), the log's\n"
    "columns the largest and smallest paths' AP50 after BN recalibration. --task segment trains it as a\n"
    "segmentation backbone (Autoseg-EdgeTPU): one head (--head deeplab|bifpn and the head flags of ibnas train\n"
    "--task segment) on every path's features at --res x --res, pixel-wise cross-entropy with the data's ignore\n"
    "index, the log's columns the largest and smallest paths' mIoU after BN recalibration (docs/SEGMENTATION.md).\n"
    "With a task, sandwich trains every path from the labels (no in-place distillation; --kd unused).\n"
    "--init SUPERNET.h5 starts from another supernet of the same space (tensors matched by name and shape):\n"
    "a classification supernet's backbone for a detection or segmentation one.\n";

static int supernet_train(int argc, char **argv) {
    ib_supernet_train_opts o;
    ib_supernet_train_opts_default(&o);
    cli_train_extra x;
    float holdout = (float)o.holdout;
    cli_flag flags[CLI_TRAIN_FLAGS + CLI_DETECT_FLAGS + CLI_SEGMENT_FLAGS + 11];
    int n = 0;
    flags[n++] = (cli_flag){"--space", F_STR, &o.space, "the search space (*.space.json; required unless resuming)"};
    flags[n++] = (cli_flag){"--task", F_STR, &o.train.task, "classify (default), detect (an SSDLite head shared by every path, on data with boxes) or segment (a segmentation head shared by every path, on data with masks)"};
    flags[n++] = (cli_flag){"--sampling", F_STR, &o.sampling, "fair (default), sandwich or uniform"};
    flags[n++] = (cli_flag){"--path-grads", F_STR, &o.path_grads, "fair: sum (default; FairNAS) or mean (each weight's mean gradient over the paths that ran it; docs/SEARCH.md); on resume, the file's"};
    flags[n++] = (cli_flag){"--paths", F_INT, &o.paths, "sandwich: random paths per step besides the largest and smallest (2)"};
    flags[n++] = (cli_flag){"--op-ramp", F_FLOAT, &o.op_ramp, "uniform, sandwich: epochs over which a random path's chance of switching op type from one layer to the next rises from 0 to uniform (0: off, every layer drawn alone; docs/SEARCH.md)"};
    flags[n++] = (cli_flag){"--kd", F_FLOAT, &o.kd, "weight of the in-place distillation loss (1; classification's sandwich only)"};
    flags[n++] = (cli_flag){"--holdout", F_FLOAT, &holdout, "fraction of the training data left out for scoring (0.1)"};
    flags[n++] = (cli_flag){"--calib-batches", F_INT, &o.calib_batches, "BN recalibration batches of the per-epoch evaluation (10)"};
    flags[n++] = (cli_flag){"--init", F_STR, &o.train.init, "start from this supernet's weights (same space; tensors matched by name and shape, e.g. a classification supernet's backbone for --task detect)"};
    n += cli_train_flags(flags + n, &o.train, &x);
    n += cli_detect_flags(flags + n, &o.train);
    n += cli_segment_flags(flags + n, &o.train);
    flags[n] = (cli_flag){NULL, 0, NULL, NULL};
    int r = cli_parse("supernet train", argc, argv, flags, train_usage);
    if (r) return r < 0 ? 0 : r;
    if (!o.train.data || !o.train.out || (!o.space && !o.train.resume)) {
        fprintf(stderr, "ibnas supernet train: --space, --data and --out are required (ibnas supernet train --help)\n");
        return 2;
    }
    cli_train_apply(&o.train, &x);
    o.holdout = holdout;
    ib_supernet_train_report rep;
    ib_status s = ib_supernet_train(&o, &rep);
    if (s == IB_ERR_INTERRUPTED) {
        fprintf(stderr, "ibnas supernet train: %s (continue with --resume %s)\n", ib_errmsg(), o.train.out);
        return 130;
    }
    if (s) return cli_report("supernet train", s);
    if (x.json) {   // the keys name the task's metrics, as the CSV log's header does
        const char *task = o.train.task ? o.train.task : "classify";
        const char *m0 = !strcmp(task, "detect") ? "AP50" : !strcmp(task, "segment") ? "mIoU" : "top1";
        const char *m1 = !strcmp(task, "detect") ? "AP" : !strcmp(task, "segment") ? "pixel_acc" : "top5";
        printf("{\"task\": \"%s\", \"epochs\": %d, \"steps\": %ld, \"train_loss\": %.6f, \"largest_%s\": %.6f, "
               "\"largest_%s\": %.6f, \"smallest_%s\": %.6f, \"wall_s\": %.1f, \"img_per_s\": %.1f, \"supernet\": \"%s\"}\n",
               task, rep.train.epochs_done, rep.train.steps, rep.train.last_loss, m0, rep.train.val_top1, m1,
               rep.train.val_top5, m0, rep.smallest_top1, rep.train.wall_s, rep.train.img_per_s, o.train.out);
    }
    else if (!x.quiet)
        fprintf(stderr, "supernet: done, %d epochs, %ld steps in %.1fs; %s\n", rep.train.epochs_done, rep.train.steps,
                rep.train.wall_s, o.train.out);
    return 0;
}

static const char *eval_usage =
    "usage: ibnas supernet eval --supernet SUPERNET.h5 --arch A.arch.json --data V [--calib D] [--json]\n\n"
    "Recalibrates the arch's BN statistics on training images (--calib, default: the supernet's training\n"
    "data less its held-out part; never the evaluation data), then evaluates the arch with the supernet's\n"
    "weights. The keys of --json are those of ibnas eval; ibnas extract with the same calibration flags\n"
    "writes a checkpoint that ibnas eval scores the same. A supernet trained with --task detect or segment\n"
    "scores the arch's path with its head instead (calibration data with boxes or masks; the head's BN is\n"
    "recalibrated too, on the same batches with the path's features): AP50, AP, AP75, or\n"
    "mIoU, pixel accuracy and the mean pixel cross-entropy (--json: task, ap50/ap/ap75 or miou/pixel_acc/loss).\n";

// Flags of `supernet eval` and `extract` alike.
static int calib_flags(cli_flag *f, ib_supernet_eval_opts *o) {
    int n = 0;
    f[n++] = (cli_flag){"--calib", F_STR, &o->calib, "BN recalibration data (default: the supernet's training data less the held-out part)"};
    f[n++] = (cli_flag){"--calib-batches", F_INT, &o->calib_batches, "recalibration batches (20)"};
    f[n++] = (cli_flag){"--calib-batch", F_INT, &o->calib_batch, "recalibration batch size (64)"};
    f[n++] = (cli_flag){"--calib-seed", F_U64, &o->calib_seed, "which calibration images (0)"};
    f[n++] = (cli_flag){"--res", F_INT, &o->res, "resolution (default: the space's input size)"};
    f[n++] = (cli_flag){"--workers", F_INT, &o->workers, "data loading threads (2)"};
    return n;
}

// A detection or segmentation supernet's path scored with its head: the three metrics, named by the task.
static ib_status supernet_eval_task(ib_supernet *sn, const char *arch, const char *data, ib_dataset *ds,
                                    const ib_supernet_eval_opts *o, int json) {
    ib_supernet_task_report tr;
    ib_status s = ib_supernet_evaluate_task(sn, arch, ds, o, &tr);
    if (s) return s;
    if (json) {
        char key[3][16];
        for (int k = 0; k < 3; k++) {
            for (int i = 0; i < 16; i++) key[k][i] = (char)tolower((unsigned char)tr.names[k][i]);
        }
        printf("{\"task\": \"%s\", \"%s\": %.6f, \"%s\": %.6f, \"%s\": %.6f", tr.task, key[0], tr.metrics[0], key[1],
               tr.metrics[1], key[2], tr.metrics[2]);
        if (strcmp(key[2], "loss")) printf(", \"loss\": %.6f", tr.loss);   // segmentation's third metric is its loss
        printf("}\n");
    } else {
        printf("%s on %s (%s): %s %.4f, %s %.4f, %s %.4f", arch, data, tr.task, tr.names[0], tr.metrics[0], tr.names[1],
               tr.metrics[1], tr.names[2], tr.metrics[2]);
        if (strcmp(tr.names[2], "loss")) printf(", loss %.4f", tr.loss);
        printf("\n");
    }
    return IB_OK;
}

static int supernet_eval(int argc, char **argv) {
    ib_supernet_eval_opts o;
    ib_supernet_eval_opts_default(&o);
    const char *path = NULL, *arch = NULL, *data = NULL;
    int json = 0, threads = 0;
    cli_flag flags[16];
    int n = 0;
    flags[n++] = (cli_flag){"--supernet", F_STR, &path, "the supernet (required)"};
    flags[n++] = (cli_flag){"--arch", F_STR, &arch, "an arch of the supernet's space (required)"};
    flags[n++] = (cli_flag){"--data", F_STR, &data, "evaluation data (required; split 'val' of a root)"};
    n += calib_flags(flags + n, &o);
    flags[n++] = (cli_flag){"--batch", F_INT, &o.batch, "evaluation batch (100)"};
    flags[n++] = (cli_flag){"--threads", F_INT, &threads, "threads (default: all cores)"};
    flags[n++] = (cli_flag){"--json", F_BOOL, &json, "print the result as one JSON object on stdout"};
    flags[n] = (cli_flag){NULL, 0, NULL, NULL};
    int r = cli_parse("supernet eval", argc, argv, flags, eval_usage);
    if (r) return r < 0 ? 0 : r;
    if (!path || !arch || !data) {
        fprintf(stderr, "ibnas supernet eval: --supernet, --arch and --data are required\n");
        return 2;
    }
    ib_set_threads(threads);
    ib_supernet *sn = NULL;
    ib_dataset *ds = NULL;
    ib_eval_report rep;
    memset(&rep, 0, sizeof rep);
    ib_status s = ib_supernet_open(&sn, path);
    if (!s) s = ib_dataset_load(&ds, data, "val");
    if (!s && strcmp(ib_supernet_task(sn), "classify")) {   // the task's head scores the path
        s = supernet_eval_task(sn, arch, data, ds, &o, json);
        ib_dataset_close(ds);
        ib_supernet_close(sn);
        return s ? cli_report("supernet eval", s) : 0;
    }
    if (!s) s = ib_supernet_evaluate(sn, arch, ds, &o, &rep);
    ib_dataset_close(ds);
    ib_supernet_close(sn);
    if (s) return cli_report("supernet eval", s);
    if (json)
        printf("{\"images\": %lld, \"top1\": %.6f, \"top5\": %.6f, \"loss\": %.6f, \"classes\": %d}\n",
               (long long)rep.images, rep.top1, rep.top5, rep.loss, rep.classes);
    else
        printf("%s on %s: top-1 %.4f, top-5 %.4f, loss %.4f (%lld images)\n", arch, data, rep.top1, rep.top5, rep.loss,
               (long long)rep.images);
    ib_eval_report_free(&rep);
    return 0;
}

int cmd_supernet(int argc, char **argv) {
    if (argc >= 2 && !strcmp(argv[1], "train")) return supernet_train(argc - 1, argv + 1);
    if (argc >= 2 && !strcmp(argv[1], "eval")) return supernet_eval(argc - 1, argv + 1);
    FILE *out = argc >= 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) ? stdout : stderr;
    fprintf(out, "usage: ibnas supernet train|eval [flags]   (ibnas supernet train --help, ibnas supernet eval --help)\n");
    return out == stdout ? 0 : 2;
}

static const char *extract_usage =
    "usage: ibnas extract --supernet SUPERNET.h5 --arch A.arch.json [--calib D] [--calib-batches N] [--classifier]\n"
    "                     --out SUB.h5\n\n"
    "Writes the arch as a standalone checkpoint with the supernet's weights and BN statistics recalibrated\n"
    "exactly as ibnas supernet eval does with the same flags, so ibnas eval --model SUB.h5 prints the numbers\n"
    "supernet eval printed. Fine-tune it with ibnas train --init SUB.h5. A detection or segmentation supernet\n"
    "gives a checkpoint of its task (path and shared head; eval --task detect|segment, train --task ... --init);\n"
    "--classifier writes its path as a classifier instead (the backbone; layers its task never ran are as\n"
    "initialised).\n";

int cmd_extract(int argc, char **argv) {
    ib_supernet_eval_opts o;
    ib_supernet_eval_opts_default(&o);
    const char *path = NULL, *arch = NULL, *out = NULL;
    int threads = 0, classifier = 0;
    cli_flag flags[16];
    int n = 0;
    flags[n++] = (cli_flag){"--supernet", F_STR, &path, "the supernet (required)"};
    flags[n++] = (cli_flag){"--classifier", F_BOOL, &classifier,
                            "a detection or segmentation supernet's path as a classifier (its head left out)"};
    flags[n++] = (cli_flag){"--arch", F_STR, &arch, "an arch of the supernet's space (required)"};
    flags[n++] = (cli_flag){"--out", F_STR, &out, "the checkpoint to write (required)"};
    n += calib_flags(flags + n, &o);
    flags[n++] = (cli_flag){"--threads", F_INT, &threads, "threads (default: all cores)"};
    flags[n] = (cli_flag){NULL, 0, NULL, NULL};
    int r = cli_parse("extract", argc, argv, flags, extract_usage);
    if (r) return r < 0 ? 0 : r;
    if (!path || !arch || !out) {
        fprintf(stderr, "ibnas extract: --supernet, --arch and --out are required\n");
        return 2;
    }
    ib_set_threads(threads);
    ib_supernet *sn = NULL;
    ib_model *m = NULL;
    ib_status s = ib_supernet_open(&sn, path);
    const char *task = s ? "classify" : ib_supernet_task(sn);
    if (!s && strcmp(task, "classify") && !classifier) {   // a detector or segmenter with the supernet's head
        if (!(s = ib_supernet_extract_task(sn, arch, &o, out)))
            fprintf(stderr, "extract: a %s checkpoint (path and shared head), written to %s\n",
                    strcmp(task, "detect") ? "segmentation" : "detection", out);
    } else {
        if (!s) s = ib_supernet_extract_model(sn, arch, &o, &m);
        if (!s) s = ib_model_save(m, out);
        if (!s)
            fprintf(stderr, "extract: %s, %lld parameters, written to %s\n", ib_model_name(m),
                    (long long)ib_model_param_count(m), out);
    }
    ib_model_free(m);
    ib_supernet_close(sn);
    return s ? cli_report("extract", s) : 0;
}
