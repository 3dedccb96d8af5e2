// The composition root: every long-lived service, built once per server from config and the database.
import path from 'node:path';
import type { Registry } from 'prom-client';
import { AccessTokens } from '../auth/access-tokens.js';
import { ApiKeyService } from '../auth/api-keys.js';
import { UsersDirectory } from '../auth/users-directory.js';
import { AuthService } from '../auth/auth-service.js';
import { Authenticator } from '../auth/authenticator.js';
import { LoginThrottle } from '../auth/login-throttle.js';
import { SigningKeyRing } from '../auth/signing-keys.js';
import { AuditService } from '../audit/audit-service.js';
import type { Config } from '../config.js';
import { ChangeFeed } from '../db/change-feed.js';
import type { Database } from '../db/database.js';
import { ServerInstance } from '../db/server-instance.js';
import { DatasetsService } from '../evaluation/datasets-service.js';
import { EvaluationsService } from '../evaluation/evaluations-service.js';
import { AccountEvents } from '../events/account-events.js';
import { EventOutbox } from '../events/outbox.js';
import { ExplainService } from '../explanations/explain-service.js';
import { InferenceEngine } from '../inference/engine.js';
import { JobQueue } from '../jobs/job-queue.js';
import { JobsAdmin } from '../jobs/jobs-admin.js';
import { OptimizationService } from '../lifecycle/optimization-service.js';
import { ArtifactOptimizer } from '../lifecycle/optimizer.js';
import { ArtifactService } from '../models/artifact-service.js';
import { PostgresArtifactStorage } from '../models/artifact-storage.js';
import { ModelsService } from '../models/models-service.js';
import { VariantStore } from '../models/variants.js';
import { LicenceCertificates } from '../licensing/certificates.js';
import { ContractExpiryNotices } from '../licensing/contract-expiry.js';
import { ContractsService } from '../licensing/contracts-service.js';
import { PlansService } from '../licensing/plans-service.js';
import { LicensingSweep } from '../licensing/licensing-sweep.js';
import { LicenceAuthorizer } from '../licensing/predict-authorizer.js';
import { UpgradesService } from '../licensing/upgrades-service.js';
import { MeteringService } from '../metering/metering-service.js';
import { UsageService } from '../metering/usage-service.js';
import { AsyncPredictionsService } from '../predictions/async-predictions-service.js';
import { InputEncoder } from '../predictions/input-encoding.js';
import { BatchPredictionsService } from '../predictions/batch-predictions-service.js';
import { OpenInference } from '../predictions/open-inference.js';
import { PredictService } from '../predictions/predict-service.js';
import { PreprocessingPool } from '../preprocessing/preprocessing-pool.js';
import { ServingCatalog } from '../predictions/serving-catalog.js';
import type { SecretBox } from '../security/secret-box.js';
import { WatermarkService } from '../watermark/watermark-service.js';
import { WebhookDeliveries } from '../webhooks/deliveries.js';
import { WebhooksService } from '../webhooks/webhooks-service.js';
import type { Logger } from './logger.js';

export interface Services {
  audit: AuditService;
  auth: AuthService;
  apiKeys: ApiKeyService;
  users: UsersDirectory;
  authenticator: Authenticator;
  keyRing: SigningKeyRing;
  engine: InferenceEngine;
  artifacts: ArtifactService;
  variants: VariantStore;
  models: ModelsService;
  predictions: PredictService;
  explanations: ExplainService;
  openInference: OpenInference;
  plans: PlansService;
  contracts: ContractsService;
  upgrades: UpgradesService;
  /** Catches up due expiry notices and grace upgrades whose one-off job is missing. */
  licensingSweep: LicensingSweep;
  certificates: LicenceCertificates;
  metering: MeteringService;
  usage: UsageService;
  watermarks: WatermarkService;
  datasets: DatasetsService;
  evaluations: EvaluationsService;
  jobs: JobQueue;
  events: EventOutbox;
  webhooks: WebhooksService;
  jobsAdmin: JobsAdmin;
  accountEvents: AccountEvents;
  asyncPredictions: AsyncPredictionsService;
  batchPredictions: BatchPredictionsService;
}

/**
 * How long a stop waits for this replica's running jobs; one still running then is failed at once (pg-boss's
 * failWip) and retried by any replica after its retry delay, while its handler here may still be finishing.
 */
const JOBS_STOP_BUDGET_MS = 1_500;

type RunningServices = Services & { close(): Promise<void>; closeMetering(): Promise<void> };

