// `npm run bench:lifecycle`: every measured target of the model lifecycle (issue 13), one part after another so
// they do not compete for the cores: optimised variants, evaluation, gradient attributions, Kernel SHAP and
// occlusion. Each part prints its targets beside its measurements; this exits 1 when any part missed one.
// Extra arguments go to every part (e.g. none; the parts' own flags are in their headers).
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const PARTS = ['lifecycle-optimize', 'lifecycle-evaluation', 'lifecycle-gradients', 'lifecycle-explain'];

const outcomes = PARTS.map((part) => {
  console.log(`\n=== ${part} ===`);
  const { status } = spawnSync(
    process.execPath,
    ['--import', 'tsx', fileURLToPath(new URL(`./${part}.ts`, import.meta.url)), ...process.argv.slice(2)],
    { stdio: 'inherit' },
  );
  return { part, ok: status === 0 };
});
console.log(`\n${outcomes.map(({ part, ok }) => `${ok ? 'PASS' : 'MISS'}  ${part}`).join('\n')}`);
process.exitCode = outcomes.every((o) => o.ok) ? 0 : 1;
