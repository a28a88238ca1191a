// HDF5 dataset packs (docs/FORMATS.md): a writer that appends one image at a time (so a pack of any size
// never sits in memory), the reader behind IB_DS_PACK that reads one image per get with a hyperslab, and
// the resize that brings any sample to the pack's square size.
#include "data/data.h"
#include "data/sources.h"

#include <errno.h>
#include <fcntl.h>
#include <hdf5.h>
#if H5_VERSION_GE(1, 13, 0)
#include <H5FDdevelop.h>   // the file driver class (H5FDpublic.h's up to 1.12)
#endif
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>


#define PACK_FORMAT "ibnas-pack"
#define PACK_VERSION 1
// Level 1: on Tiny ImageNet pixels levels 1, 4 and 6 give the same size (-14%) and speed; on the noisy
// synthetic scenes level 4 writes 45% slower than 1 for 0.4% less.
#define PACK_DEFLATE_LEVEL 1

// The serial HDF5 library is not thread-safe, and its state is global: one lock for every pack, read
// or written, whichever thread. (core/h5io.c takes no lock: checkpoints must not be written from a
// thread while a loader thread reads a pack.)
static pthread_mutex_t pack_mu = PTHREAD_MUTEX_INITIALIZER;

static void quiet_hdf5(void) { H5Eset_auto2(H5E_DEFAULT, NULL, NULL); }

// ---------------------------------------------------------------------------------------------
// Attributes (scalar, on the root group or a dataset).

static int attr_set_str(hid_t obj, const char *name, const char *value) {
    hid_t type = H5Tcopy(H5T_C_S1);
    H5Tset_size(type, strlen(value) + 1);
    H5Tset_strpad(type, H5T_STR_NULLTERM);
    H5Tset_cset(type, H5T_CSET_UTF8);
    hid_t space = H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate2(obj, name, type, space, H5P_DEFAULT, H5P_DEFAULT);
    int ok = a >= 0 && H5Awrite(a, type, value) >= 0;
    if (a >= 0) H5Aclose(a);
    H5Sclose(space);
    H5Tclose(type);
    return ok;
}

static int attr_set_i64(hid_t obj, const char *name, int64_t value) {
    hid_t space = H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate2(obj, name, H5T_STD_I64LE, space, H5P_DEFAULT, H5P_DEFAULT);
    int ok = a >= 0 && H5Awrite(a, H5T_NATIVE_INT64, &value) >= 0;
    if (a >= 0) H5Aclose(a);
    H5Sclose(space);
    return ok;
}

// 1: read, 0: absent, -1: present but not a number.
static int attr_get_i64(hid_t obj, const char *name, int64_t *value) {
    if (H5Aexists(obj, name) <= 0) return 0;
    hid_t a = H5Aopen(obj, name, H5P_DEFAULT);
    if (a < 0) return -1;
    hid_t t = H5Aget_type(a);
    H5T_class_t c = H5Tget_class(t);
    int ok = (c == H5T_INTEGER || c == H5T_FLOAT) && H5Aread(a, H5T_NATIVE_INT64, value) >= 0;
    H5Tclose(t);
    H5Aclose(a);
    return ok ? 1 : -1;
}

// Fixed-length (ours) or variable-length (h5py's default) strings; *value malloc'd. 1 / 0 / -1 as above.
static int attr_get_str(hid_t obj, const char *name, char **value) {
    *value = NULL;
    if (H5Aexists(obj, name) <= 0) return 0;
    hid_t a = H5Aopen(obj, name, H5P_DEFAULT);
    if (a < 0) return -1;
    hid_t ft = H5Aget_type(a);
    int ok = 0;
    if (H5Tget_class(ft) == H5T_STRING) {
        hid_t mt = H5Tcopy(H5T_C_S1);
        H5Tset_cset(mt, H5Tget_cset(ft));
        if (H5Tis_variable_str(ft) > 0) {
            H5Tset_size(mt, H5T_VARIABLE);
            char *tmp = NULL;
            if (H5Aread(a, mt, &tmp) >= 0 && tmp) {
                *value = strdup(tmp);
                ok = *value != NULL;
                hid_t sp = H5Aget_space(a);
                H5Dvlen_reclaim(mt, sp, H5P_DEFAULT, &tmp);
                H5Sclose(sp);
            }
        } else {
            size_t n = H5Tget_size(ft);
            H5Tset_size(mt, n + 1);
            char *buf = calloc(n + 1, 1);
            if (buf && H5Aread(a, mt, buf) >= 0) *value = buf, ok = 1;
            else free(buf);
        }
        H5Tclose(mt);
    }
    H5Tclose(ft);
    H5Aclose(a);
    return ok ? 1 : -1;
}

// ---------------------------------------------------------------------------------------------
// The writer's file layer: an HDF5 file driver, POSIX I/O as libhdf5's own "sec2" (the default) does it,
// with one difference: the close never fails.
//
// Why: when H5Fclose fails (its last flush or its truncate meets a full disk or a file size limit),
// libhdf5 1.10 (Debian 12's) keeps a freed file in its table and crashes at exit (HDFFV-11052, fixed in
// HDF5 1.14.1): the writer reported its error and the process then died with SIGSEGV. Two smaller fixes
// were tried on the dropped writer. Cutting the file to nothing before the close (what the writer did)
// gives that flush room on a full disk, not under a file size limit (the flush writes at the old offsets,
// past the limit). A /dev/null dup2'd onto sec2's descriptor lets those closes succeed, but rests on
// sec2's truncate at the close not running (it ftruncates to the allocated end whenever that differs from
// the written end, as it does after a failed write, and ftruncate fails on /dev/null with EINVAL). Neither
// helps a pack whose own close meets the full disk (the last flush of a pack that just fits, or not):
// that close is not a dropped writer's, and it crashed too. A driver of our own sees every write, truncate
// and close of both paths, so it can decide.
//
// The rule: every write and truncate is attempted, and the first failure's errno is kept in the writer's
// pack_io. While the writer is open a failure is returned to HDF5 (so H5Dwrite fails at the image that
// met the full disk); once the writer is closing or dropped it is not, so H5Fclose succeeds, and the writer
// reports the kept errno itself and removes the file. Writes are attempted rather than skipped after a
// failure so that whatever HDF5 reads back during its close (B-tree nodes it evicted) is on disk whenever
// the disk took it. Packs go through this driver always, so a pack that succeeds is written by the same
// calls (and allocated by the same feature flags) as by sec2: the same file, byte for byte.

typedef struct {
    int closing;   // the writer is closing (its last flush) or dropped: failures are kept, not returned
    int err;       // errno of the first failed write, truncate or close; 0 when none failed
} pack_io;

typedef struct {
    H5FD_t pub;    // HDF5's part; must come first
    int fd;
    haddr_t eoa, eof;   // the end HDF5 has allocated; the end written (the file's size)
    dev_t dev;
    ino_t ino;
    pack_io *io;
} pack_fd;

// The open callback cannot be told which writer it serves except through the file access list; every
// pack open runs under pack_mu, so the writer being opened is simply named here for the callback.
static pack_io *pack_io_opening;
static hid_t pack_driver = -1;

static herr_t pack_fd_failed(pack_fd *f, int err) {
    if (!f->io->err) f->io->err = err ? err : EIO;
    return f->io->closing ? 0 : -1;
}

