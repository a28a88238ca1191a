// data/dataset.c: the one dataset interface. Opens a source by format (or guesses it from the path),
// forwards get to it, and implements skip_bad for every source alike; plus the file helpers the
// readers share (listings, paths, text files).
#include "data/data.h"
#include "data/sources.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>


static int ends_with_ci(const char *s, const char *suffix) {
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && strcasecmp(s + n - k, suffix) == 0;
}

// Which reader a path is meant for, by what is in it.
static ib_status guess_format(const char *path, const ib_ds_opts *opts, ib_ds_format *fmt) {
    if (ends_with_ci(path, ".h5") || ends_with_ci(path, ".hdf5")) { *fmt = IB_DS_PACK; return IB_OK; }
    if (!ib_ds_is_dir(path) && !ib_ds_is_file(path)) {
        if (strcmp(path, "synth") == 0) { *fmt = IB_DS_SYNTH; return IB_OK; }
        return ib_fail(IB_ERR_NOTFOUND, "%s: no such file or folder", path);
    }
    if (ends_with_ci(path, ".json")) { *fmt = IB_DS_COCO; return IB_OK; }
    if (!ib_ds_is_dir(path)) return ib_fail(IB_ERR_FORMAT, "%s: cannot tell the dataset format of this file", path);

    char *p = ib_ds_join(path, "wnids.txt");
    int tiny = p && ib_ds_is_file(p);
    free(p);
    if (tiny) { *fmt = IB_DS_TINYIMAGENET; return IB_OK; }

    p = ib_ds_join(path, "annotations");
    int coco = 0;
    if (p && ib_ds_is_dir(p)) {
        ib_strvec files = {0};
        if (ib_ds_list(p, 'f', &files) == IB_OK)
            for (int64_t i = 0; i < files.n; i++)
                if (strncmp(files.s[i], "instances_", 10) == 0 && ends_with_ci(files.s[i], ".json")) coco = 1;
        ib_strvec_free(&files);
    }
    free(p);
    if (coco) { *fmt = IB_DS_COCO; return IB_OK; }

    char *im = ib_ds_join(path, "images"), *lb = ib_ds_join(path, "labels");
    int yolo = im && lb && ib_ds_is_dir(im) && ib_ds_is_dir(lb);
    free(im);
    free(lb);
    if (yolo) { *fmt = IB_DS_YOLO; return IB_OK; }

    const char *split = ib_ds_split(opts);
    size_t n = strlen(path) + strlen(split) + 16;
    char *annot = malloc(n), *list = malloc(n);
    if (!annot || !list) {
        free(annot);
        free(list);
        return ib_fail(IB_ERR_NOMEM, "%s: out of memory", path);
    }
    snprintf(annot, n, "%s/%sannot", path, split);
    snprintf(list, n, "%s/%s.txt", path, split);
    int seg = ib_ds_is_dir(annot) || ib_ds_is_file(list);
    free(annot);
    free(list);
    if (seg) { *fmt = IB_DS_SEGPAIRS; return IB_OK; }

    ib_strvec dirs = {0};
    ib_status st = ib_ds_list(path, 'd', &dirs);
    int64_t nd = dirs.n;
    ib_strvec_free(&dirs);
    if (st) return st;
    if (nd > 0) { *fmt = IB_DS_IMAGEFOLDER; return IB_OK; }
    return ib_fail(IB_ERR_FORMAT,
                   "%s: cannot tell the dataset format (no wnids.txt, annotations/instances_*.json, images/ + "
                   "labels/, %sannot/ or class subfolders)", path, split);
}

