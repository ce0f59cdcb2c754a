/* image.c - whole-image recovery from a blinded 3x3 im2col (attack.h).
 *
 * X' = D_m P_m X P_n D_n with X the im2col (3x3 windows, stride 1, zero padding 1) of a
 * batch of single-channel images. What survives the blinding, and how it is used:
 *   1. padding: a window on the image border holds exact zeros in the taps outside it, so
 *      the four most frequent 3-zero patterns are the four edges; which edges a column is
 *      zero on gives its tap (up to the square's 8 symmetries, fixed at the end);
 *   2. background: a window of pure background is one vector, black * c_n (times its row
 *      scale), the most frequent row direction: it gives the column scales;
 *   3. overlap: the windows at (y, x) and (y, x + 1) share 6 pixels, so the right part of
 *      one row is proportional to the left part of its neighbour (the same below); an
 *      informative part (not constant) that matches exactly one other row links the two,
 *      and the ratio of the parts' norms is the ratio of their row scales;
 *   4. the linked rows form pieces (connected components) with relative positions and
 *      scales; the black level (the most negative pixel is background) fixes each piece's
 *      absolute scale, its border rows (padding zeros) its absolute position (a piece that
 *      touches no border is centred);
 *   5. the batch's largest pieces are its images, on a background of black; the symmetry
 *      of step 1 is chosen by the distance of their mean to a public mean image.
 * No prior on the images is used beyond the black level (and the public mean's
 * orientation). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "attack/attack_internal.h"
#include "tempo/common.h"

#define TAPS 9
#define GRID 256.0  /* hash cells per unit of a normalised part value */
#define MATCH 1e-4  /* exact-match tolerance on normalised parts (float32 rounding ~1e-6) */
#define FLAT 1e-3   /* a part whose non-zero values agree within this is uninformative */
#define MAXCAND 64  /* a hash cell with more candidates is ambiguous */

typedef struct {
  uint64_t key;
  int row;
} hent;

static int cmp_hent(const void *a, const void *b) {
  uint64_t x = ((const hent *)a)->key, y = ((const hent *)b)->key;
  return (x > y) - (x < y);
}

static int cmp_u64(const void *a, const void *b) {
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return (x > y) - (x < y);
}

/* The 6 taps of each part: 0 right (kx 1, 2), 1 left (kx 0, 1), 2 down (ky 1, 2), 3 up (ky 0, 1),
 * in the order that makes part 0 of (y, x) equal to part 1 of (y, x + 1), and 2 of (y, x) to 3 of
 * (y + 1, x). */
static const int PART[4][6] = {
    {1, 2, 4, 5, 7, 8}, {0, 1, 3, 4, 6, 7}, {3, 4, 5, 6, 7, 8}, {0, 1, 2, 3, 4, 5}};

/* Normalised part (unit L2 norm) of a row u (9 taps of cl values); returns its norm, 0 for
 * an uninformative part (its non-zero values all alike). */
static double part_of(const double *u, int cl, int which, float *v) {
  const int k = 6 * cl;
  double s = 0;
  for (int t = 0; t < 6; t++)
    for (int c = 0; c < cl; c++) {
      double x = u[PART[which][t] * cl + c];
      v[t * cl + c] = (float)x, s += x * x;
    }
  if (s <= 0) return 0;
  s = sqrt(s);
  double lo = INFINITY, hi = -INFINITY;
  for (int t = 0; t < k; t++) {
    v[t] = (float)(v[t] / s);
    if (v[t] != 0) lo = fmin(lo, v[t]), hi = fmax(hi, v[t]);
  }
  if (hi - lo < FLAT * (fabs(hi) + fabs(lo))) return 0;
  return s;
}

static uint64_t part_key(const float *v, int k, double off) {
  uint64_t h = 1469598103934665603ull;
  for (int t = 0; t < k; t++) {
    int64_t q = (int64_t)floor(v[t] * GRID + off);
    h = (h ^ (uint64_t)q) * 1099511628211ull;
    h ^= h >> 29;
  }
  return h;
}

