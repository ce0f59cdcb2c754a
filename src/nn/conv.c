/* conv.c - conv2d lowered to one matrix product per call (see cnn.h): im2col/col2im on the
 * master, the product through the matmul entry point (weight (Co, K) with w_trans).
 * Letters as in cnn.h; KK = kh*kw taps. */
/* The build is -O2, whose "very cheap" vectoriser skips any loop that needs a remainder or
 * an alias check, i.e. every channel loop here; let it weigh the cost instead. */
#pragma GCC optimize("vect-cost-model=dynamic")

#include <limits.h>
#include <stdint.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "core/prefetch.h"
#include "tempo/cnn.h"
#include "tempo/common.h"
#include "tempo/parallel.h"

/* Passes of at least SPLIT_MIN floats are split into blocks of whole units (output rows for
 * im2col and the bias, samples for col2im) over the tempo_parallel pool; each block writes
 * only its own units, and every float is computed exactly as on one thread. */
#define SPLIT_MIN 65536
#define SPLIT_TASKS_MAX 64
/* Local mode: columns per thread per tile (see lowering() below), 2 MB: at 2 threads 0.5 MB
 * tiles cost more in pool hand-offs than they saved (resnet20 156 ms vs 140 untiled). */
#define TILE_FLOATS (512 * 1024)

typedef struct {
  void (*body)(void *arg, size_t lo, size_t hi);
  void *arg;
  size_t units, per;
} split_job;

static void split_task(void *a, int t) {
  const split_job *j = a;
  const size_t lo = (size_t)t * j->per, hi = lo + j->per < j->units ? lo + j->per : j->units;
  j->body(j->arg, lo, hi);
}

/* body(arg, lo, hi) over [0, units) in blocks; floats: the size of the whole pass. */
static void split_run(size_t units, size_t floats, void (*body)(void *, size_t, size_t), void *arg) {
  if (units < 2 || floats < SPLIT_MIN || tempo_parallel_threads() < 2) {
    body(arg, 0, units);
    return;
  }
  size_t tasks = floats / (SPLIT_MIN / 2);
  if (tasks > SPLIT_TASKS_MAX) tasks = SPLIT_TASKS_MAX;
  if (tasks > units) tasks = units;
  split_job j = {body, arg, units, (units + tasks - 1) / tasks};
  tempo_parallel_for((int)((units + j.per - 1) / j.per), split_task, &j);
}

int tempo_conv_out_size(int in, int k, int stride, int pad) {
  if (in < 1 || k < 1 || stride < 1 || pad < 0 || in + 2 * pad < k) return 0;
  return (in + 2 * pad - k) / stride + 1;
}

tempo_status tempo_conv2d_declare(tempo_conv2d *l, tempo_params *p, const char *prefix, int cin, int cout, int k,
                                  int stride, int pad, bool bias, int in_h, int in_w, tempo_layout in_layout) {
  char name[TEMPO_PARAM_NAME_MAX];
  memset(l, 0, sizeof *l);
  if (cin < 1 || cout < 1 || k < 1 || k > 64 || stride < 1 || pad < 0 || pad >= k || in_h < 1 || in_w < 1 ||
      tempo_conv_out_size(in_h, k, stride, pad) < 1 || tempo_conv_out_size(in_w, k, stride, pad) < 1 ||
      (in_layout != TEMPO_LAYOUT_NHWC && in_layout != TEMPO_LAYOUT_NCHW))
    return tempo_set_error(TEMPO_STATUS_INVALID_ARGUMENT,
                           "conv2d %s: bad geometry cin=%d cout=%d k=%d stride=%d pad=%d input %dx%d", prefix, cin,
                           cout, k, stride, pad, in_h, in_w);
  l->cin = cin;
  l->cout = cout;
  l->kh = l->kw = k;
  l->stride = stride;
  l->pad = pad;
  l->in_h = in_h;
  l->in_w = in_w;
  l->out_h = tempo_conv_out_size(in_h, k, stride, pad);
  l->out_w = tempo_conv_out_size(in_w, k, stride, pad);
  l->in_layout = in_layout;
  l->direct = k == 1 && stride == 1 && pad == 0 && in_layout == TEMPO_LAYOUT_NHWC;
  /* overlapping windows share pixels, so rows of the lowered input chain into feature maps */
  if (k > stride) l->site.kind |= TEMPO_SITE_SPATIAL;
  l->b_idx = -1;
  snprintf(name, sizeof name, "%s.weight", prefix);
  tempo_status st = tempo_params_add(p, name, 4, (int[]){cout, cin, k, k}, 0, &l->w_idx);
  if (st || !bias) return st;
  snprintf(name, sizeof name, "%s.bias", prefix);
  return tempo_params_add(p, name, 1, (int[]){cout}, TEMPO_PARAM_NO_DECAY, &l->b_idx);
}

