// ibnas space: count a search space's subnets, sample one as an arch file, or check that an arch is one of
// a space's subnets. Through the public API only (include/ibnas.h).
#include "cli/cli.h"

#include <stdlib.h>
#include <string.h>

static const char *usage_text =
    "usage: ibnas space count  --space S.space.json [--json]\n"
    "       ibnas space sample --space S.space.json --out A.arch.json [--seed N] [--largest|--smallest] [--classes C]\n"
    "       ibnas space check  --space S.space.json --arch A.arch.json\n\n"
    "A search space (docs/FORMATS.md, \"Search space\"; search/spaces/ has mobiledets, mobiledets_seg, edgetpuv2, union,\n"
    "tiny)\n"
    "gives per stage a width, stride, depth and the block choices; a subnet is one choice per layer.\n"
    "count prints the number of subnets, exactly; sample writes one subnet as an arch (random from the seed,\n"
    "or the one with the most / fewest multiply-accumulates); check exits 0 when the arch is one of the\n"
    "space's subnets, 1 with the block and field that differ.\n";

static int space_count(ib_space *s, int json) {
    char count[1024];
    double lg = ib_space_subnets(s, count, sizeof count);
    if (json)
        printf("{\"space\": \"%s\", \"layers\": %d, \"subnets\": \"%s\", \"log10\": %.4f}\n", ib_space_name(s),
               ib_space_layers(s), count, lg);
    else
        printf("space %s: %d layers, %s subnets (10^%.2f)\n", ib_space_name(s), ib_space_layers(s), count, lg);
    return 0;
}

// Writes text to PATH.tmp and renames it over PATH, so a failure never leaves half a file.
static int write_atomic(const char *path, const char *text) {
    size_t n = strlen(path) + 5;
    char *tmp = malloc(n);
    if (!tmp) return 0;
    snprintf(tmp, n, "%s.tmp", path);
    FILE *f = fopen(tmp, "wb");
    int ok = f != NULL;
    if (f) {
        ok = fputs(text, f) >= 0;
        ok = (fclose(f) == 0) && ok;
    }
    if (ok && rename(tmp, path) != 0) ok = 0;
    if (!ok) remove(tmp);
    free(tmp);
    return ok;
}

static int space_sample(ib_space *s, uint64_t seed, int largest, int smallest, int classes, const char *out) {
    if (!out) {
        fprintf(stderr, "ibnas space sample: --out is required (ibnas space --help)\n");
        return 2;
    }
    if (largest && smallest) {
        fprintf(stderr, "ibnas space sample: --largest and --smallest exclude each other\n");
        return 2;
    }
    if (classes < 0) {
        fprintf(stderr, "ibnas space sample: --classes must be positive\n");
        return 2;
    }
    const char *how = largest ? "largest" : smallest ? "smallest" : "random";
    char *json = NULL;
    ib_status st = ib_space_sample_arch(s, how, seed, classes, &json);
    if (st) return cli_report("space", st);
    int64_t macs = 0;
    st = ib_arch_count_macs(json, 0, &macs);
    int ok = write_atomic(out, json);
    free(json);
    if (!ok) {
        fprintf(stderr, "ibnas space: %s: cannot write\n", out);
        return 1;
    }
    if (st) return cli_report("space", st);
    printf("%s: %s subnet of space %s, %d blocks, %.2f M MACs at %d px\n", out,
           largest ? "the largest" : smallest ? "the smallest" : "a random", ib_space_name(s),
           ib_space_layers(s), (double)macs / 1e6, ib_space_input_size(s));
    return 0;
}

int cmd_space(int argc, char **argv) {
    const char *sub = argc > 1 ? argv[1] : "";
    if (!strcmp(sub, "--help") || !strcmp(sub, "-h") || !strcmp(sub, "help")) {
        printf("%s", usage_text);
        return 0;
    }
    if (strcmp(sub, "count") && strcmp(sub, "sample") && strcmp(sub, "check")) {
        if (sub[0]) fprintf(stderr, "ibnas space: unknown action '%s' (count, sample, check; ibnas space --help)\n", sub);
        else fprintf(stderr, "ibnas space: an action is needed: count, sample or check (ibnas space --help)\n");
        return 2;
    }
    const char *space = NULL, *out = NULL, *arch = NULL;
    int json = 0, largest = 0, smallest = 0, classes = 0;
    uint64_t seed = 0;
    const cli_flag count_flags[] = {
        {"--space", F_STR, &space, "the search space (*.space.json; required)"},
        {"--json", F_BOOL, &json, "print one JSON object on stdout"},
        {NULL, 0, NULL, NULL},
    };
    const cli_flag sample_flags[] = {
        {"--space", F_STR, &space, "the search space (*.space.json; required)"},
        {"--out", F_STR, &out, "the arch file to write (required)"},
        {"--seed", F_U64, &seed, "random sampling's seed (default 0)"},
        {"--largest", F_BOOL, &largest, "the subnet with the most multiply-accumulates"},
        {"--smallest", F_BOOL, &smallest, "the subnet with the fewest multiply-accumulates"},
        {"--classes", F_INT, &classes, "class count of the arch (default: the space's)"},
        {NULL, 0, NULL, NULL},
    };
    const cli_flag check_flags[] = {
        {"--space", F_STR, &space, "the search space (*.space.json; required)"},
        {"--arch", F_STR, &arch, "the arch to check (*.arch.json or JSON text; required)"},
        {NULL, 0, NULL, NULL},
    };
    const cli_flag *flags = !strcmp(sub, "count") ? count_flags : !strcmp(sub, "sample") ? sample_flags : check_flags;
    char verb[32];
    snprintf(verb, sizeof verb, "space %s", sub);
    int r = cli_parse(verb, argc - 1, argv + 1, flags, usage_text);
    if (r) return r < 0 ? 0 : r;
    if (!space) {
        fprintf(stderr, "ibnas %s: --space is required (ibnas space --help)\n", verb);
        return 2;
    }
    if (!strcmp(sub, "check") && !arch) {
        fprintf(stderr, "ibnas space check: --arch is required (ibnas space --help)\n");
        return 2;
    }
    ib_space *s;
    ib_status st = ib_space_open(&s, space);
    if (st) return cli_report("space", st);
    int rc;
    if (!strcmp(sub, "count")) rc = space_count(s, json);
    else if (!strcmp(sub, "sample")) rc = space_sample(s, seed, largest, smallest, classes, out);
    else if ((st = ib_space_check_arch(s, arch))) rc = cli_report("space", st);
    else {
        printf("ok: %s is in space %s\n", arch[0] == '{' ? "the arch" : arch, ib_space_name(s));
        rc = 0;
    }
    ib_space_close(s);
    return rc;
}
