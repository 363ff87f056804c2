/* pdsync.h -- the poll driver's file-sync helper: IORING_OP_FSYNC emulated
 * on one helper thread, so that a blocking fsync(2) / fdatasync(2) never
 * runs on the loop thread (polldrv.h runs every other operation itself).
 *
 * Owns: one pthread (started at the first sync, joined at exit), the jobs
 * handed to it (a FIFO) and the jobs it finished (a list), both under one
 * mutex, and an eventfd the thread writes after finishing a job. The poll
 * driver watches that eventfd in its epoll set (tag RL_PD_SYNC_TAG) and,
 * when it fires, takes the finished jobs (rl_pds_take) and posts their
 * completions itself.
 *
 * Lifecycle: zeroed -> rl_pds_start (the thread and the eventfd) ->
 * rl_pds_push ... rl_pds_take ... -> rl_pds_exit (stops and joins the thread;
 * jobs it has not started are dropped: the core exits its driver only when
 * no operation is in flight, so there are none then).
 *
 * Invariants: jobs run one at a time, in the order they were pushed; the
 * helper touches nothing of the driver but this struct's lists and the
 * eventfd (completions reach the CQ only on the loop thread, through
 * rl_pds_take); it blocks every signal (they are the loop thread's); it never
 * calls into Python and holds no GIL. The fd a job syncs is kept open by the
 * job's owner until its completion has been reaped (the core's RingFile).
 * Like the loop it serves, it does not survive fork(): a child never uses
 * its parent's loop (the runtime's workers make their own).
 */
#ifndef RINGLINE_PDSYNC_H
#define RINGLINE_PDSYNC_H

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <unistd.h>
#include <linux/io_uring.h>

/* epoll data of the helper's eventfd (no fd/generation pair is all ones) */
#define RL_PD_SYNC_TAG 0xFFFFFFFFFFFFFFFFULL

typedef struct rl_pds_job {
    struct rl_pds_job *next;
    uint64_t ud;            /* the FSYNC's user_data */
    int fd;
    int datasync;           /* IORING_FSYNC_DATASYNC was asked for */
    int res;                /* 0 or -errno, once run */
} rl_pds_job;

typedef struct rl_pds {
    int started;            /* the thread runs and efd is open */
    int stop;               /* asks the thread to return */
    int efd;                /* written by the thread after each job */
    pthread_t thr;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    rl_pds_job *todo, *todo_tail;   /* FIFO: pushed, not yet run */
    rl_pds_job *done;               /* run, not yet taken (any order: each has its ud) */
    unsigned pending;               /* pushed and not yet taken */
    uint64_t jobs;                  /* counter: syncs run */
} rl_pds;

static void *rl_pds_main(void *arg) {
    rl_pds *s = (rl_pds *)arg;
    uint64_t one = 1;
    pthread_mutex_lock(&s->mu);
    for (;;) {
        rl_pds_job *j;
        while (!s->todo && !s->stop)
            pthread_cond_wait(&s->cv, &s->mu);
        if (s->stop)
            break;
        j = s->todo;
        s->todo = j->next;
        if (!s->todo)
            s->todo_tail = NULL;
        pthread_mutex_unlock(&s->mu);
        do {
            j->res = j->datasync ? fdatasync(j->fd) : fsync(j->fd);
        } while (j->res < 0 && errno == EINTR);
        if (j->res < 0)
            j->res = -errno;
        pthread_mutex_lock(&s->mu);
        j->next = s->done;
        s->done = j;
        s->jobs++;
        /* under the lock: rl_pds_exit closes efd only after joining us */
        while (write(s->efd, &one, sizeof(one)) < 0 && errno == EINTR)
            ;
    }
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

/* Start the thread (and its eventfd). Returns 0 or -errno. */
static int rl_pds_start(rl_pds *s) {
    sigset_t all, old;
    int err;
    if (s->started)
        return 0;
    s->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (s->efd < 0)
        return -errno;
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    s->stop = 0;
    /* the thread inherits this mask: it takes no signal of the process */
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    err = pthread_create(&s->thr, NULL, rl_pds_main, s);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (err) {
        pthread_cond_destroy(&s->cv);
        pthread_mutex_destroy(&s->mu);
        close(s->efd);
        return -err;
    }
    s->started = 1;
    return 0;
}

/* Hand one sync to the thread. Returns 0 or -ENOMEM. */
static int rl_pds_push(rl_pds *s, int fd, int datasync, uint64_t ud) {
    rl_pds_job *j = (rl_pds_job *)malloc(sizeof(rl_pds_job));
    if (!j)
        return -ENOMEM;
    j->next = NULL;
    j->ud = ud;
    j->fd = fd;
    j->datasync = datasync;
    j->res = 0;
    pthread_mutex_lock(&s->mu);
    if (s->todo_tail)
        s->todo_tail->next = j;
    else
        s->todo = j;
    s->todo_tail = j;
    s->pending++;
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
    return 0;
}

/* The jobs finished since the last call (the caller posts and frees them);
 * clears the eventfd. */
static rl_pds_job *rl_pds_take(rl_pds *s) {
    rl_pds_job *list, *j;
    uint64_t v;
    if (!s->started)
        return NULL;
    while (read(s->efd, &v, sizeof(v)) < 0 && errno == EINTR)
        ;
    pthread_mutex_lock(&s->mu);
    list = s->done;
    s->done = NULL;
    for (j = list; j; j = j->next)
        s->pending--;
    pthread_mutex_unlock(&s->mu);
    return list;
}

static void rl_pds_free_list(rl_pds_job *j) {
    while (j) {
        rl_pds_job *nx = j->next;
        free(j);
        j = nx;
    }
}

static void rl_pds_exit(rl_pds *s) {
    if (!s->started)
        return;
    pthread_mutex_lock(&s->mu);
    s->stop = 1;
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
    pthread_join(s->thr, NULL);
    rl_pds_free_list(s->todo);
    rl_pds_free_list(s->done);
    s->todo = s->todo_tail = s->done = NULL;
    s->pending = 0;
    pthread_cond_destroy(&s->cv);
    pthread_mutex_destroy(&s->mu);
    close(s->efd);
    s->efd = -1;
    s->started = 0;
}

#endif /* RINGLINE_PDSYNC_H */
