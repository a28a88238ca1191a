// data/read_coco.c: detection sources. COCO instances JSON (jansson; category ids mapped to contiguous
// class ids in sorted id order, bbox [x, y, w, h] to corners, iscrowd and image ids kept) and YOLO txt
// labels (class cx cy w h, normalised, scaled to pixels by the decoded image's size). Annotations are
// parsed at open into one flat box array per dataset; get decodes the image and copies its boxes.
#include "data/sources.h"

#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct det_impl {
    ib_strvec files;        // image paths, one per sample
    int64_t *image_ids;     // per sample
    int *want_h, *want_w;   // COCO: the size the annotations were made for (0: unknown)
    int64_t *off;           // sample i's boxes are boxes[off[i] .. off[i+1])
    ib_box *boxes;          // COCO: pixels; YOLO: normalised cx, cy, w, h in x0, y0, x1, y1 until get
    int64_t n_boxes, cap_boxes;
    int yolo;
    int32_t *cat_ids;       // COCO: contiguous class -> category id
} det_impl;

static void det_free(det_impl *im) {
    if (!im) return;
    ib_strvec_free(&im->files);
    free(im->image_ids);
    free(im->want_h);
    free(im->want_w);
    free(im->off);
    free(im->boxes);
    free(im->cat_ids);
    free(im);
}

static void det_close(ib_dataset *ds) {
    det_free(ds->impl);
    ds->impl = NULL;
}

static ib_status push_box(det_impl *im, ib_box b) {
    if (im->n_boxes == im->cap_boxes) {
        int64_t nc = im->cap_boxes ? im->cap_boxes * 2 : 1024;
        ib_box *p = realloc(im->boxes, sizeof(ib_box) * (size_t)nc);
        if (!p) return ib_fail(IB_ERR_NOMEM, "out of memory");
        im->boxes = p;
        im->cap_boxes = nc;
    }
    im->boxes[im->n_boxes++] = b;
    return IB_OK;
}

static float clampf(float v, float lo, float hi) { return v < lo ? lo : v > hi ? hi : v; }

static ib_status det_get(ib_dataset *ds, int64_t i, ib_sample *s) {
    det_impl *im = ds->impl;
    const char *file = im->files.s[i];
    ib_status st = ib_decode_file(file, &s->rgb, &s->h, &s->w);
    if (st) return st;
    if (im->want_h && im->want_h[i] > 0 && (im->want_h[i] != s->h || im->want_w[i] != s->w)) {
        int h = s->h, w = s->w;
        ib_sample_free(s);
        return ib_fail(IB_ERR_FORMAT, "%s: the image is %dx%d but its annotations are for %dx%d (w x h)", file, w,
                       h, im->want_w[i], im->want_h[i]);
    }
    s->label = -1;
    s->image_id = im->image_ids[i];
    int64_t a = im->off[i], n = im->off[i + 1] - a;
    if (n == 0) return IB_OK;
    s->boxes = malloc(sizeof(ib_box) * (size_t)n);
    if (!s->boxes) {
        ib_sample_free(s);
        return ib_fail(IB_ERR_NOMEM, "%s: out of memory", file);
    }
    int k = 0;
    for (int64_t j = 0; j < n; j++) {
        ib_box b = im->boxes[a + j];
        if (im->yolo) {
            // YOLO boxes are centre and size over the image's width and height; rounding in the label
            // files can put an edge a hair outside the image, so edges are clamped.
            float W = (float)s->w, H = (float)s->h, cx = b.x0, cy = b.y0, bw = b.x1, bh = b.y1;
            b.x0 = clampf((cx - bw / 2) * W, 0, W);
            b.x1 = clampf((cx + bw / 2) * W, 0, W);
            b.y0 = clampf((cy - bh / 2) * H, 0, H);
            b.y1 = clampf((cy + bh / 2) * H, 0, H);
            if (!(b.x1 > b.x0 && b.y1 > b.y0)) continue;
        }
        s->boxes[k++] = b;
    }
    s->n_boxes = k;
    if (k == 0) {
        free(s->boxes);
        s->boxes = NULL;
    }
    return IB_OK;
}

