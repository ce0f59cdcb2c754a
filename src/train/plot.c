/* plot.c - SVG curves of a run's metrics.jsonl (see plot.h): a small self-contained writer
 * (axes, ticks, labels, one polyline per curve), no plotting library. */
#include "tempo/plot.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PLOT_MAX_LINE ((size_t)1 << 20)
#define PLOT_MAX_POINTS ((size_t)1 << 24)
#define PLOT_MAX_VALUE 1e15 /* larger magnitudes are refused: the axes' arithmetic stays exact enough */
#define PLOT_MAX_TICKS 40

/* One curve: (x, y) points in file order. */
typedef struct {
  double *x, *y;
  size_t n, cap;
} curve;

static tempo_status curve_add(curve *c, double x, double y) {
  if (c->n == c->cap) {
    if (c->n >= PLOT_MAX_POINTS) return tempo_set_error(TEMPO_STATUS_CORRUPT, "more than %zu records", PLOT_MAX_POINTS);
    size_t cap = c->cap ? 2 * c->cap : 256;
    double *nx = realloc(c->x, cap * sizeof *nx);
    if (!nx) return tempo_set_error(TEMPO_STATUS_NO_MEMORY, "out of memory reading the metrics");
    c->x = nx;
    double *ny = realloc(c->y, cap * sizeof *ny);
    if (!ny) return tempo_set_error(TEMPO_STATUS_NO_MEMORY, "out of memory reading the metrics");
    c->y = ny;
    c->cap = cap;
  }
  c->x[c->n] = x;
  c->y[c->n] = y;
  c->n++;
  return TEMPO_STATUS_OK;
}

static void curve_free(curve *c) {
  free(c->x);
  free(c->y);
}

/* The number after "key": in a record line; 0 = absent, 1 = found, -1 = not a finite number. */
static int field(const char *line, const char *key, double *v) {
  char needle[48];
  snprintf(needle, sizeof needle, "\"%s\":", key);
  const char *p = strstr(line, needle);
  if (!p) return 0;
  p += strlen(needle);
  char *end;
  errno = 0;
  const double d = strtod(p, &end);
  if (end == p || errno == ERANGE || !(fabs(d) <= PLOT_MAX_VALUE)) return -1; /* NaN, infinities, absurd values */
  *v = d;
  return 1;
}

enum { C_LOSS, C_TEST_LOSS, C_ACC, C_TEST_ACC, C_IPS, C_COUNT };

static tempo_status read_metrics(const char *path, curve *cv) {
  FILE *f = fopen(path, "r");
  if (!f) return tempo_set_error(TEMPO_STATUS_IO, "cannot read %s: %s", path, strerror(errno));
  char *line = NULL;
  size_t cap = 0;
  long lineno = 0;
  ssize_t len;
  tempo_status st = TEMPO_STATUS_OK;
  while ((len = getline(&line, &cap, f)) >= 0) {
    lineno++;
    if ((size_t)len > PLOT_MAX_LINE) {
      st = tempo_set_error(TEMPO_STATUS_CORRUPT, "%s: line %ld is longer than %zu bytes", path, lineno, PLOT_MAX_LINE);
      break;
    }
    if (strlen(line) != (size_t)len || line[0] != '{' || strstr(line, "\"summary\"") ||
        strstr(line, "\"type\":\"config\""))
      continue;
    double step, v[4];
    const int hs = field(line, "step", &step);
    if (hs == 0) continue;
    int got[4];
    got[0] = field(line, "loss", &v[0]);
    got[1] = field(line, "acc", &v[1]);
    got[2] = field(line, "images_per_s", &v[2]);
    got[3] = field(line, "test_acc", &v[3]);
    double tl = 0;
    const int htl = field(line, "test_loss", &tl);
    if (hs < 0 || got[0] < 0 || got[1] < 0 || got[2] < 0 || got[3] < 0 || htl < 0) {
      st = tempo_set_error(TEMPO_STATUS_CORRUPT, "%s: line %ld has a field that is not a finite number", path, lineno);
      break;
    }
    if (got[3] > 0) { /* an evaluation */
      if ((st = curve_add(&cv[C_TEST_ACC], step, 100.0 * v[3]))) break;
      if (htl > 0 && (st = curve_add(&cv[C_TEST_LOSS], step, tl))) break;
    } else if (got[0] > 0 && got[1] > 0 && got[2] > 0) { /* a logged step */
      if ((st = curve_add(&cv[C_LOSS], step, v[0])) || (st = curve_add(&cv[C_ACC], step, 100.0 * v[1])) ||
          (st = curve_add(&cv[C_IPS], step, v[2])))
        break;
    }
  }
  if (!st && ferror(f)) st = tempo_set_error(TEMPO_STATUS_IO, "cannot read %s: %s", path, strerror(errno));
  free(line);
  fclose(f);
  if (!st && cv[C_LOSS].n == 0)
    st = tempo_set_error(TEMPO_STATUS_CORRUPT, "%s has no step record to plot (is it a Tempo metrics.jsonl?)", path);
  return st;
}

