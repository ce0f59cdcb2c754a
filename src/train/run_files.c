/* run_files.c - the run folder's housekeeping (see run_files.h). */
#include "train/run_files.h"

#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tempo/fileio.h"

#define METRICS_MAX ((size_t)1 << 30)

bool tempo_run_dir_of(const char *path, char *buf, size_t cap) {
  const char *slash = strrchr(path, '/');
  int n;
  if (!slash) n = snprintf(buf, cap, ".");
  else if (slash == path) n = snprintf(buf, cap, "/");
  else n = snprintf(buf, cap, "%.*s", (int)(slash - path), path);
  return n >= 0 && (size_t)n < cap;
}

/* name is OUTPUT[.sealed].tmp.PID for one of the run's outputs: *pid gets PID. */
static bool stale_name(const char *name, long *pid) {
  static const char *const outputs[] = {"checkpoint.ckpt", "model.ckpt", "metrics.jsonl"};
  for (size_t i = 0; i < sizeof outputs / sizeof *outputs; i++) {
    size_t n = strlen(outputs[i]);
    if (strncmp(name, outputs[i], n) != 0) continue;
    const char *rest = name + n;
    if (strncmp(rest, ".sealed", 7) == 0) rest += 7;
    if (strncmp(rest, ".tmp.", 5) != 0) continue;
    rest += 5;
    if (*rest < '1' || *rest > '9' || strlen(rest) > 10) return false;
    char *end;
    *pid = strtol(rest, &end, 10);
    return *end == '\0' && *pid > 0;
  }
  return false;
}

int tempo_run_clean_stale_tmp(const char *dir) {
  DIR *d = opendir(dir);
  if (!d) return 0;
  int removed = 0;
  const long self = (long)getpid();
  struct dirent *e;
  char path[4096];
  while ((e = readdir(d))) {
    long pid;
    if (!stale_name(e->d_name, &pid) || pid == self) continue;
    if (kill((pid_t)pid, 0) == 0 || errno != ESRCH) continue; /* running (or not ours to ask) */
    int n = snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
    if (n > 0 && (size_t)n < sizeof path && unlink(path) == 0) removed++;
  }
  closedir(d);
  return removed;
}

/* The value of the record's "step" key, if it has one (the first "step": in the line: the
 * records are flat objects, and no other key ends in "step"). */
static bool line_step(const char *line, size_t len, long *step) {
  static const char key[] = "\"step\":";
  const size_t k = sizeof key - 1;
  for (size_t i = 0; i + k < len; i++) {
    if (memcmp(line + i, key, k) != 0) continue;
    long v = 0;
    size_t j = i + k;
    bool digits = false;
    while (j < len && line[j] >= '0' && line[j] <= '9' && v < 1L << 50) v = v * 10 + (line[j++] - '0'), digits = true;
    if (!digits) return false;
    *step = v;
    return true;
  }
  return false;
}

size_t tempo_run_metrics_keep(char *text, size_t len, long upto) {
  size_t in = 0, out = 0;
  while (in < len) {
    const char *nl = memchr(text + in, '\n', len - in);
    if (!nl) break; /* an unterminated last line: a write cut off */
    const size_t n = (size_t)(nl - (text + in)) + 1;
    long step;
    if (!line_step(text + in, n, &step) || step <= upto) {
      memmove(text + out, text + in, n);
      out += n;
    }
    in += n;
  }
  return out;
}

tempo_status tempo_run_metrics_truncate(const char *path, long upto) {
  if (access(path, F_OK) != 0) return TEMPO_STATUS_OK;
  uint8_t *buf;
  size_t len;
  tempo_status st = tempo_read_file(path, METRICS_MAX, &buf, &len);
  if (st) return st;
  const size_t keep = tempo_run_metrics_keep((char *)buf, len, upto);
  if (keep != len) {
    const void *parts[1] = {buf};
    st = tempo_write_file_atomic(path, parts, &keep, 1);
  }
  free(buf);
  return st;
}
