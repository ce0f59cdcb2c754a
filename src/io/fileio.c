/* fileio.c - capped whole-file reads and atomic writes (see fileio.h). */
#include "tempo/fileio.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

tempo_status tempo_read_file(const char *path, size_t max_len, uint8_t **out, size_t *len) {
  *out = NULL;
  *len = 0;
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return tempo_set_error(TEMPO_STATUS_IO, "cannot open %s: %s", path, strerror(errno));
  struct stat stt;
  if (fstat(fd, &stt) != 0 || !S_ISREG(stt.st_mode)) {
    close(fd);
    return tempo_set_error(TEMPO_STATUS_IO, "%s is not a regular file", path);
  }
  if ((uint64_t)stt.st_size > max_len) {
    close(fd);
    return tempo_set_error(TEMPO_STATUS_CORRUPT, "%s is too large (%lld bytes, limit %zu)", path,
                           (long long)stt.st_size, max_len);
  }
  size_t n = (size_t)stt.st_size, got = 0;
  uint8_t *buf = malloc(n ? n : 1);
  if (!buf) {
    close(fd);
    return tempo_set_error(TEMPO_STATUS_NO_MEMORY, "out of memory reading %s", path);
  }
  while (got < n) {
    ssize_t r = read(fd, buf + got, n - got);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) {
      free(buf);
      close(fd);
      return tempo_set_error(TEMPO_STATUS_IO, "cannot read %s: %s", path, r < 0 ? strerror(errno) : "file shrank");
    }
    got += (size_t)r;
  }
  close(fd);
  *out = buf;
  *len = n;
  return TEMPO_STATUS_OK;
}

tempo_status tempo_write_all(int fd, const void *buf, size_t n, const char *path) {
  const uint8_t *p = buf;
  while (n) {
    ssize_t w = write(fd, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0)
      return tempo_set_error(TEMPO_STATUS_IO, "cannot write %s: %s", path, w < 0 ? strerror(errno) : "no space");
    p += w;
    n -= (size_t)w;
  }
  return TEMPO_STATUS_OK;
}

tempo_status tempo_atomic_open(const char *path, char *tmp, size_t cap, int *fd) {
  int n = snprintf(tmp, cap, "%s.tmp.%ld", path, (long)getpid());
  if (n < 0 || (size_t)n >= cap) return tempo_set_error(TEMPO_STATUS_INVALID_ARGUMENT, "path too long: %s", path);
  *fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (*fd < 0) return tempo_set_error(TEMPO_STATUS_IO, "cannot create %s: %s", tmp, strerror(errno));
  return TEMPO_STATUS_OK;
}

tempo_status tempo_atomic_finish(int fd, const char *tmp, const char *path, tempo_status st) {
  if (!st && fsync(fd) != 0) st = tempo_set_error(TEMPO_STATUS_IO, "cannot sync %s: %s", tmp, strerror(errno));
  if (close(fd) != 0 && !st) st = tempo_set_error(TEMPO_STATUS_IO, "cannot close %s: %s", tmp, strerror(errno));
  if (!st && rename(tmp, path) != 0)
    st = tempo_set_error(TEMPO_STATUS_IO, "cannot rename %s to %s: %s", tmp, path, strerror(errno));
  if (st) {
    unlink(tmp);
    return st;
  }
  char *dcopy = strdup(path); /* sync the folder so the rename itself survives a crash */
  if (dcopy) {
    int dfd = open(dirname(dcopy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
      (void)fsync(dfd);
      close(dfd);
    }
    free(dcopy);
  }
  return TEMPO_STATUS_OK;
}

tempo_status tempo_write_file_atomic(const char *path, const void *const *parts, const size_t *lens, int n) {
  size_t cap = strlen(path) + 32;
  char *tmp = malloc(cap);
  if (!tmp) return tempo_set_error(TEMPO_STATUS_NO_MEMORY, "out of memory writing %s", path);
  int fd;
  tempo_status st = tempo_atomic_open(path, tmp, cap, &fd);
  if (!st) {
    for (int i = 0; i < n && !st; i++)
      if (lens[i]) st = tempo_write_all(fd, parts[i], lens[i], tmp);
    st = tempo_atomic_finish(fd, tmp, path, st);
  }
  free(tmp);
  return st;
}

tempo_status tempo_mkdir_p(const char *path) {
  char buf[4096];
  if (strlen(path) >= sizeof buf) return tempo_set_error(TEMPO_STATUS_INVALID_ARGUMENT, "path too long: %s", path);
  strcpy(buf, path);
  for (char *p = buf + 1;; p++) {
    if (*p == '/' || *p == '\0') {
      char c = *p;
      *p = '\0';
      if (mkdir(buf, 0755) != 0 && errno != EEXIST)
        return tempo_set_error(TEMPO_STATUS_IO, "cannot create folder %s: %s", buf, strerror(errno));
      *p = c;
      if (!c) break;
    }
  }
  return TEMPO_STATUS_OK;
}