/* Step 1: tap of each column from the four edge patterns. */
static tempo_status taps_from_padding(const uint16_t *mask, int m, int *colof) {
  int cnt[512] = {0};
  for (int i = 0; i < m; i++) cnt[mask[i]]++;
  int e[4] = {-1, -1, -1, -1};
  for (int k = 0; k < 4; k++)
    for (int z = 0; z < 512; z++) {
      if (__builtin_popcount((unsigned)z) != 3 || !cnt[z]) continue;
      bool used = false;
      for (int l = 0; l < k; l++) used |= e[l] == z;
      if (!used && (e[k] < 0 || cnt[z] > cnt[e[k]])) e[k] = z;
    }
  for (int k = 1; k < 4; k++)
    if (e[k] < 0) return tempo_set_error(TEMPO_STATUS_MISMATCH, "images: no zero-padding pattern (not a padded 3x3 im2col)");
  int b = -1; /* the edge opposite (disjoint from) e[0] */
  for (int k = 1; k < 4; k++)
    if (!(e[0] & e[k])) b = k;
  if (b < 0) return tempo_set_error(TEMPO_STATUS_MISMATCH, "images: the padding patterns are not a square's edges");
  int c = -1, d = -1;
  for (int k = 1; k < 4; k++)
    if (k != b) *(c < 0 ? &c : &d) = k;
  int top = e[0], bot = e[b], lef = e[c], rig = e[d];
  if ((lef & rig) || __builtin_popcount((unsigned)(top & lef)) != 1 || __builtin_popcount((unsigned)(top & rig)) != 1 ||
      __builtin_popcount((unsigned)(bot & lef)) != 1 || __builtin_popcount((unsigned)(bot & rig)) != 1)
    return tempo_set_error(TEMPO_STATUS_MISMATCH, "images: the padding patterns are not a square's edges");
  for (int t = 0; t < TAPS; t++) colof[t] = -1;
  for (int j = 0; j < TAPS; j++) {
    int ry = (top >> j & 1) ? 0 : (bot >> j & 1) ? 2 : 1, rx = (lef >> j & 1) ? 0 : (rig >> j & 1) ? 2 : 1;
    if (colof[ry * 3 + rx] >= 0) return tempo_set_error(TEMPO_STATUS_MISMATCH, "images: ambiguous tap geometry");
    colof[ry * 3 + rx] = j;
  }
  return TEMPO_STATUS_OK;
}

/* The direction of an all-negative, zero-free row relative to its centre tap (r) and its
 * hash at 1e-3 in log ratio; false for other rows. */
static bool bg_key(const float *x, uint16_t mask, const int *colof, double *r, uint64_t *key) {
  if (mask) return false;
  for (int j = 0; j < TAPS; j++)
    if (!(x[j] < 0)) return false;
  uint64_t h = 1469598103934665603ull;
  for (int t = 0; t < TAPS; t++) {
    r[t] = (double)x[colof[t]] / x[colof[4]];
    if (t != 4) h = (h ^ (uint64_t)(int64_t)floor(log(r[t]) * 1000)) * 1099511628211ull;
  }
  *key = h;
  return true;
}

/* Step 2: column scales (relative to the centre tap) from the most frequent direction of
 * the all-negative, zero-free rows. */
