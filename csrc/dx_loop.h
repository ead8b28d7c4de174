/*
 * dx_loop.h - the readiness loop behind duplex's scheduler: task slots, a
 * FIFO of waiting tasks per socket direction, a timer heap on the monotonic
 * clock, and a ready queue. It knows tasks only as slot numbers; resuming
 * them is the binding's job. Backend (epoll, or poll elsewhere) chosen at
 * build time. No Lua here.
 */
#ifndef DX_LOOP_H
#define DX_LOOP_H

#include "dx_prefix.h"

#include <sys/types.h>

/* Embedded in every socket handle: the descriptor and who waits on it. */
typedef struct dx_watch {
  int fd;                 /* -1 once closed */
  int reg;                /* registered with the backend: 0 no, else epoll
                             the registration's tag, poll index + 1 */
  int head[2], tail[2];   /* FIFO of task slots: [0] readers, [1] writers */
  int ready;              /* DX_READ: bytes may be waiting (see dx_loop_drained) */
  int suspect;            /* the peer's end or urgent data seen: a short
                             read no longer proves the socket drained */
} dx_watch;

typedef struct dx_task {   /* 48 bytes: one per slot, idle tasks included */
  dx_watch *watch;        /* the FIFO it stands in, or NULL */
  dx_watch *watch2;       /* a second FIFO it holds (a forward: its
                             destination's writers), or NULL */
  dx_watch *on;           /* while waiting: whose readiness wakes it */
  unsigned gen;           /* bumped when the slot is freed: stale ids fail */
  int next;               /* next slot in its watch FIFO, or in the free list */
  int next2;              /* next slot in watch2's FIFO */
  int heap;               /* index in the timer heap, or -1 */
  unsigned char dir, dir2;  /* which FIFO of watch, of watch2 */
  unsigned char live, waiting, fired;
  unsigned char want;     /* readiness it waits for: 0 read, 1 write */
  unsigned char queued;   /* wants to run: ready */
  unsigned char inring;   /* has an entry in the ring (maybe stale) */
} dx_task;

typedef struct dx_timer {
  double when;
  int slot;
} dx_timer;

typedef struct dx_loop {
  int fd;                             /* epoll descriptor (-1: poll backend) */
  dx_task *tasks;                     /* slot 0 unused */
  int ntasks, freelist, live, nio;    /* nio: tasks suspended on a socket */
  int *ring, rhead, rcount, rcap;     /* ready queue, rcap a power of two */
  dx_timer *heap;                     /* grown as deadlines come (idle tasks */
  int nheap, hcap;                    /* mostly have none), at most ntasks */
  void *backend;                      /* the backend's tables */
  dx_watch sys[2];                    /* the loop's own descriptors (signals, lookups) */
  int sysready;                       /* bit i: sys[i] became readable */
  pid_t pid;                          /* the process whose backend this is */
} dx_loop;

int dx_loop_init(dx_loop *l);
void dx_loop_free(dx_loop *l);

/* Is this a process forked since the backend was made? Its epoll
 * instance is then the parent's too, and a wait would take the parent's
 * events (and the parent this one's). One getpid(), which glibc does not
 * cache: ask where a process may have changed (a run begins), never per
 * turn. Until dx_loop_refork, forgetting a watch leaves the shared
 * registration alone. */
int dx_loop_forked(const dx_loop *l);
/* Make the loop this process's own: a new backend; every watch is
 * registered again at its next wait (and may be ready meanwhile); tasks
 * suspended on a socket become ready, to retry and so register; the
 * loop's own descriptors are unregistered: watch them again with
 * dx_loop_watch_sys. 0, or -errno with the loop unchanged. */
int dx_loop_refork(dx_loop *l);

/* A new task slot, ready to run; or -ENOMEM. Every other call below
 * works without allocating, so no wakeup is ever lost to memory. */
int dx_loop_spawn(dx_loop *l);
/* Forget a task: leave its FIFO and timer, free the slot. */
void dx_loop_kill(dx_loop *l, int slot);

/* Suspend `slot` until `w` is ready for `dir` (0 read, 1 write; w may be
 * NULL: timer or an explicit wake only), or until `deadline` (< 0: none).
 * Joins w's FIFO if not in it yet. 0, or -errno if the backend refuses the
 * descriptor. */
int dx_loop_suspend(dx_loop *l, int slot, dx_watch *w, int dir, double deadline);
/* The same for a task that keeps its place in w's FIFO `dir` but waits for
 * readiness in direction `want` (a TLS read that must write first). */
int dx_loop_suspend_for(dx_loop *l, int slot, dx_watch *w, int dir, int want, double deadline);
/* Stand in w's FIFO `dir` too, if not in it yet, without waiting: an
 * operation on two sockets keeps both turns (two FIFOs at most). */
void dx_loop_join(dx_loop *l, int slot, dx_watch *w, int dir);
/* Suspend a task that stands in its FIFOs already until `on` (which need
 * not be one of them) is ready for `want`, or until `deadline`. 0 or -errno. */
