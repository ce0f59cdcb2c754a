/* tempo_worker.c - the untrusted worker program: protocol, operand cache and GEMM
 * backends only (no model, optimizer, dataset or key code; tests/test_worker_program.sh
 * checks the symbols). Launched by Open MPI next to the master:
 *   mpirun -np 1 tempo train ... : -np N tempo-worker --backend cpu|cuda [--tf32]
 * Exit status: 0 ok (master sent SHUTDOWN), 1 runtime error, 2 usage.
 *
 * Built a second time with TEMPO_WORKER_FAULTS=1 as the TEST-ONLY program
 * build/tests/tempo-worker-faulty, which adds --fault (tempo/worker_fault.h); the shipped
 * tempo-worker has no fault injection in it. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tempo/worker.h"
#ifndef TEMPO_WORKER_FAULTS
#define TEMPO_WORKER_FAULTS 0
#endif
#if TEMPO_WORKER_FAULTS
#include "tempo/worker_fault.h"
#endif
#if TEMPO_HAVE_MPI
#include "mpi/mpi.h"
#endif
#if TEMPO_HAVE_CUDA
#include "cuda/cuda.h"
#endif

static void help(void) {
  printf("usage: tempo-worker [--backend cpu|cuda] [--tf32] [--device N] [--relay-timeout S]\n"
         "\n"
         "A Tempo worker: computes blinded matrix products for the master. Open MPI starts it; the\n"
         "data travels over TCP streams between the ranks. Start it with\n"
         "  mpirun --mca orte_abort_on_non_zero_status 0 -np 1 tempo train ... : -np N tempo-worker\n"
         "\n"
         "  --backend NAME       cpu (OpenBLAS, default) or cuda (cuBLAS SGEMM; operands stay on the GPU)\n"
         "  --tf32               cuda: allow TF32 tensor cores (faster, ~1e-3 relative error; off by default)\n"
         "  --device N           cuda: GPU number (default: local rank modulo the GPU count)\n"
         "  --relay-timeout S    seconds to wait for an operand or dW' sum from another worker (default 30)\n"
#if TEMPO_WORKER_FAULTS
         "  --fault KIND[:START[:PERIOD]]  TESTS ONLY: cheat (wrong-element, scale, stale, zero,\n"
         "                       other-task, error-reply, no-reply) on result requests from START,\n"
         "                       bad-relay (flip a byte of the W' it relays) or late-relay (pass it on\n"
         "                       3 s late) on relays from START,\n"
         "                       flood (a 2 GiB frame nobody asked for) before ACKs from START,\n"
         "                       or bad-sum[:START]: corrupt the dW' sums passed on from the START-th\n"
         "                       reduction on\n"
#endif
         "  -h, --help           this help\n");
}

static int usage(const char *msg, const char *arg) {
  fprintf(stderr, "tempo-worker: %s '%s'\nTry 'tempo-worker --help'.\n", msg, arg);
  return 2;
}

#if TEMPO_WORKER_FAULTS
static bool parse_fault(const char *s, tempo_worker_fault *f) {
  char kind[32];
  unsigned start = 0, period = 1;
  const char *colon = strchr(s, ':');
  size_t n = colon ? (size_t)(colon - s) : strlen(s);
  if (n == 0 || n >= sizeof kind) return false;
  memcpy(kind, s, n);
  kind[n] = '\0';
  if (colon && sscanf(colon + 1, "%u:%u", &start, &period) < 1) return false;
  for (int k = 1; k < TEMPO_FAULT_KINDS_; k++)
    if (!strcmp(kind, tempo_fault_name((tempo_fault_kind)k))) {
      f->kind = (tempo_fault_kind)k, f->start = start, f->period = period ? period : 1;
      return true;
    }
  return false;
}
#endif

int main(int argc, char **argv) {
  setvbuf(stdout, NULL, _IOLBF, 0);
  const char *backend = "cpu";
  bool tf32 = false;
  int device = -1;
  double relay_timeout = 30.0;
#if TEMPO_WORKER_FAULTS
  tempo_worker_fault fault = {TEMPO_FAULT_NONE, 0, 1};
  long bad_sum_from = -1;
#endif
  static const struct option opts[] = {{"backend", required_argument, 0, 'b'}, {"tf32", no_argument, 0, 't'},
                                       {"device", required_argument, 0, 'd'},
                                       {"relay-timeout", required_argument, 0, 'r'},
#if TEMPO_WORKER_FAULTS
                                       {"fault", required_argument, 0, 'f'},
#endif
                                       {"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
  opterr = 0;
  int c;
  while ((c = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
    switch (c) {
    case 'b':
      if (strcmp(optarg, "cpu") && strcmp(optarg, "cuda")) return usage("unknown backend (use cpu or cuda)", optarg);
      backend = optarg;
      break;
    case 't': tf32 = true; break;
    case 'd': {
      char *end;
      long v = strtol(optarg, &end, 10);
      if (*end || v < 0 || v > 1024) return usage("--device needs a GPU number, got", optarg);
      device = (int)v;
      break;
    }
    case 'r': {
      char *end;
      double v = strtod(optarg, &end);
      if (*end || !(v > 0 && v < 86400)) return usage("--relay-timeout needs seconds, got", optarg);
      relay_timeout = v;
      break;
    }
#if TEMPO_WORKER_FAULTS
    case 'f':
      if (!strncmp(optarg, "bad-sum", 7) && (optarg[7] == '\0' || optarg[7] == ':')) {
        char *end = NULL;
        bad_sum_from = optarg[7] ? strtol(optarg + 8, &end, 10) : 0;
        if ((optarg[7] && (*end || end == optarg + 8)) || bad_sum_from < 0) return usage("bad --fault", optarg);
        fprintf(stderr, "tempo-worker: TEST FAULT INJECTION: bad dW' sums from reduction %ld\n", bad_sum_from);
      } else if (!parse_fault(optarg, &fault)) {
        return usage("bad --fault", optarg);
      }
      break;
#endif
    case 'h': help(); return 0;
    case ':': return usage("option needs a value:", argv[optind - 1]);
    default: return usage("unknown option", argv[optind - 1]);
    }
  }
  if (optind < argc) return usage("unexpected argument", argv[optind]);
#if TEMPO_HAVE_MPI
  /* Before MPI_Init: started alone (or as rank 0, the master's place) the worker says so itself,
   * instead of an MPI_Abort notice that hides the reason. */
  const char *world = getenv("OMPI_COMM_WORLD_SIZE"), *rank = getenv("OMPI_COMM_WORLD_RANK");
  if (!world || (rank && !strcmp(rank, "0"))) {
    fprintf(stderr, "tempo-worker: %s: launch the master first, the workers after it:\n"
            "  mpirun -np 1 tempo train ... : -np N tempo-worker --backend cpu\n"
            "(as root add --allow-run-as-root, with fewer cores than ranks --oversubscribe; docs/distributed.md)\n",
            !world ? "not started by mpirun" : "started as rank 0, which is the master's");
    return 2;
  }
