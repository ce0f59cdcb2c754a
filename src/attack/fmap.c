/* fmap.c - whole feature-map recovery from the blinded input of a later 3x3 conv (attack.h).
 *
 * The input of a conv after the stem is the tap-major im2col (columns t * C + c) of a
 * post-ReLU feature map, blinded like every X'. The image attack of image.c carries over
 * with two changes:
 *   1. background: a window far from the object and the border is one vector, whose live
 *      (non-zero) columns give the column scales up to one factor per channel; channels that
 *      are zero on the background (dead there) cannot be scaled this way and are left out;
 *   2. taps: the rows just inside the band that the padding disturbs agree with the
 *      background on two rows (or columns) of taps and differ on the third: the four most
 *      frequent such sets are the four edges, as the zero patterns were for the stem; the
 *      same channel in two taps is then found from pixels seen twice: a pixel's channel
 *      vector is the same (up to the row scale) in every window holding it, so equal sorted
 *      unit vectors in two rows pair their columns by sorted position; the pairs are
 *      counted and assigned per tap.
 * The rows, scaled to background 1 and taps aligned, go to the chaining of image.c, each
 * piece scaled so that its most frequent value (the background) is 1. The maps come back
 * per channel in units of that channel's background value, up to the square's symmetry. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "attack/attack_internal.h"
#include "tempo/common.h"

#define TAPS 9

static int cmp_u64(const void *a, const void *b) {
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return (x > y) - (x < y);
}

/* Direction hash of a row: zero positions and log ratios to its maximum at 1e-3. */
static uint64_t dir_key(const float *x, int n) {
  float mx = 0;
  for (int j = 0; j < n; j++) mx = fmaxf(mx, fabsf(x[j]));
  uint64_t h = 1469598103934665603ull;
  if (mx == 0) return h;
  for (int j = 0; j < n; j++) {
    int64_t q = x[j] == 0 ? INT64_MIN / 2 : (int64_t)floor(log(fabs((double)x[j]) / mx) * 1000) * (x[j] < 0 ? -1 : 1);
    h = (h ^ (uint64_t)q) * 1099511628211ull;
    h ^= h >> 31;
  }
  return h;
}

static uint64_t set_key(const int *cols, int k) {
  uint64_t h = 1469598103934665603ull;
  for (int i = 0; i < k; i++) h = (h ^ (uint64_t)cols[i]) * 1099511628211ull, h ^= h >> 29;
  return h;
}

typedef struct {
  uint64_t key;
  int row;
} kent;

static int cmp_kent(const void *a, const void *b) {
  uint64_t x = ((const kent *)a)->key, y = ((const kent *)b)->key;
  return (x > y) - (x < y);
}

/* The live columns of row i that differ from the row's background ratio (the largest group
 * of equal ratios x/g, relative 1e-4); returns their count (out: sorted column indices). */
static int off_background(const float *x, const double *g, const int *live, int L, double *tmp, int *out) {
  for (int k = 0; k < L; k++) tmp[k] = x[live[k]] / g[live[k]];
  double *srt = tmp + L;
  memcpy(srt, tmp, (size_t)L * sizeof *srt);
  qsort(srt, (size_t)L, sizeof *srt, tempo_attack_cmp_double);
  int best = 0;
  double val = 0;
  for (int a = 0, b = 0; a < L; a++) {
    if (srt[a] <= 0) {
      b = a + 1;
      continue;
    }
    while (srt[a] - srt[b] > 1e-4 * srt[a]) b++;
    if (a - b + 1 > best) best = a - b + 1, val = srt[a];
  }
  int n = 0;
  for (int k = 0; k < L; k++)
    if (!(tmp[k] > 0 && fabs(tmp[k] - val) <= 2e-4 * val)) out[n++] = k;
  return n;
}

/* Steps 1 and 2 for one candidate background direction `key`: its mean direction g (live
 * columns: g > 0, *Lp of them), the tap of each live column. MISMATCH when the candidate is
 * no uniform window next to a padded band. */
