// ibnas synth: writes a pack of synthetic scenes (data/synth.c) with all three annotations: a class
// label, a box per shape and a per-pixel mask. The default data set of the demo and the tests.
#include "cli/cli.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *usage_text =
    "usage: ibnas synth --out PACK.h5 [--n N] [--size S] [--seed K] [flags]\n\n"
    "Renders N synthetic scenes of S x S pixels into an HDF5 pack (docs/FORMATS.md): one to four shapes of\n"
    "six classes (circle, square, triangle, ring, cross, star; filled or outlined, rotated, stretched,\n"
    "overlapping) over textured noisy backgrounds. The label is the class of the largest shape; every\n"
    "shape has a box (the tight box of its visible pixels); the mask gives each pixel the class of the top\n"
    "shape, or 6 for the background. Scene i of seed K is the same on every machine and thread count.\n"
    "--images DIR (with or without --out) writes scene i as DIR/NNNNNN.png (six digits: the name `eval\n"
    "--pred-out` gives image i of the pack) and its mask as DIR/NNNNNN.mask.png (8-bit gray, class ids).\n";

int cmd_synth(int argc, char **argv) {
    const char *out = NULL, *images = NULL;
    int n = 1000, size = 64, json = 0, quiet = 0, threads = 0;
    uint64_t seed = 0;
    const cli_flag flags[] = {
        {"--out", F_STR, &out, "the pack to write, PACK.h5 (required; written to PACK.h5.tmp, then renamed)"},
        {"--images", F_STR, &images, "also (or only) write the scenes as PNG files into this folder"},
        {"--n", F_INT, &n, "number of scenes (default 1000)"},
        {"--size", F_INT, &size, "image side in pixels, 8..4096 (default 64)"},
        {"--seed", F_U64, &seed, "seed (default 0)"},
        {"--threads", F_INT, &threads, "rendering threads (default: all cores)"},
        {"--json", F_BOOL, &json, "print one JSON object with the counts on stdout"},
        {"--quiet", F_BOOL, &quiet, "no progress output"},
        {NULL, 0, NULL, NULL},
    };
    int r = cli_parse("synth", argc, argv, flags, usage_text);
    if (r) return r < 0 ? 0 : r;
    if (!out && !images) {
        fprintf(stderr, "ibnas synth: --out PACK.h5 or --images DIR is required (ibnas synth --help)\n");
        return 2;
    }
    if (n <= 0 || size < 8 || size > 4096) {
        fprintf(stderr, "ibnas synth: --n must be positive and --size within 8..4096 (got %d, %d)\n", n, size);
        return 2;
    }
    if (threads > 0) ib_set_threads(threads);

    int64_t boxes = 0;
    cli_count_progress prog;
    cli_count_progress_init(&prog, "synth");
    if (images && cli_mkdirs("synth", images)) return 1;
    ib_status st = images ? ib_synth_write_images(images, n, size, seed) : IB_OK;
    if (!st && out) st = ib_synth_write_pack(out, n, size, seed, 1, quiet ? NULL : cli_count_progress_show, &prog, &boxes);
    if (st) return cli_report("synth", st);
    if (!out) {
        if (!quiet) fprintf(stderr, "ibnas synth: %d scenes of %dx%d -> %s/\n", n, size, size, images);
        return 0;
    }
    double secs = ib_time_s() - prog.t0;
    if (json) {
        json_t *j = json_pack("{s:s, s:i, s:i, s:I, s:i, s:I, s:I, s:f}", "out", out, "images", n, "classes",
                              IB_SYNTH_CLASSES, "boxes", (json_int_t)boxes, "size", size, "seed", (json_int_t)seed,
                              "skipped", (json_int_t)0, "seconds", secs);
        char *txt = j ? json_dumps(j, JSON_COMPACT) : NULL;
        if (txt) printf("%s\n", txt);
        free(txt);
        json_decref(j);
    } else {
        printf("wrote %s: %d scenes of %dx%d, %d classes, %lld boxes, masks with background %d, %.1f s (%.0f img/s)\n",
               out, n, size, size, IB_SYNTH_CLASSES, (long long)boxes, IB_SYNTH_CLASSES, secs, (double)n / secs);
    }
    return 0;
}
