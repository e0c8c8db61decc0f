/* window.c -- fetch_many()'s window of pipelined RETR commands; see
 * window.h for the rule.  No Python here.
 *
 * May call: nothing of cpoplib.
 */
#include "window.h"

void
pop3_window_init(pop3_window *w, long long fixed)
{
    w->window = fixed > 0 ? fixed : POP3_WINDOW_START;
    w->max_window = fixed > 0 ? fixed : POP3_WINDOW_CAP;
    w->adaptive = fixed <= 0;
    w->round_left = 0;
    w->round_bytes = w->round_start = w->best_rate = 0.0;
    w->flat_rounds = 0;
}

void
pop3_window_single(pop3_window *w)
{
    w->window = w->max_window = 1;
    w->adaptive = 0;
}

void
pop3_window_start(pop3_window *w, double now)
{
    w->round_left = w->window;
    w->round_bytes = 0.0;
    w->round_start = now;
}

int
pop3_window_may_send(const pop3_window *w, long long in_flight,
                     long long bytes_in_flight, long long size)
{
    if (in_flight >= w->window) {
        return 0;
    }
    /* enough bytes on their way (one message always may go) */
    return in_flight == 0 || bytes_in_flight + size <= POP3_BYTES_IN_FLIGHT;
}

void
pop3_window_received(pop3_window *w, long long size, double now)
{
    double rate;
    int factor;

    if (!w->adaptive) {
        return;
    }
    w->round_bytes += (double)size;
    if (--w->round_left > 0) {
        return;
    }
    rate = w->round_bytes / (now - w->round_start > 1e-6
                             ? now - w->round_start : 1e-6);
    /* far faster (the first round always is): four times the window; a
       fifth faster: twice; else a flat round */
    factor = rate >= w->best_rate * 1.5 ? 4
             : rate >= w->best_rate * 1.2 ? 2 : 1;
    w->flat_rounds = factor > 1 ? 0 : w->flat_rounds + 1;
    if (rate > w->best_rate) {
        w->best_rate = rate;
    }
    if (w->flat_rounds < 2) {
        w->window = w->window * factor < w->max_window
                    ? w->window * factor : w->max_window;
    }
    pop3_window_start(w, now);
}