static const ib_dataset_vtable coco_vt = {"coco", det_get, det_close, NULL};
static const ib_dataset_vtable yolo_vt = {"yolo", det_get, det_close, NULL};

int64_t ib_ds_box_count(const ib_dataset *ds) {
    if (ds->vt != &coco_vt && ds->vt != &yolo_vt) return -1;
    return ((const det_impl *)ds->impl)->n_boxes;
}

int64_t ib_dataset_category_id(const ib_dataset *ds, int c) {
    IB_ASSERT(c >= 0 && (ds->n_classes == 0 || c < ds->n_classes), "class %d out of range", c);
    if (ds->vt != &coco_vt) return c;
    return ((const det_impl *)ds->impl)->cat_ids[c];
}

// ---------------------------------------------------------------------------------------------
// COCO

typedef struct id_index { int64_t id; int64_t idx; } id_index;
static int cmp_id(const void *a, const void *b) {
    int64_t x = ((const id_index *)a)->id, y = ((const id_index *)b)->id;
    return (x > y) - (x < y);
}
static int64_t find_id(const id_index *t, int64_t n, int64_t id) {
    int64_t lo = 0, hi = n - 1;
    while (lo <= hi) {
        int64_t mid = (lo + hi) / 2;
        if (t[mid].id == id) return t[mid].idx;
        if (t[mid].id < id) lo = mid + 1;
        else hi = mid - 1;
    }
    return -1;
}

// Finds the json and the image folder: PATH may be the json itself (its images in ../images/<split>
// or ../<split>), or a root with annotations/instances_<split>*.json and images/<split>*/.
static ib_status coco_locate(const char *path, const char *split, char **json, char **imdir) {
    *json = *imdir = NULL;
    char *root = NULL;
    char sp[256];
    snprintf(sp, sizeof sp, "%s", split);
    if (ib_ds_is_file(path)) {
        *json = ib_ds_strdup(path);
        // root = the folder above the json's folder; split from "instances_<split>.json".
        root = ib_ds_strdup(path);
        if (!*json || !root) goto nomem;
        char *sl = strrchr(root, '/');
        if (sl) {
            *sl = 0;
            sl = strrchr(root, '/');
            if (sl) *sl = 0;
            else strcpy(root, ".");
        } else {   // the json in the working directory: its root is the parent
            free(root);
            root = ib_ds_strdup("..");
            if (!root) goto nomem;
        }
        const char *base = strrchr(path, '/');
        base = base ? base + 1 : path;
        if (strncmp(base, "instances_", 10) == 0) {
            snprintf(sp, sizeof sp, "%s", base + 10);
            char *dot = strrchr(sp, '.');
            if (dot) *dot = 0;
        }
    } else {
        root = ib_ds_strdup(path);
        char *ann = ib_ds_join(path, "annotations");
        if (!root || !ann) {
            free(ann);
            goto nomem;
        }
        ib_strvec files;
        ib_status st = ib_ds_list(ann, 'f', &files);
        if (st) {
            free(ann);
            free(root);
            return st;
        }
        char want[300];
        snprintf(want, sizeof want, "instances_%s.json", split);
        int n_hit = 0;
        const char *hit = NULL;
        size_t k = strlen(split);
        for (int64_t i = 0; i < files.n; i++) {
            if (strcmp(files.s[i], want) == 0) {
                hit = files.s[i];
                n_hit = 1;
                break;
            }
            const char *f = files.s[i];
            if (strncmp(f, "instances_", 10) == 0 && strncmp(f + 10, split, k) == 0 && f[10 + k] >= '0' &&
                f[10 + k] <= '9') {
                hit = f;
                n_hit++;
            }
        }
        if (n_hit == 1) {
            *json = ib_ds_join(ann, hit);
            snprintf(sp, sizeof sp, "%s", hit + 10);
            char *dot = strrchr(sp, '.');
            if (dot) *dot = 0;
        }
        ib_strvec_free(&files);
        if (n_hit != 1) {
            ib_status e = ib_fail(IB_ERR_NOTFOUND, "%s: no %s (nor one instances_%s<year>.json)", ann, want, split);
            free(ann);
            free(root);
            return e;
        }
        free(ann);
        if (!*json) goto nomem;
    }
    // Image folder candidates, first that exists.
    char *images = ib_ds_join(root, "images");
    char *c1 = images ? ib_ds_join(images, sp) : NULL;
    char *c2 = ib_ds_join(root, sp);
    free(images);
    if (!c1 || !c2) {
        free(c1);
        free(c2);
        goto nomem;
    }
    if (ib_ds_is_dir(c1)) {
        *imdir = c1;
        free(c2);
    } else if (ib_ds_is_dir(c2)) {
        *imdir = c2;
        free(c1);
    } else {
        ib_status e = ib_fail(IB_ERR_NOTFOUND, "%s: no image folder for it (%s or %s)", *json, c1, c2);
        free(c1);
        free(c2);
        free(root);
        free(*json);
        *json = NULL;
        return e;
    }
    free(root);
    return IB_OK;
nomem:
    free(root);
    free(*json);
    *json = NULL;
    return ib_fail(IB_ERR_NOMEM, "out of memory");
}