static tempo_status geometry(const float *Xb, int m, int n, const uint64_t *keys, uint64_t key, kent *sets, double *g,
                             double *tmp, int *live, int *off, int *tap, int *Lp, int *bg_rows) {
  memset(g, 0, (size_t)n * sizeof *g);
  *bg_rows = 0;
  for (int i = 0; i < m; i++) {
    if (keys[i] != key) continue;
    const float *x = Xb + (size_t)i * n;
    float mx = 0;
    for (int j = 0; j < n; j++) mx = fmaxf(mx, fabsf(x[j]));
    if (mx == 0) continue;
    for (int j = 0; j < n; j++) g[j] += x[j] / mx;
    (*bg_rows)++;
  }
  if (*bg_rows < 4) return tempo_set_error(TEMPO_STATUS_MISMATCH, "fmaps: no repeated background window");
  int L = 0;
  *Lp = 0;
  for (int j = 0; j < n; j++) {
    g[j] /= *bg_rows;
    if (g[j] > 0) live[L++] = j;
  }
  if (L < TAPS || L % TAPS)
    return tempo_set_error(TEMPO_STATUS_MISMATCH, "fmaps: the background's live columns (%d) are not 9 taps alike", L);
  const int Lc = L / TAPS;
  *Lp = L;
  /* 2. taps from the four most frequent off-background sets of one tap row/column (3 Lc) */
  int ns = 0;
  for (int i = 0; i < m; i++)
    if (off_background(Xb + (size_t)i * n, g, live, L, tmp, off) == 3 * Lc) sets[ns++] = (kent){set_key(off, 3 * Lc), i};
  qsort(sets, (size_t)ns, sizeof *sets, cmp_kent);
  int edge_row[4] = {-1, -1, -1, -1}, edge_cnt[4] = {0};
  for (int a = 0, b = 0; a < ns; a = b) {
    while (b < ns && sets[b].key == sets[a].key) b++;
    int c = b - a, r = sets[a].row;
    for (int k = 0; k < 4; k++)
      if (c > edge_cnt[k]) {
        for (int l = 3; l > k; l--) edge_cnt[l] = edge_cnt[l - 1], edge_row[l] = edge_row[l - 1];
        edge_cnt[k] = c, edge_row[k] = r;
        break;
      }
  }
  if (edge_row[3] < 0) return tempo_set_error(TEMPO_STATUS_MISMATCH, "fmaps: no border band next to the background");
  /* in[k][e]: live column k is off the background in edge e */
  uint8_t *in = calloc((size_t)L, 1);
  if (!in) return tempo_set_error(TEMPO_STATUS_NO_MEMORY, "fmaps: out of memory");
  for (int e = 0; e < 4; e++) {
    int c = off_background(Xb + (size_t)edge_row[e] * n, g, live, L, tmp, off);
    for (int k = 0; k < c; k++) in[off[k]] |= (uint8_t)(1u << e);
  }
  /* e0 and its opposite (no shared column) are one axis, the other two the other */
  int opp = -1;
  for (int e = 1; e < 4; e++) {
    bool shared = false;
    for (int k = 0; k < L && !shared; k++) shared = (in[k] & 1) && (in[k] >> e & 1);
    if (!shared) opp = e;
  }
  int ax[2] = {-1, -1};
  for (int e = 1, q = 0; e < 4; e++)
    if (e != opp) ax[q++] = e;
  int count[TAPS] = {0};
  for (int k = 0; k < L && opp > 0; k++) {
    int ry = (in[k] & 1) ? 0 : (in[k] >> opp & 1) ? 2 : 1, rx = (in[k] >> ax[0] & 1) ? 0 : (in[k] >> ax[1] & 1) ? 2 : 1;
    tap[k] = ry * 3 + rx;
    count[tap[k]]++;
  }
  free(in);
  bool ok = opp > 0;
  for (int t = 0; t < TAPS && ok; t++) ok = count[t] == Lc;
  if (!ok) return tempo_set_error(TEMPO_STATUS_MISMATCH, "fmaps: the border bands are not a square's edges");
  return TEMPO_STATUS_OK;
}

