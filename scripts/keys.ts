// `npm run keys -- list | rotate | retire <kid>`: manages the JWT signing keys (see README, "Key rotation").
import { openRuntime } from '../src/app.js';
import { loadConfig } from '../src/config.js';

const [command, kid] = process.argv.slice(2);
const runtime = await openRuntime({ ...loadConfig(), logLevel: 'warn' }).catch((error: unknown) => {
  console.error(`keys: ${(error as Error).message}`);
  process.exit(1);
});
const ring = runtime.services.keyRing;
try {
  if (command === 'rotate') {
    console.log(`new signing key: ${await ring.rotate()} (previous keys verify until retired)`);
  } else if (command === 'retire' && kid) {
    console.log((await ring.retire(kid)) ? `retired ${kid}` : `no verifying key ${kid}`);
  } else if (command === 'list' || !command) {
    const keys = await runtime.db.prisma.signingKey.findMany({ orderBy: { createdAt: 'asc' } });
    for (const key of keys) {
      const signing = key.kid === ring.signing.kid ? ' (signing)' : '';
      console.log(`${key.kid}  ${key.algorithm}  ${key.status}${signing}  created ${key.createdAt.toISOString()}`);
    }
  } else {
    console.error('usage: npm run keys -- list | rotate | retire <kid>');
    process.exitCode = 2;
  }
} catch (error) {
  console.error(`keys: ${(error as Error).message}`);
  process.exitCode = 1;
} finally {
  await runtime.close();
}
