// `npm run admin:create -- --email admin@example.com --password '…'`: creates an admin account (or makes
// an existing account admin). Uses the same configuration as the server (DATABASE_URL, else the embedded
// database under DATA_DIR, which must not be in use by a running server).
import { parseArgs } from 'node:util';
import { openRuntime } from '../src/app.js';
import { loadConfig } from '../src/config.js';

const { values } = parseArgs({ options: { email: { type: 'string' }, password: { type: 'string' } } });
const config = loadConfig();
const email = values.email ?? config.bootstrapAdmin?.email;
const password = values.password ?? config.bootstrapAdmin?.password;
if (!email || !password) {
  console.error('usage: npm run admin:create -- --email <address> --password <password>');
  process.exit(2);
}
const runtime = await openRuntime({ ...config, logLevel: 'warn' });
try {
  const outcome = await runtime.services.auth.ensureAdmin(email, password);
  console.log(
    outcome.created
      ? `created admin ${email}`
      : outcome.promoted
        ? `${email} is now an admin`
        : `${email} is already an admin`,
  );
} catch (error) {
  console.error(`admin:create failed: ${(error as Error).message}`);
  process.exitCode = 1;
} finally {
  await runtime.close();
}