static int json_num(const json_t *v, double *out) {
    if (!json_is_number(v)) return 0;
    *out = json_number_value(v);
    return 1;
}

static ib_status coco_parse(ib_dataset *ds, det_impl *im, const char *json_path, const char *imdir, json_t *root,
                            const ib_ds_opts *opts, ib_strvec *names) {
    json_t *images = json_object_get(root, "images"), *anns = json_object_get(root, "annotations"),
           *cats = json_object_get(root, "categories");
    if (!json_is_array(images) || !json_is_array(cats))
        return ib_fail(IB_ERR_FORMAT, "%s: expected arrays \"images\" and \"categories\"", json_path);
    if (anns && !json_is_array(anns)) return ib_fail(IB_ERR_FORMAT, "%s: \"annotations\" is not an array", json_path);

    // Categories: sorted by id, class c is the c-th.
    size_t nc = json_array_size(cats);
    if (nc == 0) return ib_fail(IB_ERR_FORMAT, "%s: no categories", json_path);
    id_index *cat = malloc(sizeof(id_index) * nc);
    const char **cat_name = malloc(sizeof(char *) * nc);
    im->cat_ids = malloc(sizeof(int32_t) * nc);
    if (!cat || !cat_name || !im->cat_ids) {
        free(cat);
        free(cat_name);
        return ib_fail(IB_ERR_NOMEM, "out of memory");
    }
    ib_status st = IB_OK;
    for (size_t i = 0; i < nc && !st; i++) {
        json_t *c = json_array_get(cats, i), *id = json_object_get(c, "id"), *nm = json_object_get(c, "name");
        if (!json_is_integer(id) || !json_is_string(nm))
            st = ib_fail(IB_ERR_FORMAT, "%s: categories[%zu] needs an integer \"id\" and a string \"name\"", json_path, i);
        else {
            cat[i].id = json_integer_value(id);
            cat[i].idx = (int64_t)i;
            cat_name[i] = json_string_value(nm);
        }
    }
    if (!st) qsort(cat, nc, sizeof *cat, cmp_id);
    for (size_t i = 0; i < nc && !st; i++) {
        if (i > 0 && cat[i].id == cat[i - 1].id)
            st = ib_fail(IB_ERR_FORMAT, "%s: category id %lld appears twice", json_path, (long long)cat[i].id);
        else {
            im->cat_ids[i] = (int32_t)cat[i].id;
            st = ib_strvec_push(names, cat_name[cat[i].idx]);
            cat[i].idx = (int64_t)i;   // now: id -> contiguous class
        }
    }
    free(cat_name);

    // Images, in file order; missing files are errors (or skipped).
    size_t ni = json_array_size(images);
    id_index *img = malloc(sizeof(id_index) * (ni ? ni : 1));
    im->image_ids = malloc(sizeof(int64_t) * (ni ? ni : 1));
    im->want_h = malloc(sizeof(int) * (ni ? ni : 1));
    im->want_w = malloc(sizeof(int) * (ni ? ni : 1));
    if (!st && (!img || !im->image_ids || !im->want_h || !im->want_w)) st = ib_fail(IB_ERR_NOMEM, "out of memory");
    int64_t n = 0;
    for (size_t i = 0; i < ni && !st; i++) {
        json_t *o = json_array_get(images, i), *id = json_object_get(o, "id"), *fn = json_object_get(o, "file_name");
        if (!json_is_integer(id) || !json_is_string(fn)) {
            st = ib_fail(IB_ERR_FORMAT, "%s: images[%zu] needs an integer \"id\" and a string \"file_name\"", json_path, i);
            break;
        }
        char *file = ib_ds_join(imdir, json_string_value(fn));
        if (!file) {
            st = ib_fail(IB_ERR_NOMEM, "out of memory");
            break;
        }
        if (!ib_ds_is_file(file)) {
            if (opts->skip_bad) {
                free(file);
                ds->skipped++;
                continue;
            }
            st = ib_fail(IB_ERR_NOTFOUND, "%s: images[%zu] (id %lld): %s does not exist", json_path, i,
                         (long long)json_integer_value(id), file);
            free(file);
            break;
        }
        st = ib_strvec_push_own(&im->files, file);
        if (st) break;
        json_t *jh = json_object_get(o, "height"), *jw = json_object_get(o, "width");
        im->want_h[n] = json_is_integer(jh) ? (int)json_integer_value(jh) : 0;
        im->want_w[n] = json_is_integer(jw) ? (int)json_integer_value(jw) : 0;
        im->image_ids[n] = json_integer_value(id);
        img[n].id = im->image_ids[n];
        img[n].idx = n;
        n++;
    }
    if (!st) qsort(img, (size_t)n, sizeof *img, cmp_id);
    for (int64_t i = 1; i < n && !st; i++)
        if (img[i].id == img[i - 1].id)
            st = ib_fail(IB_ERR_FORMAT, "%s: image id %lld appears twice", json_path, (long long)img[i].id);

    // Annotations: bucket by image (counting sort keeps file order within an image).
    size_t na = anns ? json_array_size(anns) : 0;
    int64_t *owner = malloc(sizeof(int64_t) * (na ? na : 1));
    im->off = calloc((size_t)n + 1, sizeof(int64_t));
    ib_box *tmp = malloc(sizeof(ib_box) * (na ? na : 1));
    if (!st && (!owner || !im->off || !tmp)) st = ib_fail(IB_ERR_NOMEM, "out of memory");
    for (size_t a = 0; a < na && !st; a++) {
        json_t *o = json_array_get(anns, a), *iid = json_object_get(o, "image_id"),
               *cid = json_object_get(o, "category_id"), *bb = json_object_get(o, "bbox"),
               *crowd = json_object_get(o, "iscrowd");
        double x, y, w, h;
        owner[a] = -1;
        if (!json_is_integer(iid) || !json_is_integer(cid) || !json_is_array(bb) || json_array_size(bb) != 4 ||
            !json_num(json_array_get(bb, 0), &x) || !json_num(json_array_get(bb, 1), &y) ||
            !json_num(json_array_get(bb, 2), &w) || !json_num(json_array_get(bb, 3), &h)) {
            st = ib_fail(IB_ERR_FORMAT, "%s: annotations[%zu] needs integer image_id and category_id and bbox [x,y,w,h]",
                         json_path, a);
            break;
        }
        int64_t c = find_id(cat, (int64_t)nc, json_integer_value(cid));
        if (c < 0) {
            st = ib_fail(IB_ERR_FORMAT, "%s: annotations[%zu]: category_id %lld is not among the categories", json_path,
                         a, (long long)json_integer_value(cid));
            break;
        }
        int64_t k = find_id(img, n, json_integer_value(iid));
        if (k < 0) {
            if (opts->skip_bad) continue;   // its image was skipped (or never listed)
            st = ib_fail(IB_ERR_FORMAT, "%s: annotations[%zu]: image_id %lld is not among the images", json_path, a,
                         (long long)json_integer_value(iid));
            break;
        }
        // Zero-area boxes exist in COCO; they cannot be matched or drawn, so they are left out.
        if (!(w > 0 && h > 0)) continue;
        owner[a] = k;
        tmp[a] = (ib_box){(float)x, (float)y, (float)(x + w), (float)(y + h), (int32_t)c,
                          json_is_integer(crowd) ? (int32_t)json_integer_value(crowd) : 0};
        im->off[k + 1]++;
    }
    if (!st) {
        for (int64_t i = 0; i < n; i++) im->off[i + 1] += im->off[i];
        im->n_boxes = im->cap_boxes = im->off[n];
        im->boxes = malloc(sizeof(ib_box) * (size_t)(im->n_boxes ? im->n_boxes : 1));
        int64_t *fill = malloc(sizeof(int64_t) * (size_t)(n ? n : 1));
        if (!im->boxes || !fill) st = ib_fail(IB_ERR_NOMEM, "out of memory");
        else {
            memcpy(fill, im->off, sizeof(int64_t) * (size_t)n);
            for (size_t a = 0; a < na; a++)
                if (owner[a] >= 0) im->boxes[fill[owner[a]]++] = tmp[a];
        }
        free(fill);
    }
    free(owner);
    free(tmp);
    free(img);
    free(cat);
    if (!st && n == 0) st = ib_fail(IB_ERR_NOTFOUND, "%s: no images", json_path);
    if (!st) ds->size = n;
    return st;
}

