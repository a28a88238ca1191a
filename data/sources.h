// data/sources.h: private to data/. The entry points of every dataset source behind ib_dataset_open,
// and the small file helpers the readers share. Users include data/data.h only.
//
// A source's open function fills ds->vt, ds->impl, size, n_classes, class_names (malloc'd strings, freed
// by ib_dataset_close), ignore_index and the has_* flags; ds itself and ds->path are set by
// ib_dataset_open. Files skipped at open time (skip_bad) are added to ds->skipped. vt->close frees impl.
#ifndef IB_DATA_SOURCES_H
#define IB_DATA_SOURCES_H

#include "data/data.h"

// Sources (pack.c, synth.c, read_folder.c, read_coco.c, read_seg.c).
ib_status ib_pack_source_open(ib_dataset *ds, const char *path, const ib_ds_opts *opts);
ib_status ib_synth_source_open(ib_dataset *ds, const ib_ds_opts *opts);
ib_status ib_folder_source_open(ib_dataset *ds, const char *path, const ib_ds_opts *opts);
ib_status ib_tinyimagenet_source_open(ib_dataset *ds, const char *path, const ib_ds_opts *opts);
ib_status ib_coco_source_open(ib_dataset *ds, const char *path, const ib_ds_opts *opts);
ib_status ib_yolo_source_open(ib_dataset *ds, const char *path, const ib_ds_opts *opts);
ib_status ib_segpairs_source_open(ib_dataset *ds, const char *path, const ib_ds_opts *opts);

// Boxes a detection source knows of without decoding (COCO json, YOLO txt), or -1 if it cannot say.
int64_t ib_ds_box_count(const ib_dataset *ds);

// ---------------------------------------------------------------------------------------------
// Helpers (dataset.c). Strings returned are malloc'd; NULL only when out of memory.

typedef struct ib_strvec {
    char **s;
    int64_t n, cap;
} ib_strvec;
ib_status ib_strvec_push(ib_strvec *v, const char *s);       // copies s
ib_status ib_strvec_push_own(ib_strvec *v, char *s);         // takes s (freed on failure)
void ib_strvec_sort(ib_strvec *v);                           // byte order (strcmp)
void ib_strvec_free(ib_strvec *v);

char *ib_ds_strdup(const char *s);
char *ib_ds_join(const char *dir, const char *name);         // "dir/name"
char *ib_ds_stem(const char *name);                          // "a/b.c.jpg" -> "b.c"
int ib_ds_is_dir(const char *path);
int ib_ds_is_file(const char *path);
int ib_ds_is_image_name(const char *name);                   // .jpg .jpeg .png, any case
// Names (not paths) in dir, sorted, hidden ones left out. what: 'd' directories, 'f' files.
ib_status ib_ds_list(const char *dir, char what, ib_strvec *out);
// The whole file, NUL-terminated (n excludes the NUL).
ib_status ib_ds_read_text(const char *path, char **text, size_t *n);
// Line by line over such a text (modified in place): the next line without its \n and a trailing \r,
// or NULL at the end; *lineno counts the lines returned (for file:line messages).
char *ib_ds_next_line(char **cur, int *lineno);
// dir/split if it is a directory, else the one directory in dir whose name starts with split
// ("train" -> "train2017"); NOTFOUND naming dir otherwise.
ib_status ib_ds_split_dir(const char *dir, const char *split, char **out);
// Takes over names (n_classes strings).
void ib_ds_set_classes(ib_dataset *ds, ib_strvec *names);
const char *ib_ds_split(const ib_ds_opts *opts);             // opts->split or "train"

#endif