export async function createServices(
  config: Config,
  db: Database,
  secrets: SecretBox,
  registry: Registry,
  logger: Logger,
): Promise<RunningServices> {
  // Before any cache it feeds: they subscribe as they are built. Its own connection outlives the pool, so a start
  // that fails later closes it here.
  const changes = await ChangeFeed.start(db.pool, logger, registry);
  let jobs: JobQueue | undefined;
  try {
    jobs = await JobQueue.start(db.pool, logger, config.jobs);
    return await assembleServices(config, db, secrets, registry, logger, changes, jobs);
  } catch (error) {
    await jobs?.stop(0);
    await changes.close();
    throw error;
  }
}

async function assembleServices(
  config: Config,
  db: Database,
  secrets: SecretBox,
  registry: Registry,
  logger: Logger,
  changes: ChangeFeed,
  jobs: JobQueue,
): Promise<RunningServices> {
  const audit = new AuditService(db.prisma, db.pool);
  const events = new EventOutbox(db.pool, jobs);
  const keyRing = await SigningKeyRing.open(db.prisma, secrets, config.auth.configuredPrivateKeyPem);
  const tokens = new AccessTokens(
    keyRing,
    {
      issuer: config.auth.issuer,
      audience: config.auth.audience,
      ttlSeconds: config.auth.accessTokenTtlSeconds,
    },
    changes,
  );
  const throttle = new LoginThrottle(db.pool, {
    maxFailuresPerAccount: config.auth.loginMaxFailuresPerAccount,
    lockSeconds: config.auth.loginLockSeconds,
    maxFailuresPerIp: config.auth.loginMaxFailuresPerIp,
    maxSignUpsPerIp: config.auth.signUpMaxPerIp,
  });
  const auth = new AuthService(db.prisma, db.pool, audit, tokens, throttle, changes, {
    scrypt: { log2N: config.auth.scryptLog2N, r: 8, p: 1 },
    refreshTokenTtlDays: config.auth.refreshTokenTtlDays,
  });
  const apiKeys = new ApiKeyService(db.prisma, db.pool, audit, changes, config.auth.apiKeyUsageFlushMs);
  const authenticator = new Authenticator(auth, apiKeys);

  const engine = await InferenceEngine.start({
    ...config.inference,
    artifactDir: path.join(config.dataDir, 'artifact-cache'),
    registry,
    onWorkerError: (error) => logger.error({ err: error }, 'inference worker died'),
  });
  const artifacts = new ArtifactService(db.prisma, new PostgresArtifactStorage(db.prisma), engine, audit);
  const variants = new VariantStore(db.prisma, artifacts);
  const watermarks = new WatermarkService(db.pool, artifacts, variants, engine, audit, secrets);
  // A call's images (or large texts) are one task; 16 calls a worker may wait, past that callers are told to retry
  // (OVERLOADED) rather than queue for seconds.
  const preprocessing = new PreprocessingPool(
    config.models.preprocessingWorkers,
    16 * config.models.preprocessingWorkers,
  );
  const encoder = new InputEncoder(preprocessing, {
    maxInstances: config.models.maxInstances,
    maxStringLength: config.models.maxStringLength,
    maxDepth: config.models.maxInputDepth,
    maxOutputValues: config.models.maxOutputValues,
    maxImagePixels: config.models.maxImagePixels,
    maxImagePixelsPerCall: config.models.maxImagePixelsPerCall,
    maxImageBytesPerCall: config.models.maxImageBytesPerCall,
  });
  const optimizer = new ArtifactOptimizer(config.inference.maxParameters);
  const optimizations = new OptimizationService(optimizer, engine, watermarks);
  const upgrades = new UpgradesService(db.prisma, audit, events, jobs, changes);
  const models = new ModelsService(
    db.prisma,
    changes,
    audit,
    artifacts,
    variants,
    watermarks,
    encoder,
    optimizations,
    upgrades,
    logger,
  );
  const authorizer = new LicenceAuthorizer(db.pool, changes);
  const catalog = new ServingCatalog(models, variants, changes, authorizer);
  const plans = new PlansService(db.prisma, audit, { maxActivePlans: config.models.maxActivePlans });
  const expiryNotices = new ContractExpiryNotices(db.prisma, jobs, events);
  const contracts = new ContractsService(db.prisma, audit, plans, changes, upgrades, events, expiryNotices);
  const certificates = new LicenceCertificates(db.prisma, keyRing, config.auth.issuer);
  const instance = await ServerInstance.register(db.pool, logger);
  const metering = new MeteringService(db.pool, instance, logger, config.leaseSweepIntervalMs);
  // What servers that stopped (this DATA_DIR's previous process among them) left held goes back before serving.
  await metering.sweep();
  const usage = new UsageService(db.pool, audit);
  const predictions = new PredictService(catalog, artifacts, engine, authorizer, metering, encoder);
  const datasets = new DatasetsService(db.prisma, db.pool, audit, config.datasets);
  // Evaluations and batches read datasets: the same row and line limits as uploads.
  const datasetLimits = { maxRows: config.datasets.maxRows, maxLineBytes: config.datasets.maxLineBytes };
  const evaluations = new EvaluationsService(
    db.prisma,
    db.pool,
    catalog,
    artifacts,
    engine,
    encoder,
    authorizer,
    metering,
    datasets,
    audit,
    instance,
    logger,
    { ...config.evaluation, ...datasetLimits },
    config.leaseSweepIntervalMs,
  );
  const explanations = new ExplainService(
    catalog,
    artifacts,
    engine,
    authorizer,
    metering,
    encoder,
    preprocessing,
    engine,
    config.explanations,
  );
  // Runs of servers that stopped (this DATA_DIR's previous process among them) are marked interrupted.
  await evaluations.sweep();
  const openInference = new OpenInference(catalog, models, predictions, {
    maxInstances: config.models.maxInstances,
    maxDepth: config.models.maxInputDepth,
  });
  const deliveries = new WebhookDeliveries(db.prisma, db.pool, jobs, events, audit, secrets, config.webhooks, logger);
  await deliveries.start();
  const webhooks = new WebhooksService(db.prisma, db.pool, audit, secrets, deliveries, config.webhooks);
  const asyncPredictions = new AsyncPredictionsService(
    db.pool,
    catalog,
    predictions,
    metering,
    jobs,
    events,
    audit,
    secrets,
    logger,
    config.asyncPredictions,
  );
  const batchPredictions = new BatchPredictionsService(
    db.prisma,
    db.pool,
    catalog,
    artifacts,
    engine,
    encoder,
    authorizer,
    metering,
    datasets,
    audit,
    jobs,
    events,
    secrets,
    instance,
    logger,
    { ...config.batch, ...datasetLimits },
  );
  // Last: a job may use any service above (a prediction's job emits events: their queue is declared first).
  await upgrades.start();
  await expiryNotices.start();
  const licensingSweep = new LicensingSweep(expiryNotices, upgrades, config.licensingSweepIntervalSeconds, logger);
  licensingSweep.start();
  await batchPredictions.start();
  await events.start();
  await asyncPredictions.start();
  logger.info({ backend: engine.backend, workers: config.inference.workers }, 'inference engine ready');

  return {
    audit,
    auth,
    apiKeys,
    users: new UsersDirectory(db.prisma, audit),
    authenticator,
    keyRing,
    engine,
    artifacts,
    variants,
    models,
    predictions,
    explanations,
    openInference,
    plans,
    contracts,
    upgrades,
    licensingSweep,
    certificates,
    metering,
    usage,
    watermarks,
    datasets,
    evaluations,
    jobs,
    events,
    webhooks,
    jobsAdmin: new JobsAdmin(jobs),
    accountEvents: new AccountEvents(db.prisma, audit),
    asyncPredictions,
    batchPredictions,
    /** Stops the services that run calls (inference engine, workers, timers); metering stays for their records. */
    async close() {
      keyRing.close();
      asyncPredictions.close();
      batchPredictions.close();
      metering.stopWaiting();
      // Evaluations end after their chunk in flight (run and recorded), before the engine closes under them.
      await evaluations.close().catch((error: unknown) => logger.error({ err: error }, 'closing evaluations failed'));
      await deliveries.close();
      await licensingSweep.close();
      // Jobs in progress finish (or are failed, to be retried elsewhere) before the engine closes.
      await jobs
        .stop(JOBS_STOP_BUDGET_MS)
        .catch((error: unknown) => logger.error({ err: error }, 'stopping jobs failed'));
      // Every part is closed even when one fails; the first failure is reported.
      const closed = await Promise.allSettled([
        changes.close(),
        watermarks.close(),
        optimizer.close(),
        apiKeys.close(),
        engine.close(),
        preprocessing.close(),
      ]);
      const failed = closed.find((outcome) => outcome.status === 'rejected');
      if (failed) throw failed.reason;
    },
    /**
     * Last, once no call is left and while the database is open: metering gives back what calls whose record
     * failed held, then the liveness lock goes (what is still held is then any server's to give back).
     */
    async closeMetering() {
      try {
        await metering.close();
      } finally {
        await instance.close();
      }
    },
  };
}