/* Ticks: a 1, 2 or 5 times a power of ten that cuts [lo, hi] into about 5 parts. */
static double nice_step(double range) {
  if (!(range > 0)) return 1.0;
  const double raw = range / 5.0, p = pow(10.0, floor(log10(raw))), m = raw / p;
  return (m < 1.5 ? 1.0 : m < 3.5 ? 2.0 : m < 7.5 ? 5.0 : 10.0) * p;
}

typedef struct {
  double x0, y0, w, h;   /* the plot area in SVG units (y0 = top) */
  double xmin, xmax, ymin, ymax;
} panel;

static double px(const panel *p, double x) {
  return p->xmax > p->xmin ? p->x0 + (x - p->xmin) / (p->xmax - p->xmin) * p->w : p->x0 + p->w / 2;
}
static double py(const panel *p, double y) {
  return p->ymax > p->ymin ? p->y0 + p->h - (y - p->ymin) / (p->ymax - p->ymin) * p->h : p->y0 + p->h / 2;
}

static void xml_text(FILE *f, const char *s) {
  for (; *s; s++) {
    switch (*s) {
    case '&': fputs("&amp;", f); break;
    case '<': fputs("&lt;", f); break;
    case '>': fputs("&gt;", f); break;
    case '"': fputs("&quot;", f); break;
    default:
      if ((unsigned char)*s >= 0x20) fputc(*s, f);
    }
  }
}

static void draw_polyline(FILE *f, const panel *p, const curve *c, const char *cls, const char *color, bool dots) {
  if (c->n == 0) return;
  fprintf(f, "<polyline class=\"%s\" fill=\"none\" stroke=\"%s\" stroke-width=\"1.5\" points=\"", cls, color);
  for (size_t i = 0; i < c->n; i++) fprintf(f, "%s%.2f,%.2f", i ? " " : "", px(p, c->x[i]), py(p, c->y[i]));
  fputs("\"/>\n", f);
  if (dots)
    for (size_t i = 0; i < c->n; i++)
      fprintf(f, "<circle cx=\"%.2f\" cy=\"%.2f\" r=\"3\" fill=\"%s\"/>\n", px(p, c->x[i]), py(p, c->y[i]), color);
}

/* One panel: frame, ticks and labels on both axes, title, legend, then the curves. */
static void draw_panel(FILE *f, panel *p, const char *title, const curve *const *cs, const char *const *cls,
                       const char *const *colors, const char *const *names, const bool *dots, int n, bool zero_floor,
                       double fixed_max) {
  double lo = INFINITY, hi = -INFINITY;
  for (int k = 0; k < n; k++)
    for (size_t i = 0; i < cs[k]->n; i++) lo = fmin(lo, cs[k]->y[i]), hi = fmax(hi, cs[k]->y[i]);
  if (!(lo <= hi)) lo = 0, hi = 1;
  if (zero_floor && lo > 0) lo = 0;
  if (fixed_max > 0) hi = fmax(hi, fixed_max);
  if (hi - lo < 1e-12) hi = lo + (fabs(lo) > 0 ? fabs(lo) * 0.1 : 1.0);
  const double ys = nice_step(hi - lo);
  p->ymin = floor(lo / ys) * ys;
  p->ymax = ceil(hi / ys) * ys;
  fprintf(f, "<g class=\"panel\">\n<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"white\" "
          "stroke=\"#444\"/>\n", p->x0, p->y0, p->w, p->h);
  fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" font-size=\"13\" font-weight=\"bold\">", p->x0, p->y0 - 8);
  xml_text(f, title);
  fputs("</text>\n", f);
  for (int k = 0; k < PLOT_MAX_TICKS && p->ymin + k * ys <= p->ymax + ys * 1e-6; k++) {
    const double t = p->ymin + k * ys, y = py(p, t);
    fprintf(f, "<line x1=\"%.1f\" y1=\"%.2f\" x2=\"%.1f\" y2=\"%.2f\" stroke=\"#ddd\"/>\n", p->x0, y, p->x0 + p->w, y);
    fprintf(f, "<line x1=\"%.1f\" y1=\"%.2f\" x2=\"%.1f\" y2=\"%.2f\" stroke=\"#444\"/>\n", p->x0 - 4, y, p->x0, y);
    fprintf(f, "<text x=\"%.1f\" y=\"%.2f\" font-size=\"10\" text-anchor=\"end\">%g</text>\n", p->x0 - 6, y + 3,
            fabs(t) < ys * 1e-6 ? 0.0 : t);
  }
  const double xs = nice_step(p->xmax - p->xmin);
  const double x0 = ceil(p->xmin / xs) * xs;
  for (int k = 0; k < PLOT_MAX_TICKS && x0 + k * xs <= p->xmax + xs * 1e-6; k++) {
    const double t = x0 + k * xs, x = px(p, t);
    fprintf(f, "<line x1=\"%.2f\" y1=\"%.1f\" x2=\"%.2f\" y2=\"%.1f\" stroke=\"#444\"/>\n", x, p->y0 + p->h, x,
            p->y0 + p->h + 4);
    fprintf(f, "<text x=\"%.2f\" y=\"%.1f\" font-size=\"10\" text-anchor=\"middle\">%g</text>\n", x, p->y0 + p->h + 15,
            t);
  }
  fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" font-size=\"10\" text-anchor=\"end\">step</text>\n", p->x0 + p->w,
          p->y0 + p->h + 28);
  double lx = p->x0 + p->w - 10;
  for (int k = n - 1; k >= 0; k--) {
    if (cs[k]->n == 0) continue;
    const double tw = 7.0 * (double)strlen(names[k]) + 24;
    lx -= tw;
    fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"%s\" stroke-width=\"2\"/>"
            "<text x=\"%.1f\" y=\"%.1f\" font-size=\"11\">%s</text>\n",
            lx, p->y0 - 12, lx + 16, p->y0 - 12, colors[k], lx + 19, p->y0 - 8, names[k]);
  }
  for (int k = 0; k < n; k++) draw_polyline(f, p, cs[k], cls[k], colors[k], dots[k]);
  fputs("</g>\n", f);
}