/* NHWC input with more than one tap: columns are tap-major, (i, j, ci), so that every tap row
 * of a window is one contiguous run of kw*Ci input floats; the weight is used through a
 * (Co, kh, kw, Ci) copy kept behind the columns (see cols_tail). */
static bool tap_major(const tempo_conv2d *l) {
  return l->in_layout == TEMPO_LAYOUT_NHWC && l->kh * l->kw > 1;
}

static size_t round16(size_t n) { return (n + 15) & ~(size_t)15; }

size_t tempo_conv2d_cols_floats(const tempo_conv2d *l, int batch) {
  if (l->direct) return 0;
  size_t n;
  const size_t k = (size_t)l->cin * l->kh * l->kw;
  if (!tempo_mul3_size((size_t)batch, (size_t)l->out_h * l->out_w, k, &n)) return 0;
  if (!tap_major(l)) return n;
  const size_t w = round16((size_t)l->cout * k); /* weight and weight-gradient copies */
  if (n > SIZE_MAX - 16 - 2 * w) return 0;
  return round16(n) + 2 * w;
}

void tempo_conv2d_init_kaiming(const tempo_conv2d *l, tempo_params *p, tempo_rng *rng) {
  const double std = sqrt(2.0 / ((double)l->cout * l->kh * l->kw));
  const size_t n = (size_t)l->cout * l->cin * l->kh * l->kw;
  float *w = tempo_params_ptr(p, l->w_idx);
  for (size_t i = 0; i < n; i++) w[i] = (float)(std * tempo_rng_normal(rng));
  if (l->b_idx >= 0) {
    const double bound = 1.0 / sqrt((double)l->cin * l->kh * l->kw);
    float *b = tempo_params_ptr(p, l->b_idx);
    for (int i = 0; i < l->cout; i++) b[i] = (float)((2.0 * tempo_rng_uniform(rng) - 1.0) * bound);
  }
}

/* Element strides of the input: (batch, row, column, channel). */
typedef struct {
  size_t sb, sh, sw, sc;
} in_strides;

static in_strides strides_of(const tempo_conv2d *l) {
  const size_t hw = (size_t)l->in_h * l->in_w;
  if (l->in_layout == TEMPO_LAYOUT_NCHW) return (in_strides){hw * l->cin, (size_t)l->in_w, 1, hw};
  return (in_strides){hw * l->cin, (size_t)l->in_w * l->cin, (size_t)l->cin, 1};
}

/* The element loops below are compiled for AVX-512 and AVX2 too (the build has no -march);
 * the loader picks the best the CPU has. */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(__SANITIZE_ADDRESS__)
#define CONV_CLONES __attribute__((target_clones("arch=x86-64-v4", "avx2", "default")))
#else
#define CONV_CLONES
#endif

/* Channel-major columns (ci, i, j) (NCHW input, and 1x1 NHWC convs where both orders agree):
 * one output row of cols for pixel (oh, ow) of sample xb; tap t = (i, j) of channel ci goes to
 * column ci*KK + t; padded taps are zero. */
static void im2col_row(const tempo_conv2d *l, const in_strides *s, const float *xb, int oh, int ow, float *dst) {
  const int kk = l->kh * l->kw, cin = l->cin;
  for (int i = 0; i < l->kh; i++) {
    const int ih = oh * l->stride - l->pad + i;
    for (int j = 0; j < l->kw; j++) {
      const int iw = ow * l->stride - l->pad + j, t = i * l->kw + j;
      float *d = dst + t;
      if (ih < 0 || ih >= l->in_h || iw < 0 || iw >= l->in_w) {
        for (int c = 0; c < cin; c++) d[(size_t)c * kk] = 0.0f;
        continue;
      }
      const float *src = xb + (size_t)ih * s->sh + (size_t)iw * s->sw;
      if (kk == 1 && s->sc == 1) {
        memcpy(d, src, (size_t)cin * sizeof *d);
      } else {
        for (int c = 0; c < cin; c++) d[(size_t)c * kk] = src[(size_t)c * s->sc];
      }
    }
  }
}

/* Tap-major columns (i, j, ci) from an NHWC input: row i of the window is the run of kw*Ci
 * floats at (ih, iw0) clipped to the image, zeros where it leaves it. */
static void im2col_row_tap(const tempo_conv2d *l, const float *xb, int oh, int ow, float *dst) {
  const int cin = l->cin, kw = l->kw, iw0 = ow * l->stride - l->pad;
  const int j0 = iw0 < 0 ? -iw0 : 0, j1 = l->in_w - iw0 < kw ? l->in_w - iw0 : kw;
  const size_t run = (size_t)kw * cin;
  for (int i = 0; i < l->kh; i++, dst += run) {
    const int ih = oh * l->stride - l->pad + i;
    if (ih < 0 || ih >= l->in_h || j0 >= j1) {
      memset(dst, 0, run * sizeof *dst);
      continue;
    }
    if (j0 > 0) memset(dst, 0, (size_t)j0 * cin * sizeof *dst);
    memcpy(dst + (size_t)j0 * cin, xb + ((size_t)ih * l->in_w + iw0 + j0) * cin,
           (size_t)(j1 - j0) * cin * sizeof *dst);
    if (j1 < kw) memset(dst + (size_t)j1 * cin, 0, (size_t)(kw - j1) * cin * sizeof *dst);
  }
}

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#include <immintrin.h>
#define CONV_NT 1
/* Columns of at least this many floats are written with non-temporal stores: they do not fit
 * the cache anyway, and streaming skips reading every line before it is overwritten. */
