// Named tensors in HDF5 files. A created file is built in memory (HDF5's core driver) and written on
// close as PATH.tmp, synced and renamed (core/fileio.c), so the final name only ever holds a complete file
// and a full disk is one checked write. (Not HDF5 writing to disk: in libhdf5 before 1.14.1 a file whose
// close fails to flush, as on a full disk, stays in HDF5's table of open files after it is freed, and the
// library's own clean-up at exit then crashes on it: HDFFV-11052.) HDF5's own error printing is silenced;
// every failure becomes an ib_status with a message naming the file and the dataset.
#include "core.h"

#include <errno.h>
#include <fcntl.h>
#include <hdf5.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct ib_h5 {
    hid_t file;
    char *path;    // final path
    int created;   // built in memory, written by ib_h5_close
};

static void quiet_hdf5(void) {
    static int done = 0;
    if (!done) {
        H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
        done = 1;
    }
}

const char *ib_h5_path(const ib_h5 *f) { return f->path; }

ib_status ib_h5_create(ib_h5 **out, const char *path) {
    quiet_hdf5();
    *out = NULL;
    ib_h5 *f = calloc(1, sizeof *f);
    if (!f || !(f->path = strdup(path))) {
        free(f);
        return ib_fail(IB_ERR_NOMEM, "%s: out of memory", path);
    }
    f->created = 1;
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    if (fapl < 0 || H5Pset_fapl_core(fapl, (size_t)1 << 20, 0) < 0) f->file = -1;   // grows 1 MiB at a time, no file
    else f->file = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, fapl);
    if (fapl >= 0) H5Pclose(fapl);
    if (f->file < 0) {
        free(f->path), free(f);
        return ib_fail(IB_ERR_NOMEM, "%s: HDF5 cannot make the file in memory", path);
    }
    *out = f;
    return IB_OK;
}

ib_status ib_h5_check_creatable(const char *path) {
    struct stat st;
    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) return ib_fail(IB_ERR_IO, "%s: is a folder, not a file to write", path);
    size_t n = strlen(path) + 5;
    char *tmp = malloc(n);
    if (!tmp) return ib_fail(IB_ERR_NOMEM, "%s: out of memory", path);
    snprintf(tmp, n, "%s.tmp", path);   // the name ib_h5_close writes through
    int fd = open(tmp, O_WRONLY | O_CREAT, 0644);
    int err = errno;
    if (fd >= 0) close(fd), unlink(tmp);
    free(tmp);
    if (fd < 0) return ib_fail(IB_ERR_IO, "%s: cannot write there (%s)", path, strerror(err));
    return IB_OK;
}

ib_status ib_h5_open(ib_h5 **out, const char *path) {
    quiet_hdf5();
    *out = NULL;
    if (access(path, R_OK) != 0) return ib_fail(IB_ERR_IO, "%s: cannot open (no such file or not readable)", path);
    if (H5Fis_hdf5(path) <= 0) return ib_fail(IB_ERR_FORMAT, "%s: not an HDF5 file", path);
    hid_t h = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (h < 0) return ib_fail(IB_ERR_IO, "%s: HDF5 cannot open it", path);
    ib_h5 *f = calloc(1, sizeof *f);
    f->file = h;
    f->path = strdup(path);
    *out = f;
    return IB_OK;
}

ib_status ib_h5_close(ib_h5 *f) {
    if (!f) return IB_OK;
    ib_status s = IB_OK;
    if (f->created) {
        // The whole image, then one checked write through PATH.tmp and a rename.
        ssize_t n = H5Fflush(f->file, H5F_SCOPE_GLOBAL) < 0 ? -1 : H5Fget_file_image(f->file, NULL, 0);
        void *img = n > 0 ? malloc((size_t)n) : NULL;
        if (n > 0 && !img) s = ib_fail(IB_ERR_NOMEM, "%s: out of memory for the file's %lld bytes", f->path, (long long)n);
        else if (!img || H5Fget_file_image(f->file, img, (size_t)n) != n)
            s = ib_fail(IB_ERR_IO, "%s: HDF5 cannot give the file's image", f->path);
        H5Fclose(f->file);   // in memory: nothing to flush to a disk
        if (!s) s = ib_write_file(f->path, img, (size_t)n);
        free(img);
    } else if (H5Fclose(f->file) < 0) s = ib_fail(IB_ERR_IO, "%s: error closing", f->path);
    free(f->path);
    free(f);
    return s;
}

void ib_h5_abort(ib_h5 *f) {
    if (!f) return;
    H5Fclose(f->file);   // a created file is in memory: nothing was written
    free(f->path);
    free(f);
}

