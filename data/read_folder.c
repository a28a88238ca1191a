// data/read_folder.c: classification sources whose labels come from where the files are. The image
// folder (ROOT/<class>/**/*.{jpg,jpeg,png}, classes sorted by name) and Tiny ImageNet (train folders
// per wnid in wnids.txt order with their boxes files; val/val_annotations.txt). Files are listed at
// open; images are decoded in get, which only reads the lists, so it is safe from several threads.
#include "data/sources.h"

#include <stdlib.h>
#include <string.h>

typedef struct folder_impl {
    ib_strvec files;      // full paths, one per sample
    int32_t *labels;      // per sample, -1 if unknown
    ib_box *boxes;        // per sample one box (Tiny ImageNet), or NULL
} folder_impl;

static void folder_impl_free(folder_impl *im) {
    if (!im) return;
    ib_strvec_free(&im->files);
    free(im->labels);
    free(im->boxes);
    free(im);
}

static void folder_close(ib_dataset *ds) {
    folder_impl_free(ds->impl);
    ds->impl = NULL;
}

static ib_status folder_get(ib_dataset *ds, int64_t i, ib_sample *s) {
    folder_impl *im = ds->impl;
    ib_status st = ib_decode_file(im->files.s[i], &s->rgb, &s->h, &s->w);
    if (st) return st;
    s->label = im->labels[i];
    s->image_id = i;
    if (im->boxes && im->boxes[i].x1 > im->boxes[i].x0) {
        s->boxes = malloc(sizeof(ib_box));
        if (!s->boxes) {
            ib_sample_free(s);
            return ib_fail(IB_ERR_NOMEM, "%s: out of memory", im->files.s[i]);
        }
        s->boxes[0] = im->boxes[i];
        s->n_boxes = 1;
    }
    return IB_OK;
}

static const char *folder_file(ib_dataset *ds, int64_t i) { return ((folder_impl *)ds->impl)->files.s[i]; }

static const ib_dataset_vtable folder_vt = {"imagefolder", folder_get, folder_close, folder_file};
static const ib_dataset_vtable tiny_vt = {"tinyimagenet", folder_get, folder_close, folder_file};

// Appends every image file under dir (sorted, depth-first, a few levels deep) with `label`.
static ib_status collect_images(const char *dir, int depth, ib_strvec *files, int32_t label, int32_t **labels,
                                int64_t *cap) {
    ib_strvec names;
    ib_status st = ib_ds_list(dir, 'f', &names);
    if (st) return st;
    for (int64_t i = 0; i < names.n && !st; i++) {
        if (!ib_ds_is_image_name(names.s[i])) continue;
        st = ib_strvec_push_own(files, ib_ds_join(dir, names.s[i]));
        if (!st && files->n > *cap) {
            int64_t nc = *cap ? *cap * 2 : 1024;
            int32_t *l = realloc(*labels, sizeof(int32_t) * (size_t)nc);
            if (!l) st = ib_fail(IB_ERR_NOMEM, "%s: out of memory", dir);
            else {
                *labels = l;
                *cap = nc;
            }
        }
        if (!st) (*labels)[files->n - 1] = label;
    }
    ib_strvec_free(&names);
    if (st || depth <= 0) return st;
    ib_strvec subs;
    st = ib_ds_list(dir, 'd', &subs);
    for (int64_t i = 0; i < subs.n && !st; i++) {
        char *p = ib_ds_join(dir, subs.s[i]);
        st = p ? collect_images(p, depth - 1, files, label, labels, cap)
               : ib_fail(IB_ERR_NOMEM, "out of memory");
        free(p);
    }
    ib_strvec_free(&subs);
    return st;
}

ib_status ib_folder_source_open(ib_dataset *ds, const char *path, const ib_ds_opts *opts) {
    // ROOT/<split>/<class>/ when that folder exists (train/ val/ layouts), else ROOT/<class>/.
    char *root = ib_ds_join(path, ib_ds_split(opts));
    if (!root) return ib_fail(IB_ERR_NOMEM, "out of memory");
    if (!ib_ds_is_dir(root)) {
        free(root);
        root = ib_ds_strdup(path);
        if (!root) return ib_fail(IB_ERR_NOMEM, "out of memory");
    }
    ib_strvec classes = {0};
    folder_impl *im = calloc(1, sizeof *im);
    int64_t cap = 0;
    ib_status st = im ? ib_ds_list(root, 'd', &classes) : ib_fail(IB_ERR_NOMEM, "out of memory");
    if (!st && classes.n == 0) st = ib_fail(IB_ERR_NOTFOUND, "%s: no class subfolders", root);
    for (int64_t c = 0; c < classes.n && !st; c++) {
        char *p = ib_ds_join(root, classes.s[c]);
        st = p ? collect_images(p, 4, &im->files, (int32_t)c, &im->labels, &cap)
               : ib_fail(IB_ERR_NOMEM, "out of memory");
        free(p);
    }
    if (!st && im->files.n == 0) st = ib_fail(IB_ERR_NOTFOUND, "%s: no .jpg, .jpeg or .png images in the class folders", root);
    free(root);
    if (st) {
        ib_strvec_free(&classes);
        folder_impl_free(im);
        return st;
    }
    ib_ds_set_classes(ds, &classes);
    ds->size = im->files.n;
    ds->has_labels = 1;
    ds->impl = im;
    ds->vt = &folder_vt;
    return IB_OK;
}

