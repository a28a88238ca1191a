// ibnas pack: converts any dataset source (image folders, Tiny ImageNet, COCO, YOLO, segmentation pairs,
// another pack, synthetic scenes) into an HDF5 pack of SIZE x SIZE images, streaming image by image.
#include "cli/cli.h"
#include "data/data.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>


static const char *usage_text =
    "usage: ibnas pack [--format F] SRC --size S --out PACK.h5 [flags]\n\n"
    "Converts a dataset into an HDF5 pack (docs/FORMATS.md) of S x S RGB images with its labels, boxes\n"
    "and masks, reading and writing one image at a time. Classification sources (imagefolder,\n"
    "tinyimagenet) are resized so the shorter side is S, then centre-cropped; detection and segmentation\n"
    "sources (coco, yolo, segpairs) are resized to S x S without keeping the aspect, boxes scaled with the\n"
    "image, masks resized nearest. Images are resampled bilinearly, with the filter widened when shrinking\n"
    "(as PIL's BILINEAR), so large images do not alias. For --format synth no SRC is needed: --n scenes of\n"
    "--seed are rendered at S.\n\n"
    "SRC: imagefolder ROOT/<class>/*.jpg | tinyimagenet ROOT | coco ROOT or instances_*.json | yolo ROOT |\n"
    "segpairs ROOT | pack FILE.h5 | synth. Without --format the format is guessed from SRC.\n";

// Progress on stderr: redrawn in place on a terminal, a line every 10% otherwise.
static void progress(const char *verb, int64_t done, int64_t total, double t0, int *last_decile, double *last_draw,
                     int final) {
    double now = ib_time_s(), dt = now - t0;
    double rate = dt > 0 ? (double)done / dt : 0.0;
    double eta = rate > 0 ? (double)(total - done) / rate : 0.0;
    int tty = isatty(2);
    int decile = total > 0 ? (int)(10 * done / total) : 10;
    if (tty) {
        if (!final && now - *last_draw < 0.1) return;
        *last_draw = now;
        char bar[31];
        int fill = total > 0 ? (int)(30 * done / total) : 30;
        for (int k = 0; k < 30; k++) bar[k] = k < fill ? '=' : ' ';
        bar[30] = 0;
        fprintf(stderr, "\r%s [%s] %lld/%lld  %.0f img/s  ETA %d:%02d ", verb, bar, (long long)done, (long long)total,
                rate, (int)eta / 60, (int)eta % 60);
        if (final) fputc('\n', stderr);
    } else if (decile > *last_decile) {
        *last_decile = decile;
        fprintf(stderr, "%s: %lld/%lld  %.0f img/s  ETA %d:%02d\n", verb, (long long)done, (long long)total, rate,
                (int)eta / 60, (int)eta % 60);
    }
}

static int parse_format(const char *s, ib_ds_format *f) {
    static const struct { const char *name; ib_ds_format f; } tab[] = {
        {"auto", IB_DS_AUTO}, {"imagefolder", IB_DS_IMAGEFOLDER}, {"tinyimagenet", IB_DS_TINYIMAGENET},
        {"coco", IB_DS_COCO}, {"yolo", IB_DS_YOLO}, {"segpairs", IB_DS_SEGPAIRS}, {"pack", IB_DS_PACK},
        {"synth", IB_DS_SYNTH},
    };
    for (size_t k = 0; k < sizeof tab / sizeof tab[0]; k++)
        if (!strcmp(s, tab[k].name)) {
            *f = tab[k].f;
            return 1;
        }
    return 0;
}

#define PACK_BATCH 32

typedef struct {
    ib_sample out;
    ib_status st;
    int dropped;
    char msg[512];
} pack_slot;

