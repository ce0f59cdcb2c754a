/* match.c - the attacks' building blocks (attack.h): Sinkhorn balancing, linear
 * assignment, weight matching, co-occurrence linking, patch recovery. */
#include <cblas.h>
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "tempo/attack.h"
#include "attack/attack_internal.h"
#include "tempo/common.h"

double tempo_sinkhorn(const float *A, int r, int c, int iters, double *rf, double *cf) {
  for (int i = 0; i < r; i++) rf[i] = 1.0;
  for (int j = 0; j < c; j++) cf[j] = 1.0;
  double *cs = calloc((size_t)c, sizeof *cs);
  if (!cs) return INFINITY;
  double dev = 0;
  for (int it = 0; it < iters; it++) {
    /* rows: rf[i] sum_j |A| cf = c */
    dev = 0;
    for (int i = 0; i < r; i++) {
      const float *a = A + (size_t)i * c;
      double s = 0;
      for (int j = 0; j < c; j++) s += fabs((double)a[j]) * cf[j];
      double want = rf[i] * s;
      if (s > 0) {
        if (it > 0) dev = fmax(dev, fabs(want / c - 1.0));
        rf[i] = c / s;
      }
    }
    memset(cs, 0, (size_t)c * sizeof *cs);
    for (int i = 0; i < r; i++) {
      const float *a = A + (size_t)i * c;
      for (int j = 0; j < c; j++) cs[j] += fabs((double)a[j]) * rf[i];
    }
    for (int j = 0; j < c; j++)
      if (cs[j] > 0) cf[j] = r / cs[j];
    if (it > 0 && dev < 1e-7) break;
  }
  free(cs);
  return dev;
}

void tempo_balance_apply(const float *A, int r, int c, const double *rf, const double *cf, float *B) {
  for (int i = 0; i < r; i++)
    for (int j = 0; j < c; j++) B[(size_t)i * c + j] = (float)(rf[i] * A[(size_t)i * c + j] * cf[j]);
}

double tempo_balance(const float *A, int r, int c, int iters, double *rf, double *cf, float *B) {
  const double dev = tempo_sinkhorn(A, r, c, iters, rf, cf);
  tempo_balance_apply(A, r, c, rf, cf, B);
  return dev;
}

/* Shortest augmenting path Hungarian algorithm (potentials u, v; 1-based internally). */
tempo_status tempo_assign(const double *cost, int n, int *assign, double *total) {
  size_t n1 = (size_t)n + 1;
  double *u = calloc(n1, sizeof *u), *v = calloc(n1, sizeof *v), *minv = malloc(n1 * sizeof *minv);
  int *p = calloc(n1, sizeof *p), *way = calloc(n1, sizeof *way);
  bool *used = malloc(n1 * sizeof *used);
  if (!u || !v || !minv || !p || !way || !used) {
    free(u), free(v), free(minv), free(p), free(way), free(used);
    return tempo_set_error(TEMPO_STATUS_NO_MEMORY, "assign: out of memory (n %d)", n);
  }
  for (int i = 1; i <= n; i++) {
    p[0] = i;
    int j0 = 0;
    for (int j = 0; j <= n; j++) minv[j] = INFINITY, used[j] = false;
    do {
      used[j0] = true;
      int i0 = p[j0], j1 = 0;
      double delta = INFINITY;
      const double *row = cost + (size_t)(i0 - 1) * n;
      for (int j = 1; j <= n; j++) {
        if (used[j]) continue;
        double cur = row[j - 1] - u[i0] - v[j];
        if (cur < minv[j]) minv[j] = cur, way[j] = j0;
        if (minv[j] < delta) delta = minv[j], j1 = j;
      }
      for (int j = 0; j <= n; j++) {
        if (used[j]) u[p[j]] += delta, v[j] -= delta;
        else minv[j] -= delta;
      }
      j0 = j1;
    } while (p[j0] != 0);
    do {
      int j1 = way[j0];
      p[j0] = p[j1];
      j0 = j1;
    } while (j0);
  }
  double t = 0;
  for (int j = 1; j <= n; j++) {
    assign[p[j] - 1] = j - 1;
    t += cost[(size_t)(p[j] - 1) * n + (j - 1)];
  }
  if (total) *total = t;
  free(u), free(v), free(minv), free(p), free(way), free(used);
  return TEMPO_STATUS_OK;
}

int tempo_attack_cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

int tempo_attack_cmp_float(const void *a, const void *b) {
  float x = *(const float *)a, y = *(const float *)b;
  return (x > y) - (x < y);
}

static void transpose(const float *A, int r, int c, float *T) {
  for (int i = 0; i < r; i++)
    for (int j = 0; j < c; j++) T[(size_t)j * r + i] = A[(size_t)i * c + j];
}

