// Signals to a process and its children: an embedded PostgreSQL's postmaster and its backends, frozen
// (SIGSTOP) and resumed (SIGCONT) by the fault tests.
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';

/** `pid`'s direct children. */
function childrenOf(pid: number): number[] {
  try {
    return execFileSync('pgrep', ['-P', String(pid)], { encoding: 'utf8' })
      .split('\n')
      .filter(Boolean)
      .map(Number);
  } catch (error) {
    // pgrep exits 1 when nothing matched.
    if ((error as { status?: number }).status === 1) return [];
    throw error;
  }
}

/** Sends `signal` to each process in turn; one that has exited already is skipped. */
export function signalEach(pids: number[], signal: NodeJS.Signals): void {
  for (const pid of pids) {
    try {
      process.kill(pid, signal);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ESRCH') throw error;
    }
  }
}

/** Signals `pid` and its children; returns them all (the postmaster first). */
export function signalTree(pid: number, signal: NodeJS.Signals): number[] {
  const children = childrenOf(pid);
  // Children first when stopping, the postmaster first when resuming: no backend is left waiting on a stopped one.
  signalEach(signal === 'SIGSTOP' ? [...children, pid] : [pid, ...children], signal);
  return [pid, ...children];
}

/** Whether `pid` runs (a zombie, exited but not reaped, does not). */
export function isRunning(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The state follows the command name, which is in parentheses and may hold any character.
    return stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z';
  } catch {
    return false;
  }
}