static H5FD_t *pack_fd_open(const char *name, unsigned flags, hid_t fapl, haddr_t maxaddr) {
    (void)fapl;
    if (!name || !*name || !pack_io_opening || maxaddr == 0 || maxaddr == HADDR_UNDEF) return NULL;
    int o = (flags & H5F_ACC_RDWR ? O_RDWR : O_RDONLY) | (flags & H5F_ACC_TRUNC ? O_TRUNC : 0) |
            (flags & H5F_ACC_CREAT ? O_CREAT : 0) | (flags & H5F_ACC_EXCL ? O_EXCL : 0);
    struct stat st;
    pack_fd *f = calloc(1, sizeof *f);
    if (!f) return NULL;
    f->fd = open(name, o | O_CLOEXEC, 0666);
    if (f->fd < 0 || fstat(f->fd, &st) != 0) {
        if (f->fd >= 0) close(f->fd);
        free(f);
        return NULL;
    }
    f->eof = (haddr_t)st.st_size, f->dev = st.st_dev, f->ino = st.st_ino, f->io = pack_io_opening;
    return &f->pub;
}

static herr_t pack_fd_close(H5FD_t *file) {
    pack_fd *f = (pack_fd *)file;
    if (close(f->fd) != 0) pack_fd_failed(f, errno);   // kept for the writer, never returned (see above)
    free(f);
    return 0;
}

static int pack_fd_cmp(const H5FD_t *a, const H5FD_t *b) {
    const pack_fd *x = (const pack_fd *)a, *y = (const pack_fd *)b;
    if (x->dev != y->dev) return x->dev < y->dev ? -1 : 1;
    return x->ino < y->ino ? -1 : x->ino > y->ino;
}

// sec2's flags in libhdf5 1.10.8 but SWMR (not used here): the same allocation, so the same file.
static herr_t pack_fd_query(const H5FD_t *file, unsigned long *flags) {
    (void)file;
    if (flags)
        *flags = H5FD_FEAT_AGGREGATE_METADATA | H5FD_FEAT_ACCUMULATE_METADATA | H5FD_FEAT_DATA_SIEVE |
                 H5FD_FEAT_AGGREGATE_SMALLDATA | H5FD_FEAT_POSIX_COMPAT_HANDLE | H5FD_FEAT_DEFAULT_VFD_COMPATIBLE;
    return 0;
}

static haddr_t pack_fd_get_eoa(const H5FD_t *file, H5FD_mem_t type) {
    (void)type;
    return ((const pack_fd *)file)->eoa;
}

static herr_t pack_fd_set_eoa(H5FD_t *file, H5FD_mem_t type, haddr_t addr) {
    (void)type;
    ((pack_fd *)file)->eoa = addr;
    return 0;
}

static haddr_t pack_fd_get_eof(const H5FD_t *file, H5FD_mem_t type) {
    (void)type;
    return ((const pack_fd *)file)->eof;
}

static herr_t pack_fd_get_handle(H5FD_t *file, hid_t fapl, void **handle) {
    (void)fapl;
    if (!handle) return -1;
    *handle = &((pack_fd *)file)->fd;   // a POSIX descriptor, as H5FD_FEAT_POSIX_COMPAT_HANDLE promises
    return 0;
}

#define PACK_IO_CHUNK ((size_t)1 << 30)

static int pack_fd_outside(const pack_fd *f, haddr_t addr, size_t size) {
    return addr == HADDR_UNDEF || addr > (haddr_t)INT64_MAX - size || addr + size > f->eoa;
}

// Past the end of the file reads zeros, as sec2's.
static herr_t pack_fd_read(H5FD_t *file, H5FD_mem_t type, hid_t dxpl, haddr_t addr, size_t size, void *buf) {
    (void)type, (void)dxpl;
    pack_fd *f = (pack_fd *)file;
    if (pack_fd_outside(f, addr, size)) return -1;
    for (char *p = buf; size > 0;) {
        ssize_t n = pread(f->fd, p, size < PACK_IO_CHUNK ? size : PACK_IO_CHUNK, (off_t)addr);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return -1;
        if (n == 0) {
            memset(p, 0, size);
            break;
        }
        p += n, addr += (haddr_t)n, size -= (size_t)n;
    }
    return 0;
}

static herr_t pack_fd_write(H5FD_t *file, H5FD_mem_t type, hid_t dxpl, haddr_t addr, size_t size, const void *buf) {
    (void)type, (void)dxpl;
    pack_fd *f = (pack_fd *)file;
    if (pack_fd_outside(f, addr, size)) return -1;
    for (const char *p = buf; size > 0;) {
        ssize_t n = pwrite(f->fd, p, size < PACK_IO_CHUNK ? size : PACK_IO_CHUNK, (off_t)addr);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return pack_fd_failed(f, n < 0 ? errno : EIO);
        p += n, addr += (haddr_t)n, size -= (size_t)n;
        if (addr > f->eof) f->eof = addr;
    }
    return 0;
}

// At a flush or the close: the file's size becomes the allocated end (sec2's rule).
static herr_t pack_fd_truncate(H5FD_t *file, hid_t dxpl, hbool_t closing) {
    (void)dxpl, (void)closing;
    pack_fd *f = (pack_fd *)file;
    if (f->eoa == f->eof) return 0;
    if (ftruncate(f->fd, (off_t)f->eoa) != 0) return pack_fd_failed(f, errno);
    f->eof = f->eoa;
    return 0;
}

// Packs are written as PATH.tmp, which no one else opens: no file lock (sec2 takes one; NULL lock and
// unlock are allowed).
static const H5FD_class_t pack_fd_class = {
#ifdef H5FD_CLASS_VERSION   // libhdf5 1.14 numbers its class layout and each driver (256..511: unregistered)
    .version = H5FD_CLASS_VERSION,
    .value = 317,
#endif
    .name = "ibnas-pack",
    .maxaddr = (haddr_t)INT64_MAX,
    .fc_degree = H5F_CLOSE_WEAK,
    .open = pack_fd_open,
    .close = pack_fd_close,
    .cmp = pack_fd_cmp,
    .query = pack_fd_query,
    .get_eoa = pack_fd_get_eoa,
    .set_eoa = pack_fd_set_eoa,
    .get_eof = pack_fd_get_eof,
    .get_handle = pack_fd_get_handle,
    .read = pack_fd_read,
    .write = pack_fd_write,
    .truncate = pack_fd_truncate,
    .fl_map = H5FD_FLMAP_DICHOTOMY,
};

// H5Fcreate(path) through the driver above, for the writer whose io is given. Under pack_mu.
static hid_t pack_file_create_locked(const char *path, pack_io *io) {
    if (pack_driver < 0) pack_driver = H5FDregister(&pack_fd_class);
    hid_t fapl = pack_driver >= 0 ? H5Pcreate(H5P_FILE_ACCESS) : -1;
    hid_t file = -1;
    if (fapl >= 0 && H5Pset_driver(fapl, pack_driver, NULL) >= 0) {
        pack_io_opening = io;
        file = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, fapl);
        pack_io_opening = NULL;
    }
    if (fapl >= 0) H5Pclose(fapl);
    return file;
}

// ---------------------------------------------------------------------------------------------
// Writer

struct ib_pack_writer {
    char *path, *tmp_path;
    hid_t file, images, masks;
    pack_io io;                  // what the file layer above reports (see there)
    int h, w, has_boxes, has_masks, n_classes;
    int64_t n, n_cap;            // images written; capacity of the per-image arrays
    int32_t *labels;
    int64_t *image_ids, *box_offsets;   // box_offsets: n + 1 entries
    int64_t m, m_cap;            // boxes
    float *boxes;
    int32_t *box_labels, *iscrowd;
};