ib_status ib_dataset_open(ib_dataset **out, const char *path, const ib_ds_opts *opts) {
    IB_ASSERT(out && opts, "ib_dataset_open: out and opts are required");
    *out = NULL;
    ib_ds_format fmt = opts->format;
    if (!path) {
        if (fmt != IB_DS_SYNTH && fmt != IB_DS_AUTO) return ib_fail(IB_ERR_ARG, "dataset: no path given");
        fmt = IB_DS_SYNTH;
        path = "synth";
    }
    if (fmt == IB_DS_AUTO) {
        ib_status st = guess_format(path, opts, &fmt);
        if (st) return st;
    }
    ib_dataset *ds = calloc(1, sizeof *ds);
    if (!ds) return ib_fail(IB_ERR_NOMEM, "%s: out of memory", path);
    ds->path = ib_ds_strdup(path);
    ds->ignore_index = opts->ignore_index ? opts->ignore_index : 255;
    if (!ds->path) {
        free(ds);
        return ib_fail(IB_ERR_NOMEM, "%s: out of memory", path);
    }
    ib_status st;
    switch (fmt) {
    case IB_DS_IMAGEFOLDER: st = ib_folder_source_open(ds, path, opts); break;
    case IB_DS_TINYIMAGENET: st = ib_tinyimagenet_source_open(ds, path, opts); break;
    case IB_DS_COCO: st = ib_coco_source_open(ds, path, opts); break;
    case IB_DS_YOLO: st = ib_yolo_source_open(ds, path, opts); break;
    case IB_DS_SEGPAIRS: st = ib_segpairs_source_open(ds, path, opts); break;
    case IB_DS_PACK: st = ib_pack_source_open(ds, path, opts); break;
    case IB_DS_SYNTH: st = ib_synth_source_open(ds, opts); break;
    default: st = ib_fail(IB_ERR_ARG, "%s: unknown dataset format %d", path, (int)fmt); break;
    }
    if (st == IB_OK && !ds->vt) st = ib_fail(IB_ERR_ARG, "%s: the source set no reader", path);
    if (st == IB_OK && opts->skip_bad && ds->size > 0) {
        ds->bad = calloc((size_t)ds->size, 1);   // flags set atomically by ib_dataset_get
        if (!ds->bad) st = ib_fail(IB_ERR_NOMEM, "%s: out of memory", path);
    }
    if (st) {
        // Sources clean up after themselves on failure unless they got as far as setting vt.
        ib_dataset_close(ds);
        return st;
    }
    *out = ds;
    return IB_OK;
}

void ib_dataset_close(ib_dataset *ds) {
    if (!ds) return;
    if (ds->vt && ds->vt->close) ds->vt->close(ds);
    if (ds->class_names)
        for (int c = 0; c < ds->n_classes; c++) free(ds->class_names[c]);
    free(ds->class_names);
    free(ds->path);
    free(ds->bad);
    free(ds);
}

int64_t ib_dataset_size(const ib_dataset *ds) { return ds->size; }
int ib_dataset_classes(const ib_dataset *ds) { return ds->n_classes; }
const char *ib_dataset_class_name(const ib_dataset *ds, int c) {
    if (c < 0 || c >= ds->n_classes || !ds->class_names) return NULL;
    return ds->class_names[c];
}
int ib_dataset_ignore_index(const ib_dataset *ds) { return ds->ignore_index; }
int64_t ib_dataset_skipped(const ib_dataset *ds) { return __atomic_load_n(&ds->skipped, __ATOMIC_RELAXED); }
const char *ib_dataset_path(const ib_dataset *ds) { return ds->path; }

static int skippable(ib_status st) { return st == IB_ERR_FORMAT || st == IB_ERR_IO || st == IB_ERR_NOTFOUND; }

// With skip_bad a sample that cannot be read is counted once and the next readable one is served in
// its place, so a loader never sees a hole in a batch; without, the error goes up with its message.
ib_status ib_dataset_get(ib_dataset *ds, int64_t i, ib_sample *s) {
    IB_ASSERT(i >= 0 && i < ds->size, "ib_dataset_get: index %lld out of [0, %lld)", (long long)i,
              (long long)ds->size);
    memset(s, 0, sizeof *s);
    if (!ds->bad) return ds->vt->get(ds, i, s);
    ib_status st = IB_OK;
    char first_err[1024] = "";
    for (int64_t k = 0; k < ds->size; k++) {
        int64_t j = (i + k) % ds->size;
        if (__atomic_load_n(&ds->bad[j], __ATOMIC_RELAXED)) continue;
        st = ds->vt->get(ds, j, s);
        if (st == IB_OK) return IB_OK;
        memset(s, 0, sizeof *s);
        if (!skippable(st)) return st;
        if (!first_err[0]) snprintf(first_err, sizeof first_err, "%s", ib_errmsg());
        if (__atomic_exchange_n(&ds->bad[j], 1, __ATOMIC_RELAXED) == 0)
            __atomic_add_fetch(&ds->skipped, 1, __ATOMIC_RELAXED);
    }
    return ib_fail(st ? st : IB_ERR_FORMAT, "%s: no readable sample left (first error: %s)", ds->path, first_err);
}