static tempo_status scales_from_background(const float *Xb, const uint16_t *mask, int m, const int *colof,
                                           double *scale, int *bg_rows) {
  uint64_t *keys = malloc((size_t)m * sizeof *keys);
  if (!keys) return tempo_set_error(TEMPO_STATUS_NO_MEMORY, "images: out of memory");
  int nk = 0;
  double r[TAPS];
  for (int i = 0; i < m; i++)
    if (bg_key(Xb + (size_t)i * TAPS, mask[i], colof, r, &keys[nk])) nk++;
  if (nk == 0) {
    free(keys);
    return tempo_set_error(TEMPO_STATUS_MISMATCH, "images: no background rows (no uniform dark background)");
  }
  qsort(keys, (size_t)nk, sizeof *keys, cmp_u64);
  uint64_t best = keys[0];
  int run = 0, best_run = 0;
  for (int k = 0; k < nk; k++) {
    run = k && keys[k] == keys[k - 1] ? run + 1 : 1;
    if (run > best_run) best_run = run, best = keys[k];
  }
  free(keys);
  double sum[TAPS] = {0};
  int got = 0;
  for (int i = 0; i < m; i++) { /* the rows of the mode, again */
    uint64_t h;
    if (!bg_key(Xb + (size_t)i * TAPS, mask[i], colof, r, &h) || h != best) continue;
    for (int t = 0; t < TAPS; t++) sum[t] += r[t];
    got++;
  }
  if (got < 4) return tempo_set_error(TEMPO_STATUS_MISMATCH, "images: too few background rows (%d)", got);
  for (int t = 0; t < TAPS; t++) scale[t] = sum[t] / got;
  *bg_rows = got;
  return TEMPO_STATUS_OK;
}

/* Step 3: link[i * 2 + d] = the row right of (d 0) / below (d 1) row i, -1 if none or
 * ambiguous; ratio[] = k_j / k_i of the link. */
static tempo_status find_links(const double *u, int m, int cl, int *link, double *ratio) {
  tempo_status st = TEMPO_STATUS_OK;
  const int k = 6 * cl;
  hent *tab = malloc((size_t)m * 2 * sizeof *tab); /* (left/up part, grid) entries */
  double *norm = malloc((size_t)m * 4 * sizeof *norm);
  float *nv = malloc((size_t)m * 4 * k * sizeof *nv);
  int *inc = calloc((size_t)m * 2, sizeof *inc);
  if (!tab || !norm || !nv || !inc) {
    st = tempo_set_error(TEMPO_STATUS_NO_MEMORY, "images: out of memory");
    goto out;
  }
  for (int i = 0; i < m; i++)
    for (int p = 0; p < 4; p++)
      norm[(size_t)i * 4 + p] = part_of(u + (size_t)i * TAPS * cl, cl, p, nv + ((size_t)i * 4 + p) * k);
  for (int d = 0; d < 2; d++) {
    const int from = 2 * d, to = 2 * d + 1; /* right -> left, down -> up */
    size_t nt = 0;
    for (int i = 0; i < m; i++) {
      if (norm[(size_t)i * 4 + to] == 0) continue;
      const float *v = nv + ((size_t)i * 4 + to) * k;
      tab[nt++] = (hent){part_key(v, k, 0.0) * 2, i};
      tab[nt++] = (hent){part_key(v, k, 0.5) * 2 + 1, i};
    }
    qsort(tab, nt, sizeof *tab, cmp_hent);
    for (int i = 0; i < m; i++) {
      link[(size_t)i * 2 + d] = -1;
      if (norm[(size_t)i * 4 + from] == 0) continue;
      const float *v = nv + ((size_t)i * 4 + from) * k;
      int found = -1, nfound = 0;
      for (int g = 0; g < 2 && nfound < 2; g++) {
        uint64_t key = part_key(v, k, g ? 0.5 : 0.0) * 2 + (uint64_t)g;
        size_t lo = 0, hi = nt;
        while (lo < hi) {
          size_t mid = (lo + hi) / 2;
          if (tab[mid].key < key) lo = mid + 1;
          else hi = mid;
        }
        size_t end = lo;
        while (end < nt && tab[end].key == key) end++;
        if (end - lo > MAXCAND) {
          nfound = 2;
          break;
        }
        for (size_t e = lo; e < end && nfound < 2; e++) {
          int j = tab[e].row;
          if (j == i || j == found) continue;
          const float *w = nv + ((size_t)j * 4 + to) * k;
          double dev = 0;
          for (int t = 0; t < k; t++) dev = fmax(dev, fabs((double)v[t] - w[t]));
          if (dev < MATCH) found = j, nfound++;
        }
      }
      if (nfound == 1) {
        link[(size_t)i * 2 + d] = found;
        ratio[(size_t)i * 2 + d] = norm[(size_t)found * 4 + to] / norm[(size_t)i * 4 + from];
        inc[(size_t)found * 2 + d]++;
      }
    }
  }
  for (int i = 0; i < m; i++) /* a row claimed by two neighbours is ambiguous: drop both */
    for (int d = 0; d < 2; d++) {
      int j = link[(size_t)i * 2 + d];
      if (j >= 0 && inc[(size_t)j * 2 + d] > 1) link[(size_t)i * 2 + d] = -1;
    }
out:
  free(tab), free(norm), free(nv), free(inc);
  return st;
}