int cmd_pack(int argc, char **argv) {
    const char *format = "auto", *split = NULL, *out = NULL, *src = NULL, *fit = "auto";
    int size = 0, skip_bad = 0, json = 0, quiet = 0, n = 1000, ignore_index = 0, threads = 0;
    uint64_t seed = 0;
    const cli_flag flags[] = {
        {"--format", F_STR, &format, "imagefolder|tinyimagenet|coco|yolo|segpairs|pack|synth (default: guess)"},
        {"--split", F_STR, &split, "split of a dataset root: train, val, test, ... (default train)"},
        {"--size", F_INT, &size, "output side S: images are S x S (required)"},
        {"--out", F_STR, &out, "the pack to write, PACK.h5 (required; written to PACK.h5.tmp, then renamed)"},
        {"--fit", F_STR, &fit, "crop (shorter side to S, centre crop) | stretch (to S x S) | auto (by format)"},
        {"--skip-bad", F_BOOL, &skip_bad, "skip unreadable images (counted) instead of stopping at the first"},
        {"--ignore-index", F_INT, &ignore_index, "segmentation: mask value to ignore (default: the source's, 255)"},
        {"--n", F_INT, &n, "synth: number of scenes (default 1000)"},
        {"--seed", F_U64, &seed, "synth: seed (default 0)"},
        {"--threads", F_INT, &threads, "threads decoding and resizing (default: all cores)"},
        {"--json", F_BOOL, &json, "print one JSON object with the counts on stdout"},
        {"--quiet", F_BOOL, &quiet, "no progress output"},
        {NULL, 0, NULL, NULL},
    };
    // SRC is the one positional argument: take it out before the flag parser sees the rest.
    int nrest, npos;
    char **pos, **rest = cli_split_args("pack", argc, argv, flags, &nrest, &pos, &npos);
    if (!rest) return 1;
    if (npos > 1) fprintf(stderr, "ibnas pack: more than one source given ('%s' and '%s')\n", pos[0], pos[1]);
    if (npos) src = pos[0];
    int r = npos > 1 ? 2 : cli_parse("pack", nrest, rest, flags, usage_text);
    free(rest);
    if (r) return r < 0 ? 0 : r;

    ib_ds_format fmt;
    if (!parse_format(format, &fmt)) {
        fprintf(stderr, "ibnas pack: unknown --format '%s' (ibnas pack --help lists them)\n", format);
        return 2;
    }
    if (!out) {
        fprintf(stderr, "ibnas pack: --out PACK.h5 is required (ibnas pack --help)\n");
        return 2;
    }
    if (size < 8 || size > 4096) {
        fprintf(stderr, "ibnas pack: --size S is required, 8 <= S <= 4096 (got %d)\n", size);
        return 2;
    }
    if (strcmp(fit, "auto") && strcmp(fit, "crop") && strcmp(fit, "stretch")) {
        fprintf(stderr, "ibnas pack: --fit wants crop, stretch or auto, got '%s'\n", fit);
        return 2;
    }
    if (fmt == IB_DS_SYNTH && n <= 0) {
        fprintf(stderr, "ibnas pack: --n must be positive (got %d)\n", n);
        return 2;
    }
    if (!src && fmt != IB_DS_SYNTH) {
        fprintf(stderr, "ibnas pack: which dataset? give SRC (ibnas pack --help)\n");
        return 2;
    }
    if (threads > 0) ib_set_threads(threads);

    ib_ds_opts o;
    memset(&o, 0, sizeof o);
    o.format = fmt;
    o.split = split;
    o.skip_bad = skip_bad;
    o.ignore_index = ignore_index;
    o.synth_n = n;
    o.synth_size = size;
    o.synth_seed = seed;
    ib_dataset *ds;
    ib_status st = ib_dataset_open(&ds, fmt == IB_DS_SYNTH ? (src ? src : "synth") : src, &o);
    if (st) return cli_report("pack", st);

    int crop;
    if (!strcmp(fit, "crop")) crop = 1;
    else if (!strcmp(fit, "stretch")) crop = 0;
    else if (fmt == IB_DS_IMAGEFOLDER || fmt == IB_DS_TINYIMAGENET) crop = 1;
    else if (fmt == IB_DS_COCO || fmt == IB_DS_YOLO || fmt == IB_DS_SEGPAIRS) crop = 0;
    else crop = !ds->has_boxes && !ds->has_masks;

    int nc = ib_dataset_classes(ds);
    const char **names = calloc(nc > 0 ? (size_t)nc : 1, sizeof *names);
    if (!names) {
        ib_dataset_close(ds);
        return cli_report("pack", ib_fail(IB_ERR_NOMEM, "out of memory"));
    }
    for (int c = 0; c < nc; c++) names[c] = ib_dataset_class_name(ds, c);
    ib_pack_writer *pw;
    st = ib_pack_writer_open(&pw, out, size, size, ds->has_boxes, ds->has_masks, nc, names, ib_dataset_ignore_index(ds));
    free(names);
    if (st) {
        ib_dataset_close(ds);
        return cli_report("pack", st);
    }

    int64_t total = ib_dataset_size(ds), written = 0, boxes = 0, dropped = 0;
    pack_slot *slots = calloc(PACK_BATCH, sizeof *slots);
    if (!slots) st = ib_fail(IB_ERR_NOMEM, "out of memory");
    double t0 = ib_time_s(), last_draw = 0;
    int last_decile = 0;
    for (int64_t b0 = 0; st == IB_OK && b0 < total; b0 += PACK_BATCH) {
        int nb = total - b0 < PACK_BATCH ? (int)(total - b0) : PACK_BATCH;
        // Readers are thread-safe (HDF5 packs serialise inside); decoding and resizing run in parallel,
        // the writer takes the results in index order, so the pack does not depend on the thread count.
#pragma omp parallel for schedule(dynamic, 1)
        for (int k = 0; k < nb; k++) {
            pack_slot *sl = &slots[k];
            ib_sample in;
            sl->dropped = 0;
            sl->msg[0] = 0;
            sl->st = ib_dataset_get(ds, b0 + k, &in);
            if (sl->st == IB_OK) {
                sl->st = ib_sample_fit(&in, size, crop, &sl->out, &sl->dropped);
                ib_sample_free(&in);
            }
            if (sl->st) snprintf(sl->msg, sizeof sl->msg, "%s", ib_errmsg());
        }
        for (int k = 0; k < nb; k++) {
            pack_slot *sl = &slots[k];
            // With --skip-bad a bad sample's place is served by the next readable one: drop it here,
            // that one is written at its own index.
            int bad = ds->bad && __atomic_load_n(&ds->bad[b0 + k], __ATOMIC_RELAXED);
            if (st == IB_OK && sl->st) st = ib_fail(sl->st, "%s", sl->msg);
            else if (st == IB_OK && !bad) {
                st = ib_pack_writer_add(pw, &sl->out);
                if (st == IB_OK) {
                    written++;
                    boxes += ds->has_boxes ? sl->out.n_boxes : 0;
                    dropped += sl->dropped;
                }
            }
            ib_sample_free(&sl->out);
        }
        if (!quiet && st == IB_OK) progress("pack", b0 + nb, total, t0, &last_decile, &last_draw, 0);
    }
    free(slots);
    if (st == IB_OK) st = ib_pack_writer_close(pw);
    else ib_pack_writer_abort(pw);
    double secs = ib_time_s() - t0;
    if (st) {
        if (!quiet && isatty(2)) fputc('\n', stderr);
        ib_dataset_close(ds);
        return cli_report("pack", st);
    }
    if (!quiet) progress("pack", total, total, t0, &last_decile, &last_draw, 1);
    int64_t skipped = ib_dataset_skipped(ds);
    if (json) {
        json_t *j = json_pack("{s:s, s:s, s:I, s:i, s:I, s:I, s:I, s:i, s:s, s:b, s:b, s:b, s:f}", "out", out, "source",
                              ib_dataset_path(ds), "images", (json_int_t)written, "classes", nc, "boxes",
                              (json_int_t)boxes, "boxes_dropped", (json_int_t)dropped, "skipped", (json_int_t)skipped,
                              "size", size, "fit", crop ? "crop" : "stretch", "has_labels", ds->has_labels, "has_boxes",
                              ds->has_boxes, "has_masks", ds->has_masks, "seconds", secs);
        char *txt = j ? json_dumps(j, JSON_COMPACT) : NULL;
        if (txt) printf("%s\n", txt);
        free(txt);
        json_decref(j);
    } else {
        printf("wrote %s: %lld images of %dx%d, %d classes, %lld boxes (%lld dropped by the crop), %lld skipped, "
               "%.1f s (%.0f img/s)\n",
               out, (long long)written, size, size, nc, (long long)boxes, (long long)dropped, (long long)skipped, secs,
               secs > 0 ? (double)written / secs : 0.0);
    }
    ib_dataset_close(ds);
    return 0;
}
