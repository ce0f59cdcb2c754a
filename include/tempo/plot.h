/* plot.h - `tempo plot`: the curves of a run's metrics.jsonl as one self-contained SVG file.
 *
 * Three panels share the x axis (optimizer steps): the training loss (and the test loss of
 * each evaluation), the accuracy in percent (training windows, and the test accuracy of each
 * evaluation) and the throughput in images per second. Each panel has axes, ticks, tick
 * labels and one <polyline> per curve, with as many points as the file has records of that
 * kind: the step curves (class "loss", "acc", "images_per_s") one point per logged step, the
 * test curves (class "test_loss", "test_acc") one per evaluation.
 *
 * The file is untrusted text: lines that are not metrics records are skipped, numbers must
 * be finite and at most 1e15 in magnitude, a line longer than 1 MiB or more than 16M records
 * is an error; at most 40 ticks per axis. */
#ifndef TEMPO_PLOT_H
#define TEMPO_PLOT_H

#include "tempo/status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Reads metrics_path (metrics.jsonl) and writes the SVG to svg_path; title (may be NULL)
 * heads the picture. *steps (optional) receives the number of step records plotted.
 * Errors: TEMPO_STATUS_IO (unreadable input, unwritable output), TEMPO_STATUS_CORRUPT (no
 * step record, a record with a non-finite number, a line too long), TEMPO_STATUS_NO_MEMORY. */
TEMPO_WUR tempo_status tempo_plot_metrics(const char *metrics_path, const char *svg_path, const char *title,
                                          long *steps);

#ifdef __cplusplus
}
#endif
#endif