/* The scale that gives a row (or piece) values v its level: level < 0, the minimum is the
 * level; level > 0, the most frequent positive value (within 1e-3) is. vals is scratch. */
static double level_scale(double *vals, size_t nv, double mn, double level, size_t *run) {
  *run = nv;
  if (level < 0) return mn < 0 ? level / mn : 1.0;
  if (!nv) return 1.0;
  qsort(vals, nv, sizeof *vals, tempo_attack_cmp_double);
  size_t best = 0, bi = 0;
  for (size_t k = 0, j = 0; k < nv; k++) {
    while (vals[k] - vals[j] > 1e-3) j++;
    if (k - j + 1 > best) best = k - j + 1, bi = k;
  }
  *run = best;
  return level / exp(vals[bi]);
}

/* What no piece covers: the background (fill), and along the border what the padding made
 * of it, the same for every sample: for each border class (pad pattern of the 4 edges and 4
 * corners) the most frequent row direction, painted at every position of its class. */
static tempo_status border_defaults(const double *u, const uint16_t *pad, int m, int cl, int H, int W, double level,
                                    float fill, float *D) {
  const size_t hw = (size_t)H * W, rl = (size_t)TAPS * cl;
  for (size_t k = 0; k < hw * cl; k++) D[k] = fill;
  static const uint16_t cls[8] = {0x7, 0x1c0, 0x49, 0x124, 0x4f, 0x127, 0x1c9, 0x1e4};
  hent *keys = malloc((size_t)m * sizeof *keys);
  double *vals = malloc(rl * sizeof *vals);
  if (!keys || !vals) {
    free(keys), free(vals);
    return tempo_set_error(TEMPO_STATUS_NO_MEMORY, "images: out of memory");
  }
  for (int c = 0; c < 8; c++) {
    size_t nk = 0;
    for (int i = 0; i < m; i++) {
      if (pad[i] != cls[c]) continue;
      const double *r = u + (size_t)i * rl;
      double mx = 0;
      for (size_t k = 0; k < rl; k++) mx = fmax(mx, fabs(r[k]));
      if (mx == 0) continue;
      uint64_t h = 1469598103934665603ull;
      for (size_t k = 0; k < rl; k++) h = (h ^ (uint64_t)(int64_t)floor(r[k] / mx * 4096)) * 1099511628211ull, h ^= h >> 29;
      keys[nk++] = (hent){h, i};
    }
    if (!nk) continue;
    qsort(keys, nk, sizeof *keys, cmp_hent);
    size_t best = 0, bi = 0;
    for (size_t a = 0, b = 0; a < nk; a = b) {
      while (b < nk && keys[b].key == keys[a].key) b++;
      if (b - a > best) best = b - a, bi = a;
    }
    const double *r = u + (size_t)keys[bi].row * rl;
    size_t nv = 0;
    double mn = 0;
    for (size_t k = 0; k < rl; k++) {
      mn = fmin(mn, r[k]);
      if (r[k] > 0) vals[nv++] = log(r[k]);
    }
    size_t run;
    const double G = level_scale(vals, nv, mn, level, &run);
    if (run < (size_t)cl) continue; /* no background tap in it: no scale (the band is wider) */
    /* the positions of the class: an edge's whole length, or its corner */
    const bool top = cls[c] & 1 && cls[c] & 2, bot = cls[c] & 0x80, lef = cls[c] & 8, rig = cls[c] & 0x20;
    for (int y = 0; y < H; y++)
      for (int x = 0; x < W; x++) {
        if ((top && y) || (bot && y != H - 1) || (lef && x) || (rig && x != W - 1)) continue;
        if (!top && !bot && (y == 0 || y == H - 1)) continue;
        if (!lef && !rig && (x == 0 || x == W - 1)) continue;
        for (int t = 0; t < TAPS; t++) {
          int yy = y + t / 3 - 1, xx = x + t % 3 - 1;
          if (yy < 0 || yy >= H || xx < 0 || xx >= W || (cls[c] >> t & 1)) continue;
          for (int ch = 0; ch < cl; ch++) D[((size_t)yy * W + xx) * cl + ch] = (float)(r[(size_t)t * cl + ch] * G);
        }
      }
  }
  free(keys), free(vals);
  return TEMPO_STATUS_OK;
}

