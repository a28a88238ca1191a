// api: the search-space part of include/ibnas.h. The public ib_space handle is search/'s ib_space itself
// (the header declares it opaque); these functions check what the caller gives and call search/space.c.
#include "search/search.h"

#include <stdlib.h>
#include <string.h>

ib_status ib_space_open(ib_space **out, const char *path) {
    if (!out) return ib_fail(IB_ERR_ARG, "ib_space_open: no place given for the handle");
    *out = NULL;
    if (!path || !path[0]) return ib_fail(IB_ERR_ARG, "ib_space_open: no path given");
    ib_space *s = calloc(1, sizeof *s);
    if (!s) return ib_fail(IB_ERR_NOMEM, "out of memory for a search space");
    ib_status st = ib_space_load(s, path);
    if (st) {
        free(s);
        return st;
    }
    *out = s;
    return IB_OK;
}

void ib_space_close(ib_space *s) {
    if (!s) return;
    ib_space_free(s);
    free(s);
}

const char *ib_space_name(const ib_space *s) { return s->name; }
int ib_space_layers(const ib_space *s) { return s->n_layers; }
int ib_space_input_size(const ib_space *s) { return s->input; }

double ib_space_subnets(const ib_space *s, char *buf, size_t n) {
    double lg = 0;
    ib_space_count(s, buf, n, &lg);
    return lg;
}

ib_status ib_space_sample_arch(ib_space *s, const char *how, uint64_t seed, int classes, char **arch_json) {
    if (!s || !arch_json) return ib_fail(IB_ERR_ARG, "ib_space_sample_arch: a space and a place for the arch are needed");
    *arch_json = NULL;
    ib_sample_kind kind;
    if (!how || !strcmp(how, "random")) kind = IB_SAMPLE_RANDOM;
    else if (!strcmp(how, "largest")) kind = IB_SAMPLE_LARGEST;
    else if (!strcmp(how, "smallest")) kind = IB_SAMPLE_SMALLEST;
    else return ib_fail(IB_ERR_ARG, "ib_space_sample_arch: '%s' is not a way to sample (random, largest, smallest)", how);
    if (classes < 0) return ib_fail(IB_ERR_ARG, "ib_space_sample_arch: classes %d (0 keeps the space's)", classes);
    int *choice = malloc(sizeof(int) * (size_t)ib_space_genes(s));
    if (!choice) return ib_fail(IB_ERR_NOMEM, "out of memory sampling space %s", s->name);
    ib_rng r;
    ib_rng_seed(&r, seed, 0);
    ib_space_sample(s, kind, &r, choice);
    ib_arch a;
    ib_status st = ib_space_arch(s, choice, classes, &a);
    free(choice);
    if (st) return st;
    *arch_json = ib_arch_to_json(&a);
    ib_arch_free(&a);
    return IB_OK;
}

ib_status ib_space_check_arch(ib_space *s, const char *arch) {
    if (!s || !arch || !arch[0]) return ib_fail(IB_ERR_ARG, "ib_space_check_arch: a space and an arch are needed");
    ib_arch a;
    memset(&a, 0, sizeof a);
    ib_status st = ib_arch_resolve(&a, arch, 0);
    if (st) return st;
    st = ib_space_check(s, &a, arch[0] == '{' ? "arch" : arch, NULL);
    ib_arch_free(&a);
    return st;
}

ib_status ib_arch_count_macs(const char *arch, int res, int64_t *macs) {
    if (!arch || !arch[0] || !macs) return ib_fail(IB_ERR_ARG, "ib_arch_count_macs: an arch and a place for the count are needed");
    if (res < 0) return ib_fail(IB_ERR_ARG, "ib_arch_count_macs: resolution %d (0: the arch's input size)", res);
    ib_arch a;
    memset(&a, 0, sizeof a);
    ib_status st = ib_arch_resolve(&a, arch, 0);
    if (st) return st;
    *macs = ib_arch_macs(&a, res > 0 ? res : a.input);
    ib_arch_free(&a);
    return IB_OK;
}
