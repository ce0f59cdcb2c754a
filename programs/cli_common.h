/* cli_common.h - what the master (tempo.c), the owner's tools (tempo_owner.c) and the
 * security evaluation (tempo_attack.c) share: `PROGRAM COMMAND [options]` dispatch, the
 * version line, and the usage and runtime error messages.
 *
 * Three programs because the enclave must hold only the master: the model owner's tools
 * (keygen, seal, unseal, export) run on the owner's machine, the attacks (attack, privacy)
 * on an auditor's, and neither is in the binary that Gramine measures
 * (tests/test_enclave_binary.sh checks with nm).
 * Exit status, every program: 0 ok, 1 runtime error, 2 usage error. */
#ifndef TEMPO_PROGRAMS_CLI_COMMON_H
#define TEMPO_PROGRAMS_CLI_COMMON_H

#include <stdarg.h>
#include <stdbool.h>

#include "tempo/status.h"

#define TEMPO_EXIT_USAGE 2

/* One command of a program. argv[0] of run is the command's name. A command with
 * moved_to set is not in this program: asking for it names the program that has it. */
typedef struct {
  const char *name;
  int (*run)(int argc, char **argv);
  const char *moved_to;
} tempo_cli_command;

typedef struct {
  const char *name;               /* "tempo", "tempo-owner", "tempo-attack" */
  const char *features;           /* for --version, e.g. "OpenBLAS, libsodium" */
  void (*help)(void);             /* prints the program's --help to stdout */
  const tempo_cli_command *cmds;  /* ends with {NULL} */
} tempo_cli_program;

/* The main of every program: hardens the process (no core dumps, keys wiped on exit and
 * on signals), then --help/help, --version, or the named command. No command prints the
 * help and is a usage error. Returns the exit status. */
int tempo_cli_main(const tempo_cli_program *p, int argc, char **argv);

/* "NAME VERSION (FEATURES)" on stdout: what --version prints. */
void tempo_cli_print_version(const char *name, const char *features);

/* "WHO: MESSAGE\nTry 'WHO --help'." on stderr; returns TEMPO_EXIT_USAGE. WHO is the
 * program ("tempo") or program and command ("tempo-owner seal"). */
int tempo_cli_usage(const char *who, const char *fmt, ...) TEMPO_PRINTF(2, 3);
int tempo_cli_vusage(const char *who, const char *fmt, va_list ap) TEMPO_PRINTF(2, 0);

/* "WHO: <tempo_errmsg()>" on stderr. tempo_cli_error returns 1; tempo_cli_fail returns
 * TEMPO_EXIT_USAGE when st is TEMPO_STATUS_INVALID_ARGUMENT (a bad argument the library
 * found), else 1. */
int tempo_cli_error(const char *who);
int tempo_cli_fail(const char *who, tempo_status st);

/* Whole decimal numbers and finite reals within [lo, hi]: false for anything else
 * (empty, trailing characters, out of range). */
bool tempo_cli_parse_long(const char *s, long lo, long hi, long *out);
bool tempo_cli_parse_double(const char *s, double lo, double hi, double *out);

#endif