int ib_h5_exists(ib_h5 *f, const char *name) {
    // Check each prefix: H5Lexists fails rather than answering 0 when an inner group is missing.
    char buf[1024];
    size_t n = strlen(name);
    if (n >= sizeof buf) return 0;
    memcpy(buf, name, n + 1);
    for (size_t i = 1; i <= n; i++) {
        if (buf[i] == '/' || buf[i] == 0) {
            char c = buf[i];
            buf[i] = 0;
            if (H5Lexists(f->file, buf, H5P_DEFAULT) <= 0) return 0;
            buf[i] = c;
        }
    }
    return 1;
}

static ib_status write_raw(ib_h5 *f, const char *name, hid_t type, const void *x, int ndim, const int *shape) {
    hsize_t dims[8];
    IB_ASSERT(ndim >= 0 && ndim <= 8, "rank %d", ndim);
    for (int i = 0; i < ndim; i++) dims[i] = (hsize_t)shape[i];
    hid_t space = H5Screate_simple(ndim, dims, NULL);
    hid_t lcpl = H5Pcreate(H5P_LINK_CREATE);
    H5Pset_create_intermediate_group(lcpl, 1);
    hid_t ds = H5Dcreate2(f->file, name, type, space, lcpl, H5P_DEFAULT, H5P_DEFAULT);
    ib_status s = IB_OK;
    if (ds < 0) s = ib_fail(IB_ERR_IO, "%s: cannot create dataset %s (already there?)", f->path, name);
    else if (H5Dwrite(ds, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, x) < 0)
        s = ib_fail(IB_ERR_IO, "%s: cannot write dataset %s", f->path, name);
    if (ds >= 0) H5Dclose(ds);
    H5Pclose(lcpl);
    H5Sclose(space);
    return s;
}

ib_status ib_h5_write_f32(ib_h5 *f, const char *name, const float *x, int ndim, const int *shape) {
    return write_raw(f, name, H5T_NATIVE_FLOAT, x, ndim, shape);
}
ib_status ib_h5_write_i32(ib_h5 *f, const char *name, const int32_t *x, int ndim, const int *shape) {
    return write_raw(f, name, H5T_NATIVE_INT32, x, ndim, shape);
}
ib_status ib_h5_write_i64(ib_h5 *f, const char *name, const int64_t *x, int ndim, const int *shape) {
    return write_raw(f, name, H5T_NATIVE_INT64, x, ndim, shape);
}

ib_status ib_h5_write(ib_h5 *f, const char *name, const ib_tensor *t) {
    IB_ASSERT(ib_is_contiguous(t), "h5_write %s: contiguous tensors only", name);
    return ib_h5_write_f32(f, name, t->data, t->ndim, t->shape);
}

ib_status ib_h5_shape(ib_h5 *f, const char *name, int *ndim, int64_t *shape) {
    if (!ib_h5_exists(f, name)) return ib_fail(IB_ERR_NOTFOUND, "%s: no dataset %s", f->path, name);
    hid_t ds = H5Dopen2(f->file, name, H5P_DEFAULT);
    if (ds < 0) return ib_fail(IB_ERR_FORMAT, "%s: %s is not a dataset", f->path, name);
    hid_t space = H5Dget_space(ds);
    int r = H5Sget_simple_extent_ndims(space);
    ib_status s = IB_OK;
    if (r < 0 || r > 8) s = ib_fail(IB_ERR_FORMAT, "%s: dataset %s has rank %d (at most 8)", f->path, name, r);
    else {
        hsize_t dims[8];
        H5Sget_simple_extent_dims(space, dims, NULL);
        *ndim = r;
        if (shape)
            for (int i = 0; i < r; i++) shape[i] = (int64_t)dims[i];
    }
    H5Sclose(space);
    H5Dclose(ds);
    return s;
}

static ib_status read_raw(ib_h5 *f, const char *name, hid_t type, void *x, int64_t n) {
    int r;
    int64_t shape[8];
    ib_status s = ib_h5_shape(f, name, &r, shape);
    if (s) return s;
    int64_t m = 1;
    for (int i = 0; i < r; i++) m *= shape[i];
    if (m != n)
        return ib_fail(IB_ERR_FORMAT, "%s: dataset %s has %lld elements, expected %lld", f->path, name,
                       (long long)m, (long long)n);
    hid_t ds = H5Dopen2(f->file, name, H5P_DEFAULT);
    if (H5Dread(ds, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, x) < 0)
        s = ib_fail(IB_ERR_FORMAT, "%s: cannot read dataset %s as the expected type", f->path, name);
    H5Dclose(ds);
    return s;
}