void ib_dataset_sample_name(ib_dataset *ds, int64_t i, char *buf, size_t n) {
    const char *f = ds->vt->file ? ds->vt->file(ds, i) : NULL;
    if (!f) {
        snprintf(buf, n, "%06lld", (long long)i);
        return;
    }
    const char *base = strrchr(f, '/');
    base = base ? base + 1 : f;
    const char *dot = strrchr(base, '.');
    int len = dot && dot > base ? (int)(dot - base) : (int)strlen(base);
    snprintf(buf, n, "%.*s", len, base);
}

void ib_sample_free(ib_sample *s) {
    if (!s) return;
    free(s->rgb);
    free(s->boxes);
    free(s->mask);
    memset(s, 0, sizeof *s);
}

// ---------------------------------------------------------------------------------------------
// Helpers

ib_status ib_strvec_push_own(ib_strvec *v, char *s) {
    if (!s) return ib_fail(IB_ERR_NOMEM, "out of memory");
    if (v->n == v->cap) {
        int64_t cap = v->cap ? v->cap * 2 : 64;
        char **p = realloc(v->s, sizeof(char *) * (size_t)cap);
        if (!p) {
            free(s);
            return ib_fail(IB_ERR_NOMEM, "out of memory");
        }
        v->s = p;
        v->cap = cap;
    }
    v->s[v->n++] = s;
    return IB_OK;
}

ib_status ib_strvec_push(ib_strvec *v, const char *s) { return ib_strvec_push_own(v, ib_ds_strdup(s)); }

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }
void ib_strvec_sort(ib_strvec *v) {
    if (v->n > 1) qsort(v->s, (size_t)v->n, sizeof(char *), cmp_str);
}

void ib_strvec_free(ib_strvec *v) {
    for (int64_t i = 0; i < v->n; i++) free(v->s[i]);
    free(v->s);
    memset(v, 0, sizeof *v);
}

char *ib_ds_strdup(const char *s) {
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d) memcpy(d, s, n);
    return d;
}

char *ib_ds_join(const char *dir, const char *name) {
    size_t a = strlen(dir), b = strlen(name);
    char *p = malloc(a + b + 2);
    if (!p) return NULL;
    memcpy(p, dir, a);
    size_t k = a;
    if (a > 0 && dir[a - 1] != '/') p[k++] = '/';
    memcpy(p + k, name, b + 1);
    return p;
}

char *ib_ds_stem(const char *name) {
    const char *base = strrchr(name, '/');
    base = base ? base + 1 : name;
    const char *dot = strrchr(base, '.');
    size_t n = dot && dot != base ? (size_t)(dot - base) : strlen(base);
    char *s = malloc(n + 1);
    if (!s) return NULL;
    memcpy(s, base, n);
    s[n] = 0;
    return s;
}

