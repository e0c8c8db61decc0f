/* window.h -- the window of pipelined RETR commands of fetch_many(), as
 * plain C: the blocking iterator (pipeline.c) and the asyncio one (through
 * engine.c's FetchWindow) keep one of these and follow the same rule.
 *
 * Fixed when the caller gives a size; otherwise adaptive, as TCP's slow
 * start is: it starts at POP3_WINDOW_START and grows after each round (a
 * window's worth of messages received): four times when the round's
 * throughput was half as much again as the best so far (the first round
 * always is), twice when it was a fifth more; after two rounds in a row
 * without such a gain it stays.  It never exceeds POP3_WINDOW_CAP
 * commands, and with the messages' sizes known the replies in flight
 * never exceed POP3_BYTES_IN_FLIGHT bytes (but one message always may
 * go).  Time is the caller's: every function that needs it takes `now`
 * in seconds of a monotonic clock.
 */
#ifndef CPOPLIB_WINDOW_H
#define CPOPLIB_WINDOW_H

#define POP3_WINDOW_START 8
#define POP3_WINDOW_CAP 128
#define POP3_BYTES_IN_FLIGHT (32LL << 20)
/* A fixed window may be up to this */
#define POP3_WINDOW_MAX 1024

typedef struct {
    long long window;          /* RETR commands allowed in flight now */
    long long max_window;
    int adaptive;
    /* the round: messages left to receive in it, their bytes, when it
       began, the best throughput of a round so far and how many rounds
       in a row brought no gain */
    long long round_left;
    double round_bytes, round_start, best_rate;
    int flat_rounds;
} pop3_window;

/* fixed > 0: a fixed window of that size; 0: the adaptive one. */
void pop3_window_init(pop3_window *w, long long fixed);

/* No pipelining: one command at a time, for good. */
void pop3_window_single(pop3_window *w);

/* The first round starts now. */
void pop3_window_start(pop3_window *w, double now);

/* 1 if one more RETR, for a message of `size` bytes (0: unknown), may be
 * sent with `in_flight` RETRs of `bytes_in_flight` known bytes out. */
int pop3_window_may_send(const pop3_window *w, long long in_flight,
                         long long bytes_in_flight, long long size);

/* A message of `size` bytes arrived: the round's accounting. */
void pop3_window_received(pop3_window *w, long long size, double now);

#endif /* CPOPLIB_WINDOW_H */