int dx_loop_suspend_on(dx_loop *l, int slot, dx_watch *on, int want, double deadline);
/* Something changed on w that readiness will not tell (a TLS record was
 * taken in by the other direction): the FIFO heads waiting on w retry. */
void dx_loop_poke(dx_loop *l, dx_watch *w);
/* A receive on w came back EAGAIN, or short with nothing to suspect.
 * Under the edge-triggered backend that means drained: until the next
 * edge, a reader may wait without asking the kernel first (one recv per
 * message saved). A level-triggered backend learns nothing from it. */
void dx_loop_drained(dx_loop *l, dx_watch *w);
/* May bytes be waiting on w? (Always yes until w is registered.) */
#define dx_loop_readable(w) ((w)->ready & DX_READ)
/* w is new (an accepted connection): its first read may wait without
 * asking the kernel, as registering reports the bytes already there. */
#define dx_loop_fresh(w) ((w)->ready &= ~DX_READ)
/* Point w at another descriptor (or -1), keeping its FIFOs: the backend
 * forgets the old one. */
void dx_loop_rewatch(dx_loop *l, dx_watch *w, int fd);
/* Make a task ready now (clears its timer; keeps its FIFO place). */
void dx_loop_ready(dx_loop *l, int slot);
/* The task is done with its socket operation: leave FIFO and timer; the
 * next task in line, if suspended, becomes ready. */
void dx_loop_leave(dx_loop *l, int slot);
/* Every task in w's FIFOs leaves them, and those suspended become ready
 * (they will find w closed); the backend forgets w. Call before closing
 * w->fd. */
void dx_loop_close_watch(dx_loop *l, dx_watch *w);
/* The same, then close w->fd (and set it to -1): the backend may leave
 * the registration for close to remove, with no system call of its own.
 * dx_close's result. */
int dx_loop_close_fd(dx_loop *l, dx_watch *w);

/* May `slot` operate on w's direction now (nobody ahead of it)? */
#define dx_loop_myturn(w, dir, slot) ((w)->head[dir] == 0 || (w)->head[dir] == (slot))
/* Is anybody queued on w's direction? Is the first of them suspended? */
#define dx_loop_busy(w, dir) ((w)->head[dir] != 0)
#define dx_loop_head_waits(l, w, dir) ((w)->head[dir] != 0 && (l)->tasks[(w)->head[dir]].waiting)

/* What the binding may know of a task slot. */
#define dx_loop_gen(l, slot)   ((l)->tasks[slot].gen)
#define dx_loop_alive(l, slot) ((slot) > 0 && (slot) < (l)->ntasks && (l)->tasks[slot].live)
/* Its last suspension ended by its deadline. */
#define dx_loop_fired(l, slot) ((l)->tasks[slot].fired)
/* Suspended on nothing but a timer or an explicit wake. */
#define dx_loop_sleeping(l, slot) ((l)->tasks[slot].waiting && (l)->tasks[slot].watch == NULL)
#define dx_loop_nslots(l) ((l)->ntasks)
#define dx_loop_nlive(l)  ((l)->live)

/* Watch fd (-1: none) as the loop's own descriptor i (0 or 1): its
 * readiness wakes no task but sets bit i of sysready, and live tasks
 * waiting on nothing else then wait for it instead of being a deadlock.
 * Registers fd again if dx_loop_refork unregistered it. 0 or -errno. */
int dx_loop_watch_sys(dx_loop *l, int i, int fd);
/* Which of the loop's own descriptors became readable since the last
 * call (bits). */
int dx_loop_sys_ready(dx_loop *l);

/* Wait for events (not at all if tasks are ready), fire due timers.
 * 0, -EDEADLK if live tasks wait on nothing that can wake them, or -errno. */
int dx_loop_poll(dx_loop *l);
/* Ready tasks, in order: call dx_loop_batch once per turn, then pop that
 * many with dx_loop_pop (0 for entries that went stale). */
int dx_loop_batch(dx_loop *l);
int dx_loop_pop(dx_loop *l);

void dx_watch_init(dx_watch *w, int fd);

#ifdef DX_DEBUG
/* Assert every invariant of the loop (slots, free list, FIFOs, timer
 * heap, ready ring, counts); dx_loop_poll calls it in a debug build. */
void dx_loop_check(const dx_loop *l);
#endif

/* backend: implemented by dx_loop_epoll.c or dx_loop_poll.c */
int dx_backend_init(dx_loop *l);
void dx_backend_free(dx_loop *l);
/* A fork child's: a backend of its own, every watch unregistered (with
 * kernel state only; the poll backend keeps its table). 0 or -errno,
 * nothing changed then. */
int dx_backend_refork(dx_loop *l);
int dx_backend_add(dx_loop *l, dx_watch *w);
/* closing: w->fd is closed next (epoll leaves the registration to close) */
void dx_backend_del(dx_loop *l, dx_watch *w, int closing);
int dx_backend_wait(dx_loop *l, int ms);
/* called by the backend for each event: DX_READ / DX_WRITE / DX_SUSPECT bits */
void dx_loop_fire(dx_loop *l, dx_watch *w, int events);

#endif
