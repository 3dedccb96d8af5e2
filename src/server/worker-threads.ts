// Locating worker-thread entry files the same way whether the code runs as TypeScript under tsx or compiled.
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Piscina } from 'piscina';

/** `./<name>.ts` beside `moduleUrl` under tsx, `./<name>.js` when compiled. */
export function siblingWorkerFile(moduleUrl: string, name: string): URL {
  const extension = path.extname(fileURLToPath(moduleUrl));
  return new URL(`./${name}${extension}`, moduleUrl);
}

/**
 * Worker threads inherit the parent's execArgv, which under `tsx` or `node --import tsx` carries tsx's hooks.
 * A parent that registered tsx through its API has no such flag, so a TypeScript worker gets tsx added.
 * (Under tsx on Node 20, workers load through tsx's CommonJS hook: no top-level await in worker files.)
 */
export function workerExecArgv(workerFile: URL): string[] {
  const inherited = process.execArgv;
  if (!workerFile.pathname.endsWith('.ts') || inherited.some((arg) => arg.includes('tsx'))) return inherited;
  return [...inherited, '--import', import.meta.resolve('tsx')];
}

/**
 * One worker thread for occasional CPU-bound jobs (`./<name>` beside `moduleUrl`): started on first use, ended
 * after a minute idle; jobs queue behind each other.
 */
export function occasionalWorker(moduleUrl: string, name: string): Piscina {
  const workerFile = siblingWorkerFile(moduleUrl, name);
  return new Piscina({
    filename: workerFile.href,
    minThreads: 0,
    maxThreads: 1,
    idleTimeout: 60_000,
    execArgv: workerExecArgv(workerFile),
  });
}
