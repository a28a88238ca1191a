// ibnas coco-eval: the COCO bbox evaluator alone (pycocotools' COCOeval numbers), through the public API.
#include "cli/cli.h"

static const char *usage_text =
    "usage: ibnas coco-eval GT.json DETS.json [--json]\n\n"
    "GT.json: COCO instances (images, categories, annotations); DETS.json: COCO results\n"
    "([{\"image_id\", \"category_id\", \"bbox\": [x, y, w, h], \"score\"}, ...]). Prints the twelve numbers\n"
    "COCOeval (bbox) gives: AP AP50 AP75 APs APm APl AR1 AR10 AR100 ARs ARm ARl.\n";

int cmd_coco_eval(int argc, char **argv) {
    int json = 0;
    const char *pos[2] = {NULL, NULL};
    int npos = 0;
    char *rest[8];
    int nrest = 0;
    rest[nrest++] = argv[0];
    for (int i = 1; i < argc; i++) {
        if (argv[i][0] != '-' && npos < 2) pos[npos++] = argv[i];
        else if (nrest < 8) rest[nrest++] = argv[i];
        else {
            fprintf(stderr, "ibnas coco-eval: too many arguments\n");
            return 2;
        }
    }
    const cli_flag flags[] = {
        {"--json", F_BOOL, &json, "print one JSON object on stdout"},
        {NULL, 0, NULL, NULL},
    };
    int r = cli_parse("coco-eval", nrest, rest, flags, usage_text);
    if (r) return r < 0 ? 0 : r;
    if (npos != 2) {
        fprintf(stderr, "ibnas coco-eval: GT.json and DETS.json are required (ibnas coco-eval --help)\n");
        return 2;
    }
    double st[IB_COCO_NSTATS];
    ib_status s = ib_coco_eval(pos[0], pos[1], st);
    if (s) return cli_report("coco-eval", s);
    if (json) {
        printf("{");
        for (int i = 0; i < IB_COCO_NSTATS; i++) printf("%s\"%s\": %.10g", i ? ", " : "", ib_coco_stat_name(i), st[i]);
        printf("}\n");
    } else
        for (int i = 0; i < IB_COCO_NSTATS; i++) printf("%-6s %.4f\n", ib_coco_stat_name(i), st[i]);
    return 0;
}