ib_status ib_coco_source_open(ib_dataset *ds, const char *path, const ib_ds_opts *opts) {
    char *json_path, *imdir;
    ib_status st = coco_locate(path, ib_ds_split(opts), &json_path, &imdir);
    if (st) return st;
    json_error_t err;
    json_t *root = json_load_file(json_path, JSON_REJECT_DUPLICATES, &err);
    if (!root) {
        // jansson reports missing files through the same struct: tell them apart for the status.
        st = ib_ds_is_file(json_path)
                 ? ib_fail(IB_ERR_FORMAT, "%s:%d:%d: malformed JSON: %s", json_path, err.line, err.column, err.text)
                 : ib_fail(IB_ERR_NOTFOUND, "%s: %s", json_path, err.text);
        free(json_path);
        free(imdir);
        return st;
    }
    det_impl *im = calloc(1, sizeof *im);
    ib_strvec names = {0};
    int64_t skipped0 = ds->skipped;
    st = im ? coco_parse(ds, im, json_path, imdir, root, opts, &names) : ib_fail(IB_ERR_NOMEM, "out of memory");
    json_decref(root);
    free(json_path);
    free(imdir);
    if (st) {
        ds->skipped = skipped0;
        ds->size = 0;
        ib_strvec_free(&names);
        det_free(im);
        return st;
    }
    ib_ds_set_classes(ds, &names);
    ds->has_boxes = 1;
    ds->impl = im;
    ds->vt = &coco_vt;
    return IB_OK;
}