#endif

  tempo_worker_config cfg;
  tempo_worker_config_default(&cfg);
  tempo_backend *gpu = NULL;
  if (!strcmp(backend, "cuda")) {
#if TEMPO_HAVE_CUDA
    if (device < 0) {
      const char *lr = getenv("OMPI_COMM_WORLD_LOCAL_RANK");
      int ndev = tempo_cuda_device_count();
      device = ndev > 0 && lr ? (atoi(lr) % ndev) : 0;
    }
    if (tempo_cuda_backend_create(device, tf32, &gpu)) {
      fprintf(stderr, "tempo-worker: %s\n", tempo_errmsg());
      return 1;
    }
    cfg.backend = gpu;
#else
    fprintf(stderr, "tempo-worker: built without CUDA (nvcc was not found at build time)\n");
    return 1;
#endif
  } else if (tf32) {
    return usage("--tf32 needs --backend cuda, not", backend);
  }
  tempo_worker *w;
  if (tempo_worker_create(&cfg, &w)) {
    fprintf(stderr, "tempo-worker: %s\n", tempo_errmsg());
    return 1;
  }
#if TEMPO_WORKER_FAULTS
  if (fault.kind != TEMPO_FAULT_NONE) {
    tempo_worker_set_fault(w, &fault);
    fprintf(stderr, "tempo-worker: TEST FAULT INJECTION: %s from request %u every %u\n", tempo_fault_name(fault.kind),
            fault.start, fault.period);
  }
  if (bad_sum_from >= 0) tempo_worker_set_bad_sum(w, bad_sum_from);
#endif
  int rc = 0;
#if TEMPO_HAVE_MPI
  if (tempo_mpi_worker_main(&argc, &argv, w, relay_timeout)) {
    fprintf(stderr, "tempo-worker: %s\n", tempo_errmsg());
    rc = 1;
  }
#else
  (void)relay_timeout;
  fprintf(stderr, "tempo-worker: built without MPI (mpicc was not found at build time)\n");
  rc = 1;
#endif
  tempo_worker_free(w);
#if TEMPO_HAVE_CUDA
  tempo_cuda_backend_free(gpu);
#endif
  return rc;
}