/* Steps 3 to 5 for any number of values per tap (attack_internal.h). */
tempo_status tempo_attack_chain(const double *u, const uint16_t *pad, int m, int cl, int B, int H, int W, double level,
                                float fill, float *img, tempo_image_stats *s0) {
  tempo_status st = TEMPO_STATUS_OK;
  const size_t hw = (size_t)H * W;
  double *ratio = malloc((size_t)m * 2 * sizeof *ratio), *logk = malloc((size_t)m * sizeof *logk);
  double *acc = calloc((size_t)B * hw * cl, sizeof *acc);
  int *link = malloc((size_t)m * 2 * sizeof *link), *back = malloc((size_t)m * 2 * sizeof *back);
  int *comp = malloc((size_t)m * sizeof *comp), *py = malloc((size_t)m * sizeof *py), *px = malloc((size_t)m * sizeof *px);
  int *queue = malloc((size_t)m * sizeof *queue), *size = calloc((size_t)m, sizeof *size), *order = NULL;
  int *cnt = calloc((size_t)B * hw, sizeof *cnt);
  double *vals = NULL;
  if (!ratio || !logk || !acc || !link || !back || !comp || !py || !px || !queue || !size || !cnt) {
    st = tempo_set_error(TEMPO_STATUS_NO_MEMORY, "images: out of memory");
    goto out;
  }
  if ((st = find_links(u, m, cl, link, ratio))) goto out;
  for (size_t k = 0; k < (size_t)m * 2; k++) back[k] = -1;
  for (int i = 0; i < m; i++)
    for (int d = 0; d < 2; d++)
      if (link[(size_t)i * 2 + d] >= 0) back[(size_t)link[(size_t)i * 2 + d] * 2 + d] = i, s0->links++;
  /* step 4: pieces by breadth-first search, positions and log row scales relative to the root */
  for (int i = 0; i < m; i++) comp[i] = -1;
  int ncomp = 0;
  for (int r = 0; r < m; r++) {
    if (comp[r] >= 0) continue;
    int qh = 0, qt = 0;
    queue[qt++] = r;
    comp[r] = ncomp, py[r] = px[r] = 0, logk[r] = 0;
    while (qh < qt) {
      int i = queue[qh++];
      for (int e = 0; e < 4; e++) {
        int d = e & 1, j, dy = d, dx = 1 - d;
        double lr;
        if (e < 2) {
          j = link[(size_t)i * 2 + d];
          lr = j >= 0 ? log(ratio[(size_t)i * 2 + d]) : 0;
        } else {
          j = back[(size_t)i * 2 + d], dy = -dy, dx = -dx;
          lr = j >= 0 ? -log(ratio[(size_t)j * 2 + d]) : 0;
        }
        if (j < 0) continue;
        if (comp[j] >= 0) {
          if (py[j] != py[i] + dy || px[j] != px[i] + dx) s0->conflicts++;
          continue;
        }
        comp[j] = ncomp, py[j] = py[i] + dy, px[j] = px[i] + dx, logk[j] = logk[i] + lr;
        queue[qt++] = j;
      }
    }
    size[ncomp++] = qt;
  }
  s0->pieces = ncomp;
  if (!(order = malloc((size_t)ncomp * sizeof *order)) || !(vals = malloc((size_t)m * TAPS * sizeof *vals))) {
    st = tempo_set_error(TEMPO_STATUS_NO_MEMORY, "images: out of memory");
    goto out;
  }
  for (int c = 0; c < ncomp; c++) order[c] = c;
  for (int a = 1; a < ncomp; a++) { /* insertion sort by size, but only the B largest matter */
    int c = order[a], b = a;
    if (a >= B && size[c] <= size[order[B - 1]]) continue;
    while (b > 0 && size[order[b - 1]] < size[c]) order[b] = order[b - 1], b--;
    order[b] = c;
  }
  if ((st = border_defaults(u, pad, m, cl, H, W, level, fill, img))) goto out;
  for (int b = 1; b < B; b++) memcpy(img + (size_t)b * hw * cl, img, hw * cl * sizeof *img);
  /* step 5: place the B largest pieces (one pass over the rows per piece: B is small) */
  for (int b = 0; b < B && b < ncomp; b++) {
    const int c = order[b];
    if (size[c] < 2) break;
    s0->placed_rows += size[c];
    int ymin = INT32_MAX, ymax = INT32_MIN, xmin = INT32_MAX, xmax = INT32_MIN, offy = INT32_MIN, offx = INT32_MIN;
    size_t nvals = 0;
    double mn = 0;
    const uint16_t top = 0x7, bot = 0x1c0, lef = 0x49, rig = 0x124;
    for (int i = 0; i < m; i++) {
      if (comp[i] != c) continue;
      ymin = py[i] < ymin ? py[i] : ymin, ymax = py[i] > ymax ? py[i] : ymax;
      xmin = px[i] < xmin ? px[i] : xmin, xmax = px[i] > xmax ? px[i] : xmax;
      if ((pad[i] & top) == top) offy = -py[i];
      if ((pad[i] & bot) == bot) offy = H - 1 - py[i];
      if ((pad[i] & lef) == lef) offx = -px[i];
      if ((pad[i] & rig) == rig) offx = W - 1 - px[i];
      for (int t = 0; t < TAPS; t++)
        for (int ch = 0; ch < cl; ch++) {
          double v = u[((size_t)i * TAPS + t) * cl + ch] * exp(-logk[i]);
          mn = fmin(mn, v);
          if (v > 0 && nvals < (size_t)m * TAPS) vals[nvals++] = log(v);
        }
    }
    if (offy == INT32_MIN) offy = (H - 1 - ymin - ymax) / 2;
    else s0->anchored++;
    if (offx == INT32_MIN) offx = (W - 1 - xmin - xmax) / 2;
    else s0->anchored++;
    size_t run;
    const double G = level_scale(vals, nvals, mn, level, &run); /* black level, or the background's value */
    for (int i = 0; i < m; i++) {
      if (comp[i] != c) continue;
      const double k = G * exp(-logk[i]);
      for (int t = 0; t < TAPS; t++) {
        int y = py[i] + offy + t / 3 - 1, x = px[i] + offx + t % 3 - 1;
        if (y < 0 || y >= H || x < 0 || x >= W || (pad[i] >> t & 1)) continue;
        size_t at = (size_t)b * hw + (size_t)y * W + x;
        if (!cnt[at]) /* first value here: start the average */
          for (int ch = 0; ch < cl; ch++) acc[at * cl + ch] = 0;
        for (int ch = 0; ch < cl; ch++) acc[at * cl + ch] += u[((size_t)i * TAPS + t) * cl + ch] * k;
        cnt[at]++;
      }
    }
  }
  for (size_t at = 0; at < (size_t)B * hw; at++)
    if (cnt[at])
      for (int ch = 0; ch < cl; ch++) img[at * cl + ch] = (float)(acc[at * cl + ch] / cnt[at]);
out:
  free(ratio), free(logk), free(acc), free(link), free(back), free(comp), free(py), free(px), free(queue), free(size);
  free(order), free(cnt), free(vals);
  return st;
}

