/* run_files.h - the run folder's housekeeping around checkpoints and resuming (internal to
 * train.c): where a resumed run writes, stale temporary files, and cutting metrics.jsonl
 * back to a checkpoint's step so that every step is recorded once. */
#ifndef TEMPO_TRAIN_RUN_FILES_H
#define TEMPO_TRAIN_RUN_FILES_H

#include <stddef.h>

#include "tempo/status.h"

/* The folder holding path ("." for a bare file name) into buf (cap bytes); false when it
 * does not fit. */
bool tempo_run_dir_of(const char *path, char *buf, size_t cap);

/* Removes dir/NAME.tmp.PID for the run's outputs (checkpoint.ckpt, model.ckpt,
 * metrics.jsonl, each also .sealed) whose writer PID no longer runs: what a SIGKILL between
 * creating and renaming a temporary file leaves. Files of running processes stay. Returns
 * how many were removed. */
int tempo_run_clean_stale_tmp(const char *dir);

/* Metrics text (JSON lines): keeps the records whose "step" is at most upto and those with
 * no "step" (configuration, summaries), drops an unterminated last line (a write cut off),
 * compacting text in place. Returns the kept length. */
size_t tempo_run_metrics_keep(char *text, size_t len, long upto);

/* tempo_run_metrics_keep on the file at path, rewritten atomically when anything is
 * dropped; a missing file is fine. */
TEMPO_WUR tempo_status tempo_run_metrics_truncate(const char *path, long upto);

#endif