#define NT_MIN_FLOATS (4u << 20)

/* One output row oh of tap-major columns (out_w rows of the column matrix at dst), Ci a multiple
 * of 16, with 64-byte vector stores: streaming ones when `stream` (dst then 64-byte aligned),
 * plain ones for tiles that stay in cache. Window row i of a pixel is one run of kw*Ci floats,
 * copied by a plain vector loop when the window lies inside the image (all pixels but the
 * edges), tap by tap otherwise (per-pixel calls and memcpy per 192-byte run cost about 100
 * cycles a pixel). */
__attribute__((target("avx512f"), always_inline)) static inline void
im2col_orow_tap_v(const tempo_conv2d *l, const float *xb, int oh, float *dst, bool stream) {
  const int cin = l->cin, kw = l->kw, st = l->stride;
  const size_t run = (size_t)kw * cin, k = run * l->kh;
  const __m512 zero = _mm512_setzero_ps();
  for (int i = 0; i < l->kh; i++) {
    const int ih = oh * st - l->pad + i;
    const bool in = ih >= 0 && ih < l->in_h;
    const float *xr = in ? xb + (size_t)ih * l->in_w * cin : NULL;
    float *d = dst + (size_t)i * run;
    for (int ow = 0; ow < l->out_w; ow++, d += k) {
      const int iw0 = ow * st - l->pad;
      if (in && iw0 >= 0 && iw0 + kw <= l->in_w) {
        const float *src = xr + (size_t)iw0 * cin;
        if (stream)
          for (size_t c = 0; c < run; c += 16) _mm512_stream_ps(d + c, _mm512_loadu_ps(src + c));
        else
          for (size_t c = 0; c < run; c += 16) _mm512_storeu_ps(d + c, _mm512_loadu_ps(src + c));
        continue;
      }
      for (int j = 0; j < kw; j++) {
        const int iw = iw0 + j;
        const bool inside = in && iw >= 0 && iw < l->in_w;
        for (int c = 0; c < cin; c += 16) {
          const __m512 v = inside ? _mm512_loadu_ps(xr + (size_t)iw * cin + c) : zero;
          if (stream)
            _mm512_stream_ps(d + (size_t)j * cin + c, v);
          else
            _mm512_storeu_ps(d + (size_t)j * cin + c, v);
        }
      }
    }
  }
}

__attribute__((target("avx512f"))) static void im2col_orow_tap_nt(const tempo_conv2d *l, const float *xb, int oh,
                                                                  float *dst) {
  im2col_orow_tap_v(l, xb, oh, dst, true);
}

__attribute__((target("avx512f"))) static void im2col_orow_tap_st(const tempo_conv2d *l, const float *xb, int oh,
                                                                  float *dst) {
  im2col_orow_tap_v(l, xb, oh, dst, false);
}

/* One tap-major column row, pixel (oh, ow), Ci a multiple of 16 (the row source's fast path):
 * the same copies and +0 padding as im2col_row_tap, in 64-byte vectors. */
__attribute__((target("avx512f"))) static void im2col_row_tap_v(const tempo_conv2d *l, const float *xb, int oh,
                                                                int ow, float *dst) {
  const int cin = l->cin, kw = l->kw, iw0 = ow * l->stride - l->pad;
  const size_t run = (size_t)kw * cin;
  const bool whole = iw0 >= 0 && iw0 + kw <= l->in_w;
  const __m512 zero = _mm512_setzero_ps();
  for (int i = 0; i < l->kh; i++, dst += run) {
    const int ih = oh * l->stride - l->pad + i;
    const bool in = ih >= 0 && ih < l->in_h;
    const float *xr = in ? xb + (size_t)ih * l->in_w * cin : NULL;
    if (in && whole) {
      const float *src = xr + (size_t)iw0 * cin;
      for (size_t c = 0; c < run; c += 16) _mm512_storeu_ps(dst + c, _mm512_loadu_ps(src + c));
      continue;
    }
    for (int j = 0; j < kw; j++) {
      const int iw = iw0 + j;
      const bool inside = in && iw >= 0 && iw < l->in_w;
      for (int c = 0; c < cin; c += 16)
        _mm512_storeu_ps(dst + (size_t)j * cin + c, inside ? _mm512_loadu_ps(xr + (size_t)iw * cin + c) : zero);
    }
  }
}