ib_status ib_h5_check_f32(ib_h5 *f, const char *name) {
    if (!ib_h5_exists(f, name)) return ib_fail(IB_ERR_NOTFOUND, "%s: no dataset %s", f->path, name);
    hid_t ds = H5Dopen2(f->file, name, H5P_DEFAULT);
    if (ds < 0) return ib_fail(IB_ERR_FORMAT, "%s: %s is not a dataset", f->path, name);
    hid_t type = H5Dget_type(ds);
    H5T_class_t c = H5Tget_class(type);
    size_t size = H5Tget_size(type);
    H5Tclose(type);
    H5Dclose(ds);
    if (c == H5T_FLOAT && size == 4) return IB_OK;
    return ib_fail(IB_ERR_FORMAT, "%s: dataset %s is %s of %zu bytes, expected float32", f->path, name,
                   c == H5T_FLOAT ? "a float" : c == H5T_INTEGER ? "an integer" : "not a number", size);
}

ib_status ib_h5_read_f32(ib_h5 *f, const char *name, float *x, int64_t n) {
    return read_raw(f, name, H5T_NATIVE_FLOAT, x, n);
}
ib_status ib_h5_read_i32(ib_h5 *f, const char *name, int32_t *x, int64_t n) {
    return read_raw(f, name, H5T_NATIVE_INT32, x, n);
}
ib_status ib_h5_read_i64(ib_h5 *f, const char *name, int64_t *x, int64_t n) {
    return read_raw(f, name, H5T_NATIVE_INT64, x, n);
}

ib_status ib_h5_read(ib_h5 *f, const char *name, ib_ctx *ctx, ib_tensor **out) {
    int r;
    int64_t shape[8];
    ib_status s = ib_h5_shape(f, name, &r, shape);
    if (s) return s;
    if (r < 1 || r > IB_MAX_DIMS)
        return ib_fail(IB_ERR_FORMAT, "%s: dataset %s has rank %d, tensors have 1 to %d", f->path, name, r,
                       IB_MAX_DIMS);
    int sh[IB_MAX_DIMS];
    for (int i = 0; i < r; i++) sh[i] = (int)shape[i];
    ib_tensor *t = ib_tensor_new(ctx, r, sh);
    s = ib_h5_read_f32(f, name, t->data, ib_numel(t));
    if (s) return s;
    *out = t;
    return IB_OK;
}

ib_status ib_h5_read_into(ib_h5 *f, const char *name, ib_tensor *t) {
    IB_ASSERT(ib_is_contiguous(t), "h5_read_into %s: contiguous tensors only", name);
    int r;
    int64_t shape[8];
    ib_status s = ib_h5_shape(f, name, &r, shape);
    if (s) return s;
    int ok = r == t->ndim;
    for (int i = 0; ok && i < r; i++) ok = shape[i] == t->shape[i];
    if (!ok) {
        char want[64], got[64] = "[";
        size_t k = 1;
        for (int i = 0; i < r && k < sizeof got; i++)
            k += (size_t)snprintf(got + k, sizeof got - k, i ? ", %lld" : "%lld", (long long)shape[i]);
        if (k < sizeof got) snprintf(got + k, sizeof got - k, "]");
        return ib_fail(IB_ERR_FORMAT, "%s: %s has shape %s, expected %s", f->path, name, got,
                       ib_shape_str(t, want, sizeof want));
    }
    return ib_h5_read_f32(f, name, t->data, ib_numel(t));
}

// ---------------------------------------------------------------------------------------------
// Attributes

