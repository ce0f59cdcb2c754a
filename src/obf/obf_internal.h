/* obf_internal.h - internals of the obfuscation module shared with its tests and benchmark. */
#ifndef TEMPO_OBF_INTERNAL_H
#define TEMPO_OBF_INTERNAL_H

#include "core/prefetch.h"
#include "tempo/obf.h"
#include "tempo/status.h"

#define TEMPO_OBF_MAX_DOTS TEMPO_OBF_ENC_X_MAX_DOTS
/* A pass is split into parts on the master's threads (the tempo_parallel pool, whose helpers
 * are woken, not started: ~10 us a part) only for at least this many elements per part. */
#define TEMPO_OBF_MIN_ELEMS_PER_PART (64 * 1024)

/* The parts a pass of `elems` elements in `units` indivisible units (rows, mixing blocks) is
 * split into: at most the tempo_parallel pool's threads (tempo_obf_set_threads), at least 1.
 * Both the plain passes (passes.c) and the mixed ones (mix.c) use it. */
int tempo_obf_parts(size_t elems, int units);

/* Outputs of at least TEMPO_OBF_NT_BYTES with rows shorter than TEMPO_OBF_NT_MAX_ROW_BYTES
 * are written with non-temporal stores (measured: 2x faster for 50176x64 and 50176x576,
 * slower for rows of 4 KiB and more, where the prefetcher streams the ordinary stores). */
#define TEMPO_OBF_NT_BYTES ((size_t)8 << 20)
#define TEMPO_OBF_NT_MAX_ROW_BYTES ((size_t)4096)

/* Kernel selection for the gather-and-scale passes (for measurement and tests). */
enum {
  TEMPO_OBF_KERNEL_AUTO = 0,           /* scatter, AVX2 if the CPU has it, NT stores for large outputs */
  TEMPO_OBF_KERNEL_NAIVE = 1,          /* one output row at a time, scalar gather (the reference) */
  TEMPO_OBF_KERNEL_SCATTER_SCALAR = 2, /* scatter 4 input rows at a time, scalar (the portable kernel) */
  TEMPO_OBF_KERNEL_SCATTER = 3,        /* scatter, AVX2 where available, ordinary stores always */
  TEMPO_OBF_KERNEL_SCATTER_NT = 4,     /* scatter, AVX2, NT stores whenever rows are aligned */
  TEMPO_OBF_KERNEL_PERMUTE = 5,         /* AVX-512 vpermt2ps for rows <= 128 columns (gather direction when
                                          * accumulating), else as SCATTER; AUTO picks it for such rows */
  TEMPO_OBF_KERNEL_COUNT = 6,
};
void tempo_obf_set_kernel(int kernel);

/* The passes of a key with mixing blocks (mix.c). enc: out = S_r L P(in) R S_c over output
 * rows [lo, hi); else out (+)= P^-1(L S_r in S_c R) over input rows [lo, hi) (in holds just
 * those), P the permutation with rows of rd (enc: out row i reads in row rd->perm[i]; dec: in
 * row a goes to out row rd->perm[a]) and columns of cd (enc: cd->perm, dec: cd->inv); S_r =
 * diag(rs), S_c = diag(cs) in the permuted index space (enc: of the output, dec: of the
 * input); L = k->mixd[rdim][lform], R = k->mixd[cdim][rform]. dots (NULL: none):
 * y[q][i] = sum_j row[j] w[q][j] and yb[q][i] = sum_j row[j]^2 (wb or fb)[q][j] in double, on
 * each output row (enc, i its index) or input row (dec, i = a - lo). src (enc only; NULL: none):
 * the input given by rows, in NULL (each input row is gathered into the key's scratch). */
typedef struct {
  int ndots;
  const double *const *w;
  const double *const *wb; /* the bound's weights (>= 0), or NULL and fb */
  const float *const *fb;
  double *const *y, *const *yb;
} tempo_obf_mix_dots;
void tempo_obf_mix_pass(const tempo_obf_key *k, bool enc, int rows, int cols, const float *in, float *out,
                        const tempo_obf_dim *rd, int rdim, int lform, const float *rs, const tempo_obf_dim *cd,
                        int cdim, int rform, const float *cs, bool acc, int lo, int hi,
                        const tempo_obf_mix_dots *dots, const tempo_rows *src);