/* One of the square's 8 symmetries applied to pixel (y, x) of an s x s image. */
static void sym(int k, int s, int y, int x, int *oy, int *ox) {
  if (k & 4) {
    int t = y;
    y = x, x = t;
  }
  if (k & 1) y = s - 1 - y;
  if (k & 2) x = s - 1 - x;
  *oy = y, *ox = x;
}

tempo_status tempo_attack_images(const float *Xb, int m, int n, const tempo_image_geom *g, const float *pub_mean,
                                 float *img, tempo_image_stats *stats) {
  if (!g || g->batch < 1 || g->h < 3 || g->w < 3 || (size_t)m != (size_t)g->batch * g->h * g->w || n != TAPS ||
      !(g->black < 0))
    return tempo_set_error(TEMPO_STATUS_INVALID_ARGUMENT,
                           "images: need a (batch*h*w, 9) im2col of one channel and a negative black level");
  tempo_image_stats s0 = {0};
  tempo_status st = TEMPO_STATUS_OK;
  const int B = g->batch, H = g->h, W = g->w;
  const size_t hw = (size_t)H * W;
  uint16_t *mask = malloc((size_t)m * sizeof *mask);
  double *u = malloc((size_t)m * TAPS * sizeof *u);
  float *tmp = NULL;
  if (!mask || !u) {
    st = tempo_set_error(TEMPO_STATUS_NO_MEMORY, "images: out of memory");
    goto out;
  }
  for (int i = 0; i < m; i++) {
    mask[i] = 0;
    for (int j = 0; j < TAPS; j++)
      if (Xb[(size_t)i * TAPS + j] == 0.0f) mask[i] |= (uint16_t)(1u << j);
  }
  int colof[TAPS];
  double scale[TAPS];
  if ((st = taps_from_padding(mask, m, colof))) goto out;
  if ((st = scales_from_background(Xb, mask, m, colof, scale, &s0.background_rows))) goto out;
  for (int i = 0; i < m; i++) {
    uint16_t tm = 0; /* the zero mask in tap order */
    for (int t = 0; t < TAPS; t++) {
      u[(size_t)i * TAPS + t] = Xb[(size_t)i * TAPS + colof[t]] / scale[t];
      if (mask[i] >> colof[t] & 1) tm |= (uint16_t)(1u << t);
    }
    mask[i] = tm;
  }
  if ((st = tempo_attack_chain(u, mask, m, 1, B, H, W, g->black, g->black, img, &s0))) goto out;
  /* the square's symmetry: the one whose mean image is nearest the public mean */
  if (pub_mean && H == W) {
    if (!(tmp = tempo_alloc_floats(hw))) {
      st = tempo_set_error(TEMPO_STATUS_NO_MEMORY, "images: out of memory");
      goto out;
    }
    double *mean = calloc(hw, sizeof *mean);
    if (!mean) {
      st = tempo_set_error(TEMPO_STATUS_NO_MEMORY, "images: out of memory");
      goto out;
    }
    for (int b = 0; b < B; b++)
      for (size_t k = 0; k < hw; k++) mean[k] += img[(size_t)b * hw + k] / B;
    int best = 0;
    double bd = INFINITY;
    for (int k = 0; k < 8; k++) {
      double dd = 0;
      for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++) {
          int oy, ox;
          sym(k, H, y, x, &oy, &ox);
          double e = mean[(size_t)y * W + x] - pub_mean[(size_t)oy * W + ox];
          dd += e * e;
        }
      if (dd < bd) bd = dd, best = k;
    }
    free(mean);
    s0.symmetry = best;
    for (int b = 0; b < B && best; b++) {
      float *im = img + (size_t)b * hw;
      for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++) {
          int oy, ox;
          sym(best, H, y, x, &oy, &ox);
          tmp[(size_t)oy * W + ox] = im[(size_t)y * W + x];
        }
      memcpy(im, tmp, hw * sizeof *im);
    }
  }
out:
  if (stats) *stats = s0;
  free(mask), free(u);
  tempo_free_floats(tmp);
  return st;
}