tempo_status tempo_attack_fmaps(const float *Xb, int m, int n, int batch, int h, int w, float *maps, int *col_of,
                                int *live_per_tap, tempo_image_stats *stats) {
  if (batch < 1 || h < 3 || w < 3 || (size_t)m != (size_t)batch * h * w || n < TAPS || n % TAPS)
    return tempo_set_error(TEMPO_STATUS_INVALID_ARGUMENT, "fmaps: need a (batch*h*w, 9*C) im2col");
  tempo_image_stats s0 = {0};
  tempo_status st = TEMPO_STATUS_OK;
  uint64_t *keys = malloc((size_t)m * sizeof *keys);
  kent *sets = malloc((size_t)m * sizeof *sets);
  double *g = calloc((size_t)n, sizeof *g), *tmp = malloc((size_t)n * 2 * sizeof *tmp), *u = NULL;
  int *live = malloc((size_t)n * sizeof *live), *off = malloc((size_t)n * sizeof *off), *tap = malloc((size_t)n * sizeof *tap);
  uint16_t *pad = malloc((size_t)m * sizeof *pad);
  double *cost = NULL;
  int *asg = NULL;
  kent *tkey = NULL;
  uint8_t *order = NULL;
  if (!keys || !sets || !g || !tmp || !live || !off || !tap || !pad) goto oom;
  /* 1. the background direction: the most frequent row direction that passes step 2 (of
   * the 8 most frequent: a band's repeated window can outnumber the background's) */
  for (int i = 0; i < m; i++) keys[i] = dir_key(Xb + (size_t)i * n, n);
  uint64_t *srt = (uint64_t *)sets; /* scratch: m keys fit in m kent */
  memcpy(srt, keys, (size_t)m * sizeof *srt);
  qsort(srt, (size_t)m, sizeof *srt, cmp_u64);
  uint64_t cand[8];
  int ccount[8] = {0}, ncand = 0;
  for (int a = 0, b = 0; a < m; a = b) {
    while (b < m && srt[b] == srt[a]) b++;
    int c = b - a, k = ncand < 8 ? ncand++ : 7;
    if (k == 7 && ncand == 8 && c <= ccount[7]) continue;
    while (k > 0 && ccount[k - 1] < c) cand[k] = cand[k - 1], ccount[k] = ccount[k - 1], k--;
    cand[k] = srt[a], ccount[k] = c;
  }
  int L = 0;
  st = tempo_set_error(TEMPO_STATUS_MISMATCH, "fmaps: no repeated background window");
  for (int c = 0; c < ncand && ccount[c] >= 4; c++) {
    st = geometry(Xb, m, n, keys, cand[c], sets, g, tmp, live, off, tap, &L, &s0.background_rows);
    if (st != TEMPO_STATUS_MISMATCH) break;
  }
  if (st) goto out;
  const int Lc = L / TAPS;
  /* 3. the same channel in every tap: a pixel's channel vector (scaled to background 1) is
   * the same in every row whose window holds it, up to the row's scale, so equal sorted
   * unit vectors in tap t of one row and the centre tap of another are one pixel, and their
   * sorted orders pair the columns; the pairs are counted and assigned per tap. */
  if (Lc > 64) {
    st = tempo_set_error(TEMPO_STATUS_INVALID_ARGUMENT, "fmaps: more than 64 live channels");
    goto out;
  }
  int cols[TAPS][64], q9[TAPS] = {0};
  for (int k = 0; k < L; k++) cols[tap[k]][q9[tap[k]]++] = live[k];
  cost = malloc((size_t)TAPS * Lc * Lc * sizeof *cost), asg = malloc((size_t)Lc * sizeof *asg);
  tkey = malloc((size_t)m * TAPS * sizeof *tkey);
  order = malloc((size_t)m * TAPS * Lc * sizeof *order);
  if (!cost || !asg || !tkey || !order) goto oom;
  memset(cost, 0, (size_t)TAPS * Lc * Lc * sizeof *cost);
  size_t nkeys = 0;
  for (int i = 0; i < m; i++)
    for (int t = 0; t < TAPS; t++) {
      double v[64], nrm = 0;
      uint8_t *ord = order + ((size_t)i * TAPS + t) * Lc;
      for (int a2 = 0; a2 < Lc; a2++) v[a2] = Xb[(size_t)i * n + cols[t][a2]] / g[cols[t][a2]], nrm += v[a2] * v[a2];
      if (nrm <= 0) continue;
      for (int a2 = 0; a2 < Lc; a2++) ord[a2] = (uint8_t)a2;
      for (int a2 = 1; a2 < Lc; a2++) /* insertion argsort, Lc <= 64 */
        for (int b2 = a2; b2 > 0 && v[ord[b2 - 1]] > v[ord[b2]]; b2--) {
          uint8_t tt = ord[b2];
          ord[b2] = ord[b2 - 1], ord[b2 - 1] = tt;
        }
      nrm = sqrt(nrm);
      int distinct = 0;
      uint64_t h = 1469598103934665603ull;
      for (int a2 = 0; a2 < Lc; a2++) {
        double x = v[ord[a2]] / nrm;
        if (a2 && x > 0 && x - v[ord[a2 - 1]] / nrm > 1e-3) distinct++;
        h = (h ^ (uint64_t)(int64_t)floor(x * 4096)) * 1099511628211ull, h ^= h >> 29;
      }
      if (distinct < 2) continue; /* flat (background) or nearly all zero: no pairing */
      tkey[nkeys++] = (kent){h, i * TAPS + t};
    }
  qsort(tkey, nkeys, sizeof *tkey, cmp_kent);
  for (size_t a2 = 0, b2 = 0; a2 < nkeys; a2 = b2) {
    while (b2 < nkeys && tkey[b2].key == tkey[a2].key) b2++;
    if (b2 - a2 > 64) continue; /* a very common vector: a repeated band, already counted enough */
    for (size_t x = a2; x < b2; x++) {
      int ix = tkey[x].row / TAPS, tx = tkey[x].row % TAPS;
      if (tx != 4) continue;
      for (size_t y = a2; y < b2; y++) {
        int iy = tkey[y].row / TAPS, ty = tkey[y].row % TAPS;
        if (ty == 4 || iy == ix) continue;
        const uint8_t *ox = order + ((size_t)ix * TAPS + 4) * Lc, *oy = order + ((size_t)iy * TAPS + ty) * Lc;
        for (int q = 0; q < Lc; q++)
          if (Xb[(size_t)ix * n + cols[4][ox[q]]] > 0) cost[((size_t)ty * Lc + ox[q]) * Lc + oy[q]] -= 1;
      }
    }
  }
  for (int t = 0; t < TAPS; t++) {
    if (t == 4)
      for (int a2 = 0; a2 < Lc; a2++) asg[a2] = a2;
    else if ((st = tempo_assign(cost + (size_t)t * Lc * Lc, Lc, asg, NULL)))
      goto out;
    for (int a2 = 0; a2 < Lc; a2++) col_of[t * Lc + a2] = cols[t][asg[a2]];
  }
  /* 4. rows scaled to background 1, taps in order, channels aligned; chained as images */
  if (!(u = malloc((size_t)m * L * sizeof *u))) goto oom;
  for (int i = 0; i < m; i++) {
    pad[i] = 0;
    for (int t = 0; t < TAPS; t++) {
      bool zero = true;
      for (int a = 0; a < Lc; a++) {
        int j = col_of[t * Lc + a];
        double v = Xb[(size_t)i * n + j] / g[j];
        u[((size_t)i * TAPS + t) * Lc + a] = v;
        zero &= v == 0;
      }
      if (zero) pad[i] |= (uint16_t)(1u << t);
    }
  }
  *live_per_tap = Lc;
  st = tempo_attack_chain(u, pad, m, Lc, batch, h, w, 1.0, 1.0f, maps, &s0);
  goto out;
oom:
  st = tempo_set_error(TEMPO_STATUS_NO_MEMORY, "fmaps: out of memory");
out:
  if (stats) *stats = s0;
  free(keys), free(sets), free(g), free(tmp), free(live), free(off), free(tap), free(pad), free(u);
  free(cost), free(asg), free(tkey), free(order);
  return st;
}