static bool nt_cpu(void) {
  static int have = -1; /* benign race: every thread computes the same answer */
  if (have < 0) have = __builtin_cpu_supports("avx512f") ? 1 : 0;
  return have;
}
#else
#define CONV_NT 0
#endif

typedef struct {
  const tempo_conv2d *l;
  const float *x;
  bool nt;  /* im2col: streaming stores (im2col_orow_tap_nt) */
  bool vec; /* im2col: im2col_orow_tap_st */
  float *cols;
  const float *ccols;
  float *dx;
  bool accumulate;
} cols_job;

/* im2col of output rows [lo, hi) (unit u = sample u / out_h, output row u % out_h). */
static void im2col_rows(void *arg, size_t lo, size_t hi) {
  const cols_job *jb = arg;
  const tempo_conv2d *l = jb->l;
  const in_strides s = strides_of(l);
  const size_t k = (size_t)l->cin * l->kh * l->kw;
  const bool tap = tap_major(l);
  float *dst = jb->cols + lo * l->out_w * k;
  for (size_t u = lo; u < hi; u++) {
    const int b = (int)(u / (size_t)l->out_h), oh = (int)(u % (size_t)l->out_h);
    const float *xb = jb->x + (size_t)b * s.sb;
#if CONV_NT
    if (jb->nt || jb->vec) {
      if (jb->nt)
        im2col_orow_tap_nt(l, xb, oh, dst);
      else
        im2col_orow_tap_st(l, xb, oh, dst);
      dst += (size_t)l->out_w * k;
      continue;
    }
#endif
    for (int ow = 0; ow < l->out_w; ow++, dst += k) {
      if (tap)
        im2col_row_tap(l, xb, oh, ow, dst);
      else
        im2col_row(l, &s, xb, oh, ow, dst);
    }
  }
}

void tempo_im2col(const tempo_conv2d *l, const float *x, int batch, float *cols) {
  cols_job jb = {.l = l, .x = x, .cols = cols};
  const size_t rows = (size_t)batch * l->out_h, floats = rows * l->out_w * l->cin * l->kh * l->kw;
#if CONV_NT
  jb.nt = tap_major(l) && l->cin % 16 == 0 && ((uintptr_t)cols & 63) == 0 && floats >= NT_MIN_FLOATS && nt_cpu();
  jb.vec = !jb.nt && tap_major(l) && l->cin % 16 == 0 && nt_cpu();
#endif
  split_run(rows, floats, im2col_rows, &jb);
#if CONV_NT
  if (jb.nt) _mm_sfence(); /* the helpers' stores are ordered by the pool's hand-back */
#endif
}

/* Channel-major col2im of samples [lo, hi): each sample scatters only into its own part of dx. */
static void col2im_samples(void *arg, size_t lo, size_t hi) {
  const cols_job *jb = arg;
  const tempo_conv2d *l = jb->l;
  const in_strides s = strides_of(l);
  const int kk = l->kh * l->kw, cin = l->cin;
  const size_t k = (size_t)cin * kk;
  if (!jb->accumulate) memset(jb->dx + lo * s.sb, 0, (hi - lo) * s.sb * sizeof *jb->dx);
  const float *src = jb->ccols + lo * l->out_h * l->out_w * k;
  for (size_t b = lo; b < hi; b++) {
    float *xb = jb->dx + b * s.sb;
    for (int oh = 0; oh < l->out_h; oh++)
      for (int ow = 0; ow < l->out_w; ow++, src += k)
        for (int i = 0; i < l->kh; i++) {
          const int ih = oh * l->stride - l->pad + i;
          if (ih < 0 || ih >= l->in_h) continue;
          for (int j = 0; j < l->kw; j++) {
            const int iw = ow * l->stride - l->pad + j;
            if (iw < 0 || iw >= l->in_w) continue;
            float *d = xb + (size_t)ih * s.sh + (size_t)iw * s.sw;
            const float *c0 = src + i * l->kw + j;
            for (int c = 0; c < cin; c++) d[(size_t)c * s.sc] += c0[(size_t)c * kk];
          }
        }
  }
}

/* Tap-major col2im of one column row: pixel (oh, ow) of the sample whose dx is xb; row i of
 * its window adds onto its run of kw*Ci floats of xb (clipped to the image). */
static inline __attribute__((always_inline)) void col2im_pixel_tap(const tempo_conv2d *l, float *xb, int oh, int ow,
                                                                   const float *src) {
  const int cin = l->cin, kw = l->kw;
  const int iw0 = ow * l->stride - l->pad;
  const int j0 = iw0 < 0 ? -iw0 : 0, j1 = l->in_w - iw0 < kw ? l->in_w - iw0 : kw;
  if (j0 >= j1) return;
  const int n = (j1 - j0) * cin;
  for (int i = 0; i < l->kh; i++) {
    const int ih = oh * l->stride - l->pad + i;
    if (ih < 0 || ih >= l->in_h) continue;
    float *restrict d = xb + ((size_t)ih * l->in_w + iw0 + j0) * cin;
    const float *restrict s = src + ((size_t)i * kw + j0) * cin;
    for (int c = 0; c < n; c++) d[c] += s[c];
  }
}

