// data/read_seg.c: segmentation pairs. An image and a label mask of the same size whose pixels are class
// ids; CamVid's layout (ROOT/<split>/ images, ROOT/<split>annot/ masks matched by name) or a list file
// ROOT/<split>.txt of "image mask" lines. Class names and the ignore id come from ROOT/classes.txt.
#include "data/sources.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

typedef struct seg_impl {
    ib_strvec images, masks;   // full paths, one pair per sample
} seg_impl;

static void seg_close(ib_dataset *ds) {
    seg_impl *im = ds->impl;
    if (im) {
        ib_strvec_free(&im->images);
        ib_strvec_free(&im->masks);
        free(im);
    }
    ds->impl = NULL;
}

static ib_status seg_get(ib_dataset *ds, int64_t i, ib_sample *s) {
    seg_impl *im = ds->impl;
    ib_status st = ib_decode_file(im->images.s[i], &s->rgb, &s->h, &s->w);
    if (st) return st;
    int mh, mw;
    st = ib_decode_png_indices(im->masks.s[i], &s->mask, &mh, &mw);
    if (st) {
        ib_sample_free(s);
        return st;
    }
    if (mh != s->h || mw != s->w) {
        int h = s->h, w = s->w;
        ib_sample_free(s);
        return ib_fail(IB_ERR_FORMAT, "%s: the mask is %dx%d but its image %s is %dx%d (w x h)", im->masks.s[i], mw, mh,
                       im->images.s[i], w, h);
    }
    // A value that is neither a class nor the ignore id means the mask is not what classes.txt says.
    if (ds->n_classes > 0) {
        int64_t n = (int64_t)mh * mw;
        for (int64_t p = 0; p < n; p++) {
            int v = s->mask[p];
            if (v >= ds->n_classes && v != ds->ignore_index) {
                int y = (int)(p / mw), x = (int)(p % mw);
                ib_sample_free(s);
                return ib_fail(IB_ERR_FORMAT, "%s: pixel (%d, %d) is %d, not a class id 0..%d nor the ignore id %d",
                               im->masks.s[i], x, y, v, ds->n_classes - 1, ds->ignore_index);
            }
        }
    }
    s->label = -1;
    s->image_id = i;
    return IB_OK;
}

static const char *seg_file(ib_dataset *ds, int64_t i) { return ((seg_impl *)ds->impl)->images.s[i]; }

static const ib_dataset_vtable seg_vt = {"segpairs", seg_get, seg_close, seg_file};

// classes.txt: "id name" per line, ids 0..n-1 in order; a line whose name says ignore / void /
// unlabelled marks the ignore id (CamVid: "11 Unlabelled (ignore_label in SegNet)").
static ib_status read_classes(const char *path, ib_strvec *names, int *ignore_id) {
    *ignore_id = -1;
    char *text;
    ib_status st = ib_ds_read_text(path, &text, NULL);
    if (st) return st;
    char *cur = text;
    int lineno = 0;
    char *line;
    while (!st && (line = ib_ds_next_line(&cur, &lineno)) != NULL) {
        size_t k = strlen(line);
        while (k && isspace((unsigned char)line[k - 1])) line[--k] = 0;
        if (k == 0) continue;
        char *q;
        long id = strtol(line, &q, 10);
        while (*q == ' ' || *q == '\t') q++;
        if (q == line || !*q) {
            st = ib_fail(IB_ERR_FORMAT, "%s:%d: expected 'id name'", path, lineno);
            break;
        }
        char low[256];
        size_t n = strlen(q) < sizeof low - 1 ? strlen(q) : sizeof low - 1;
        for (size_t j = 0; j < n; j++) low[j] = (char)tolower((unsigned char)q[j]);
        low[n] = 0;
        if (strstr(low, "ignore") || strstr(low, "void") || strstr(low, "unlabel")) {
            *ignore_id = (int)id;
            continue;
        }
        if (id != names->n) {
            st = ib_fail(IB_ERR_FORMAT, "%s:%d: class ids must run 0, 1, 2, ... in order (expected %lld, got %ld)", path,
                         lineno, (long long)names->n, id);
            break;
        }
        st = ib_strvec_push(names, q);
    }
    free(text);
    return st;
}

// A path from a list file: relative to ROOT; SegNet's lists carry absolute paths from another machine
// (/SegNet/CamVid/train/x.png), which are taken as their last two components under ROOT.
static char *list_path(const char *root, const char *p) {
    if (p[0] != '/') return ib_ds_join(root, p);
    if (ib_ds_is_file(p)) return ib_ds_strdup(p);
    const char *a = strrchr(p, '/');
    const char *b = a;
    while (b > p && b[-1] != '/') b--;
    if (b > p) b--;   // at the '/' before the folder name
    if (b <= p) return ib_ds_join(root, a + 1);
    return ib_ds_join(root, b + 1);
}

static ib_status add_pair(seg_impl *im, char *img, char *mask, const char *where, int skip_bad, int64_t *skipped) {
    if (!img || !mask) {
        free(img);
        free(mask);
        return ib_fail(IB_ERR_NOMEM, "out of memory");
    }
    const char *missing = !ib_ds_is_file(img) ? img : !ib_ds_is_file(mask) ? mask : NULL;
    if (missing) {
        ib_status e = ib_fail(IB_ERR_NOTFOUND, "%s: %s does not exist", where, missing);
        free(img);
        free(mask);
        if (skip_bad) {
            (*skipped)++;
            return IB_OK;
        }
        return e;
    }
    ib_status st = ib_strvec_push_own(&im->images, img);
    if (st) {
        free(mask);
        return st;
    }
    st = ib_strvec_push_own(&im->masks, mask);
    if (st) free(im->images.s[--im->images.n]);
    return st;
}

