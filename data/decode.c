// data/decode.c: PNG (libpng) and JPEG (libjpeg-turbo) to RGB uint8 HWC, and label-mask PNGs to their
// raw 8-bit values. Both libraries report errors by longjmp; the handlers here jump back into the
// decode function, which frees what it holds and returns IB_ERR_FORMAT naming the file.
#include "data/data.h"

#include <errno.h>
#include <setjmp.h>
#include <stdlib.h>
#include <string.h>

#include <jpeglib.h>
#include <jerror.h>
#include <png.h>

// Images larger than this (pixels) are refused as corrupt rather than allocated.
#define MAX_PIXELS ((int64_t)1 << 28)

static int is_png(const uint8_t *b, size_t n) { return n >= 8 && png_sig_cmp(b, 0, 8) == 0; }
static int is_jpeg(const uint8_t *b, size_t n) { return n >= 3 && b[0] == 0xFF && b[1] == 0xD8 && b[2] == 0xFF; }

static ib_status read_file(const char *path, uint8_t **buf, size_t *n) {
    *buf = NULL;
    *n = 0;
    FILE *fp = fopen(path, "rb");
    if (!fp) {
        if (errno == ENOENT) return ib_fail(IB_ERR_NOTFOUND, "%s: no such file", path);
        return ib_fail(IB_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    }
    size_t cap = 1 << 16, len = 0;
    uint8_t *b = malloc(cap);
    while (b) {
        if (len == cap) {
            uint8_t *nb = realloc(b, cap * 2);
            if (!nb) {
                free(b);
                b = NULL;
                break;
            }
            b = nb;
            cap *= 2;
        }
        size_t k = fread(b + len, 1, cap - len, fp);
        len += k;
        if (k == 0) break;
    }
    int err = ferror(fp);
    fclose(fp);
    if (!b) return ib_fail(IB_ERR_NOMEM, "%s: out of memory reading it", path);
    if (err) {
        free(b);
        return ib_fail(IB_ERR_IO, "%s: read error", path);
    }
    *buf = b;
    *n = len;
    return IB_OK;
}

// ---------------------------------------------------------------------------------------------
// PNG

typedef struct png_src {
    const uint8_t *buf;
    size_t n, pos;
    jmp_buf jmp;
    char msg[256];
    int short_data;       // libpng's benign "Not enough image data": the image is incomplete
} png_src;

static void png_read_mem(png_structp png, png_bytep out, png_size_t len) {
    png_src *src = png_get_io_ptr(png);
    if (len > src->n - src->pos) png_error(png, "truncated (unexpected end of file)");
    memcpy(out, src->buf + src->pos, len);
    src->pos += len;
}

static void png_on_error(png_structp png, png_const_charp msg) {
    png_src *src = png_get_error_ptr(png);
    snprintf(src->msg, sizeof src->msg, "%s", msg);
    longjmp(src->jmp, 1);
}

static void png_on_warning(png_structp png, png_const_charp msg) {
    png_src *src = png_get_error_ptr(png);
    if (strstr(msg, "Not enough image data")) src->short_data = 1;
}

// indices = 0: RGB uint8 (3 channels); 1: one byte per pixel with the raw gray value or palette index.
static ib_status decode_png(const uint8_t *buf, size_t n, const char *name, int indices, uint8_t **out, int *oh,
                            int *ow) {
    png_src src = {.buf = buf, .n = n};
    // volatile: these change between setjmp and a possible longjmp and are read after it.
    uint8_t *volatile pix = NULL;
    png_bytep *volatile rows = NULL;
    png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &src, png_on_error, png_on_warning);
    if (!png) return ib_fail(IB_ERR_NOMEM, "%s: out of memory", name);
    png_infop info = png_create_info_struct(png);
    if (!info) {
        png_destroy_read_struct(&png, NULL, NULL);
        return ib_fail(IB_ERR_NOMEM, "%s: out of memory", name);
    }
    if (setjmp(src.jmp)) {
        png_destroy_read_struct(&png, &info, NULL);
        free(rows);
        free(pix);
        return ib_fail(IB_ERR_FORMAT, "%s: bad PNG: %s", name, src.msg);
    }
    png_set_read_fn(png, &src, png_read_mem);
    png_read_info(png, info);
    png_uint_32 w = png_get_image_width(png, info), h = png_get_image_height(png, info);
    int ct = png_get_color_type(png, info), depth = png_get_bit_depth(png, info);
    if ((int64_t)w * h > MAX_PIXELS) png_error(png, "image too large");
    int ch;
    if (!indices) {
        png_set_expand(png);           // palette -> RGB, gray < 8 bits -> 8 bits, tRNS -> alpha
        png_set_strip_16(png);         // keep the high byte, as PIL does
        png_set_strip_alpha(png);
        if (!(ct & PNG_COLOR_MASK_COLOR)) png_set_gray_to_rgb(png);
        ch = 3;
    } else {
        if (ct & PNG_COLOR_MASK_COLOR && ct != PNG_COLOR_TYPE_PALETTE)
            png_error(png, "a label mask must be a gray or palette PNG, this one is RGB");
        if (depth == 16) png_error(png, "a label mask must be 8-bit, this one is 16-bit");
        if (depth < 8) png_set_packing(png);   // one index per byte, values not scaled
        png_set_strip_alpha(png);
        ch = 1;
    }
    png_set_interlace_handling(png);
    png_read_update_info(png, info);
    if (png_get_rowbytes(png, info) != (png_size_t)w * (png_size_t)ch) png_error(png, "unexpected row layout");
    pix = malloc((size_t)w * h * (size_t)ch);
    rows = malloc(sizeof(png_bytep) * (h ? h : 1));
    if (!pix || !rows) png_error(png, "out of memory");
    for (png_uint_32 y = 0; y < h; y++) rows[y] = pix + (size_t)y * w * (size_t)ch;
    png_read_image(png, rows);
    if (src.short_data) png_error(png, "truncated (not enough image data)");
    png_read_end(png, NULL);   // a file cut before IEND is truncated too
    png_destroy_read_struct(&png, &info, NULL);
    free(rows);
    *out = pix;
    *oh = (int)h;
    *ow = (int)w;
    return IB_OK;
}

