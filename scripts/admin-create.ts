// `npm run admin:create -- --email admin@example.com --password '…' [--reset-password]`: creates an admin
// account, or makes the existing account with that address an admin when the password is its password.
// `--reset-password` instead gives the existing account this password, makes it an admin and revokes all of
// its sessions and API keys (for an address someone else signed up with first). Uses the same configuration
// as the server (DATABASE_URL, else the embedded database under DATA_DIR, which must not be in use by a
// running server).
import { parseArgs } from 'node:util';
import { openRuntime } from '../src/app.js';
import { AdminBootstrapRefusedError, type AdminBootstrapOutcome } from '../src/auth/auth-service.js';
import { loadConfig } from '../src/config.js';

const { values } = parseArgs({
  options: {
    email: { type: 'string' },
    password: { type: 'string' },
    'reset-password': { type: 'boolean', default: false },
  },
});
const config = loadConfig();
const email = values.email ?? config.bootstrapAdmin?.email;
const password = values.password ?? config.bootstrapAdmin?.password;
if (!email || !password) {
  console.error('usage: npm run admin:create -- --email <address> --password <password> [--reset-password]');
  process.exit(2);
}
const messages: Record<AdminBootstrapOutcome, string> = {
  created: `created admin ${email}`,
  promoted: `${email} is now an admin`,
  'password-reset': `${email} is now an admin with the new password; all its sessions and API keys were revoked`,
  'already-admin': `${email} is already an admin`,
  'already-admin-other-password': `${email} is already an admin, with another password (use --reset-password to set this one)`,
};
const runtime = await openRuntime({ ...config, logLevel: 'warn' }).catch((error: unknown) => {
  console.error(`admin:create failed: ${(error as Error).message}`);
  process.exit(1);
});
try {
  const outcome = await runtime.services.auth.ensureAdmin(email, password, { resetPassword: values['reset-password'] });
  // An admin with another password did not get the one asked for: the command did not do its job.
  if (outcome === 'already-admin-other-password') {
    console.error(`admin:create failed: ${messages[outcome]}`);
    process.exitCode = 1;
  } else {
    console.log(messages[outcome]);
  }
} catch (error) {
  console.error(
    error instanceof AdminBootstrapRefusedError
      ? `admin:create refused: ${error.message}`
      : `admin:create failed: ${(error as Error).message}`,
  );
  process.exitCode = 1;
} finally {
  await runtime.close();
}