// ---------------------------------------------------------------------------------------------
// YOLO

static ib_status read_names(const char *path, ib_strvec *names) {
    char *text;
    ib_status st = ib_ds_read_text(path, &text, NULL);
    if (st) return st;
    // One name per line; trailing blank lines and \r are dropped, inner blank lines are errors.
    char *cur = text;
    int lineno = 0, blank_at = 0;
    char *line;
    while (!st && (line = ib_ds_next_line(&cur, &lineno)) != NULL) {
        size_t k = strlen(line);
        while (k && (line[k - 1] == ' ' || line[k - 1] == '\t')) line[--k] = 0;
        if (k == 0) {
            if (!blank_at) blank_at = lineno;
        } else if (blank_at) st = ib_fail(IB_ERR_FORMAT, "%s:%d: empty class name", path, blank_at);
        else st = ib_strvec_push(names, line);
    }
    free(text);
    if (!st && names->n == 0) st = ib_fail(IB_ERR_FORMAT, "%s: no class names", path);
    return st;
}

typedef struct stem_ref { const char *stem; int64_t idx; } stem_ref;
static int cmp_stem(const void *a, const void *b) {
    return strcmp(((const stem_ref *)a)->stem, ((const stem_ref *)b)->stem);
}

// Parses one label file into boxes (normalised). Errors name file:line.
static ib_status yolo_parse_file(det_impl *im, const char *path, int n_classes) {
    char *text;
    ib_status st = ib_ds_read_text(path, &text, NULL);
    if (st) return st;
    int64_t first = im->n_boxes;
    char *cur = text;
    int lineno = 0;
    char *p;
    while (!st && (p = ib_ds_next_line(&cur, &lineno)) != NULL) {
        while (*p == ' ' || *p == '\t' || *p == '\r') p++;
        if (!*p) continue;
        char *q;
        long cls = strtol(p, &q, 10);
        double v[4];
        int ok = q != p && (*q == ' ' || *q == '\t');
        for (int k = 0; k < 4 && ok; k++) {
            p = q;
            v[k] = strtod(p, &q);
            ok = q != p && isfinite(v[k]);
        }
        while (ok && (*q == ' ' || *q == '\t' || *q == '\r')) q++;
        if (!ok || *q) {
            st = ib_fail(IB_ERR_FORMAT, "%s:%d: expected 'class cx cy w h' (class an integer, the rest normalised)",
                         path, lineno);
            break;
        }
        if (cls < 0 || cls >= n_classes) {
            st = ib_fail(IB_ERR_FORMAT, "%s:%d: class id %ld out of range 0..%d", path, lineno, cls, n_classes - 1);
            break;
        }
        // Fractions of the image's width and height, as Ultralytics checks them: a pixel coordinate or a
        // negative size is a file of another format, not a box to clamp.
        static const char *const field[4] = {"cx", "cy", "w", "h"};
        for (int k = 0; k < 4 && !st; k++)
            if (!(v[k] >= 0 && v[k] <= 1))
                st = ib_fail(IB_ERR_FORMAT, "%s:%d: %s %g outside [0, 1] (YOLO coordinates are fractions of the image)",
                             path, lineno, field[k], v[k]);
        if (st) break;
        if (!(v[2] > 0 && v[3] > 0)) continue;   // zero-size, as in COCO
        st = push_box(im, (ib_box){(float)v[0], (float)v[1], (float)v[2], (float)v[3], (int32_t)cls, 0});
    }
    free(text);
    if (st) im->n_boxes = first;
    return st;
}