/* Tap-major col2im of samples [lo, hi): the column rows are read in order (col2im_pixel_tap);
 * each sample writes only its own part of dx. */
CONV_CLONES
static void col2im_samples_tap(void *arg, size_t lo, size_t hi) {
  const cols_job *jb = arg;
  const tempo_conv2d *l = jb->l;
  const size_t k = (size_t)l->cin * l->kh * l->kw, sb = (size_t)l->in_h * l->in_w * l->cin;
  if (!jb->accumulate) memset(jb->dx + lo * sb, 0, (hi - lo) * sb * sizeof *jb->dx);
  const float *src = jb->ccols + lo * l->out_h * l->out_w * k;
  for (size_t b = lo; b < hi; b++) {
    float *xb = jb->dx + b * sb;
    for (int oh = 0; oh < l->out_h; oh++)
      for (int ow = 0; ow < l->out_w; ow++, src += k) col2im_pixel_tap(l, xb, oh, ow, src);
  }
}

/* The row sink's add (rows.h): column row u, pixel (u % OW, u / OW % OH) of sample u / (OH OW),
 * added onto dx as tempo_col2im adds it. */
CONV_CLONES
static void conv_add_row(const void *ctx, int u, const float *src) {
  const tempo_conv2d_sink *c = ctx;
  const tempo_conv2d *l = c->l;
  const uint32_t per = (uint32_t)(l->out_h * l->out_w), r = (uint32_t)u % per; /* 32-bit divisions */
  float *xb = c->dx + (size_t)((uint32_t)u / per) * l->in_h * l->in_w * l->cin;
  col2im_pixel_tap(l, xb, (int)(r / (uint32_t)l->out_w), (int)(r % (uint32_t)l->out_w), src);
}

/* The row sink's prefetch: the first and last line of each of the kh runs of dx that row u
 * adds onto (the lines between follow them in the hardware's adjacent-line and stream
 * prefetch; every line of them cost as much as the adds). */
static void conv_prefetch_dx(const void *ctx, int u) {
  const tempo_conv2d_sink *c = ctx;
  const tempo_conv2d *l = c->l;
  const uint32_t per = (uint32_t)(l->out_h * l->out_w), r = (uint32_t)u % per;
  const int oh = (int)(r / (uint32_t)l->out_w), ow = (int)(r % (uint32_t)l->out_w), cin = l->cin;
  const int iw0 = ow * l->stride - l->pad, lo = iw0 < 0 ? 0 : iw0, hi = iw0 + l->kw > l->in_w ? l->in_w : iw0 + l->kw;
  if (hi <= lo) return;
  const float *xb = c->dx + (size_t)((uint32_t)u / per) * l->in_h * l->in_w * cin;
  const size_t run = (size_t)(hi - lo) * cin;
  for (int i = 0; i < l->kh; i++) {
    const int ih = oh * l->stride - l->pad + i;
    if (ih < 0 || ih >= l->in_h) continue;
    const float *a = xb + ((size_t)ih * l->in_w + lo) * cin;
    tempo_prefetch_w(a), tempo_prefetch_w(a + run - 1);
  }
}

tempo_rows_sink tempo_conv2d_dx_sink(const tempo_conv2d *l, float *dx, int batch, tempo_conv2d_sink *ctx) {
  *ctx = (tempo_conv2d_sink){l, dx};
  const int n = l->cin * l->kh * l->kw;
  return (tempo_rows_sink){.add = conv_add_row, .prefetch = conv_prefetch_dx, .ctx = ctx,
                           .rows = batch * l->out_h * l->out_w, .cols = n,
                           .bytes = sizeof(float) * (uint64_t)batch * l->out_h * l->out_w * (uint64_t)n};
}

void tempo_col2im(const tempo_conv2d *l, const float *cols, int batch, float *dx, bool accumulate) {
  cols_job jb = {.l = l, .ccols = cols, .dx = dx, .accumulate = accumulate};
  const size_t floats = (size_t)batch * l->out_h * l->out_w * l->cin * l->kh * l->kw;
  split_run((size_t)batch, floats, tap_major(l) ? col2im_samples_tap : col2im_samples, &jb);
}

/* The columns as a row source (rows.h) for offloaded products: row u of the m x K matrix is
 * pixel (u % OW, u / OW % OH) of sample u / (OH OW), lowered by the same row functions as
 * tempo_im2col (the same floats: copies and +0 padding), so the Enc pass blinds each row from
 * the activation and the column matrix is never written. */
