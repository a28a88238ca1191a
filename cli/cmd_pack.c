// ibnas pack: converts any dataset source (image folders, Tiny ImageNet, COCO, YOLO, segmentation pairs,
// another pack, synthetic scenes) into an HDF5 pack of SIZE x SIZE images, streaming image by image.
#include "cli/cli.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>


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

    if (!out) {
        fprintf(stderr, "ibnas pack: --out PACK.h5 is required (ibnas pack --help)\n");
        return 2;
    }
    if (size < 8 || size > 4096) {
        fprintf(stderr, "ibnas pack: --size S is required, 8 <= S <= 4096 (got %d)\n", size);
        return 2;
    }
    int synth = !strcmp(format, "synth");
    if (!src && !synth) {
        fprintf(stderr, "ibnas pack: which dataset? give SRC (ibnas pack --help)\n");
        return 2;
    }
    if (threads > 0) ib_set_threads(threads);

    ib_pack_opts o;
    ib_pack_opts_default(&o);
    o.format = format, o.split = split, o.size = size, o.fit = fit, o.skip_bad = skip_bad;
    o.ignore_index = ignore_index, o.synth_n = n, o.synth_seed = seed;
    cli_count_progress prog;
    cli_count_progress_init(&prog, "pack");
    if (!quiet) o.progress = cli_count_progress_show, o.user = &prog;
    ib_pack_report rep;
    ib_status st = ib_pack(src, out, &o, &rep);
    if (st) {
        if (!quiet && prog.tty) fputc('\n', stderr);
        if (st == IB_ERR_ARG) {
            fprintf(stderr, "ibnas %s (ibnas pack --help)\n", ib_errmsg());
            return 2;
        }
        return cli_report("pack", st);
    }
    if (json) {
        json_t *j = json_pack("{s:s, s:s, s:I, s:i, s:I, s:I, s:I, s:i, s:s, s:b, s:b, s:b, s:f}", "out", out, "source",
                              rep.source, "images", (json_int_t)rep.images, "classes", rep.classes, "boxes",
                              (json_int_t)rep.boxes, "boxes_dropped", (json_int_t)rep.boxes_dropped, "skipped",
                              (json_int_t)rep.skipped, "size", size, "fit", rep.crop ? "crop" : "stretch", "has_labels",
                              rep.has_labels, "has_boxes", rep.has_boxes, "has_masks", rep.has_masks, "seconds", rep.seconds);
        char *txt = j ? json_dumps(j, JSON_COMPACT) : NULL;
        if (txt) printf("%s\n", txt);
        free(txt);
        json_decref(j);
    } else {
        printf("wrote %s: %lld images of %dx%d, %d classes, %lld boxes (%lld dropped by the crop), %lld skipped, "
               "%.1f s (%.0f img/s)\n",
               out, (long long)rep.images, size, size, rep.classes, (long long)rep.boxes, (long long)rep.boxes_dropped,
               (long long)rep.skipped, rep.seconds, rep.seconds > 0 ? (double)rep.images / rep.seconds : 0.0);
    }
    return 0;
}