static void write_svg(FILE *f, const curve *cv, const char *title) {
  const double W = 900, PH = 200, top = 50, gap = 70, left = 80;
  double xmin = INFINITY, xmax = -INFINITY;
  for (int k = 0; k < C_COUNT; k++)
    for (size_t i = 0; i < cv[k].n; i++) xmin = fmin(xmin, cv[k].x[i]), xmax = fmax(xmax, cv[k].x[i]);
  if (xmin > 0 && xmin <= 1) xmin = 0;
  const double H = top + 3 * PH + 3 * gap;
  fprintf(f, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
          "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" height=\"%.0f\" viewBox=\"0 0 %.0f %.0f\" "
          "font-family=\"sans-serif\">\n<rect width=\"100%%\" height=\"100%%\" fill=\"#fafafa\"/>\n", W, H, W, H);
  fputs("<text x=\"20\" y=\"24\" font-size=\"15\" font-weight=\"bold\">", f);
  xml_text(f, title ? title : "tempo run");
  fputs("</text>\n", f);
  panel p = {left, top + 10, W - left - 30, PH, xmin, xmax, 0, 1};
  {
    const curve *cs[] = {&cv[C_LOSS], &cv[C_TEST_LOSS]};
    const char *cls[] = {"loss", "test_loss"}, *col[] = {"#1f77b4", "#d62728"}, *nm[] = {"train", "test"};
    const bool dots[] = {false, true};
    draw_panel(f, &p, "loss", cs, cls, col, nm, dots, 2, true, 0);
  }
  p.y0 += PH + gap;
  {
    const curve *cs[] = {&cv[C_ACC], &cv[C_TEST_ACC]};
    const char *cls[] = {"acc", "test_acc"}, *col[] = {"#1f77b4", "#d62728"}, *nm[] = {"train", "test"};
    const bool dots[] = {false, true};
    draw_panel(f, &p, "accuracy (%)", cs, cls, col, nm, dots, 2, true, 0);
  }
  p.y0 += PH + gap;
  {
    const curve *cs[] = {&cv[C_IPS]};
    const char *cls[] = {"images_per_s"}, *col[] = {"#2ca02c"}, *nm[] = {"images/s"};
    const bool dots[] = {false};
    draw_panel(f, &p, "throughput (images/s)", cs, cls, col, nm, dots, 1, true, 0);
  }
  fputs("</svg>\n", f);
}

tempo_status tempo_plot_metrics(const char *metrics_path, const char *svg_path, const char *title, long *steps) {
  curve cv[C_COUNT];
  memset(cv, 0, sizeof cv);
  tempo_status st = read_metrics(metrics_path, cv);
  if (st) goto out;
  FILE *f = fopen(svg_path, "w");
  if (!f) {
    st = tempo_set_error(TEMPO_STATUS_IO, "cannot write %s: %s", svg_path, strerror(errno));
    goto out;
  }
  write_svg(f, cv, title);
  const bool bad = ferror(f) != 0;
  if (fclose(f) != 0 || bad) {
    st = tempo_set_error(TEMPO_STATUS_IO, "cannot write %s: %s", svg_path, strerror(errno));
    goto out;
  }
  if (steps) *steps = (long)cv[C_LOSS].n;
out:
  for (int k = 0; k < C_COUNT; k++) curve_free(&cv[k]);
  return st;
}