static void writer_free(ib_pack_writer *pw) {
    free(pw->path), free(pw->tmp_path);
    free(pw->labels), free(pw->image_ids), free(pw->box_offsets);
    free(pw->boxes), free(pw->box_labels), free(pw->iscrowd);
    free(pw);
}

// Why a write failed: the system's reason when the file layer saw one.
static const char *writer_reason(const ib_pack_writer *pw) {
    return pw->io.err ? strerror(pw->io.err) : "disk full?";
}

// An extendible dataset [0, dims...] chunked one image per chunk, shuffled and deflated.
static hid_t create_stack(hid_t file, const char *name, int rank, const hsize_t *item) {
    hsize_t dims[4] = {0}, maxd[4] = {H5S_UNLIMITED}, chunk[4] = {1};
    for (int k = 1; k < rank; k++) dims[k] = maxd[k] = chunk[k] = item[k - 1];
    hid_t space = H5Screate_simple(rank, dims, maxd);
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    H5Pset_chunk(dcpl, rank, chunk);
    H5Pset_shuffle(dcpl);
    H5Pset_deflate(dcpl, PACK_DEFLATE_LEVEL);
    hid_t ds = H5Dcreate2(file, name, H5T_STD_U8LE, space, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    H5Pclose(dcpl);
    H5Sclose(space);
    return ds;
}

// The file is dropped: its close must succeed all the same (a failed H5Fclose crashes libhdf5 1.10 at
// exit, HDFFV-11052), so from here on the file layer keeps write failures to itself (see pack_io).
static void writer_abort_locked(ib_pack_writer *pw) {
    pw->io.closing = 1;
    if (pw->masks >= 0) H5Dclose(pw->masks);
    if (pw->images >= 0) H5Dclose(pw->images);
    if (pw->file >= 0) H5Fclose(pw->file);
    unlink(pw->tmp_path);
    writer_free(pw);
}

ib_status ib_pack_writer_open(ib_pack_writer **out, const char *path, int h, int w, int has_boxes, int has_masks,
                              int n_classes, const char *const *class_names, int ignore_index) {
    IB_ASSERT(out && path, "ib_pack_writer_open: out and path are required");
    IB_ASSERT(h > 0 && w > 0, "ib_pack_writer_open: image size %dx%d", h, w);
    IB_ASSERT(n_classes >= 0 && (n_classes == 0 || class_names), "ib_pack_writer_open: %d classes, names %p",
              n_classes, (const void *)class_names);
    *out = NULL;
    // class_names is one newline-separated string: a name must not hold a newline.
    size_t names_len = 1;
    for (int c = 0; c < n_classes; c++) {
        if (!class_names[c] || strchr(class_names[c], '\n'))
            return ib_fail(IB_ERR_ARG, "%s: class %d has no name or a name with a newline", path, c);
        names_len += strlen(class_names[c]) + 1;
    }
    ib_pack_writer *pw = calloc(1, sizeof *pw);
    if (!pw) return ib_fail(IB_ERR_NOMEM, "%s: out of memory", path);
    pw->file = pw->images = pw->masks = -1;
    pw->h = h, pw->w = w, pw->has_boxes = has_boxes != 0, pw->has_masks = has_masks != 0, pw->n_classes = n_classes;
    pw->path = strdup(path);
    pw->tmp_path = malloc(strlen(path) + 5);
    pw->n_cap = 1024;
    pw->labels = malloc((size_t)pw->n_cap * sizeof *pw->labels);
    pw->image_ids = malloc((size_t)pw->n_cap * sizeof *pw->image_ids);
    pw->box_offsets = calloc((size_t)pw->n_cap + 1, sizeof *pw->box_offsets);
    char *names = malloc(names_len);
    if (!pw->path || !pw->tmp_path || !pw->labels || !pw->image_ids || !pw->box_offsets || !names) {
        free(names);
        writer_free(pw);
        return ib_fail(IB_ERR_NOMEM, "%s: out of memory", path);
    }
    sprintf(pw->tmp_path, "%s.tmp", path);
    size_t k = 0;
    for (int c = 0; c < n_classes; c++) k += (size_t)sprintf(names + k, c ? "\n%s" : "%s", class_names[c]);
    names[k] = 0;

    pthread_mutex_lock(&pack_mu);
    quiet_hdf5();
    ib_status st = IB_OK;
    pw->file = pack_file_create_locked(pw->tmp_path, &pw->io);
    if (pw->file < 0) {
        st = ib_fail(IB_ERR_IO, "%s: cannot create (is the folder there and writable?)", pw->tmp_path);
        goto done;
    }
    hsize_t item[3] = {(hsize_t)h, (hsize_t)w, 3};
    pw->images = create_stack(pw->file, "images", 4, item);
    if (pw->images < 0) {
        st = ib_fail(IB_ERR_IO, "%s: cannot create dataset /images", pw->tmp_path);
        goto done;
    }
    if (pw->has_masks) {
        pw->masks = create_stack(pw->file, "masks", 3, item);
        if (pw->masks < 0 || !attr_set_i64(pw->masks, "ignore_index", ignore_index)) {
            st = ib_fail(IB_ERR_IO, "%s: cannot create dataset /masks", pw->tmp_path);
            goto done;
        }
    }
    if (!attr_set_str(pw->file, "format", PACK_FORMAT) || !attr_set_i64(pw->file, "version", PACK_VERSION) ||
        !attr_set_str(pw->file, "class_names", names) || !attr_set_i64(pw->file, "n_classes", n_classes) ||
        !attr_set_i64(pw->file, "height", h) || !attr_set_i64(pw->file, "width", w) ||
        !attr_set_str(pw->file, "written_by", "ibnas " IB_VERSION_STRING))
        st = ib_fail(IB_ERR_IO, "%s: cannot write the root attributes", pw->tmp_path);
done:
    if (st) writer_abort_locked(pw);
    pthread_mutex_unlock(&pack_mu);
    free(names);
    if (st == IB_OK) *out = pw;
    return st;
}

// Appends one item ([h, w] or [h, w, 3] bytes) at index n of an extendible stack of `rank` dims.
static int append_item(hid_t ds, int rank, int64_t n, int h, int w, const uint8_t *data) {
    hsize_t dims[4] = {(hsize_t)n + 1, (hsize_t)h, (hsize_t)w, 3};
    if (H5Dset_extent(ds, dims) < 0) return 0;
    hid_t fs = H5Dget_space(ds);
    hsize_t start[4] = {(hsize_t)n, 0, 0, 0}, count[4] = {1, (hsize_t)h, (hsize_t)w, 3};
    H5Sselect_hyperslab(fs, H5S_SELECT_SET, start, NULL, count, NULL);
    hid_t ms = H5Screate_simple(rank - 1, count + 1, NULL);   // one item: the dims after N
    int ok = H5Dwrite(ds, H5T_NATIVE_UINT8, ms, fs, H5P_DEFAULT, data) >= 0;
    H5Sclose(ms);
    H5Sclose(fs);
    return ok;
}

static int grow(void **p, int64_t *cap, int64_t need, size_t elem, int64_t extra) {
    if (need <= *cap) return 1;
    int64_t c = *cap ? *cap : 256;
    while (c < need) c *= 2;
    void *q = realloc(*p, (size_t)(c + extra) * elem);
    if (!q) return 0;
    *p = q;
    *cap = c;
    return 1;
}

ib_status ib_pack_writer_add(ib_pack_writer *pw, const ib_sample *s) {
    IB_ASSERT(pw && s && s->rgb, "ib_pack_writer_add: a sample with an image is required");
    int64_t i = pw->n;
    if (s->h != pw->h || s->w != pw->w)
        return ib_fail(IB_ERR_ARG, "%s: image %lld is %dx%d, the pack holds %dx%d images", pw->path, (long long)i,
                       s->w, s->h, pw->w, pw->h);
    if (pw->has_masks && !s->mask)
        return ib_fail(IB_ERR_ARG, "%s: image %lld has no mask, the pack holds masks", pw->path, (long long)i);
    if (s->label < -1 || (pw->n_classes > 0 && s->label >= pw->n_classes))
        return ib_fail(IB_ERR_ARG, "%s: image %lld has label %d, outside -1..%d", pw->path, (long long)i, s->label,
                       pw->n_classes - 1);
    int nb = pw->has_boxes ? s->n_boxes : 0;
    for (int b = 0; b < nb; b++) {
        const ib_box *bx = &s->boxes[b];
        if (bx->label < 0 || (pw->n_classes > 0 && bx->label >= pw->n_classes))
            return ib_fail(IB_ERR_ARG, "%s: image %lld, box %d has label %d, outside 0..%d", pw->path, (long long)i, b,
                           bx->label, pw->n_classes - 1);
    }
    int64_t cap = pw->n_cap;
    if (!grow((void **)&pw->labels, &cap, i + 1, sizeof *pw->labels, 0) ||
        !grow((void **)&pw->image_ids, &(int64_t){pw->n_cap}, i + 1, sizeof *pw->image_ids, 0) ||
        !grow((void **)&pw->box_offsets, &(int64_t){pw->n_cap}, i + 1, sizeof *pw->box_offsets, 1))
        return ib_fail(IB_ERR_NOMEM, "%s: out of memory", pw->path);
    pw->n_cap = cap;
    int64_t mcap = pw->m_cap;
    if (nb > 0) {
        int64_t need = pw->m + nb;
        if (!grow((void **)&pw->boxes, &mcap, need, 4 * sizeof *pw->boxes, 0) ||
            !grow((void **)&pw->box_labels, &(int64_t){pw->m_cap}, need, sizeof *pw->box_labels, 0) ||
            !grow((void **)&pw->iscrowd, &(int64_t){pw->m_cap}, need, sizeof *pw->iscrowd, 0))
            return ib_fail(IB_ERR_NOMEM, "%s: out of memory", pw->path);
        pw->m_cap = mcap;
    }

    pthread_mutex_lock(&pack_mu);
    int ok = append_item(pw->images, 4, i, pw->h, pw->w, s->rgb);
    if (ok && pw->has_masks) ok = append_item(pw->masks, 3, i, pw->h, pw->w, s->mask);
    pthread_mutex_unlock(&pack_mu);
    if (!ok)
        return ib_fail(IB_ERR_IO, "%s: cannot write image %lld: %s", pw->tmp_path, (long long)i, writer_reason(pw));

    pw->labels[i] = s->label;
    pw->image_ids[i] = s->image_id;
    for (int b = 0; b < nb; b++) {
        const ib_box *bx = &s->boxes[b];
        float *o = &pw->boxes[4 * (pw->m + b)];
        o[0] = bx->x0, o[1] = bx->y0, o[2] = bx->x1, o[3] = bx->y1;
        pw->box_labels[pw->m + b] = bx->label;
        pw->iscrowd[pw->m + b] = bx->iscrowd;
    }
    pw->m += nb;
    pw->box_offsets[i + 1] = pw->m;
    pw->n = i + 1;
    return IB_OK;
}

// A whole small array as a fixed-size dataset (an empty one when n is 0).
static int write_array(hid_t file, const char *name, hid_t ftype, hid_t mtype, const void *x, int rank,
                       const hsize_t *dims) {
    hid_t space = H5Screate_simple(rank, dims, NULL);
    hid_t ds = H5Dcreate2(file, name, ftype, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    hsize_t n = 1;
    for (int k = 0; k < rank; k++) n *= dims[k];
    int ok = ds >= 0 && (n == 0 || H5Dwrite(ds, mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, x) >= 0);
    if (ds >= 0) H5Dclose(ds);
    H5Sclose(space);
    return ok;
}

ib_status ib_pack_writer_close(ib_pack_writer *pw) {
    if (!pw) return IB_OK;
    pthread_mutex_lock(&pack_mu);
    hsize_t n = (hsize_t)pw->n, m = (hsize_t)pw->m;
    hsize_t n1 = n + 1, m4[2] = {m, 4};
    int ok = write_array(pw->file, "labels", H5T_STD_I32LE, H5T_NATIVE_INT32, pw->labels, 1, &n) &&
             write_array(pw->file, "image_ids", H5T_STD_I64LE, H5T_NATIVE_INT64, pw->image_ids, 1, &n);
    if (ok && pw->has_boxes)
        ok = write_array(pw->file, "boxes", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, pw->boxes, 2, m4) &&
             write_array(pw->file, "box_labels", H5T_STD_I32LE, H5T_NATIVE_INT32, pw->box_labels, 1, &m) &&
             write_array(pw->file, "iscrowd", H5T_STD_I32LE, H5T_NATIVE_INT32, pw->iscrowd, 1, &m) &&
             write_array(pw->file, "box_offsets", H5T_STD_I64LE, H5T_NATIVE_INT64, pw->box_offsets, 1, &n1);
    ib_status st = IB_OK;
    if (!ok) {
        st = ib_fail(IB_ERR_IO, "%s: cannot write the index datasets: %s", pw->tmp_path, writer_reason(pw));
        writer_abort_locked(pw);
        pthread_mutex_unlock(&pack_mu);
        return st;
    }
    // The last flush: a failure in it is kept by the file layer and reported here, so that H5Fclose
    // succeeds (see pack_io).
    pw->io.closing = 1;
    if (pw->masks >= 0 && H5Dclose(pw->masks) < 0) ok = 0;
    if (H5Dclose(pw->images) < 0) ok = 0;
    if (H5Fclose(pw->file) < 0) ok = 0;
    pthread_mutex_unlock(&pack_mu);
    if (!ok || pw->io.err) st = ib_fail(IB_ERR_IO, "%s: error closing: %s", pw->tmp_path, writer_reason(pw));
    else if (ib_fsync_path(pw->tmp_path) != 0) st = ib_fail(IB_ERR_IO, "%s: cannot write: %s", pw->tmp_path, strerror(errno));
    else if (rename(pw->tmp_path, pw->path) != 0)
        st = ib_fail(IB_ERR_IO, "%s: cannot rename %s into place", pw->path, pw->tmp_path);
    if (st) unlink(pw->tmp_path);
    writer_free(pw);
    return st;
}

void ib_pack_writer_abort(ib_pack_writer *pw) {
    if (!pw) return;
    pthread_mutex_lock(&pack_mu);
    writer_abort_locked(pw);
    pthread_mutex_unlock(&pack_mu);
}

// ---------------------------------------------------------------------------------------------
// Reader: the index arrays are loaded at open, pixels are read per sample.

typedef struct {
    hid_t file, images, masks;
    int h, w;
    int32_t *labels;
    int64_t *image_ids, *box_offsets;
    float *boxes;
    int32_t *box_labels, *iscrowd;
} pack_reader;

static void reader_free_locked(pack_reader *r) {
    if (r->masks >= 0) H5Dclose(r->masks);
    if (r->images >= 0) H5Dclose(r->images);
    if (r->file >= 0) H5Fclose(r->file);
    free(r->labels), free(r->image_ids), free(r->box_offsets);
    free(r->boxes), free(r->box_labels), free(r->iscrowd);
    free(r);
}

static ib_status read_item(hid_t ds, int rank, int64_t i, int h, int w, uint8_t *out) {
    hid_t fs = H5Dget_space(ds);
    hsize_t start[4] = {(hsize_t)i, 0, 0, 0}, count[4] = {1, (hsize_t)h, (hsize_t)w, 3};
    H5Sselect_hyperslab(fs, H5S_SELECT_SET, start, NULL, count, NULL);
    hid_t ms = H5Screate_simple(rank - 1, count + 1, NULL);
    herr_t e = H5Dread(ds, H5T_NATIVE_UINT8, ms, fs, H5P_DEFAULT, out);
    H5Sclose(ms);
    H5Sclose(fs);
    return e < 0 ? IB_ERR_IO : IB_OK;
}

static ib_status pack_get(ib_dataset *ds, int64_t i, ib_sample *s) {
    const pack_reader *r = ds->impl;
    IB_ASSERT(i >= 0 && i < ds->size, "pack: sample %lld of %lld", (long long)i, (long long)ds->size);
    memset(s, 0, sizeof *s);
    size_t npx = (size_t)r->h * (size_t)r->w;
    int64_t b0 = r->box_offsets ? r->box_offsets[i] : 0, nb = r->box_offsets ? r->box_offsets[i + 1] - b0 : 0;
    s->rgb = malloc(npx * 3);
    s->mask = r->masks >= 0 ? malloc(npx) : NULL;
    s->boxes = nb > 0 ? malloc((size_t)nb * sizeof *s->boxes) : NULL;
    if (!s->rgb || (r->masks >= 0 && !s->mask) || (nb > 0 && !s->boxes)) {
        ib_sample_free(s);
        return ib_fail(IB_ERR_NOMEM, "%s: out of memory reading image %lld", ds->path, (long long)i);
    }
    pthread_mutex_lock(&pack_mu);
    ib_status st = read_item(r->images, 4, i, r->h, r->w, s->rgb);
    if (st == IB_OK && r->masks >= 0) st = read_item(r->masks, 3, i, r->h, r->w, s->mask);
    pthread_mutex_unlock(&pack_mu);
    if (st) {
        ib_sample_free(s);
        return ib_fail(IB_ERR_IO, "%s: cannot read image %lld (the file is damaged; rewrite it with `ibnas pack`)",
                       ds->path, (long long)i);
    }
    s->h = r->h, s->w = r->w;
    s->label = r->labels[i];
    s->image_id = r->image_ids ? r->image_ids[i] : i;
    s->n_boxes = (int)nb;
    for (int64_t b = 0; b < nb; b++) {
        const float *x = &r->boxes[4 * (b0 + b)];
        ib_box *o = &s->boxes[b];
        o->x0 = x[0], o->y0 = x[1], o->x1 = x[2], o->y1 = x[3];
        o->label = r->box_labels[b0 + b];
        o->iscrowd = r->iscrowd ? r->iscrowd[b0 + b] : 0;
    }
    return IB_OK;
}

static void pack_close(ib_dataset *ds) {
    if (!ds->impl) return;
    pthread_mutex_lock(&pack_mu);
    reader_free_locked(ds->impl);
    pthread_mutex_unlock(&pack_mu);
    ds->impl = NULL;
}

static const ib_dataset_vtable pack_vtable = {"pack", pack_get, pack_close, NULL};

#define PACK_HINT "rewrite it with `ibnas pack` or `ibnas synth`"

// Opens dataset `name` and checks its rank and dims (-1: any); NOTFOUND or FORMAT naming the file.
static ib_status open_checked(hid_t file, const char *path, const char *name, int rank, const int64_t *want,
                              hid_t *out, int64_t *dims_out) {
    *out = -1;
    if (H5Lexists(file, name, H5P_DEFAULT) <= 0)
        return ib_fail(IB_ERR_NOTFOUND, "%s: the pack has no dataset /%s (incomplete or damaged: %s)", path, name,
                       PACK_HINT);
    hid_t ds = H5Dopen2(file, name, H5P_DEFAULT);
    if (ds < 0) return ib_fail(IB_ERR_FORMAT, "%s: /%s is not a dataset (%s)", path, name, PACK_HINT);
    hid_t sp = H5Dget_space(ds);
    hsize_t dims[8];
    int r = H5Sget_simple_extent_ndims(sp);
    if (r >= 1 && r <= 8) H5Sget_simple_extent_dims(sp, dims, NULL);
    H5Sclose(sp);
    int ok = r == rank;
    for (int k = 0; ok && k < rank; k++) ok = want[k] < 0 || (int64_t)dims[k] == want[k];
    if (!ok) {
        char got[160] = "", exp[160] = "";
        size_t a = 0, b = 0;
        for (int k = 0; k < r && k < 8 && a < 120; k++) a += (size_t)snprintf(got + a, sizeof got - a, k ? ",%llu" : "%llu", (unsigned long long)dims[k]);
        for (int k = 0; k < rank && b < 120; k++) {
            if (want[k] < 0) b += (size_t)snprintf(exp + b, sizeof exp - b, k ? ",*" : "*");
            else b += (size_t)snprintf(exp + b, sizeof exp - b, k ? ",%lld" : "%lld", (long long)want[k]);
        }
        H5Dclose(ds);
        return ib_fail(IB_ERR_FORMAT, "%s: /%s has shape [%s], expected [%s] (truncated or damaged: %s)", path, name,
                       got, exp, PACK_HINT);
    }
    if (dims_out)
        for (int k = 0; k < rank; k++) dims_out[k] = (int64_t)dims[k];
    *out = ds;
    return IB_OK;
}

// Reads a whole small dataset of `rank` with dims `want` into a new buffer.
static ib_status load_array(hid_t file, const char *path, const char *name, hid_t mtype, size_t elem, int rank,
                            const int64_t *want, void **out) {
    *out = NULL;
    hid_t ds;
    ib_status st = open_checked(file, path, name, rank, want, &ds, NULL);
    if (st) return st;
    size_t n = 1;
    for (int k = 0; k < rank; k++) n *= (size_t)want[k];
    void *buf = malloc(n ? n * elem : 1);
    if (!buf) st = ib_fail(IB_ERR_NOMEM, "%s: out of memory loading /%s", path, name);
    else if (n > 0 && H5Dread(ds, mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) < 0)
        st = ib_fail(IB_ERR_FORMAT, "%s: cannot read /%s (damaged, or not a number: %s)", path, name, PACK_HINT);
    H5Dclose(ds);
    if (st) free(buf);
    else *out = buf;
    return st;
}

static ib_status pack_open_locked(const char *path, pack_reader *r, char ***names_out, int *n_classes,
                                  int64_t *n_out, int *ignore_index) {
    if (access(path, R_OK) != 0) return ib_fail(IB_ERR_IO, "%s: cannot open the pack (no such file or not readable)", path);
    if (H5Fis_hdf5(path) <= 0)
        return ib_fail(IB_ERR_FORMAT, "%s: not an HDF5 file (truncated, or not a dataset pack: %s)", path, PACK_HINT);
    r->file = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (r->file < 0) return ib_fail(IB_ERR_FORMAT, "%s: HDF5 cannot open it (truncated or damaged: %s)", path, PACK_HINT);

    char *fmt = NULL;
    int got = attr_get_str(r->file, "format", &fmt);
    if (got <= 0) {
        free(fmt);
        return ib_fail(IB_ERR_FORMAT, "%s: not a dataset pack (no root attribute format = \"%s\"; %s)", path,
                       PACK_FORMAT, PACK_HINT);
    }
    if (strcmp(fmt, PACK_FORMAT) != 0) {
        ib_status st = ib_fail(IB_ERR_FORMAT, "%s: format is \"%s\", not \"%s\" (is it a checkpoint? %s)", path, fmt,
                               PACK_FORMAT, PACK_HINT);
        free(fmt);
        return st;
    }
    free(fmt);
    int64_t version = 0, h = 0, w = 0, nc = 0;
    if (attr_get_i64(r->file, "version", &version) <= 0 || version != PACK_VERSION)
        return ib_fail(IB_ERR_FORMAT, "%s: pack version %lld, this build reads version %d (%s)", path,
                       (long long)version, PACK_VERSION, PACK_HINT);
    if (attr_get_i64(r->file, "height", &h) <= 0 || attr_get_i64(r->file, "width", &w) <= 0 ||
        attr_get_i64(r->file, "n_classes", &nc) <= 0 || h <= 0 || w <= 0 || h > 65536 || w > 65536 || nc < 0 ||
        nc > 1000000)
        return ib_fail(IB_ERR_FORMAT, "%s: missing or bad root attributes height, width, n_classes (%s)", path, PACK_HINT);
    r->h = (int)h, r->w = (int)w;

    // Class names: newline-separated, exactly n_classes of them.
    char *joined = NULL;
    if (attr_get_str(r->file, "class_names", &joined) <= 0) {
        free(joined);
        return ib_fail(IB_ERR_FORMAT, "%s: missing root attribute class_names (%s)", path, PACK_HINT);
    }
    char **names = calloc(nc ? (size_t)nc : 1, sizeof *names);
    if (!names) {
        free(joined);
        return ib_fail(IB_ERR_NOMEM, "%s: out of memory", path);
    }
    *names_out = names;   // freed by the caller on failure
    *n_classes = (int)nc;
    int64_t count = 1;
    for (const char *q = joined; *q; q++) count += *q == '\n';
    if (nc == 0 && joined[0] == 0) count = 0;
    if (count != nc) {
        free(joined);
        return ib_fail(IB_ERR_FORMAT, "%s: class_names holds %lld names, n_classes is %lld (%s)", path,
                       (long long)count, (long long)nc, PACK_HINT);
    }
    char *p = joined;
    for (int c = 0; c < nc; c++) {
        char *e = strchr(p, '\n');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        names[c] = malloc(len + 1);
        if (!names[c]) {
            free(joined);
            return ib_fail(IB_ERR_NOMEM, "%s: out of memory", path);
        }
        memcpy(names[c], p, len);
        names[c][len] = 0;
        p = e ? e + 1 : p + len;
    }
    free(joined);

    int64_t dims[4] = {-1, h, w, 3};
    ib_status st = open_checked(r->file, path, "images", 4, dims, &r->images, dims);
    if (st) return st;
    int64_t n = dims[0];
    int64_t d1[1] = {n};
    if ((st = load_array(r->file, path, "labels", H5T_NATIVE_INT32, sizeof(int32_t), 1, d1, (void **)&r->labels)))
        return st;
    if (H5Lexists(r->file, "image_ids", H5P_DEFAULT) > 0 &&
        (st = load_array(r->file, path, "image_ids", H5T_NATIVE_INT64, sizeof(int64_t), 1, d1, (void **)&r->image_ids)))
        return st;
    for (int64_t i = 0; i < n; i++)
        if (r->labels[i] < -1 || (nc > 0 && r->labels[i] >= nc))
            return ib_fail(IB_ERR_FORMAT, "%s: /labels[%lld] = %d is outside -1..%lld (%s)", path, (long long)i,
                           r->labels[i], (long long)nc - 1, PACK_HINT);

    if (H5Lexists(r->file, "box_offsets", H5P_DEFAULT) > 0) {
        int64_t dn1[1] = {n + 1};
        if ((st = load_array(r->file, path, "box_offsets", H5T_NATIVE_INT64, sizeof(int64_t), 1, dn1,
                             (void **)&r->box_offsets)))
            return st;
        int64_t m = r->box_offsets[n];
        int mono = r->box_offsets[0] == 0;
        for (int64_t i = 0; mono && i < n; i++) mono = r->box_offsets[i + 1] >= r->box_offsets[i];
        if (!mono || m < 0)
            return ib_fail(IB_ERR_FORMAT, "%s: /box_offsets must rise from 0 (%s)", path, PACK_HINT);
        int64_t dm4[2] = {m, 4}, dm[1] = {m};
        if ((st = load_array(r->file, path, "boxes", H5T_NATIVE_FLOAT, sizeof(float), 2, dm4, (void **)&r->boxes)) ||
            (st = load_array(r->file, path, "box_labels", H5T_NATIVE_INT32, sizeof(int32_t), 1, dm,
                             (void **)&r->box_labels)))
            return st;
        if (H5Lexists(r->file, "iscrowd", H5P_DEFAULT) > 0 &&
            (st = load_array(r->file, path, "iscrowd", H5T_NATIVE_INT32, sizeof(int32_t), 1, dm, (void **)&r->iscrowd)))
            return st;
        for (int64_t b = 0; b < m; b++)
            if (r->box_labels[b] < 0 || (nc > 0 && r->box_labels[b] >= nc))
                return ib_fail(IB_ERR_FORMAT, "%s: /box_labels[%lld] = %d is outside 0..%lld (%s)", path, (long long)b,
                               r->box_labels[b], (long long)nc - 1, PACK_HINT);
    }
    if (H5Lexists(r->file, "masks", H5P_DEFAULT) > 0) {
        int64_t dmask[3] = {n, h, w};
        if ((st = open_checked(r->file, path, "masks", 3, dmask, &r->masks, NULL))) return st;
        int64_t ign;
        if (attr_get_i64(r->masks, "ignore_index", &ign) == 1) *ignore_index = (int)ign;
    }
    *n_out = n;
    return IB_OK;
}

ib_status ib_pack_source_open(ib_dataset *ds, const char *path, const ib_ds_opts *opts) {
    pack_reader *r = calloc(1, sizeof *r);
    if (!r) return ib_fail(IB_ERR_NOMEM, "%s: out of memory", path);
    r->file = r->images = r->masks = -1;
    char **names = NULL;
    int n_classes = 0;
    int64_t n = 0;
    int ignore_index = ds->ignore_index ? ds->ignore_index : 255;
    pthread_mutex_lock(&pack_mu);
    quiet_hdf5();
    ib_status st = pack_open_locked(path, r, &names, &n_classes, &n, &ignore_index);
    if (st) {
        reader_free_locked(r);
        if (names)
            for (int c = 0; c < n_classes; c++) free(names[c]);
        free(names);
    }
    pthread_mutex_unlock(&pack_mu);
    if (st) return st;
    ds->impl = r;
    ds->size = n;
    ds->n_classes = n_classes;
    ds->class_names = names;
    ds->ignore_index = opts->ignore_index ? opts->ignore_index : ignore_index;   // asked for wins over the pack's
    ds->has_labels = 0;
    for (int64_t i = 0; i < n && !ds->has_labels; i++) ds->has_labels = r->labels[i] >= 0;
    ds->has_boxes = r->box_offsets != NULL;
    ds->has_masks = r->masks >= 0;
    ds->vt = &pack_vtable;
    return IB_OK;
}

// ---------------------------------------------------------------------------------------------
// Resizing a sample to the pack's size x size. The source window is the whole image (crop 0: plain
// resize, aspect not kept, as for detection and segmentation) or its centred square (crop 1: the
// shorter side resized to size, then centre-cropped, as for classification). Images: bilinear whose
// triangle filter is widened by the scale factor when shrinking (PIL's Image.resize(BILINEAR)), so a
// 640-pixel COCO image does not alias at 64; masks: nearest (the source pixel under the output pixel's
// centre); boxes: mapped by the same transform and clipped, dropped when no area is left.

typedef struct {
    int lo, n;         // first source index and tap count
    float w[64];       // normalised weights (up to a 32x shrink; wider filters are thinned, see below)
} resample_taps;

static void taps_for(resample_taps *t, float win0, float scale, int out_x, int in_n) {
    float support = scale > 1.f ? scale : 1.f;
    float centre = win0 + ((float)out_x + 0.5f) * scale;
    int lo = (int)floorf(centre - support), hi = (int)ceilf(centre + support);
    if (lo < 0) lo = 0;
    if (hi > in_n - 1) hi = in_n - 1;
    if (hi - lo + 1 > 64) {   // beyond a 32x shrink: keep the 64 taps nearest the centre
        lo = (int)floorf(centre) - 32;
        if (lo < 0) lo = 0;
        hi = lo + 63;
        if (hi > in_n - 1) hi = in_n - 1, lo = hi - 63 < 0 ? 0 : hi - 63;
    }
    float sum = 0.f;
    t->lo = lo, t->n = hi - lo + 1;
    for (int j = lo; j <= hi; j++) {
        float d = fabsf(((float)j + 0.5f - centre) / support);
        float wt = d < 1.f ? 1.f - d : 0.f;
        t->w[j - lo] = wt;
        sum += wt;
    }
    if (sum <= 0.f) {   // the window's edge falls between taps: take the nearest pixel
        int j = (int)floorf(centre);
        t->lo = j < 0 ? 0 : j > in_n - 1 ? in_n - 1 : j, t->n = 1, t->w[0] = 1.f;
        return;
    }
    for (int k = 0; k < t->n; k++) t->w[k] /= sum;
}

ib_status ib_sample_fit(const ib_sample *in, int size, int crop, ib_sample *out, int *dropped_boxes) {
    IB_ASSERT(in && out && in->rgb && in->h > 0 && in->w > 0 && size > 0, "ib_sample_fit: bad arguments");
    memset(out, 0, sizeof *out);
    if (dropped_boxes) *dropped_boxes = 0;
    int H = in->h, W = in->w;
    float wx0 = 0.f, wy0 = 0.f, ww = (float)W, wh = (float)H;
    if (crop) {
        int side = H < W ? H : W;
        wx0 = 0.5f * (float)(W - side), wy0 = 0.5f * (float)(H - side);
        ww = wh = (float)side;
    }
    float sx = ww / (float)size, sy = wh / (float)size;
    size_t npx = (size_t)size * (size_t)size;
    out->h = out->w = size;
    out->label = in->label;
    out->image_id = in->image_id;
    out->rgb = malloc(npx * 3);
    out->mask = in->mask ? malloc(npx) : NULL;
    out->boxes = in->n_boxes > 0 ? malloc((size_t)in->n_boxes * sizeof *out->boxes) : NULL;
    resample_taps *tx = malloc((size_t)size * sizeof *tx), *ty = malloc((size_t)size * sizeof *ty);
    float *rows = malloc((size_t)H * (size_t)size * 3 * sizeof *rows);
    if (!out->rgb || (in->mask && !out->mask) || (in->n_boxes > 0 && !out->boxes) || !tx || !ty || !rows) {
        free(tx), free(ty), free(rows);
        ib_sample_free(out);
        return ib_fail(IB_ERR_NOMEM, "out of memory resizing a %dx%d image to %d", W, H, size);
    }
    if (!crop && H == size && W == size) {
        memcpy(out->rgb, in->rgb, npx * 3);
        if (in->mask) memcpy(out->mask, in->mask, npx);
    } else {
        for (int x = 0; x < size; x++) taps_for(&tx[x], wx0, sx, x, W);
        for (int y = 0; y < size; y++) taps_for(&ty[y], wy0, sy, y, H);
        int ylo = ty[0].lo, yhi = ty[size - 1].lo + ty[size - 1].n;   // source rows any output row needs
        // Horizontal pass over the rows in use, then vertical: (H, W, 3) -> (H, size, 3) -> (size, size, 3)
        for (int y = ylo; y < yhi; y++) {
            const uint8_t *src = in->rgb + (size_t)y * W * 3;
            float *dst = rows + (size_t)y * size * 3;
            for (int x = 0; x < size; x++) {
                const resample_taps *t = &tx[x];
                float a0 = 0.f, a1 = 0.f, a2 = 0.f;
                for (int k = 0; k < t->n; k++) {
                    const uint8_t *p = src + (size_t)(t->lo + k) * 3;
                    a0 += t->w[k] * p[0], a1 += t->w[k] * p[1], a2 += t->w[k] * p[2];
                }
                dst[3 * x] = a0, dst[3 * x + 1] = a1, dst[3 * x + 2] = a2;
            }
        }
        for (int y = 0; y < size; y++) {
            const resample_taps *t = &ty[y];
            for (int xc = 0; xc < size * 3; xc++) {
                float a = 0.f;
                for (int k = 0; k < t->n; k++) a += t->w[k] * rows[(size_t)(t->lo + k) * size * 3 + xc];
                out->rgb[(size_t)y * size * 3 + xc] = (uint8_t)(a <= 0.f ? 0 : a >= 255.f ? 255 : (int)(a + 0.5f));
            }
        }
        if (in->mask)
            for (int y = 0; y < size; y++) {
                int iy = (int)floorf(wy0 + ((float)y + 0.5f) * sy);
                iy = iy < 0 ? 0 : iy > H - 1 ? H - 1 : iy;
                for (int x = 0; x < size; x++) {
                    int ix = (int)floorf(wx0 + ((float)x + 0.5f) * sx);
                    ix = ix < 0 ? 0 : ix > W - 1 ? W - 1 : ix;
                    out->mask[(size_t)y * size + x] = in->mask[(size_t)iy * W + ix];
                }
            }
    }
    free(tx), free(ty), free(rows);
    int kept = 0;
    for (int b = 0; b < in->n_boxes; b++) {
        ib_box o = in->boxes[b];
        o.x0 = fminf(fmaxf((o.x0 - wx0) / sx, 0.f), (float)size);
        o.x1 = fminf(fmaxf((o.x1 - wx0) / sx, 0.f), (float)size);
        o.y0 = fminf(fmaxf((o.y0 - wy0) / sy, 0.f), (float)size);
        o.y1 = fminf(fmaxf((o.y1 - wy0) / sy, 0.f), (float)size);
        if (o.x1 - o.x0 > 1e-2f && o.y1 - o.y0 > 1e-2f) out->boxes[kept++] = o;
        else if (dropped_boxes) (*dropped_boxes)++;
    }
    out->n_boxes = kept;
    if (kept == 0) {
        free(out->boxes);
        out->boxes = NULL;
    }
    return IB_OK;
}

// ---------------------------------------------------------------------------------------------
// ib_pack: any source into a pack

void ib_pack_opts_default(ib_pack_opts *o) {
    memset(o, 0, sizeof *o);
    o->synth_n = 1000;
}

static int pack_format(const char *s, ib_ds_format *f) {
    static const struct { const char *name; ib_ds_format f; } tab[] = {
        {"auto", IB_DS_AUTO}, {"imagefolder", IB_DS_IMAGEFOLDER}, {"tinyimagenet", IB_DS_TINYIMAGENET},
        {"coco", IB_DS_COCO}, {"yolo", IB_DS_YOLO}, {"segpairs", IB_DS_SEGPAIRS}, {"pack", IB_DS_PACK},
        {"synth", IB_DS_SYNTH},
    };
    for (size_t k = 0; k < sizeof tab / sizeof tab[0]; k++)
        if (!strcmp(s, tab[k].name)) {
            *f = tab[k].f;
            return 1;
        }
    return 0;
}

#define PACK_GROUP 32

typedef struct {
    ib_sample out;
    ib_status st;
    int dropped;
    char msg[512];
} pack_slot;

ib_status ib_pack(const char *src, const char *path, const ib_pack_opts *opts, ib_pack_report *r) {
    ib_pack_opts o;
    if (opts) o = *opts;
    else ib_pack_opts_default(&o);
    ib_pack_report rep;
    memset(&rep, 0, sizeof rep);
    if (r) *r = rep;
    ib_ds_format fmt;
    if (!path) return ib_fail(IB_ERR_ARG, "pack: no output file given");
    if (!pack_format(o.format ? o.format : "auto", &fmt))
        return ib_fail(IB_ERR_ARG, "pack: unknown format '%s' (imagefolder, tinyimagenet, coco, yolo, segpairs, pack, "
                                   "synth)", o.format);
    if (o.size < 8 || o.size > 4096) return ib_fail(IB_ERR_ARG, "pack: the size must be 8..4096 (got %d)", o.size);
    const char *fit = o.fit ? o.fit : "auto";
    if (strcmp(fit, "auto") && strcmp(fit, "crop") && strcmp(fit, "stretch"))
        return ib_fail(IB_ERR_ARG, "pack: the fit must be crop, stretch or auto (got '%s')", fit);
    if (fmt == IB_DS_SYNTH && o.synth_n <= 0)
        return ib_fail(IB_ERR_ARG, "pack: the number of scenes must be positive (got %d)", o.synth_n);
    if (!src && fmt != IB_DS_SYNTH) return ib_fail(IB_ERR_ARG, "pack: no source given");

    ib_ds_opts dso;
    memset(&dso, 0, sizeof dso);
    dso.format = fmt;
    dso.split = o.split;
    dso.skip_bad = o.skip_bad;
    dso.ignore_index = o.ignore_index;
    dso.synth_n = o.synth_n;
    dso.synth_size = o.size;
    dso.synth_seed = o.synth_seed;
    ib_dataset *ds;
    ib_status st = ib_dataset_open(&ds, fmt == IB_DS_SYNTH && !src ? "synth" : src, &dso);
    if (st) return st;

    int crop;
    if (!strcmp(fit, "crop")) crop = 1;
    else if (!strcmp(fit, "stretch")) crop = 0;
    else if (fmt == IB_DS_IMAGEFOLDER || fmt == IB_DS_TINYIMAGENET) crop = 1;
    else if (fmt == IB_DS_COCO || fmt == IB_DS_YOLO || fmt == IB_DS_SEGPAIRS) crop = 0;
    else crop = !ds->has_boxes && !ds->has_masks;

    int nc = ib_dataset_classes(ds);
    const char **names = calloc(nc > 0 ? (size_t)nc : 1, sizeof *names);
    if (!names) {
        ib_dataset_close(ds);
        return ib_fail(IB_ERR_NOMEM, "out of memory");
    }
    for (int c = 0; c < nc; c++) names[c] = ib_dataset_class_name(ds, c);
    ib_pack_writer *pw;
    st = ib_pack_writer_open(&pw, path, o.size, o.size, ds->has_boxes, ds->has_masks, nc, names,
                             ib_dataset_ignore_index(ds));
    free(names);
    if (st) {
        ib_dataset_close(ds);
        return st;
    }

    int64_t total = ib_dataset_size(ds);
    pack_slot *slots = calloc(PACK_GROUP, sizeof *slots);
    if (!slots) st = ib_fail(IB_ERR_NOMEM, "out of memory");
    double t0 = ib_time_s();
    for (int64_t b0 = 0; st == IB_OK && b0 < total; b0 += PACK_GROUP) {
        int nb = total - b0 < PACK_GROUP ? (int)(total - b0) : PACK_GROUP;
        // Readers are thread-safe (packs serialise inside); decoding and resizing run in parallel, the
        // writer takes the results in index order.
#pragma omp parallel for schedule(dynamic, 1)
        for (int k = 0; k < nb; k++) {
            pack_slot *sl = &slots[k];
            ib_sample in;
            sl->dropped = 0;
            sl->msg[0] = 0;
            sl->st = ib_dataset_get(ds, b0 + k, &in);
            if (sl->st == IB_OK) {
                sl->st = ib_sample_fit(&in, o.size, crop, &sl->out, &sl->dropped);
                ib_sample_free(&in);
            }
            if (sl->st) snprintf(sl->msg, sizeof sl->msg, "%s", ib_errmsg());
        }
        for (int k = 0; k < nb; k++) {
            pack_slot *sl = &slots[k];
            // With skip_bad a bad sample's place is served by the next readable one: drop it here, that one
            // is written at its own index.
            int bad = ds->bad && __atomic_load_n(&ds->bad[b0 + k], __ATOMIC_RELAXED);
            if (st == IB_OK && sl->st) st = ib_fail(sl->st, "%s", sl->msg);
            else if (st == IB_OK && !bad) {
                st = ib_pack_writer_add(pw, &sl->out);
                if (st == IB_OK) {
                    rep.images++;
                    rep.boxes += ds->has_boxes ? sl->out.n_boxes : 0;
                    rep.boxes_dropped += sl->dropped;
                }
            }
            ib_sample_free(&sl->out);
        }
        if (st == IB_OK && o.progress) o.progress(b0 + nb, total, o.user);
    }
    free(slots);
    if (st == IB_OK) st = ib_pack_writer_close(pw);
    else ib_pack_writer_abort(pw);
    if (st == IB_OK && r) {
        rep.seconds = ib_time_s() - t0;
        rep.skipped = ib_dataset_skipped(ds);
        rep.classes = nc;
        rep.crop = crop;
        rep.has_labels = ds->has_labels, rep.has_boxes = ds->has_boxes, rep.has_masks = ds->has_masks;
        snprintf(rep.source, sizeof rep.source, "%s", ib_dataset_path(ds));
        *r = rep;
    }
    ib_dataset_close(ds);
    return st;
}