/* Rows of A (r, c) against rows of B (r, c): sorted-value signatures (perm-invariant). */
static void cost_sorted_rows(const float *A, const float *B, int r, int c, float *sa, float *sb, double *cost) {
  memcpy(sa, A, (size_t)r * c * sizeof *sa);
  memcpy(sb, B, (size_t)r * c * sizeof *sb);
  for (int i = 0; i < r; i++) {
    qsort(sa + (size_t)i * c, (size_t)c, sizeof *sa, tempo_attack_cmp_float);
    qsort(sb + (size_t)i * c, (size_t)c, sizeof *sb, tempo_attack_cmp_float);
  }
  for (int i = 0; i < r; i++)
    for (int k = 0; k < r; k++) {
      double s = 0;
      const float *x = sa + (size_t)i * c, *y = sb + (size_t)k * c;
      for (int j = 0; j < c; j++) s += ((double)x[j] - y[j]) * ((double)x[j] - y[j]);
      cost[(size_t)i * r + k] = s;
    }
}

/* Rows of A against rows of B with A's columns aligned: A col j = B col cp[j]. */
static void cost_aligned_rows(const float *A, const float *B, int r, int c, const int *cp, double *cost) {
  for (int i = 0; i < r; i++)
    for (int k = 0; k < r; k++) {
      double s = 0;
      const float *x = A + (size_t)i * c, *y = B + (size_t)k * c;
      for (int j = 0; j < c; j++) s += ((double)x[j] - y[cp[j]]) * ((double)x[j] - y[cp[j]]);
      cost[(size_t)i * r + k] = s;
    }
}

/* The two matchers' shared state: both matrices balanced (Sinkhorn-style row and column
 * scales removed, tempo_balance), their transposes, two scratch copies and the assignment cost. */
typedef struct {
  float *bb, *b0, *tb, *t0, *s1, *s2; /* balanced Wb, W0, their transposes, scratch (r x c each) */
  double *rfb, *cfb, *rf0, *cf0, *cost;
} match_ws;

static void match_ws_free(match_ws *w) {
  tempo_free_floats(w->bb), tempo_free_floats(w->b0), tempo_free_floats(w->tb), tempo_free_floats(w->t0);
  tempo_free_floats(w->s1), tempo_free_floats(w->s2);
  free(w->rfb), free(w->cfb), free(w->rf0), free(w->cf0), free(w->cost);
}

static tempo_status match_ws_init(match_ws *w, const float *Wb, const float *W0, int r, int c) {
  *w = (match_ws){0};
  if (r < 1 || c < 1) return tempo_set_error(TEMPO_STATUS_INVALID_ARGUMENT, "match: empty matrix");
  const size_t rc = (size_t)r * c, big = (size_t)(r > c ? r : c);
  w->bb = tempo_alloc_floats(rc), w->b0 = tempo_alloc_floats(rc), w->tb = tempo_alloc_floats(rc);
  w->t0 = tempo_alloc_floats(rc), w->s1 = tempo_alloc_floats(rc), w->s2 = tempo_alloc_floats(rc);
  w->rfb = malloc(r * sizeof(double)), w->cfb = malloc(c * sizeof(double)), w->rf0 = malloc(r * sizeof(double));
  w->cf0 = malloc(c * sizeof(double)), w->cost = malloc(big * big * sizeof(double));
  if (!w->bb || !w->b0 || !w->tb || !w->t0 || !w->s1 || !w->s2 || !w->rfb || !w->cfb || !w->rf0 || !w->cf0 ||
      !w->cost) {
    match_ws_free(w);
    return tempo_set_error(TEMPO_STATUS_NO_MEMORY, "match: out of memory (%d x %d)", r, c);
  }
  tempo_balance(Wb, r, c, 500, w->rfb, w->cfb, w->bb);
  tempo_balance(W0, r, c, 500, w->rf0, w->cf0, w->b0);
  transpose(w->bb, r, c, w->tb);
  transpose(w->b0, r, c, w->t0);
  return TEMPO_STATUS_OK;
}

/* rec (r, c) = the blinded matrix put back in the prior's order and scale through the matching. */
static void match_ws_recover(const match_ws *w, int r, int c, const int *row_perm, const int *col_perm, float *rec) {
  for (int i = 0; i < r; i++)
    for (int j = 0; j < c; j++) {
      int a = row_perm[i], b = col_perm[j];
      rec[(size_t)a * c + b] = (float)(w->bb[(size_t)i * c + j] / (w->rf0[a] * w->cf0[b]));
    }
}