// ---------------------------------------------------------------------------------------------
// Tiny ImageNet


static int is_blank(const char *s) {
    for (; *s; s++)
        if (*s != ' ' && *s != '\t') return 0;
    return 1;
}

// Tiny ImageNet boxes are inclusive pixel indices (0 0 63 63 is the whole 64x64 image); ours are edges.
static ib_box box_inclusive(int x0, int y0, int x1, int y1, int32_t label) {
    ib_box b = {(float)x0, (float)y0, (float)x1 + 1.0f, (float)y1 + 1.0f, label, 0};
    return b;
}

static int find_class(const ib_strvec *wnids, const char *w) {
    // wnids.txt is not sorted, and 200 classes: a linear scan is fine at open.
    for (int64_t c = 0; c < wnids->n; c++)
        if (strcmp(wnids->s[c], w) == 0) return (int)c;
    return -1;
}

// Grows the per-sample label and box arrays to hold n.
static ib_status grow(folder_impl *im, int64_t n, int64_t *cap) {
    if (n <= *cap) return IB_OK;
    int64_t nc = *cap ? *cap * 2 : 1024;
    while (nc < n) nc *= 2;
    int32_t *l = realloc(im->labels, sizeof(int32_t) * (size_t)nc);
    if (l) im->labels = l;
    ib_box *b = realloc(im->boxes, sizeof(ib_box) * (size_t)nc);
    if (b) im->boxes = b;
    if (!l || !b) return ib_fail(IB_ERR_NOMEM, "out of memory");
    *cap = nc;
    return IB_OK;
}

static ib_status tiny_train(folder_impl *im, const char *root, const ib_strvec *wnids, const ib_ds_opts *opts,
                            int64_t *skipped) {
    int64_t cap = 0;
    ib_status st = IB_OK;
    for (int64_t c = 0; c < wnids->n && !st; c++) {
        size_t n = strlen(root) + 2 * strlen(wnids->s[c]) + 32;
        char *dir = malloc(n), *boxf = malloc(n);
        ib_strvec names = {0};
        char *text = NULL;
        if (!dir || !boxf) st = ib_fail(IB_ERR_NOMEM, "out of memory");
        if (!st) {
            snprintf(dir, n, "%s/train/%s/images", root, wnids->s[c]);
            snprintf(boxf, n, "%s/train/%s/%s_boxes.txt", root, wnids->s[c], wnids->s[c]);
            st = ib_ds_list(dir, 'f', &names);
        }
        int64_t *file_of = names.n ? malloc(sizeof(int64_t) * (size_t)names.n) : NULL;   // name -> sample
        if (names.n && !file_of && !st) st = ib_fail(IB_ERR_NOMEM, "out of memory");
        for (int64_t i = 0; i < names.n && !st; i++) {
            file_of[i] = -1;
            if (!ib_ds_is_image_name(names.s[i])) continue;
            st = ib_strvec_push_own(&im->files, ib_ds_join(dir, names.s[i]));
            if (!st) st = grow(im, im->files.n, &cap);
            if (!st) {
                file_of[i] = im->files.n - 1;
                im->labels[im->files.n - 1] = (int32_t)c;
                memset(&im->boxes[im->files.n - 1], 0, sizeof(ib_box));
            }
        }
        // Boxes: "<file> x0 y0 x1 y1" per line, matched to the sorted listing by binary search.
        if (!st && ib_ds_is_file(boxf)) st = ib_ds_read_text(boxf, &text, NULL);
        char *cur = text, *line;
        int lineno = 0;
        while (!st && text && (line = ib_ds_next_line(&cur, &lineno)) != NULL) {
            if (is_blank(line)) continue;
            char fname[256];
            int x0, y0, x1, y1;
            if (sscanf(line, "%255s %d %d %d %d", fname, &x0, &y0, &x1, &y1) != 5) {
                if (opts->skip_bad) {
                    (*skipped)++;
                    continue;
                }
                st = ib_fail(IB_ERR_FORMAT, "%s:%d: expected '<file> x0 y0 x1 y1'", boxf, lineno);
                break;
            }
            int64_t lo = 0, hi = names.n - 1, hit = -1;
            while (lo <= hi) {
                int64_t mid = (lo + hi) / 2;
                int cmp = strcmp(names.s[mid], fname);
                if (cmp == 0) {
                    hit = mid;
                    break;
                }
                if (cmp < 0) lo = mid + 1;
                else hi = mid - 1;
            }
            // A box for an image not listed (e.g. a subset of the files) is unused.
            if (hit >= 0 && file_of[hit] >= 0) im->boxes[file_of[hit]] = box_inclusive(x0, y0, x1, y1, (int32_t)c);
        }
        free(file_of);
        free(text);
        ib_strvec_free(&names);
        free(dir);
        free(boxf);
    }
    return st;
}

