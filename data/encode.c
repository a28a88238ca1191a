// data/encode.c: PNG files (libpng) from RGB uint8 HWC images and one-byte-per-pixel label maps (8-bit gray,
// or 8-bit palette so a viewer shows the classes in colour while the raw values stay the class ids). Each file
// is written as PATH.tmp and renamed, so a failure never leaves a half-written PNG under the final name.
// libpng reports errors by longjmp; the handler jumps back here, which removes the temporary file and
// returns IB_ERR_IO naming the file.
#include "data/data.h"

#include <errno.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <png.h>

typedef struct png_sink {
    jmp_buf jmp;
    char msg[256];
    FILE *fp;
} png_sink;

// libpng's own writer says only "Write Error"; this one keeps the system's reason (a full disk).
static void png_write_data(png_structp png, png_bytep data, size_t n) {
    png_sink *k = png_get_io_ptr(png);
    if (fwrite(data, 1, n, k->fp) != n) png_error(png, strerror(errno));
}

static void png_flush_data(png_structp png) { (void)png; }   // ib_wfile_commit flushes and checks

static void png_write_error(png_structp png, png_const_charp msg) {
    png_sink *k = png_get_error_ptr(png);
    snprintf(k->msg, sizeof k->msg, "%s", msg);
    longjmp(k->jmp, 1);
}

static void png_write_warning(png_structp png, png_const_charp msg) { (void)png, (void)msg; }

// channels 3: RGB; 1: gray, or palette indices when palette (n_colors RGB triples) is given.
static ib_status write_png(const char *path, const uint8_t *pix, int h, int w, int channels, const uint8_t *palette,
                           int n_colors) {
    if (!path || !pix || h < 1 || w < 1)
        return ib_fail(IB_ERR_ARG, "%s: a PNG needs pixels and a size of at least 1x1 (got %dx%d)", path ? path : "(null)",
                       w, h);
    if (palette && (n_colors < 1 || n_colors > 256))
        return ib_fail(IB_ERR_ARG, "%s: a PNG palette has 1 to 256 colours (got %d)", path, n_colors);
    if (palette)
        for (int64_t i = 0; i < (int64_t)h * w; i++)
            if (pix[i] >= n_colors)
                return ib_fail(IB_ERR_ARG, "%s: pixel %lld has index %d, the palette has %d colours", path, (long long)i,
                               pix[i], n_colors);
    size_t n = strlen(path) + 5;
    char *tmp = malloc(n);
    if (!tmp) return ib_fail(IB_ERR_NOMEM, "%s: out of memory", path);
    ib_status s;
    FILE *fp = ib_wfile_open(path, tmp, n, &s);
    if (!fp) {
        free(tmp);
        return s;
    }
    png_sink sink;
    sink.msg[0] = 0;
    sink.fp = fp;
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, &sink, png_write_error, png_write_warning);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    if (!png || !info) {
        png_destroy_write_struct(&png, NULL);
        ib_wfile_discard(fp, tmp);
        free(tmp);
        return ib_fail(IB_ERR_NOMEM, "%s: out of memory", path);
    }
    if (setjmp(sink.jmp)) {
        png_destroy_write_struct(&png, &info);
        ib_wfile_discard(fp, tmp);
        free(tmp);
        return ib_fail(IB_ERR_IO, "%s: cannot write the PNG: %s", path, sink.msg);
    }
    png_set_write_fn(png, &sink, png_write_data, png_flush_data);
    int type = channels == 3 ? PNG_COLOR_TYPE_RGB : palette ? PNG_COLOR_TYPE_PALETTE : PNG_COLOR_TYPE_GRAY;
    png_set_IHDR(png, info, (png_uint_32)w, (png_uint_32)h, 8, type, PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT,
                 PNG_FILTER_TYPE_DEFAULT);
    if (palette) {
        png_color pal[256];
        for (int c = 0; c < n_colors; c++) pal[c].red = palette[3 * c], pal[c].green = palette[3 * c + 1], pal[c].blue = palette[3 * c + 2];
        png_set_PLTE(png, info, pal, n_colors);
    }
    png_write_info(png, info);
    for (int y = 0; y < h; y++) png_write_row(png, (png_const_bytep)(pix + (size_t)y * (size_t)w * (size_t)channels));
    png_write_end(png, info);
    png_destroy_write_struct(&png, &info);
    s = ib_wfile_commit(fp, tmp, path);
    free(tmp);
    return s;
}

ib_status ib_png_write_rgb(const char *path, const uint8_t *rgb, int h, int w) { return write_png(path, rgb, h, w, 3, NULL, 0); }

ib_status ib_png_write_indexed(const char *path, const uint8_t *idx, int h, int w, const uint8_t *palette, int n_colors) {
    return write_png(path, idx, h, w, 1, palette, n_colors);
}

ib_status ib_png_write_classes(const char *path, const uint8_t *labels, int h, int w, int classes) {
    if (classes < 1 || classes > 256)
        return ib_fail(IB_ERR_ARG, "%s: %d classes do not fit a palette PNG (1..256)", path ? path : "(null)", classes);
    uint8_t pal[256 * 3];
    for (int c = 0; c < classes; c++) ib_class_colour(c, pal + 3 * c);
    return write_png(path, labels, h, w, 1, pal, classes);
}
