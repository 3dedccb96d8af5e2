// What the console's page loads, read from the Vite manifest of web/dist: the entry's chunk and every chunk it
// imports, statically or lazily, with their gzipped sizes. GraphiQL's page is separate and not counted.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { gzipSync } from 'node:zlib';
import { WEB_DIST_DIR } from '../../src/server/console-http.js';

interface ManifestChunk {
  file: string;
  imports?: string[];
  dynamicImports?: string[];
  css?: string[];
}

export interface ConsoleBundle {
  files: { file: string; bytes: number; gzipBytes: number }[];
  jsGzipBytes: number;
  cssGzipBytes: number;
}

export function consoleBundle(entry = 'index.html'): ConsoleBundle {
  const manifest = JSON.parse(readFileSync(path.join(WEB_DIST_DIR, '.vite/manifest.json'), 'utf8')) as Record<
    string,
    ManifestChunk
  >;
  const seen = new Set<string>();
  const files = new Set<string>();
  const visit = (key: string) => {
    if (seen.has(key)) return;
    seen.add(key);
    const chunk = manifest[key];
    if (!chunk) throw new Error(`the manifest has no chunk ${key}: rebuild with npm run build:web`);
    files.add(chunk.file);
    for (const css of chunk.css ?? []) files.add(css);
    for (const next of [...(chunk.imports ?? []), ...(chunk.dynamicImports ?? [])]) visit(next);
  };
  visit(entry);
  const measured = [...files].map((file) => {
    const bytes = readFileSync(path.join(WEB_DIST_DIR, file));
    return { file, bytes: bytes.length, gzipBytes: gzipSync(bytes, { level: 9 }).length };
  });
  const sum = (suffix: string) =>
    measured.filter((f) => f.file.endsWith(suffix)).reduce((total, f) => total + f.gzipBytes, 0);
  return { files: measured, jsGzipBytes: sum('.js'), cssGzipBytes: sum('.css') };
}