static ib_status tiny_val(folder_impl *im, const char *root, const ib_strvec *wnids, const ib_ds_opts *opts,
                          int64_t *skipped) {
    char *vdir = ib_ds_join(root, "val");
    char *ann = vdir ? ib_ds_join(vdir, "val_annotations.txt") : NULL;
    char *imdir = vdir ? ib_ds_join(vdir, "images") : NULL;
    char *text = NULL;
    ib_status st = ann && imdir ? ib_ds_read_text(ann, &text, NULL) : ib_fail(IB_ERR_NOMEM, "out of memory");
    int64_t cap = 0;
    char *cur = text, *line;
    int lineno = 0;
    while (!st && (line = ib_ds_next_line(&cur, &lineno)) != NULL) {
        if (is_blank(line)) continue;
        char fname[256], wnid[64];
        int x0, y0, x1, y1;
        ib_status bad = IB_OK;
        int c = -1;
        char *file = NULL;
        if (sscanf(line, "%255s %63s %d %d %d %d", fname, wnid, &x0, &y0, &x1, &y1) != 6)
            bad = ib_fail(IB_ERR_FORMAT, "%s:%d: expected '<file> <wnid> x0 y0 x1 y1'", ann, lineno);
        else if ((c = find_class(wnids, wnid)) < 0)
            bad = ib_fail(IB_ERR_FORMAT, "%s:%d: class %s is not in wnids.txt", ann, lineno, wnid);
        else if (!(file = ib_ds_join(imdir, fname))) bad = ib_fail(IB_ERR_NOMEM, "out of memory");
        else if (!ib_ds_is_file(file))
            bad = ib_fail(IB_ERR_NOTFOUND, "%s:%d: the image %s does not exist", ann, lineno, file);
        if (bad) {
            free(file);
            if (opts->skip_bad && bad != IB_ERR_NOMEM) {
                (*skipped)++;
                continue;
            }
            st = bad;
            break;
        }
        st = ib_strvec_push_own(&im->files, file);
        if (!st) st = grow(im, im->files.n, &cap);
        if (!st) {
            im->labels[im->files.n - 1] = (int32_t)c;
            im->boxes[im->files.n - 1] = box_inclusive(x0, y0, x1, y1, (int32_t)c);
        }
    }
    free(text);
    free(vdir);
    free(ann);
    free(imdir);
    return st;
}

// test/images/ has no labels: label -1, no boxes.
static ib_status tiny_test(folder_impl *im, const char *root) {
    char *dir = ib_ds_join(root, "test/images");
    if (!dir) return ib_fail(IB_ERR_NOMEM, "out of memory");
    int64_t cap = 0;
    ib_status st = collect_images(dir, 0, &im->files, -1, &im->labels, &cap);
    free(dir);
    return st;
}

ib_status ib_tinyimagenet_source_open(ib_dataset *ds, const char *path, const ib_ds_opts *opts) {
    const char *split = ib_ds_split(opts);
    char *wf = ib_ds_join(path, "wnids.txt");
    char *text = NULL;
    ib_strvec wnids = {0};
    folder_impl *im = calloc(1, sizeof *im);
    ib_status st = wf && im ? ib_ds_read_text(wf, &text, NULL) : ib_fail(IB_ERR_NOMEM, "out of memory");
    char *cur = text, *line;
    int lineno = 0;
    while (!st && (line = ib_ds_next_line(&cur, &lineno)) != NULL) {
        char w[64];
        if (is_blank(line)) continue;
        if (sscanf(line, "%63s", w) != 1) st = ib_fail(IB_ERR_FORMAT, "%s:%d: expected a wnid", wf, lineno);
        else if (find_class(&wnids, w) >= 0) st = ib_fail(IB_ERR_FORMAT, "%s:%d: %s listed twice", wf, lineno, w);
        else st = ib_strvec_push(&wnids, w);
    }
    free(text);
    if (!st && wnids.n == 0) st = ib_fail(IB_ERR_FORMAT, "%s: no classes", wf);
    int64_t skipped = 0;
    if (!st) {
        if (strcmp(split, "train") == 0) st = tiny_train(im, path, &wnids, opts, &skipped);
        else if (strcmp(split, "val") == 0) st = tiny_val(im, path, &wnids, opts, &skipped);
        else if (strcmp(split, "test") == 0) st = tiny_test(im, path);
        else st = ib_fail(IB_ERR_ARG, "%s: Tiny ImageNet has splits train, val and test, not '%s'", path, split);
    }
    if (!st && im->files.n == 0) st = ib_fail(IB_ERR_NOTFOUND, "%s: no images in split %s", path, split);
    free(wf);
    if (st) {
        ib_strvec_free(&wnids);
        folder_impl_free(im);
        return st;
    }
    if (strcmp(split, "test") == 0) {
        free(im->boxes);
        im->boxes = NULL;
    }
    ib_ds_set_classes(ds, &wnids);
    ds->size = im->files.n;
    ds->skipped += skipped;
    ds->has_labels = strcmp(split, "test") != 0;
    ds->has_boxes = im->boxes != NULL;
    ds->impl = im;
    ds->vt = &tiny_vt;
    return IB_OK;
}
