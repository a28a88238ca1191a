// data/draw.c: drawing on RGB uint8 HWC images, for the pictures `ibnas predict` writes: the fixed class
// palette, box outlines, small text labels in a 3x5 bitmap font, and a translucent overlay of a label map.
#include "data/data.h"

#include <math.h>
#include <string.h>

// Sasha Trubetskoy's 20 distinct colours, in his order (red, green, yellow, blue, orange, purple, cyan,
// magenta, lime, pink, teal, lavender, brown, beige, maroon, mint, olive, apricot, navy, grey).
static const uint8_t first_colours[20][3] = {
    {230, 25, 75},   {60, 180, 75},   {255, 225, 25},  {0, 130, 200},   {245, 130, 48},
    {145, 30, 180},  {70, 240, 240},  {240, 50, 230},  {210, 245, 60},  {250, 190, 212},
    {0, 128, 128},   {220, 190, 255}, {170, 110, 40},  {255, 250, 200}, {128, 0, 0},
    {170, 255, 195}, {128, 128, 0},   {255, 215, 180}, {0, 0, 128},     {128, 128, 128},
};

void ib_class_colour(int c, uint8_t rgb[3]) {
    if (c >= 0 && c < 20) {
        memcpy(rgb, first_colours[c], 3);
        return;
    }
    // PASCAL VOC's colour map: the id's bits spread over the three channels, high bits first.
    int r = 0, g = 0, b = 0, id = c & 255;
    for (int j = 0; j < 8; j++, id >>= 3) {
        r |= ((id >> 0) & 1) << (7 - j);
        g |= ((id >> 1) & 1) << (7 - j);
        b |= ((id >> 2) & 1) << (7 - j);
    }
    rgb[0] = (uint8_t)r, rgb[1] = (uint8_t)g, rgb[2] = (uint8_t)b;
}

static void fill(uint8_t *rgb, int h, int w, int x0, int y0, int x1, int y1, const uint8_t c[3]) {
    // [x0, x1) x [y0, y1), clipped
    if (x0 < 0) x0 = 0;
    if (y0 < 0) y0 = 0;
    if (x1 > w) x1 = w;
    if (y1 > h) y1 = h;
    for (int y = y0; y < y1; y++)
        for (int x = x0; x < x1; x++) memcpy(rgb + 3 * ((size_t)y * w + x), c, 3);
}

void ib_draw_rect(uint8_t *rgb, int h, int w, float x0, float y0, float x1, float y1, int thick, const uint8_t c[3]) {
    int a = (int)floorf(x0), b = (int)floorf(y0), e = (int)ceilf(x1), f = (int)ceilf(y1);
    if (e <= a) e = a + 1;
    if (f <= b) f = b + 1;
    if (thick < 1) thick = 1;
    fill(rgb, h, w, a, b, e, b + thick, c);       // top
    fill(rgb, h, w, a, f - thick, e, f, c);       // bottom
    fill(rgb, h, w, a, b, a + thick, f, c);       // left
    fill(rgb, h, w, e - thick, b, e, f, c);       // right
}

// 3x5 glyphs as 15 bits, row 0 (top) in bits 14..12, each row's left column in its high bit: digits, '.',
// '-', ':', the letters (lower case drawn as capitals) and '_'.
static int glyph_bit(char ch, int row, int col) {
    static const struct { char ch; unsigned short bits; } font[] = {
        {'0', 0x7B6F}, {'1', 0x2C97}, {'2', 0x73E7}, {'3', 0x73CF}, {'4', 0x5BC9}, {'5', 0x79CF}, {'6', 0x79EF},
        {'7', 0x7249}, {'8', 0x7BEF}, {'9', 0x7BCF}, {'.', 0x0002}, {'-', 0x01C0}, {':', 0x0410},
        {'A', 0x2BED}, {'B', 0x6BAE}, {'C', 0x3923}, {'D', 0x6B6E}, {'E', 0x79A7}, {'F', 0x79A4}, {'G', 0x396B},
        {'H', 0x5BED}, {'I', 0x7497}, {'J', 0x126A}, {'K', 0x5BAD}, {'L', 0x4927}, {'M', 0x5FED}, {'N', 0x6B6D},
        {'O', 0x2B6A}, {'P', 0x6BA4}, {'Q', 0x2B73}, {'R', 0x6BAD}, {'S', 0x388E}, {'T', 0x7492}, {'U', 0x5B6F},
        {'V', 0x5B6A}, {'W', 0x5BFD}, {'X', 0x5AAD}, {'Y', 0x5A92}, {'Z', 0x72A7}, {'_', 0x0007},
    };
    if (ch >= 'a' && ch <= 'z') ch = (char)(ch - 'a' + 'A');   // one case: class names read in capitals
    for (size_t i = 0; i < sizeof font / sizeof font[0]; i++)
        if (font[i].ch == ch) return (font[i].bits >> (14 - 3 * row - col)) & 1;
    return 0;   // a space, or a character the font lacks
}

void ib_draw_label(uint8_t *rgb, int h, int w, int x, int y, const char *text, int scale, const uint8_t bg[3]) {
    if (scale < 1) scale = 1;
    int n = (int)strlen(text);
    int lw = (4 * n + 1) * scale, lh = 7 * scale;   // a font pixel of margin around, one between glyphs
    if (x + lw > w) x = w - lw;
    if (y + lh > h) y = h - lh;
    if (x < 0) x = 0;
    if (y < 0) y = 0;
    fill(rgb, h, w, x, y, x + lw, y + lh, bg);
    // ITU-R BT.601 luma: dark text on light labels
    int luma = (299 * bg[0] + 587 * bg[1] + 114 * bg[2]) / 1000;
    const uint8_t ink[3] = {luma > 140 ? 0 : 255, luma > 140 ? 0 : 255, luma > 140 ? 0 : 255};
    for (int k = 0; k < n; k++)
        for (int r = 0; r < 5; r++)
            for (int c = 0; c < 3; c++)
                if (glyph_bit(text[k], r, c)) {
                    int px = x + (1 + 4 * k + c) * scale, py = y + (1 + r) * scale;
                    fill(rgb, h, w, px, py, px + scale, py + scale, ink);
                }
}

void ib_draw_overlay(uint8_t *rgb, int h, int w, const uint8_t *labels, float alpha, int skip) {
    for (int64_t i = 0; i < (int64_t)h * w; i++) {
        if (labels[i] == skip) continue;
        uint8_t c[3];
        ib_class_colour(labels[i], c);
        for (int k = 0; k < 3; k++)
            rgb[3 * i + k] = (uint8_t)lrintf((1 - alpha) * (float)rgb[3 * i + k] + alpha * (float)c[k]);
    }
}