ib_status ib_yolo_source_open(ib_dataset *ds, const char *path, const ib_ds_opts *opts) {
    const char *split = ib_ds_split(opts);
    char *im_root = ib_ds_join(path, "images"), *lb_root = ib_ds_join(path, "labels"), *nf = ib_ds_join(path, "names.txt");
    char *imdir = NULL, *lbdir = NULL;
    ib_strvec names = {0}, imgs = {0}, labs = {0};
    det_impl *im = calloc(1, sizeof *im);
    int64_t skipped = 0;
    ib_status st = im_root && lb_root && nf && im ? IB_OK : ib_fail(IB_ERR_NOMEM, "out of memory");
    if (!st) st = read_names(nf, &names);
    if (!st) st = ib_ds_split_dir(im_root, split, &imdir);
    if (!st) {
        // labels/<the same split folder name as images/>
        const char *base = strrchr(imdir, '/') + 1;
        lbdir = ib_ds_join(lb_root, base);
        if (!lbdir) st = ib_fail(IB_ERR_NOMEM, "out of memory");
    }
    if (!st) st = ib_ds_list(imdir, 'f', &imgs);
    if (!st && ib_ds_is_dir(lbdir)) st = ib_ds_list(lbdir, 'f', &labs);
    int64_t ni = imgs.n;
    if (!st) {
        im->yolo = 1;
        im->image_ids = malloc(sizeof(int64_t) * (size_t)(ni ? ni : 1));
        im->off = calloc((size_t)ni + 1, sizeof(int64_t));
        if (!im->image_ids || !im->off) st = ib_fail(IB_ERR_NOMEM, "out of memory");
    }
    // Label files are matched to images by stem (name without extension).
    ib_strvec stems = {0};
    int64_t *img_of = NULL;   // index into imgs.s of each stem
    for (int64_t i = 0; i < ni && !st; i++)
        if (ib_ds_is_image_name(imgs.s[i])) st = ib_strvec_push_own(&stems, ib_ds_stem(imgs.s[i]));
    if (!st) {
        img_of = malloc(sizeof(int64_t) * (size_t)(stems.n ? stems.n : 1));
        if (!img_of) st = ib_fail(IB_ERR_NOMEM, "out of memory");
        for (int64_t i = 0, k = 0; i < ni && !st; i++)
            if (ib_ds_is_image_name(imgs.s[i])) img_of[k++] = i;
    }
    // The label file of each image (index into labs), or -1: an image without labels has no boxes.
    int64_t *lab_of = NULL;
    if (!st) {
        lab_of = malloc(sizeof(int64_t) * (size_t)(stems.n ? stems.n : 1));
        if (!lab_of) st = ib_fail(IB_ERR_NOMEM, "out of memory");
        for (int64_t i = 0; i < stems.n && lab_of; i++) lab_of[i] = -1;
    }
    // Image stems in stem order, for a binary search per label file.
    stem_ref *order = NULL;
    if (!st) {
        order = malloc(sizeof(stem_ref) * (size_t)(stems.n ? stems.n : 1));
        if (!order) st = ib_fail(IB_ERR_NOMEM, "out of memory");
        for (int64_t i = 0; i < stems.n && order; i++) order[i] = (stem_ref){stems.s[i], i};
        if (order && stems.n > 1) qsort(order, (size_t)stems.n, sizeof *order, cmp_stem);
    }
    for (int64_t j = 0; j < labs.n && !st; j++) {
        size_t k = strlen(labs.s[j]);
        if (k < 4 || strcmp(labs.s[j] + k - 4, ".txt") != 0) continue;
        char *stem = ib_ds_stem(labs.s[j]);
        if (!stem) {
            st = ib_fail(IB_ERR_NOMEM, "out of memory");
            break;
        }
        int64_t hit = -1, lo = 0, hi = stems.n - 1;
        while (lo <= hi) {
            int64_t mid = (lo + hi) / 2;
            int c = strcmp(order[mid].stem, stem);
            if (c == 0) {
                hit = order[mid].idx;
                break;
            }
            if (c < 0) lo = mid + 1;
            else hi = mid - 1;
        }
        free(stem);
        if (hit < 0) {
            char *lp = ib_ds_join(lbdir, labs.s[j]);
            ib_status e = ib_fail(IB_ERR_NOTFOUND, "%s: a label file for a missing image (no %s/%.*s.jpg, .jpeg or .png)",
                                  lp ? lp : labs.s[j], imdir, (int)(k - 4), labs.s[j]);
            free(lp);
            if (opts->skip_bad) skipped++;
            else st = e;
            continue;
        }
        lab_of[hit] = j;
    }
    free(order);
    // Parse every image's labels in image order.
    for (int64_t i = 0; i < stems.n && !st; i++) {
        int64_t n = ds->size;
        char *file = ib_ds_join(imdir, imgs.s[img_of[i]]);
        st = ib_strvec_push_own(&im->files, file);
        if (st) break;
        if (lab_of[i] >= 0) {
            char *lp = ib_ds_join(lbdir, labs.s[lab_of[i]]);
            ib_status e = lp ? yolo_parse_file(im, lp, (int)names.n) : ib_fail(IB_ERR_NOMEM, "out of memory");
            free(lp);
            if (e == IB_ERR_NOMEM || (e && !opts->skip_bad)) {
                st = e;
                break;
            }
            if (e) {   // a bad label file: the image is left out
                skipped++;
                free(im->files.s[--im->files.n]);
                continue;
            }
        }
        im->image_ids[n] = n;
        im->off[n + 1] = im->n_boxes;
        ds->size = n + 1;
    }
    if (!st && ds->size == 0) st = ib_fail(IB_ERR_NOTFOUND, "%s: no images", imdir);
    free(lab_of);
    free(img_of);
    ib_strvec_free(&stems);
    ib_strvec_free(&imgs);
    ib_strvec_free(&labs);
    free(im_root);
    free(lb_root);
    free(nf);
    free(imdir);
    free(lbdir);
    if (st) {
        ds->size = 0;
        ib_strvec_free(&names);
        det_free(im);
        return st;
    }
    ib_ds_set_classes(ds, &names);
    ds->skipped += skipped;
    ds->has_boxes = 1;
    ds->impl = im;
    ds->vt = &yolo_vt;
    return IB_OK;
}