static ib_status seg_from_list(seg_impl *im, const char *root, const char *list, int skip_bad, int64_t *skipped) {
    char *text;
    ib_status st = ib_ds_read_text(list, &text, NULL);
    if (st) return st;
    char *cur = text;
    int lineno = 0;
    char *line;
    while (!st && (line = ib_ds_next_line(&cur, &lineno)) != NULL) {
        char a[4096], b[4096], extra[2];
        int k = sscanf(line, "%4095s %4095s %1s", a, b, extra);
        if (k <= 0) continue;
        if (k != 2) {
            st = ib_fail(IB_ERR_FORMAT, "%s:%d: expected 'image mask'", list, lineno);
            break;
        }
        char where[4200];
        snprintf(where, sizeof where, "%s:%d", list, lineno);
        st = add_pair(im, list_path(root, a), list_path(root, b), where, skip_bad, skipped);
    }
    free(text);
    return st;
}

static ib_status seg_from_folders(seg_impl *im, const char *root, const char *split, int skip_bad, int64_t *skipped) {
    char *idir = ib_ds_join(root, split);
    size_t n = strlen(root) + strlen(split) + 8;
    char *mdir = malloc(n);
    if (!idir || !mdir) {
        free(idir);
        free(mdir);
        return ib_fail(IB_ERR_NOMEM, "out of memory");
    }
    snprintf(mdir, n, "%s/%sannot", root, split);
    ib_strvec imgs = {0}, masks = {0};
    ib_status st = ib_ds_list(idir, 'f', &imgs);
    if (!st) st = ib_ds_list(mdir, 'f', &masks);
    // Masks by stem: an image a.jpg may have the mask a.png.
    int64_t m = 0;
    for (int64_t i = 0; i < imgs.n && !st; i++) {
        if (!ib_ds_is_image_name(imgs.s[i])) continue;
        char *stem = ib_ds_stem(imgs.s[i]);
        if (!stem) {
            st = ib_fail(IB_ERR_NOMEM, "out of memory");
            break;
        }
        const char *hit = NULL;
        size_t k = strlen(stem);
        // Both listings are sorted by name, so a forward scan finds matching stems.
        for (int64_t j = m; j < masks.n; j++)
            if (strncmp(masks.s[j], stem, k) == 0 && masks.s[j][k] == '.' && !strchr(masks.s[j] + k + 1, '.')) {
                hit = masks.s[j];
                m = j + 1;
                break;
            }
        if (!hit) {   // fall back to a full scan when names do not sort alike
            for (int64_t j = 0; j < masks.n && !hit; j++)
                if (strncmp(masks.s[j], stem, k) == 0 && masks.s[j][k] == '.' && !strchr(masks.s[j] + k + 1, '.'))
                    hit = masks.s[j];
        }
        free(stem);
        char *img = ib_ds_join(idir, imgs.s[i]);
        if (!hit) {
            ib_status e = ib_fail(IB_ERR_NOTFOUND, "%s: no mask for it in %s", img ? img : imgs.s[i], mdir);
            free(img);
            if (skip_bad) {
                (*skipped)++;
                continue;
            }
            st = e;
            break;
        }
        st = add_pair(im, img, ib_ds_join(mdir, hit), mdir, skip_bad, skipped);
    }
    ib_strvec_free(&imgs);
    ib_strvec_free(&masks);
    free(idir);
    free(mdir);
    return st;
}

ib_status ib_segpairs_source_open(ib_dataset *ds, const char *path, const ib_ds_opts *opts) {
    const char *split = ib_ds_split(opts);
    seg_impl *im = calloc(1, sizeof *im);
    ib_strvec names = {0};
    int64_t skipped = 0;
    int ignore_id = -1;
    char *cf = ib_ds_join(path, "classes.txt");
    size_t n = strlen(path) + strlen(split) + 8;
    char *list = malloc(n);
    ib_status st = im && cf && list ? IB_OK : ib_fail(IB_ERR_NOMEM, "out of memory");
    if (!st && ib_ds_is_file(cf)) st = read_classes(cf, &names, &ignore_id);
    if (!st) {
        snprintf(list, n, "%s/%s.txt", path, split);
        if (ib_ds_is_file(list)) st = seg_from_list(im, path, list, opts->skip_bad, &skipped);
        else st = seg_from_folders(im, path, split, opts->skip_bad, &skipped);
    }
    if (!st && im->images.n == 0) st = ib_fail(IB_ERR_NOTFOUND, "%s: no image/mask pairs for split %s", path, split);
    free(cf);
    free(list);
    if (st) {
        ib_strvec_free(&names);
        if (im) {
            ib_strvec_free(&im->images);
            ib_strvec_free(&im->masks);
            free(im);
        }
        return st;
    }
    // opts->ignore_index wins; left at 0 (unset) it is classes.txt's ignore id, else 255.
    if (opts->ignore_index) ds->ignore_index = opts->ignore_index;
    else ds->ignore_index = ignore_id >= 0 ? ignore_id : 255;
    ib_ds_set_classes(ds, &names);
    ds->size = im->images.n;
    ds->skipped += skipped;
    ds->has_masks = 1;
    ds->impl = im;
    ds->vt = &seg_vt;
    return IB_OK;
}
