// A view of part of a dataset: a held-out split of the training data for scoring subnets, and the rest.
// Membership is a seeded hash of the sample's index, so a split never depends on the order of calls
// and the two parts of one seed never share an image.
#include "data/data.h"

#include <stdlib.h>
#include <string.h>

typedef struct {
    ib_dataset *base;
    int64_t *index;   // the base's indices, ascending
} split_impl;

static ib_status split_get(ib_dataset *ds, int64_t i, ib_sample *s) {
    split_impl *p = ds->impl;
    return ib_dataset_get(p->base, p->index[i], s);
}

static void split_close(ib_dataset *ds) {
    split_impl *p = ds->impl;
    if (p) free(p->index);
    free(p);
    ds->impl = NULL;
}

static const ib_dataset_vtable split_vt = {"split", split_get, split_close, NULL};

// SplitMix64's finaliser: a well-mixed 64-bit hash of (seed, i), mapped to [0, 1).
static double unit_hash(uint64_t seed, int64_t i) {
    uint64_t z = seed * 0x9e3779b97f4a7c15ull + (uint64_t)i + 0x632be59bd9b4e019ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    z ^= z >> 31;
    return (double)(z >> 11) / 9007199254740992.0;
}

ib_status ib_dataset_split(ib_dataset **out, ib_dataset *base, double lo, double hi, uint64_t seed) {
    *out = NULL;
    if (!(lo >= 0 && lo <= hi && hi <= 1))
        return ib_fail(IB_ERR_ARG, "%s: split [%g, %g) is not a part of [0, 1]", ib_dataset_path(base), lo, hi);
    ib_dataset *ds = calloc(1, sizeof *ds);
    split_impl *p = calloc(1, sizeof *p);
    int64_t n = ib_dataset_size(base);
    if (p) p->index = malloc(sizeof(int64_t) * (size_t)(n ? n : 1));
    size_t plen = strlen(ib_dataset_path(base)) + 32;
    if (ds) ds->path = malloc(plen);
    if (!ds || !p || !p->index || !ds->path) {
        if (p) free(p->index);
        free(p);
        if (ds) free(ds->path);
        free(ds);
        return ib_fail(IB_ERR_NOMEM, "%s: out of memory for a split", ib_dataset_path(base));
    }
    snprintf(ds->path, plen, "%s[%g:%g]", ib_dataset_path(base), lo, hi);
    p->base = base;
    int64_t k = 0;
    for (int64_t i = 0; i < n; i++) {
        double u = unit_hash(seed, i);
        if (u >= lo && (u < hi || hi >= 1)) p->index[k++] = i;
    }
    ds->vt = &split_vt;
    ds->impl = p;
    ds->size = k;
    ds->ignore_index = base->ignore_index;
    ds->has_labels = base->has_labels, ds->has_boxes = base->has_boxes, ds->has_masks = base->has_masks;
    // Class names are the base's; the view keeps its own copies so that closing either is independent.
    if (base->n_classes > 0 && base->class_names) {
        ds->class_names = calloc((size_t)base->n_classes, sizeof(char *));
        if (!ds->class_names) {
            ib_dataset_close(ds);
            return ib_fail(IB_ERR_NOMEM, "out of memory");
        }
        ds->n_classes = base->n_classes;
        for (int c = 0; c < base->n_classes; c++)
            if (!(ds->class_names[c] = strdup(base->class_names[c] ? base->class_names[c] : ""))) {
                ib_dataset_close(ds);
                return ib_fail(IB_ERR_NOMEM, "out of memory");
            }
    } else ds->n_classes = base->n_classes;
    if (k == 0) {
        ib_dataset_close(ds);
        return ib_fail(IB_ERR_ARG, "%s: the split [%g, %g) holds no image of %lld; use a larger fraction",
                       ib_dataset_path(base), lo, hi, (long long)n);
    }
    *out = ds;
    return IB_OK;
}
