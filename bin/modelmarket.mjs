#!/usr/bin/env node
// `npx modelmarket …`: the CLI is TypeScript (src/cli/main.ts), run through tsx's loader like the rest of the
// project.
import { register } from 'tsx/esm/api';

register();
const { main } = await import('../src/cli/main.ts');
process.exitCode = await main(process.argv.slice(2), process.env, process);