static void conv_fill_rows(const void *ctx, int lo, int hi, float *dst) {
  const tempo_conv2d_src *c = ctx;
  const tempo_conv2d *l = c->l;
  const in_strides s = strides_of(l);
  const size_t k = (size_t)l->cin * l->kh * l->kw, per = (size_t)l->out_h * l->out_w;
  const bool tap = tap_major(l);
#if CONV_NT
  const bool vec = tap && l->cin % 16 == 0 && nt_cpu();
#endif
  size_t b = (size_t)lo / per, r = (size_t)lo % per;
  int oh = (int)(r / (size_t)l->out_w), ow = (int)(r % (size_t)l->out_w);
  for (int u = lo; u < hi; u++, dst += k) {
    const float *xb = c->x + b * s.sb;
#if CONV_NT
    if (vec)
      im2col_row_tap_v(l, xb, oh, ow, dst);
    else
#endif
    if (tap)
      im2col_row_tap(l, xb, oh, ow, dst);
    else
      im2col_row(l, &s, xb, oh, ow, dst);
    if (++ow == l->out_w && (ow = 0, ++oh == l->out_h)) oh = 0, b++; /* the next pixel */
  }
}

/* The row source's prefetch (rows.h): the input lines row u's taps read, kh runs of up to kw
 * pixels (channels last: one run of kw cin floats per input row; channels first: one per
 * channel, skipped where that is more than 64 runs). */
static void conv_prefetch_row(const void *ctx, int u) {
  const tempo_conv2d_src *c = ctx;
  const tempo_conv2d *l = c->l;
  const in_strides s = strides_of(l);
  const size_t per = (size_t)l->out_h * l->out_w, r = (size_t)u % per;
  const int oh = (int)(r / (size_t)l->out_w), ow = (int)(r % (size_t)l->out_w);
  const int iw0 = ow * l->stride - l->pad, lo = iw0 < 0 ? 0 : iw0, hi = iw0 + l->kw > l->in_w ? l->in_w : iw0 + l->kw;
  const bool last = s.sc == 1;
  const int planes = last ? 1 : l->cin;
  if (hi <= lo || planes * l->kh > 64) return;
  const size_t run = last ? (size_t)(hi - lo) * l->cin : (size_t)(hi - lo); /* floats, contiguous */
  const float *xb = c->x + ((size_t)u / per) * s.sb;
  for (int i = 0; i < l->kh; i++) {
    const int ih = oh * l->stride - l->pad + i;
    if (ih < 0 || ih >= l->in_h) continue;
    for (int ch = 0; ch < planes; ch++) {
      const char *a = (const char *)(xb + (size_t)ih * s.sh + (size_t)lo * s.sw + (size_t)ch * s.sc);
      const char *e = a + run * sizeof(float) - 1;
      for (; a <= e; a += 64) tempo_prefetch_l1(a);
      tempo_prefetch_l1(e); /* a run that is not line-aligned ends on a line of its own */
    }
  }
}

tempo_rows tempo_conv2d_rows(const tempo_conv2d *l, const float *x, int batch, tempo_conv2d_src *src) {
  *src = (tempo_conv2d_src){l, x};
  const size_t in = (size_t)batch * l->in_h * l->in_w * l->cin;
  return (tempo_rows){.fill = conv_fill_rows, .prefetch = conv_prefetch_row, .ctx = src, .rows = batch * l->out_h * l->out_w,
                      .cols = l->cin * l->kh * l->kw, .bytes = sizeof(float) * (uint64_t)in};
}

/* y[r, :] += bias for rows [lo, hi). */
static void bias_rows(void *arg, size_t lo, size_t hi) {
  const cols_job *jb = arg;
  const int co = jb->l->cout;
  for (size_t r = lo; r < hi; r++) {
    float *yr = jb->cols + r * co;
    for (int o = 0; o < co; o++) yr[o] += jb->x[o];
  }
}

static tempo_status conv_shape(const tempo_conv2d *l, int batch, tempo_mm_shape *s) {
  const size_t rows = (size_t)batch * l->out_h * l->out_w;
  if (batch < 1 || rows > INT_MAX || (size_t)l->cin * l->kh * l->kw > INT_MAX)
    return tempo_set_error(TEMPO_STATUS_INVALID_ARGUMENT, "conv2d: batch %d gives too many rows", batch);
  *s = (tempo_mm_shape){.batch = 1, .m = (int)rows, .n = l->cin * l->kh * l->kw, .p = l->cout, .w_trans = true};
  return TEMPO_STATUS_OK;
}

/* Behind the m x K columns of a tap-major layer: the (Co, kh, kw, Ci) weight copy the products
 * use, then room for its gradient. */
static float *cols_tail(const tempo_mm_shape *s, float *cols) { return cols + round16((size_t)s->m * s->n); }