// ---------------------------------------------------------------------------------------------
// JPEG

typedef struct jpeg_err {
    struct jpeg_error_mgr pub;
    jmp_buf jmp;
    int truncated;
    const char *why;      // our own reason for giving up, when it is not libjpeg's
} jpeg_err;

static void jpeg_on_error(j_common_ptr cinfo) {
    jpeg_err *e = (jpeg_err *)cinfo->err;
    longjmp(e->jmp, 1);
}

// Warnings are not printed; running out of data is recorded, because libjpeg then pads the image with
// grey and carries on, and a truncated file must be an error, not a grey image.
static void jpeg_on_message(j_common_ptr cinfo, int level) {
    jpeg_err *e = (jpeg_err *)cinfo->err;
    if (level < 0) {
        if (cinfo->err->msg_code == JWRN_JPEG_EOF) e->truncated = 1;
        cinfo->err->num_warnings++;
    }
}

// PIL's CMYK -> RGB (Convert.c cmyk2rgb) so decoded pixels match the reference exactly:
// r = (255 - k) - round(c * (255 - k) / 255).
static uint8_t cmyk_channel(int c, int k) {
    int nk = 255 - k;
    int t = c * nk + 128;
    int v = nk - (((t >> 8) + t) >> 8);
    return (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
}

static ib_status decode_jpeg(const uint8_t *buf, size_t n, const char *name, uint8_t **out, int *oh, int *ow) {
    struct jpeg_decompress_struct cinfo;
    jpeg_err err;
    uint8_t *volatile pix = NULL;
    uint8_t *volatile row = NULL;
    memset(&cinfo, 0, sizeof cinfo);
    cinfo.err = jpeg_std_error(&err.pub);
    err.pub.error_exit = jpeg_on_error;
    err.pub.emit_message = jpeg_on_message;
    err.truncated = 0;
    err.why = NULL;
    if (setjmp(err.jmp)) {
        char msg[JMSG_LENGTH_MAX];
        if (err.why) snprintf(msg, sizeof msg, "%s", err.why);
        else err.pub.format_message((j_common_ptr)&cinfo, msg);
        jpeg_destroy_decompress(&cinfo);
        free(pix);
        free(row);
        return ib_fail(IB_ERR_FORMAT, "%s: bad JPEG: %s", name, msg);
    }
    jpeg_create_decompress(&cinfo);
    jpeg_mem_src(&cinfo, buf, (unsigned long)n);
    jpeg_read_header(&cinfo, TRUE);
    // Before any buffer is sized from the header (a progressive file's coefficients take the whole image).
    if ((int64_t)cinfo.image_width * cinfo.image_height > MAX_PIXELS) {
        err.why = "image too large";
        longjmp(err.jmp, 1);
    }
    int cmyk = cinfo.jpeg_color_space == JCS_CMYK || cinfo.jpeg_color_space == JCS_YCCK;
    cinfo.out_color_space = cmyk ? JCS_CMYK : JCS_RGB;   // libjpeg-turbo converts gray to RGB itself
    jpeg_start_decompress(&cinfo);
    int w = (int)cinfo.output_width, h = (int)cinfo.output_height, nc = cinfo.output_components;
    if ((int64_t)w * h > MAX_PIXELS) err.why = "image too large";
    else if (nc != (cmyk ? 4 : 3)) err.why = "unexpected number of colour components";
    if (err.why) longjmp(err.jmp, 1);
    pix = malloc((size_t)w * h * 3);
    if (cmyk) row = malloc((size_t)w * 4);
    if (!pix || (cmyk && !row)) {
        err.why = "out of memory";
        longjmp(err.jmp, 1);
    }
    // Adobe (Photoshop) CMYK is stored inverted; PIL undoes that before converting, and so do we.
    int inverted = cmyk && cinfo.saw_Adobe_marker;
    while (cinfo.output_scanline < cinfo.output_height) {
        int y = (int)cinfo.output_scanline;
        uint8_t *dst = pix + (size_t)y * w * 3;
        JSAMPROW r = cmyk ? row : dst;
        jpeg_read_scanlines(&cinfo, &r, 1);
        if (cmyk)
            for (int x = 0; x < w; x++) {
                int c[4];
                for (int k = 0; k < 4; k++) c[k] = inverted ? 255 - row[4 * x + k] : row[4 * x + k];
                for (int k = 0; k < 3; k++) dst[3 * x + k] = cmyk_channel(c[k], c[3]);
            }
        if (err.truncated) break;
    }
    if (!err.truncated) jpeg_finish_decompress(&cinfo);
    jpeg_destroy_decompress(&cinfo);
    free(row);
    if (err.truncated) {
        free(pix);
        return ib_fail(IB_ERR_FORMAT, "%s: bad JPEG: truncated (premature end of data)", name);
    }
    *out = pix;
    *oh = h;
    *ow = w;
    return IB_OK;
}

// ---------------------------------------------------------------------------------------------

ib_status ib_decode_memory(const uint8_t *buf, size_t n, const char *name, uint8_t **rgb, int *h, int *w) {
    *rgb = NULL;
    *h = *w = 0;
    if (!name) name = "(memory)";
    if (is_png(buf, n)) return decode_png(buf, n, name, 0, rgb, h, w);
    if (is_jpeg(buf, n)) return decode_jpeg(buf, n, name, rgb, h, w);
    if (n == 0) return ib_fail(IB_ERR_FORMAT, "%s: empty file", name);
    return ib_fail(IB_ERR_FORMAT, "%s: not a PNG or JPEG file", name);
}

ib_status ib_decode_file(const char *path, uint8_t **rgb, int *h, int *w) {
    *rgb = NULL;
    *h = *w = 0;
    uint8_t *buf;
    size_t n;
    ib_status st = read_file(path, &buf, &n);
    if (st) return st;
    st = ib_decode_memory(buf, n, path, rgb, h, w);
    free(buf);
    return st;
}

ib_status ib_decode_png_indices(const char *path, uint8_t **idx, int *h, int *w) {
    *idx = NULL;
    *h = *w = 0;
    uint8_t *buf;
    size_t n;
    ib_status st = read_file(path, &buf, &n);
    if (st) return st;
    if (!is_png(buf, n)) st = ib_fail(IB_ERR_FORMAT, "%s: a label mask must be a PNG file", path);
    else st = decode_png(buf, n, path, 1, idx, h, w);
    free(buf);
    return st;
}