int ib_ds_is_dir(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

int ib_ds_is_file(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

int ib_ds_is_image_name(const char *name) {
    return ends_with_ci(name, ".jpg") || ends_with_ci(name, ".jpeg") || ends_with_ci(name, ".png");
}

ib_status ib_ds_list(const char *dir, char what, ib_strvec *out) {
    memset(out, 0, sizeof *out);
    DIR *d = opendir(dir);
    if (!d) {
        if (errno == ENOENT || errno == ENOTDIR) return ib_fail(IB_ERR_NOTFOUND, "%s: no such folder", dir);
        return ib_fail(IB_ERR_IO, "%s: cannot open folder: %s", dir, strerror(errno));
    }
    struct dirent *e;
    ib_status st = IB_OK;
    while (st == IB_OK && (e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.') continue;
        int is_dir, is_file;
        if (e->d_type == DT_DIR || e->d_type == DT_REG) {
            is_dir = e->d_type == DT_DIR;
            is_file = e->d_type == DT_REG;
        } else {   // unknown type or a symlink: ask stat
            char *p = ib_ds_join(dir, e->d_name);
            if (!p) {
                st = ib_fail(IB_ERR_NOMEM, "out of memory");
                break;
            }
            is_dir = ib_ds_is_dir(p);
            is_file = ib_ds_is_file(p);
            free(p);
        }
        if ((what == 'd' && is_dir) || (what == 'f' && is_file)) st = ib_strvec_push(out, e->d_name);
    }
    closedir(d);
    if (st) {
        ib_strvec_free(out);
        return st;
    }
    ib_strvec_sort(out);
    return IB_OK;
}

ib_status ib_ds_read_text(const char *path, char **text, size_t *n) {
    *text = NULL;
    FILE *fp = fopen(path, "rb");
    if (!fp) {
        if (errno == ENOENT) return ib_fail(IB_ERR_NOTFOUND, "%s: no such file", path);
        return ib_fail(IB_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    }
    size_t cap = 1 << 16, len = 0;
    char *buf = malloc(cap);
    while (buf) {
        if (len + 1 >= cap) {
            char *b = realloc(buf, cap * 2);
            if (!b) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = b;
            cap *= 2;
        }
        size_t k = fread(buf + len, 1, cap - 1 - len, fp);
        len += k;
        if (k == 0) break;
    }
    int err = ferror(fp);
    fclose(fp);
    if (!buf) return ib_fail(IB_ERR_NOMEM, "%s: out of memory reading it", path);
    if (err) {
        free(buf);
        return ib_fail(IB_ERR_IO, "%s: read error", path);
    }
    buf[len] = 0;
    *text = buf;
    if (n) *n = len;
    return IB_OK;
}

char *ib_ds_next_line(char **cur, int *lineno) {
    char *p = *cur;
    if (!p || !*p) return NULL;
    char *e = strchr(p, '\n');
    if (e) {
        *e = 0;
        *cur = e + 1;
    } else *cur = p + strlen(p);
    size_t n = strlen(p);
    if (n && p[n - 1] == '\r') p[n - 1] = 0;
    (*lineno)++;
    return p;
}

ib_status ib_ds_split_dir(const char *dir, const char *split, char **out) {
    *out = NULL;
    char *p = ib_ds_join(dir, split);
    if (!p) return ib_fail(IB_ERR_NOMEM, "out of memory");
    if (ib_ds_is_dir(p)) {
        *out = p;
        return IB_OK;
    }
    free(p);
    ib_strvec dirs;
    ib_status st = ib_ds_list(dir, 'd', &dirs);
    if (st) return st;
    const char *hit = NULL;
    int n_hit = 0;
    size_t k = strlen(split);
    for (int64_t i = 0; i < dirs.n; i++)
        if (strncmp(dirs.s[i], split, k) == 0 && isdigit((unsigned char)dirs.s[i][k])) {
            hit = dirs.s[i];
            n_hit++;
        }
    if (n_hit == 1) *out = ib_ds_join(dir, hit);
    ib_strvec_free(&dirs);
    if (n_hit != 1)
        return ib_fail(IB_ERR_NOTFOUND, "%s: no folder for split '%s' (%s/%s or one %s<year> folder)", dir, split,
                       dir, split, split);
    return *out ? IB_OK : ib_fail(IB_ERR_NOMEM, "out of memory");
}

void ib_ds_set_classes(ib_dataset *ds, ib_strvec *names) {
    ds->n_classes = (int)names->n;
    ds->class_names = names->s;
    memset(names, 0, sizeof *names);
}

const char *ib_ds_split(const ib_ds_opts *opts) { return opts && opts->split && opts->split[0] ? opts->split : "train"; }