/* How a non-direct conv is lowered:
 *   FULL  - other modes: im2col of the whole batch into cols, one product per call (the
 *           engine keeps per-site state between a forward product and its backward ones);
 *   FUSED - local mode, 1 thread: in tiles of whole samples, im2col of a tile into the start
 *           of cols and the tile's products through the matmul entry point while its columns
 *           are in cache, col2im of its input-gradient columns likewise; the backward lowers x
 *           again instead of reading m x K columns kept from the forward (37.7 MB per
 *           16-channel resnet20 layer, to memory and back three times a step). The weight
 *           gradient is summed tile by tile (for 16 output channels tempo_sgemm's kernel gives
 *           the same floats as one product; gemm.h). resnet20 1 thread: DX 224, FUSED 211 ms;
 *   DX    - local mode, 2+ threads: FULL, but the input-gradient product in tiles, each
 *           col2im'd while in cache. FUSED's six pool hand-offs per tile cost more there than
 *           its traffic saved (resnet20 2 threads: FULL 139, FUSED 142, DX 134 ms). */
enum { LOWER_FULL, LOWER_FUSED, LOWER_DX };

static int lowering(const tempo_conv2d *l, tempo_mm *mm) {
  if (l->direct || tempo_mm_mode(mm) != TEMPO_MODE_LOCAL) return LOWER_FULL;
  return tempo_parallel_threads() > 1 ? LOWER_DX : LOWER_FUSED;
}

/* Samples per tile: TILE_FLOATS of columns per thread, at least one sample per thread. */
static int tile_samples(const tempo_conv2d *l, const tempo_mm_shape *s, int batch) {
  const size_t sk = (size_t)l->out_h * l->out_w * (size_t)s->n;
  size_t ts = TILE_FLOATS / sk;
  if (ts < 1) ts = 1;
  ts *= (size_t)tempo_parallel_threads();
  return ts < (size_t)batch ? (int)ts : batch;
}

static size_t in_sample_floats(const tempo_conv2d *l) { return (size_t)l->in_h * l->in_w * l->cin; }

/* The tile of samples [b0, b0 + nb) of a batch cut in tiles of `tile`: its product shape in
 * *ts (per output positions per sample); returns nb. */
static int tile_of(const tempo_mm_shape *s, size_t per, int b0, int tile, int batch, tempo_mm_shape *ts) {
  const int nb = batch - b0 < tile ? batch - b0 : tile;
  *ts = *s;
  ts->m = (int)(per * (size_t)nb);
  return nb;
}

tempo_status tempo_conv2d_forward(tempo_conv2d *l, tempo_mm *mm, const tempo_params *p, const float *x, int batch,
                                  float *cols, float *y) {
  tempo_mm_shape s;
  tempo_status st = conv_shape(l, batch, &s);
  if (st) return st;
  const float *X = x, *W = tempo_params_ptr(p, l->w_idx);
  const int low = l->lowering = lowering(l, mm);
  if (!l->direct) {
    if (!cols) return tempo_set_error(TEMPO_STATUS_INVALID_ARGUMENT, "conv2d: a column buffer is required");
    if (low == LOWER_DX) tempo_im2col(l, x, batch, cols); /* LOWER_FULL lowers below, FUSED per tile */
    X = cols;
    if (tap_major(l)) { /* wt[o][t][c] = W[o][c][t] */
      float *wt = cols_tail(&s, cols);
      const int kk = l->kh * l->kw, cin = l->cin;
      for (int o = 0; o < l->cout; o++)
        for (int c = 0; c < cin; c++)
          for (int t = 0; t < kk; t++) wt[((size_t)o * kk + t) * cin + c] = W[((size_t)o * cin + c) * kk + t];
      W = wt;
    }
  }
  if (low == LOWER_FULL && !l->direct && tempo_mm_takes_rows(mm, &l->site, &s)) {
    /* offloaded: the Enc pass lowers x row by row (cols keeps only the weight copy) */
    tempo_conv2d_src src;
    const tempo_rows xr = tempo_conv2d_rows(l, x, batch, &src);
    if ((st = tempo_mm_forward_rows(mm, &l->site, &s, &xr, W, y))) return st;
  } else if (low == LOWER_FULL && !l->direct) {
    tempo_im2col(l, x, batch, cols);
    if ((st = tempo_mm_forward(mm, &l->site, &s, cols, W, y))) return st;
  } else if (low == LOWER_FUSED) {
    const int tile = tile_samples(l, &s, batch);
    const size_t per = (size_t)l->out_h * l->out_w;
    for (int b0 = 0; b0 < batch; b0 += tile) {
      tempo_mm_shape ts;
      const int nb = tile_of(&s, per, b0, tile, batch, &ts);
      tempo_im2col(l, x + (size_t)b0 * in_sample_floats(l), nb, cols);
      if ((st = tempo_mm_forward(mm, &l->site, &ts, cols, W, y + (size_t)b0 * per * l->cout))) return st;
    }
  } else if ((st = tempo_mm_forward(mm, &l->site, &s, X, W, y))) {
    return st;
  }
  if (l->b_idx >= 0) {
    cols_job jb = {.l = l, .x = tempo_params_ptr(p, l->b_idx), .cols = y};
    split_run((size_t)s.m, (size_t)s.m * l->cout, bias_rows, &jb);
  }
  return TEMPO_STATUS_OK;
}