/* The kernels of the mixed passes: the portable loops (the reference), b = 4 AVX2+FMA 4x4
 * tiles (mix.c), b = 4 AVX-512F 16-column tiles (mix512.c). tempo_obf_mix_isa: the best this
 * CPU runs; tempo_obf_mix_set_isa caps what the passes use (tests, measurement; AUTO: the
 * best), tempo_obf_mix_isa_used says what that leaves (for b = 4 and cols % 4 == 0);
 * tempo_obf_mix_force_scalar(on): the portable loops, or AUTO again. */
enum { TEMPO_OBF_MIX_ISA_AUTO = 0, TEMPO_OBF_MIX_ISA_SCALAR = 1, TEMPO_OBF_MIX_ISA_AVX2 = 2, TEMPO_OBF_MIX_ISA_AVX512 = 3 };
int tempo_obf_mix_isa(void);
int tempo_obf_mix_isa_used(void);
void tempo_obf_mix_set_isa(int isa);
void tempo_obf_mix_force_scalar(bool on);

/* mix512.c: the mixed pass's whole blocks of 4 rows in [lo, hi) with AVX-512F (b = 4,
 * cols % 4 == 0, cols >= 8, lo % 4 == 0, arguments as tempo_obf_mix_pass's with perm the rows'
 * and ci the columns' index vector of the direction, L, R the forms); scratch: 12 cols + 48
 * floats. Returns where it stopped (the first row of a last block smaller than 4, else hi). */
int tempo_obf_mix_pass512(bool enc, int rows, int cols, const float *in, float *out, const uint32_t *perm,
                          const uint32_t *ci, const float *L, const float *R, const float *rs, const float *cs,
                          bool acc, int lo, int hi, const tempo_obf_mix_dots *dots, const tempo_rows *src,
                          float *scratch);

/* Makes tempo_verify_product use its portable (scalar) kernels, for tests. */
void tempo_verify_force_scalar(bool on);

/* The dW' check's sums (scheme_tempo.c check_dw), in float64 with float64 weights, AVX2 where
 * the CPU has it (the check's bound holds for any summation order):
 * tempo_verify_cols_acc: y[i] += sum_l M[l][i] x[l], yb[i] += sum_l M[l][i]^2 xb[l] (i < cols);
 * tempo_verify_rows_d: y[i] = sum_j M[i][j] x[j], yb[i] = sum_j M[i][j]^2 xb[j] (i < rows);
 * M of row stride ld, xb >= 0. */
void tempo_verify_cols_acc(int lrows, int cols, const float *M, size_t ld, const double *x, const double *xb,
                           double *y, double *yb);
void tempo_verify_rows_d(int rows, int cols, const float *M, size_t ld, const double *x, const double *xb, double *y,
                         double *yb);

/* Measurement (bench/bench_verify.c): fn is called after every block of a check with its
 * product class (below), inner dimension k, width (columns c, or for a left check the c
 * columns it spans) and the largest |residual| / bound of the block (> 1: the block failed,
 * at its first failing row); NULL stops. Set it while no check runs. */
typedef void (*tempo_verify_ratio_fn)(void *ctx, int cls, int k, int c, double worst);
void tempo_verify_record(tempo_verify_ratio_fn fn, void *ctx);
/* The product class the following checks belong to (scheme_tempo.c sets it; passed to fn). */
enum {
  TEMPO_VCLASS_OTHER = 0,   /* checked after arrival: batched instances, accumulated dX' */
  TEMPO_VCLASS_FORWARD = 1, /* a row block's Y' (check_forward) */
  TEMPO_VCLASS_DX = 2,      /* a row block's dX' (check_take_dx) */
  TEMPO_VCLASS_DW = 3,      /* a row block's partial dW' (check_dw) */
  TEMPO_VCLASS_DW_SUM = 4,  /* dW' over all rows: a reduced sum (or an unsplit product) */
  TEMPO_VCLASS_COUNT = 5,
};
void tempo_verify_set_class(int cls);

#endif
