/* cli_common.c - dispatch and messages shared by the Tempo programs (cli_common.h). */
#include "cli_common.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tempo/seal.h"

int tempo_cli_vusage(const char *who, const char *fmt, va_list ap) {
  fprintf(stderr, "%s: ", who);
  vfprintf(stderr, fmt, ap);
  fprintf(stderr, "\nTry '%s --help'.\n", who);
  return TEMPO_EXIT_USAGE;
}

int tempo_cli_usage(const char *who, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int rc = tempo_cli_vusage(who, fmt, ap);
  va_end(ap);
  return rc;
}

int tempo_cli_error(const char *who) {
  fprintf(stderr, "%s: %s\n", who, tempo_errmsg());
  return 1;
}

int tempo_cli_fail(const char *who, tempo_status st) {
  tempo_cli_error(who);
  return st == TEMPO_STATUS_INVALID_ARGUMENT ? TEMPO_EXIT_USAGE : 1;
}

bool tempo_cli_parse_long(const char *s, long lo, long hi, long *out) {
  char *end;
  errno = 0;
  long v = strtol(s, &end, 10);
  if (errno || *end || end == s || v < lo || v > hi) return false;
  *out = v;
  return true;
}

bool tempo_cli_parse_double(const char *s, double lo, double hi, double *out) {
  char *end;
  double v = strtod(s, &end);
  if (*end || end == s || !(v >= lo && v <= hi)) return false;
  *out = v;
  return true;
}

void tempo_cli_print_version(const char *name, const char *features) {
  printf("%s %s (%s)\n", name, TEMPO_VERSION, features);
}

int tempo_cli_main(const tempo_cli_program *p, int argc, char **argv) {
  setvbuf(stdout, NULL, _IOLBF, 0);
  if (tempo_harden_process() != TEMPO_STATUS_OK) return tempo_cli_error(p->name);
  if (argc < 2) {
    p->help();
    return TEMPO_EXIT_USAGE;
  }
  const char *cmd = argv[1];
  if (!strcmp(cmd, "-h") || !strcmp(cmd, "--help") || !strcmp(cmd, "help")) {
    p->help();
    return 0;
  }
  if (!strcmp(cmd, "-V") || !strcmp(cmd, "--version")) {
    tempo_cli_print_version(p->name, p->features);
    return 0;
  }
  for (const tempo_cli_command *c = p->cmds; c->name; c++) {
    if (strcmp(cmd, c->name) != 0) continue;
    if (c->moved_to) {
      fprintf(stderr, "%s: '%s' is in %s now, not in %s: run '%s %s'\n", p->name, cmd, c->moved_to, p->name,
              c->moved_to, cmd);
      return TEMPO_EXIT_USAGE;
    }
    return c->run(argc - 1, argv + 1);
  }
  return tempo_cli_usage(p->name, "unknown command '%s'", cmd);
}
