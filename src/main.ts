// `npm start`: validated config → running server; SIGTERM/SIGINT drain and stop it.
import { startApplication } from './app.js';
import { ConfigError, loadConfig } from './config.js';

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
  const app = await startApplication(config);
  app.logger.info({ url: app.url, mode: config.mode }, 'Modelmarket is ready');
  console.log(`Modelmarket GraphQL API: ${app.url}`);
  if (process.argv.includes('--demo')) {
    // The demo publisher is a client of the API, like any owner's script.
    const { publishDemos } = await import('../demo/publish.js');
    await publishDemos(app.url);
  }

  let stopping = false;
  const stop = (signal: NodeJS.Signals) => {
    if (stopping) return;
    stopping = true;
    app.logger.info({ signal }, 'shutting down');
    const force = setTimeout(() => {
      app.logger.error('graceful shutdown timed out');
      process.exit(1);
    }, config.shutdownGraceMs + 5_000);
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
}

main().catch((error: unknown) => {
  const reason = error instanceof Error ? error.message : `${String(error)} (not an Error: a bug worth reporting)`;
  console.error(`Modelmarket failed to start: ${reason}`);
  process.exit(1);
});
