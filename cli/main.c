// ibnas: the command. Dispatches to one verb per file; `ibnas --help` lists them.
#include "cli/cli.h"

#include <stdlib.h>
#include <string.h>

typedef struct {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
} verb;

static const verb verbs[] = {
    {"infer", cmd_infer, "run a checkpoint's network on a batch (HDF5 in, logits out)"},
    {NULL, NULL, NULL},
};

static void usage(FILE *out) {
    fprintf(out,
            "ibnas %s: hardware-aware architecture search for mobile vision networks, in C\n\n"
            "usage: ibnas <verb> [flags]     ibnas <verb> --help for a verb's flags\n\n"
            "verbs:\n",
            IB_VERSION_STRING);
    for (const verb *v = verbs; v->name; v++) fprintf(out, "  %-10s %s\n", v->name, v->summary);
    fprintf(out, "\nglobal flags:\n  --version  print the version and exit\n  --help     this text\n");
}

int cli_report(const char *verb_name, ib_status s) {
    fprintf(stderr, "ibnas %s: %s: %s\n", verb_name, ib_status_name(s), ib_errmsg());
    return 1;
}

static const char *flag_value(int argc, char **argv, int *i, const char *name, int *bad) {
    const char *a = argv[*i];
    size_t n = strlen(name);
    if (strncmp(a, name, n) != 0) return NULL;
    if (a[n] == '=') return a + n + 1;
    if (a[n] != 0) return NULL;
    if (*i + 1 >= argc) {
        fprintf(stderr, "ibnas: %s needs a value\n", name);
        *bad = 1;
        return NULL;
    }
    return argv[++*i];
}

int cli_flag_str(int argc, char **argv, int *i, const char *name, const char **out, int *bad) {
    int b = 0;
    const char *v = flag_value(argc, argv, i, name, &b);
    if (b) *bad = 1;
    if (!v) return b;
    *out = v;
    return 1;
}

int cli_flag_int(int argc, char **argv, int *i, const char *name, int *out, int *bad) {
    int b = 0;
    const char *v = flag_value(argc, argv, i, name, &b);
    if (b) *bad = 1;
    if (!v) return b;
    char *end;
    long x = strtol(v, &end, 10);
    if (*v == 0 || *end != 0) {
        fprintf(stderr, "ibnas: %s wants an integer, got '%s'\n", name, v);
        *bad = 1;
    } else *out = (int)x;
    return 1;
}

int cli_flag_float(int argc, char **argv, int *i, const char *name, float *out, int *bad) {
    int b = 0;
    const char *v = flag_value(argc, argv, i, name, &b);
    if (b) *bad = 1;
    if (!v) return b;
    char *end;
    float x = strtof(v, &end);
    if (*v == 0 || *end != 0) {
        fprintf(stderr, "ibnas: %s wants a number, got '%s'\n", name, v);
        *bad = 1;
    } else *out = x;
    return 1;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    const char *v = argv[1];
    if (!strcmp(v, "--version") || !strcmp(v, "version")) {
        printf("ibnas %s\n", IB_VERSION_STRING);
        return 0;
    }
    if (!strcmp(v, "--help") || !strcmp(v, "-h") || !strcmp(v, "help")) {
        usage(stdout);
        return 0;
    }
    for (const verb *e = verbs; e->name; e++)
        if (!strcmp(e->name, v)) return e->run(argc - 1, argv + 1);
    fprintf(stderr, "ibnas: unknown verb '%s' (ibnas --help lists them)\n", v);
    return 2;
}
