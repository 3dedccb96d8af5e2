// `npm start` as a child process (src/main.ts), for tests and benchmarks that need real separate processes.
import { spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { once } from 'node:events';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';

export interface ServerProcess {
  child: ChildProcess;
  /** The GraphQL URL the process printed, on 127.0.0.1. */
  url: string;
}

/**
 * Starts the server with `env` over a quiet loopback default, and resolves once it prints its URL. `cwd` is the
 * source tree to run (another checkout, for A/B benchmarks); `nodeArgs` go to node (`--cpu-prof`).
 */
export function startServerProcess(
  env: Record<string, string>,
  args: string[] = [],
  cwd = process.cwd(),
  nodeArgs: string[] = [],
): Promise<ServerProcess> {
  const child = spawn(process.execPath, [...nodeArgs, '--import', 'tsx', 'src/main.ts', ...args], {
    cwd,
    env: { ...process.env, LOG_LEVEL: 'warn', PORT: '0', HOST: '127.0.0.1', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  return new Promise((resolve, reject) => {
    let output = '';
    let ready = false;
    const onData = (chunk: Buffer) => {
      // Once ready, output is still read (a full pipe would block the server) but not kept: a loaded server logs MBs.
      if (ready) return;
      output += chunk.toString();
      const match = /GraphQL API: (http:\/\/\S+)/.exec(output);
      if (match) {
        ready = true;
        resolve({ child, url: match[1]!.replace('localhost', '127.0.0.1') });
      }
    };
    child.stdout!.on('data', onData);
    child.stderr!.on('data', onData);
    child.once('exit', (code) => reject(new Error(`server exited (${code}) before it was ready:\n${output}`)));
  });
}

/** Sends a signal and resolves with the exit code. */
export async function stopServerProcess(
  child: ChildProcess,
  signal: NodeJS.Signals = 'SIGTERM',
): Promise<number | null> {
  const exited = once(child, 'exit');
  child.kill(signal);
  const [code] = (await exited) as [number | null];
  return code;
}

/**
 * The server processes of one crash test, each on `env` (with its own DATA_DIR under one temporary folder) plus the
 * env of its start. `close()` stops those still running and removes the folder.
 */
export async function serverProcesses(folderPrefix: string, env: Record<string, string>) {
  const dataDir = await mkdtemp(path.join(os.tmpdir(), folderPrefix));
  const started: ServerProcess[] = [];
  return {
    async start(extra: Record<string, string> = {}): Promise<ServerProcess> {
      const server = await startServerProcess({ ...env, DATA_DIR: path.join(dataDir, randomUUID()), ...extra });
      started.push(server);
      return server;
    },
    async close(): Promise<void> {
      for (const server of started) {
        if (server.child.exitCode === null && server.child.signalCode === null) await stopServerProcess(server.child);
      }
      await rm(dataDir, { recursive: true, force: true });
    },
  };
}
