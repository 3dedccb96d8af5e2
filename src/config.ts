// The only place that reads process.env. Everything is validated once at start; a bad value stops the
// server with one line per offending variable.
import os from 'node:os';
import path from 'node:path';
import { z } from 'zod';
import { BACKEND_NAMES } from './inference/backend-names.js';

const boolean = z
  .enum(['true', 'false', '1', '0', 'yes', 'no'])
  .transform((v) => v === 'true' || v === '1' || v === 'yes');

const int = (min: number, max: number) => z.coerce.number().int().min(min).max(max);

const envSchema = z.object({
  MODE: z.enum(['development', 'production']).default('development'),
  PORT: int(0, 65535).default(4000),
  HOST: z.string().min(1).default('0.0.0.0'),
  DATA_DIR: z.string().min(1).default('./.data'),
  DATABASE_URL: z
    .string()
    .regex(/^postgres(ql)?:\/\//, 'must be a postgresql:// URL')
    .optional(),
  DATABASE_POOL_SIZE: int(1, 200).default(10),
  DATABASE_CONNECT_TIMEOUT_MS: int(100, 600_000).default(5_000),
  // The largest statements are artifact uploads (ARTIFACT_MAX_BYTES in one INSERT, sent as hex text): 256 MB took
  // 13 s over loopback on a 2-core machine (measured), well inside the default.
  DATABASE_STATEMENT_TIMEOUT_MS: int(100, 3_600_000).default(60_000),
  DATABASE_IDLE_IN_TRANSACTION_TIMEOUT_MS: int(100, 3_600_000).default(60_000),
  GRAPHIQL: boolean.optional(),
  READINESS_TIMEOUT_MS: int(100, 60_000).default(2_000),
  APP_SECRET: z.string().min(32, 'must be at least 32 characters').optional(),
  LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  LOG_FORMAT: z.enum(['json', 'pretty']).optional(),
  PUBLIC_URL: z.string().url().optional(),
  JWT_ISSUER: z.string().min(1).optional(),
  JWT_AUDIENCE: z.string().min(1).default('modelmarket-api'),
  JWT_PRIVATE_KEY: z.string().includes('PRIVATE KEY', { message: 'must be a PEM private key' }).optional(),
  ACCESS_TOKEN_TTL_SECONDS: int(30, 24 * 3600).default(15 * 60),
  REFRESH_TOKEN_TTL_DAYS: int(1, 365).default(30),
  PASSWORD_SCRYPT_LOG2N: int(10, 20).default(17),
  LOGIN_MAX_FAILURES_PER_ACCOUNT: int(1, 1000).default(5),
  LOGIN_LOCK_SECONDS: int(1, 24 * 3600).default(15 * 60),
  LOGIN_MAX_FAILURES_PER_IP: int(1, 100000).default(100),
  SIGNUP_MAX_PER_IP: int(1, 1_000_000).default(20),
  API_KEY_USAGE_FLUSH_MS: int(10, 3_600_000).default(10_000),
  ADMIN_EMAIL: z.string().email().optional(),
  ADMIN_PASSWORD: z.string().optional(),
  TRUST_PROXY: boolean.default(false),
  HTTP_KEEP_ALIVE_TIMEOUT_MS: int(1_000, 600_000).default(65_000),
  DEBUG_ERRORS: boolean.default(false),
  METRICS_TOKEN: z.string().min(16, 'must be at least 16 characters').optional(),
  BODY_LIMIT_BYTES: int(1024, 256 * 1024 * 1024).default(8 * 1024 * 1024),
  GRAPHQL_MAX_DEPTH: int(2, 50).default(10),
  GRAPHQL_MAX_COST: int(10, 1_000_000).default(5000),
  GRAPHQL_MAX_ALIASES: int(1, 1000).default(15),
  GRAPHQL_MAX_TOKENS: int(100, 100_000).default(2000),
  GRAPHQL_MAX_BATCH: int(1, 100).default(10),
  GRAPHQL_MAX_CREDENTIAL_CHECKS: int(1, 100).default(3),
  SHUTDOWN_GRACE_MS: int(0, 120_000).default(10_000),
  LEASE_SWEEP_INTERVAL_MS: int(100, 3_600_000).default(5_000),
  INFERENCE_WORKERS: int(1, 64).optional(),
  INFERENCE_MAX_BATCH: int(1, 4096).default(64),
  INFERENCE_MAX_WAIT_MS: int(0, 1000).default(2),
  INFERENCE_MAX_QUEUE: int(1, 1_000_000).default(4096),
  INFERENCE_BATCHING: boolean.default(true),
  INFERENCE_BACKEND: z.enum(['auto', ...BACKEND_NAMES]).default('auto'),
  MODEL_CACHE_BYTES: int(1024 * 1024, 64 * 1024 ** 3).default(512 * 1024 * 1024),
  ARTIFACT_MAX_BYTES: int(1024, 2 * 1024 ** 3).default(256 * 1024 * 1024),
  ARTIFACT_CACHE_BYTES: int(1024 * 1024, 1024 ** 4).default(4 * 1024 ** 3),
  // 50 M parameters load as 200 MB of float32 per worker that serves the model.
  MODEL_MAX_PARAMETERS: int(1, 1_000_000_000).default(50_000_000),
  MODEL_MAX_ACTIVATION_VALUES: int(1, 2 ** 31).default(4 * 1024 * 1024),
  MODEL_MAX_ACTIVE_PLANS: int(1, 10_000).default(100),
  PREDICT_MAX_INSTANCES: int(1, 100_000).default(256),
  PREDICT_MAX_STRING_LENGTH: int(1, 10_000_000).default(100_000),
  PREDICT_MAX_INPUT_DEPTH: int(2, 64).default(8),
  PREDICT_MAX_OUTPUT_VALUES: int(1, 100_000_000).default(25_000),
  PREDICT_MAX_IMAGE_PIXELS: int(1, 256 * 1024 * 1024).default(4 * 1024 * 1024),
  PREDICT_MAX_IMAGE_PIXELS_PER_CALL: int(1, 1024 ** 3).default(32 * 1024 * 1024),
  PREDICT_MAX_IMAGE_BYTES_PER_CALL: int(1024, 1024 ** 3).default(4 * 1024 * 1024),
  PREPROCESSING_WORKERS: int(1, 64).default(2),
  DATASET_MAX_BYTES: int(1024, 1024 ** 3).default(64 * 1024 * 1024),
  DATASET_MAX_ROWS: int(1, 10_000_000).default(100_000),
  DATASET_MAX_LINE_BYTES: int(64, 64 * 1024 * 1024).default(1024 * 1024),
  EVALUATION_CHUNK_SIZE: int(1, 4096).default(64),
  EVALUATION_MAX_RUNNING_PER_USER: int(1, 1000).default(2),
  EXPLAIN_MAX_CONCURRENT_PER_USER: int(1, 1000).default(2),
  EXPLAIN_MAX_OUTPUT_VALUES: int(1, 10_000_000).default(160_000),
  EVALUATION_MAX_RUNNING: int(1, 10_000).default(8),
  BATCH_CHUNK_SIZE: int(1, 4096).default(128),
  BATCH_MAX_CONCURRENT_CHUNKS: int(0, 64).default(1),
  BATCH_CHUNK_TIMEOUT_SECONDS: int(1, 3600).default(60),
  BATCH_RESULTS_TTL_DAYS: int(1, 365).default(7),
  BATCH_MAX_ACTIVE_PER_USER: int(1, 1000).default(4),
  JOBS_POLLING_INTERVAL_SECONDS: int(1, 3600).default(2),
  JOBS_MAINTENANCE_INTERVAL_SECONDS: int(1, 86_400).default(30),
  WEBHOOK_ALLOW_PRIVATE_NETWORKS: boolean.default(false),
  WEBHOOK_RETRY_SCHEDULE_SECONDS: z
    .string()
    .regex(/^\d{1,6}(,\d{1,6}){0,19}$/, 'must be 1 to 20 comma-separated whole numbers of seconds')
    .default('5,300,1800,7200,18000,36000,36000')
    .transform((list) => list.split(',').map(Number)),
  WEBHOOK_MAX_ENDPOINTS_PER_ACCOUNT: int(1, 1000).default(20),
  WEBHOOK_DISABLE_AFTER_FAILURES: int(1, 100_000).default(50),
  WEBHOOK_DISABLE_AFTER_SECONDS: int(0, 365 * 86_400).default(5 * 86_400),
  WEBHOOK_SWEEP_INTERVAL_SECONDS: int(1, 86_400).default(60),
  WEBHOOK_DELIVERY_CONCURRENCY: int(1, 1000).default(32),
  WEBHOOK_MAX_IN_FLIGHT_PER_ACCOUNT: int(1, 1000).default(4),
  LICENSING_SWEEP_INTERVAL_SECONDS: int(1, 86_400).default(300),
  EVENTS_RETENTION_DAYS: int(1, 3650).default(30),
  ASYNC_PREDICTIONS_MAX_QUEUED_PER_USER: int(1, 100_000).default(100),
  ASYNC_PREDICTIONS_WORKERS: int(0, 64).default(2),
  ASYNC_PREDICTIONS_TIMEOUT_SECONDS: int(10, 86_400).default(300),
  PREDICTION_OUTPUT_TTL_HOURS: int(1, 8760).default(24),
});

export type Config = ReturnType<typeof parseConfig>;

export class ConfigError extends Error {
  constructor(readonly issues: string[]) {
    super(`Invalid configuration:\n${issues.map((i) => `  ${i}`).join('\n')}`);
  }
}

/**
 * Parses and validates configuration from an environment-like record (process.env in production); `terminal`:
 * whether stdout is a terminal, where logs default to human lines.
 */
export function parseConfig(env: Record<string, string | undefined>, terminal = false) {
  // Empty strings mean "unset", as in most deployment tools.
  const present = Object.fromEntries(Object.entries(env).filter(([, v]) => v !== undefined && v !== ''));
  const parsed = envSchema.safeParse(present);
  if (!parsed.success) {
    throw new ConfigError(parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`));
  }
  const e = parsed.data;
  if ((e.ADMIN_EMAIL === undefined) !== (e.ADMIN_PASSWORD === undefined)) {
    throw new ConfigError(['ADMIN_EMAIL and ADMIN_PASSWORD must be set together']);
  }
  const production = e.MODE === 'production';
  const publicUrl = e.PUBLIC_URL ?? `http://localhost:${e.PORT}`;
  return {
    mode: e.MODE,
    production,
    port: e.PORT,
    host: e.HOST,
    dataDir: path.resolve(e.DATA_DIR),
    publicUrl,
    logLevel: e.LOG_LEVEL,
    logFormat: e.LOG_FORMAT ?? (terminal ? 'pretty' : 'json'),
    trustProxy: e.TRUST_PROXY,
    // How long an idle keep-alive connection stays open. Longer than the 60 s idle timeout of common load
    // balancers, so that they, not the server, close idle connections (no request lost to the race); a request
    // on a new connection costs ~130 µs more server CPU than one on an open connection (measured).
    keepAliveTimeoutMs: e.HTTP_KEEP_ALIVE_TIMEOUT_MS,
    metricsToken: e.METRICS_TOKEN,
    database: {
      url: e.DATABASE_URL,
      poolSize: e.DATABASE_POOL_SIZE,
      timeouts: {
        connectMs: e.DATABASE_CONNECT_TIMEOUT_MS,
        statementMs: e.DATABASE_STATEMENT_TIMEOUT_MS,
        idleInTransactionMs: e.DATABASE_IDLE_IN_TRANSACTION_TIMEOUT_MS,
      },
    },
    readinessTimeoutMs: e.READINESS_TIMEOUT_MS,
    appSecret: e.APP_SECRET,
    auth: {
      issuer: e.JWT_ISSUER ?? publicUrl,
      audience: e.JWT_AUDIENCE,
      configuredPrivateKeyPem: e.JWT_PRIVATE_KEY,
      accessTokenTtlSeconds: e.ACCESS_TOKEN_TTL_SECONDS,
      refreshTokenTtlDays: e.REFRESH_TOKEN_TTL_DAYS,
      scryptLog2N: e.PASSWORD_SCRYPT_LOG2N,
      loginMaxFailuresPerAccount: e.LOGIN_MAX_FAILURES_PER_ACCOUNT,
      loginLockSeconds: e.LOGIN_LOCK_SECONDS,
      loginMaxFailuresPerIp: e.LOGIN_MAX_FAILURES_PER_IP,
      signUpMaxPerIp: e.SIGNUP_MAX_PER_IP,
      apiKeyUsageFlushMs: e.API_KEY_USAGE_FLUSH_MS,
    },
    bootstrapAdmin:
      e.ADMIN_EMAIL && e.ADMIN_PASSWORD ? { email: e.ADMIN_EMAIL, password: e.ADMIN_PASSWORD } : undefined,
    graphql: {
      // Production behaviour is an explicit MODE, never inferred from NODE_ENV.
      introspection: !production,
      // GraphiQL (bundled with the console) for browsers at /graphql: on in development, off in production.
      ide: e.GRAPHIQL ?? !production,
      // Stack traces and internal messages (file paths, SQL) only when asked for explicitly, in any mode.
      exposeErrorDetails: e.DEBUG_ERRORS,
      bodyLimitBytes: e.BODY_LIMIT_BYTES,
      maxDepth: e.GRAPHQL_MAX_DEPTH,
      maxCost: e.GRAPHQL_MAX_COST,
      maxAliases: e.GRAPHQL_MAX_ALIASES,
      maxTokens: e.GRAPHQL_MAX_TOKENS,
      maxBatch: e.GRAPHQL_MAX_BATCH,
      // logIn/signUp/refreshSession per HTTP request, batches and aliases included: logIn and signUp each run
      // scrypt (~0.35 s of CPU at the default cost, as measured in issue 9).
      maxCredentialChecks: e.GRAPHQL_MAX_CREDENTIAL_CHECKS,
    },
    shutdownGraceMs: e.SHUTDOWN_GRACE_MS,
    // How often quota units and requestIds held by calls of a dead server (or whose record failed) go back.
    leaseSweepIntervalMs: e.LEASE_SWEEP_INTERVAL_MS,
    // How often due contract.expiring notices and grace upgrades that their one-off jobs missed are caught up.
    licensingSweepIntervalSeconds: e.LICENSING_SWEEP_INTERVAL_SECONDS,
    inference: {
      // One core stays with the event loop (HTTP, GraphQL, database I/O).
      workers: e.INFERENCE_WORKERS ?? Math.max(1, os.availableParallelism() - 1),
      maxBatchSize: e.INFERENCE_MAX_BATCH,
      maxWaitMs: e.INFERENCE_MAX_WAIT_MS,
      maxQueueDepth: e.INFERENCE_MAX_QUEUE,
      batching: e.INFERENCE_BATCHING,
      // auto: tensorflow (the native binding, when `npm run setup:native` built it), else wasm, else cpu.
      backend: e.INFERENCE_BACKEND,
      cacheBytes: e.MODEL_CACHE_BYTES,
      artifactCacheBytes: e.ARTIFACT_CACHE_BYTES,
      maxParameters: e.MODEL_MAX_PARAMETERS,
      // 16 MB of float32 per instance and layer (a 224×224×64 feature map is 3.2 M values): a full batch of 64
      // takes 1 GB per layer output, within the 4 GB a wasm worker can address.
      maxActivationValues: e.MODEL_MAX_ACTIVATION_VALUES,
    },
    models: {
      artifactMaxBytes: e.ARTIFACT_MAX_BYTES,
      maxInstances: e.PREDICT_MAX_INSTANCES,
      maxStringLength: e.PREDICT_MAX_STRING_LENGTH,
      // Deeper than any legal instance (shapes have at most 4 dimensions) and far below the stack limit.
      maxInputDepth: e.PREDICT_MAX_INPUT_DEPTH,
      // GraphQL completes and serialises ~100,000 floats in 30–50 ms of main-thread time (measured); 25,000
      // (~0.5 MB of JSON) stay well under the 20 ms a call may take.
      maxOutputValues: e.PREDICT_MAX_OUTPUT_VALUES,
      // Checked from the PNG header before decoding: decoded RGBA takes 4 bytes a pixel.
      maxImagePixels: e.PREDICT_MAX_IMAGE_PIXELS,
      maxImagePixelsPerCall: e.PREDICT_MAX_IMAGE_PIXELS_PER_CALL,
      maxImageBytesPerCall: e.PREDICT_MAX_IMAGE_BYTES_PER_CALL,
      preprocessingWorkers: e.PREPROCESSING_WORKERS,
      // A consumer holds at most one live contract per plan: this bounds one consumer's contracts that an alias
      // move reacts to (and lists in its upgrade.available).
      maxActivePlans: e.MODEL_MAX_ACTIVE_PLANS,
    },
    datasets: {
      maxBytes: e.DATASET_MAX_BYTES,
      maxRows: e.DATASET_MAX_ROWS,
      // One JSONL line is parsed in one event-loop turn: 1 MiB of JSON parses in a few ms.
      maxLineBytes: e.DATASET_MAX_LINE_BYTES,
    },
    explanations: {
      // explain calls one user (owners included: they explain free) runs at once on this server; past it
      // RATE_LIMITED. Each call holds a small fixed share of the inference queue, so a few users cannot fill it.
      maxConcurrentPerUser: e.EXPLAIN_MAX_CONCURRENT_PER_USER,
      // Attributions answered in one call (one per input value of each instance): one 224×224×3 image fits; the
      // answer is serialised on the event loop, so this bounds that turn (~10 ms).
      maxOutputValues: e.EXPLAIN_MAX_OUTPUT_VALUES,
    },
    evaluation: {
      // Examples per batch through the inference engine, per progress write and per metered reservation.
      chunkSize: e.EVALUATION_CHUNK_SIZE,
      // Runs QUEUED or RUNNING at once, per user and over all servers of the database.
      maxRunningPerUser: e.EVALUATION_MAX_RUNNING_PER_USER,
      maxRunning: e.EVALUATION_MAX_RUNNING,
    },
    batch: {
      // Rows per engine batch, per metered reservation, per results row and per job.
      chunkSize: e.BATCH_CHUNK_SIZE,
      // Chunks this replica runs at once, over all batches: batches share the inference workers with predict. 0: none
      // (a replica that only serves calls; others run the batches).
      maxConcurrentChunks: e.BATCH_MAX_CONCURRENT_CHUNKS,
      // A chunk's job running longer is presumed dead (its server killed) and run again.
      chunkTimeoutSeconds: e.BATCH_CHUNK_TIMEOUT_SECONDS,
      resultsTtlDays: e.BATCH_RESULTS_TTL_DAYS,
      // Batches QUEUED or RUNNING at once per user.
      maxActivePerUser: e.BATCH_MAX_ACTIVE_PER_USER,
    },
    jobs: {
      // An idle worker's wait for work sent by another replica (work sent here wakes this replica's worker at once).
      pollingIntervalSeconds: e.JOBS_POLLING_INTERVAL_SECONDS,
      // The longest a job of a dead process waits past its timeout before it is retried elsewhere.
      maintenanceIntervalSeconds: e.JOBS_MAINTENANCE_INTERVAL_SECONDS,
    },
    webhooks: {
      // Deliver to loopback, private, link-local and metadata addresses (tests, or a private deployment).
      allowPrivateNetworks: e.WEBHOOK_ALLOW_PRIVATE_NETWORKS,
      // Seconds before each retry of a delivery (the first attempt is immediate): Standard Webhooks' schedule, 8
      // attempts over ~27.5 h.
      retryScheduleSeconds: e.WEBHOOK_RETRY_SCHEDULE_SECONDS,
      maxEndpointsPerAccount: e.WEBHOOK_MAX_ENDPOINTS_PER_ACCOUNT,
      // An endpoint is disabled when this many attempts in a row failed, the first at least that long ago.
      disableAfterFailures: e.WEBHOOK_DISABLE_AFTER_FAILURES,
      disableAfterSeconds: e.WEBHOOK_DISABLE_AFTER_SECONDS,
      // How often stranded deliveries are given a job again and expired events deleted (any replica may do it).
      sweepIntervalSeconds: e.WEBHOOK_SWEEP_INTERVAL_SECONDS,
      // Attempts this server makes at once: mostly waiting on receivers (up to 10 s each), so many.
      deliveryConcurrency: e.WEBHOOK_DELIVERY_CONCURRENCY,
      // Of those, at most this many for one account, so that its slow receivers cannot hold every worker.
      maxInFlightPerAccount: e.WEBHOOK_MAX_IN_FLIGHT_PER_ACCOUNT,
      // Dispatched events, with their deliveries and attempts, are deleted this long after they happened.
      eventsRetentionDays: e.EVENTS_RETENTION_DAYS,
    },
    asyncPredictions: {
      // QUEUED or RUNNING at once per user, over all servers: each holds its reserved units and a sealed input.
      maxQueuedPerUser: e.ASYNC_PREDICTIONS_MAX_QUEUED_PER_USER,
      // Predictions this server runs at once (0: it serves the API and leaves the runs to other replicas).
      workers: e.ASYNC_PREDICTIONS_WORKERS,
      // A run longer than this is presumed dead (its server killed) and retried, on any replica.
      timeoutSeconds: e.ASYNC_PREDICTIONS_TIMEOUT_SECONDS,
      outputTtlHours: e.PREDICTION_OUTPUT_TTL_HOURS,
    },
  };
}

export function loadConfig(): Config {
  applyTensorflowDefaults();
  return parseConfig(process.env, process.stdout.isTTY === true);
}

/**
 * libtensorflow (the tensorflow inference backend) reads these from the process environment when it is first loaded,
 * so they are set, unless already set, before any engine starts. Errors only in its log, not its start-up notices.
 * One thread per worker, like wasm: by default each worker's TensorFlow spreads over every core, the one the event
 * loop keeps included (INFERENCE_WORKERS is CPUs − 1).
 */
export function applyTensorflowDefaults(): void {
  process.env.TF_CPP_MIN_LOG_LEVEL ??= '2';
  process.env.TF_NUM_INTRAOP_THREADS ??= '1';
  process.env.TF_NUM_INTEROP_THREADS ??= '1';
}