static ib_status attr_write(ib_h5 *f, const char *obj, const char *attr, hid_t type, const void *v) {
    if (H5Aexists_by_name(f->file, obj, attr, H5P_DEFAULT) > 0) H5Adelete_by_name(f->file, obj, attr, H5P_DEFAULT);
    hid_t space = H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate_by_name(f->file, obj, attr, type, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    ib_status s = IB_OK;
    if (a < 0 || H5Awrite(a, type, v) < 0) s = ib_fail(IB_ERR_IO, "%s: cannot write attribute %s on %s", f->path, attr, obj);
    if (a >= 0) H5Aclose(a);
    H5Sclose(space);
    return s;
}

ib_status ib_h5_set_attr_str(ib_h5 *f, const char *obj, const char *attr, const char *value) {
    hid_t type = H5Tcopy(H5T_C_S1);
    H5Tset_size(type, strlen(value) + 1);
    H5Tset_strpad(type, H5T_STR_NULLTERM);
    H5Tset_cset(type, H5T_CSET_UTF8);
    ib_status s = attr_write(f, obj, attr, type, value);
    H5Tclose(type);
    return s;
}

ib_status ib_h5_set_attr_i64(ib_h5 *f, const char *obj, const char *attr, int64_t value) {
    return attr_write(f, obj, attr, H5T_NATIVE_INT64, &value);
}

ib_status ib_h5_set_attr_f64(ib_h5 *f, const char *obj, const char *attr, double value) {
    return attr_write(f, obj, attr, H5T_NATIVE_DOUBLE, &value);
}

static hid_t attr_open(ib_h5 *f, const char *obj, const char *attr, ib_status *s) {
    if ((strcmp(obj, "/") != 0 && !ib_h5_exists(f, obj)) || H5Aexists_by_name(f->file, obj, attr, H5P_DEFAULT) <= 0) {
        *s = ib_fail(IB_ERR_NOTFOUND, "%s: no attribute %s on %s", f->path, attr, obj);
        return -1;
    }
    *s = IB_OK;
    return H5Aopen_by_name(f->file, obj, attr, H5P_DEFAULT, H5P_DEFAULT);
}

ib_status ib_h5_attr_str(ib_h5 *f, const char *obj, const char *attr, char **value) {
    ib_status s;
    *value = NULL;
    hid_t a = attr_open(f, obj, attr, &s);
    if (a < 0) return s;
    hid_t ftype = H5Aget_type(a);
    if (H5Tget_class(ftype) != H5T_STRING) {
        s = ib_fail(IB_ERR_FORMAT, "%s: attribute %s on %s is not a string", f->path, attr, obj);
    } else if (H5Tis_variable_str(ftype) > 0) {
        // Written by h5py (variable-length strings are its default).
        hid_t mtype = H5Tcopy(H5T_C_S1);
        H5Tset_size(mtype, H5T_VARIABLE);
        H5Tset_cset(mtype, H5Tget_cset(ftype));
        char *tmp = NULL;
        if (H5Aread(a, mtype, &tmp) < 0 || !tmp) s = ib_fail(IB_ERR_FORMAT, "%s: cannot read attribute %s", f->path, attr);
        else {
            *value = strdup(tmp);
            hid_t space = H5Aget_space(a);
            H5Dvlen_reclaim(mtype, space, H5P_DEFAULT, &tmp);
            H5Sclose(space);
        }
        H5Tclose(mtype);
    } else {
        size_t n = H5Tget_size(ftype);
        char *buf = calloc(n + 1, 1);
        hid_t mtype = H5Tcopy(H5T_C_S1);
        H5Tset_size(mtype, n + 1);
        H5Tset_cset(mtype, H5Tget_cset(ftype));
        if (H5Aread(a, mtype, buf) < 0) {
            free(buf);
            s = ib_fail(IB_ERR_FORMAT, "%s: cannot read attribute %s", f->path, attr);
        } else *value = buf;
        H5Tclose(mtype);
    }
    H5Tclose(ftype);
    H5Aclose(a);
    return s;
}

static ib_status attr_read_num(ib_h5 *f, const char *obj, const char *attr, hid_t mtype, void *v) {
    ib_status s;
    hid_t a = attr_open(f, obj, attr, &s);
    if (a < 0) return s;
    hid_t ftype = H5Aget_type(a);
    H5T_class_t c = H5Tget_class(ftype);
    if ((c != H5T_INTEGER && c != H5T_FLOAT) || H5Aread(a, mtype, v) < 0)
        s = ib_fail(IB_ERR_FORMAT, "%s: attribute %s on %s is not a number", f->path, attr, obj);
    H5Tclose(ftype);
    H5Aclose(a);
    return s;
}

ib_status ib_h5_attr_i64(ib_h5 *f, const char *obj, const char *attr, int64_t *value) {
    return attr_read_num(f, obj, attr, H5T_NATIVE_INT64, value);
}
ib_status ib_h5_attr_f64(ib_h5 *f, const char *obj, const char *attr, double *value) {
    return attr_read_num(f, obj, attr, H5T_NATIVE_DOUBLE, value);
}

typedef struct {
    void (*fn)(const char *, void *);
    void *user;
} list_cb;

#if H5_VERSION_GE(1, 12, 0)
typedef H5L_info2_t link_info;
#define LINK_ITERATE H5Literate2
#else
typedef H5L_info_t link_info;
#define LINK_ITERATE H5Literate
#endif

static herr_t list_iter(hid_t g, const char *name, const link_info *info, void *op) {
    (void)g, (void)info;
    list_cb *cb = op;
    cb->fn(name, cb->user);
    return 0;
}

ib_status ib_h5_list(ib_h5 *f, const char *group, void (*fn)(const char *name, void *user), void *user) {
    if (strcmp(group, "/") != 0 && !ib_h5_exists(f, group)) return ib_fail(IB_ERR_NOTFOUND, "%s: no group %s", f->path, group);
    hid_t g = H5Gopen2(f->file, group, H5P_DEFAULT);
    if (g < 0) return ib_fail(IB_ERR_FORMAT, "%s: %s is not a group", f->path, group);
    list_cb cb = {fn, user};
    hsize_t idx = 0;
    herr_t r = LINK_ITERATE(g, H5_INDEX_NAME, H5_ITER_INC, &idx, list_iter, &cb);
    H5Gclose(g);
    return r < 0 ? ib_fail(IB_ERR_FORMAT, "%s: cannot list %s", f->path, group) : IB_OK;
}
