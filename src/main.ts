// `npm start`: validated config → running server; SIGTERM/SIGINT drain and stop it.
import { startApplication, STOP_BUDGET_AFTER_GRACE_MS } from './app.js';
import { ConfigError, loadConfig } from './config.js';
import { resolveAppSecret } from './security/secret-box.js';

/** Past the stop's own bound, before the process exits regardless. */
const FORCE_EXIT_MARGIN_MS = 1_000;

async function main(): Promise<void> {
  let config;
  try {
    config = loadConfig();
  } catch (error) {
    if (error instanceof ConfigError) {
      for (const issue of error.issues) console.error(`config error: ${issue}`);
      process.exit(2);
    }
    throw error;
  }
  const demo = process.argv.includes('--demo');
  // The demo publisher (a client of the API, like any owner's script) is loaded only for a demo.
  const demoPublisher = demo ? await import('../demo/publish.js') : undefined;
  // The demo's admin, for the console's admin pages; never in production, never over a configured one.
  const demoAdmin =
    demoPublisher && !config.production && !config.bootstrapAdmin
      ? demoPublisher.demoAdmin(await resolveAppSecret(config.appSecret, config.dataDir))
      : undefined;
  if (demoAdmin) config = { ...config, bootstrapAdmin: demoAdmin };
  const app = await startApplication(config);
  app.logger.info({ url: app.url, mode: config.mode }, 'Modelmarket is ready');
  const consoleUrl = new URL('/', app.url).href;
  console.log(`Modelmarket GraphQL API: ${app.url}`);
  console.log(`Modelmarket web console: ${consoleUrl}`);
  if (demoPublisher) {
    await demoPublisher.publishDemos(app.url);
    console.log(`\nOpen the web console at ${consoleUrl} and log in as one of the demo accounts above`);
    if (demoAdmin) console.log(`Demo admin: ${demoAdmin.email} / ${demoAdmin.password}`);
  }

  let stopping = false;
  const stop = (signal: NodeJS.Signals) => {
    if (stopping) return;
    stopping = true;
    app.logger.info({ signal }, 'shutting down');
    // Every step of the stop is bounded; this is the last resort should one of their bounds fail.
    const force = setTimeout(
      () => {
        app.logger.error('graceful shutdown timed out');
        process.exit(1);
      },
      config.shutdownGraceMs + STOP_BUDGET_AFTER_GRACE_MS + FORCE_EXIT_MARGIN_MS,
    );
    force.unref();
    app.close().then(
      () => process.exit(0),
      (error: unknown) => {
        app.logger.error({ err: error }, 'error during shutdown');
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  // A closed terminal: the embedded PostgreSQL runs in its own process group, so only an orderly stop ends it.
  process.on('SIGHUP', stop);
}

main().catch((error: unknown) => {
  const reason = error instanceof Error ? error.message : `${String(error)} (not an Error: a bug worth reporting)`;
  console.error(`Modelmarket failed to start: ${reason}`);
  process.exit(1);
});
