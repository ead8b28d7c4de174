/*
 * dx_sig.h - signals as readable events, for programs that ask for them:
 * nothing here runs until dx_sig_watch is called. A handler writes them to
 * a pipe (built with -DDX_USE_SIGNALFD on Linux: they are blocked and read
 * from a signalfd instead). Unwatching a signal puts back what was there
 * before: its handler, or its blocked state.
 * Pure C, no Lua.
 */
#ifndef DX_SIG_H
#define DX_SIG_H

#include "dx_prefix.h"
#include <signal.h>

#define DX_NSIG 65

typedef struct dx_sigs {
  int fd;                    /* readable when a watched signal arrived; -1 */
  int wfd;                   /* self-pipe: the write end */
  sigset_t watched;
  unsigned char wasblocked[DX_NSIG];       /* signalfd: blocked before */
  struct sigaction old[DX_NSIG];           /* self-pipe: handler before */
} dx_sigs;

void dx_sigs_init(dx_sigs *s);
/* The number of a signal name ("TERM", "INT", "HUP", ...), or 0; and the
 * name of a number ("?" if unknown). */
int dx_signo(const char *name);
const char *dx_signame(int signo);
/* Start or stop watching signo. 0 or -errno. */
int dx_sig_watch(dx_sigs *s, int signo);
int dx_sig_unwatch(dx_sigs *s, int signo);
/* Whether anything is watched. */
int dx_sig_any(const dx_sigs *s);
/* The next signal that arrived: its number, 0 for none yet, or -errno. */
int dx_sig_next(dx_sigs *s);
/* In a fork child: a pipe of its own, for the parent's would carry the
 * signals of both processes to whichever reads first. A signal that came
 * between the fork and this call was kept, and is in the new pipe. (With
 * signalfd nothing to do: a read returns the reader's own signals.)
 * 0, or -errno with nothing changed. */
int dx_sigs_refork(dx_sigs *s);
/* Stop watching everything, close the descriptors. */
void dx_sigs_free(dx_sigs *s);

#endif