tempo_status tempo_conv2d_backward(tempo_conv2d *l, tempo_mm *mm, tempo_params *p, const float *x, int batch,
                                   const float *cols, const float *dy, float *dcols, float *dx, unsigned flags) {
  tempo_mm_shape s;
  tempo_status st = conv_shape(l, batch, &s);
  if (st) return st;
  const bool acc = (flags & TEMPO_CONV_ACCUM_DX) != 0, tap = tap_major(l);
  if (!l->direct && (!cols || (dx && !dcols)))
    return tempo_set_error(TEMPO_STATUS_INVALID_ARGUMENT, "conv2d: backward needs the column buffers");
  float *dX = dx ? (l->direct ? dx : dcols) : NULL;
  const float *W = tempo_params_ptr(p, l->w_idx);
  float *dW = tempo_params_grad(p, l->w_idx);
  unsigned mmflags = TEMPO_MM_ACCUM_DW | (l->direct && acc ? TEMPO_MM_ACCUM_DX : 0u);
  if (tap) { /* the forward's weight copy; the gradient comes back in its layout, after it */
    W = cols_tail(&s, (float *)cols);
    dW = (float *)W + round16((size_t)l->cout * s.n);
    mmflags &= ~(unsigned)TEMPO_MM_ACCUM_DW;
  }
  const int low = l->lowering; /* the forward's (FUSED kept no columns) */
  bool sunk = false; /* dX went onto dx by rows (tempo_mm_backward_rows) */
  const int tile = low == LOWER_FULL ? batch : tile_samples(l, &s, batch);
  const size_t per = (size_t)l->out_h * l->out_w, sk = per * (size_t)s.n, sb = in_sample_floats(l);
  if (low == LOWER_FUSED) {
    float *tc = (float *)cols; /* scratch here */
    for (int b0 = 0; b0 < batch; b0 += tile) {
      tempo_mm_shape ts;
      const int nb = tile_of(&s, per, b0, tile, batch, &ts);
      tempo_im2col(l, x + (size_t)b0 * sb, nb, tc);
      const unsigned f = mmflags | (b0 > 0 ? (unsigned)TEMPO_MM_ACCUM_DW : 0u);
      if ((st = tempo_mm_backward(mm, &l->site, &ts, tc, W, dy + (size_t)b0 * per * l->cout, dx ? dcols : NULL, dW,
                                  f)))
        return st;
      if (dx) tempo_col2im(l, dcols, nb, dx + (size_t)b0 * sb, acc);
    }
  } else if (low == LOWER_FULL && tap && dx && !l->direct && tempo_mm_takes_rows(mm, &l->site, &s)) {
    /* offloaded: each verified row of dX' is decrypted and added onto dx as it arrives, so the
     * column gradient dcols is never written (unless the engine cannot here: then col2im) */
    tempo_conv2d_sink ctx;
    const tempo_rows_sink sink = tempo_conv2d_dx_sink(l, dx, batch, &ctx);
    if (!acc) memset(dx, 0, (size_t)batch * sb * sizeof *dx);
    if ((st = tempo_mm_backward_rows(mm, &l->site, &s, cols, W, dy, dX, &sink, dW, mmflags, &sunk))) return st;
  } else if ((st = tempo_mm_backward(mm, &l->site, &s, l->direct ? x : cols, W, dy, low == LOWER_DX ? NULL : dX, dW,
                                     mmflags))) {
    return st;
  }
  if (low == LOWER_DX && dx) {
    for (int b0 = 0; b0 < batch; b0 += tile) {
      tempo_mm_shape ts;
      const int nb = tile_of(&s, per, b0, tile, batch, &ts);
      if ((st = tempo_mm_backward(mm, &l->site, &ts, cols + (size_t)b0 * sk, W, dy + (size_t)b0 * per * l->cout,
                                  dcols, NULL, 0)))
        return st;
      tempo_col2im(l, dcols, nb, dx + (size_t)b0 * sb, acc);
    }
  }
  if (tap) {
    float *g = tempo_params_grad(p, l->w_idx);
    const int kk = l->kh * l->kw, cin = l->cin;
    for (int o = 0; o < l->cout; o++)
      for (int c = 0; c < cin; c++)
        for (int t = 0; t < kk; t++) g[((size_t)o * cin + c) * kk + t] += dW[((size_t)o * kk + t) * cin + c];
  }
  if (dx && !l->direct && low == LOWER_FULL && !sunk) tempo_col2im(l, dcols, batch, dx, acc);
  if (l->b_idx >= 0) {
    float *db = tempo_params_grad(p, l->b_idx);
    for (int r = 0; r < s.m; r++) {
      const float *dyr = dy + (size_t)r * l->cout;
      for (int o = 0; o < l->cout; o++) db[o] += dyr[o];
    }
  }
  return TEMPO_STATUS_OK;
}