tempo_status tempo_attack_match_weight(const float *Wb, const float *W0, int r, int c, int rounds, int *row_perm,
                                       int *col_perm, float *rec) {
  match_ws w;
  tempo_status st = match_ws_init(&w, Wb, W0, r, c);
  if (st) return st;
  float *bb = w.bb, *b0 = w.b0, *tb = w.tb, *t0 = w.t0, *s1 = w.s1, *s2 = w.s2;
  double *cost = w.cost;
  /* first the dimension with the longer signatures */
  if (c >= r) {
    cost_sorted_rows(bb, b0, r, c, s1, s2, cost);
    if ((st = tempo_assign(cost, r, row_perm, NULL))) goto done;
    cost_aligned_rows(tb, t0, c, r, row_perm, cost);
    if ((st = tempo_assign(cost, c, col_perm, NULL))) goto done;
  } else {
    cost_sorted_rows(tb, t0, c, r, s1, s2, cost);
    if ((st = tempo_assign(cost, c, col_perm, NULL))) goto done;
    cost_aligned_rows(bb, b0, r, c, col_perm, cost);
    if ((st = tempo_assign(cost, r, row_perm, NULL))) goto done;
  }
  for (int it = 0; it < rounds; it++) {
    cost_aligned_rows(bb, b0, r, c, col_perm, cost);
    if ((st = tempo_assign(cost, r, row_perm, NULL))) goto done;
    cost_aligned_rows(tb, t0, c, r, row_perm, cost);
    if ((st = tempo_assign(cost, c, col_perm, NULL))) goto done;
  }
  if (rec) match_ws_recover(&w, r, c, row_perm, col_perm, rec);
done:
  match_ws_free(&w);
  return st;
}

/* Centred, unit-norm copy of each row of A (r, c) into O (sorted first when `sorted`). */
static void unit_rows(const float *A, int r, int c, bool sorted, float *O) {
  memcpy(O, A, (size_t)r * c * sizeof *O);
  for (int i = 0; i < r; i++) {
    float *o = O + (size_t)i * c;
    if (sorted) qsort(o, (size_t)c, sizeof *o, tempo_attack_cmp_float);
    double mu = 0, s = 0;
    for (int j = 0; j < c; j++) mu += o[j];
    mu /= c;
    for (int j = 0; j < c; j++) s += (o[j] - mu) * (o[j] - mu);
    s = s > 0 ? 1 / sqrt(s) : 0;
    for (int j = 0; j < c; j++) o[j] = (float)((o[j] - mu) * s);
  }
}

/* cost[i][k] = -cos(row i of A, row k of B) for unit_rows'd A and B, A's columns aligned
 * through cp (NULL: as they are; centring and norms do not depend on the column order). */
static void cost_cosine(const float *A, const float *B, int r, int c, const int *cp, double *cost) {
  for (int i = 0; i < r; i++) {
    const float *x = A + (size_t)i * c;
    for (int k = 0; k < r; k++) {
      const float *y = B + (size_t)k * c;
      double s = 0;
      if (cp)
        for (int j = 0; j < c; j++) s += (double)x[j] * y[cp[j]];
      else
        for (int j = 0; j < c; j++) s += (double)x[j] * y[j];
      cost[(size_t)i * r + k] = -s;
    }
  }
}

tempo_status tempo_attack_match_cosine(const float *Wb, const float *W0, int r, int c, int rounds, int *row_perm,
                                       int *col_perm, float *rec) {
  match_ws w;
  tempo_status st = match_ws_init(&w, Wb, W0, r, c);
  if (st) return st;
  float *bb = w.bb, *b0 = w.b0, *tb = w.tb, *t0 = w.t0, *u1 = w.s1, *u2 = w.s2;
  double *cost = w.cost;
  /* order-free start on the dimension with the longer vectors, the other one aligned */
  if (c >= r) {
    unit_rows(bb, r, c, true, u1), unit_rows(b0, r, c, true, u2);
    cost_cosine(u1, u2, r, c, NULL, cost);
    if ((st = tempo_assign(cost, r, row_perm, NULL))) goto done;
  } else {
    unit_rows(tb, c, r, true, u1), unit_rows(t0, c, r, true, u2);
    cost_cosine(u1, u2, c, r, NULL, cost);
    if ((st = tempo_assign(cost, c, col_perm, NULL))) goto done;
  }
  /* alternate: one dimension's rows centred and normalised, compared through the other's
   * permutation (unit_rows of the prior's aligned vectors: centring commutes with permuting) */
  unit_rows(bb, r, c, false, u1), unit_rows(b0, r, c, false, u2);
  float *v1 = tb, *v2 = t0; /* the transposes' unit rows (columns), in place */
  unit_rows(tb, c, r, false, v1), unit_rows(t0, c, r, false, v2);
  for (int it = 0; it <= rounds; it++) {
    if (it > 0 || c >= r) {
      cost_cosine(v1, v2, c, r, row_perm, cost);
      if ((st = tempo_assign(cost, c, col_perm, NULL))) goto done;
    }
    cost_cosine(u1, u2, r, c, col_perm, cost);
    if ((st = tempo_assign(cost, r, row_perm, NULL))) goto done;
  }
  if (rec) match_ws_recover(&w, r, c, row_perm, col_perm, rec);
done:
  match_ws_free(&w);
  return st;
}
