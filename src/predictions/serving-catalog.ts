// What `predict` needs to find on every call (model, resolved version, parsed signature), cached so the hot
// path does not query the catalog each time. Versions are immutable, so their parsed signatures are kept
// for good; the slug+alias → version mapping is kept until the change feed reports any change of a model, a
// version or an alias (on this replica at once, on the others as soon as the notification arrives), and is not
// used while the feed is not trusted.
import { LRUCache } from 'lru-cache';
import type { Actor } from '../auth/principal.js';
import type { ChangeFeed } from '../db/change-feed.js';
import { FeedCache } from '../db/feed-cache.js';
import type { Model, ModelVersion } from '../generated/prisma/client.js';
import type { LicensedUse } from '../licensing/predict-authorizer.js';
import { canView } from '../models/model-policy.js';
import type { ModelsService } from '../models/models-service.js';
import { storedSignature, type Signature } from '../models/signature.js';
import type { VariantStore } from '../models/variants.js';
import { NotFoundError } from '../server/errors.js';

export interface ServedVersion {
  version: ModelVersion;
  /** The artifact's content hash: the inference engine's model key. */
  sha256: string;
  signature: Signature;
}

/** A model, and the version a reference resolves to (null when none does). */
export interface ServingTarget {
  model: Model;
  served: ServedVersion | null;
}

/** Which version a licensee's contract pins for a reference (licensing's LicenceAuthorizer). */
export interface VersionPins {
  pinnedVersion(
    actor: Actor,
    model: Model,
    ref: string | null | undefined,
    requested: ModelVersion | null,
    contractId: string | null | undefined,
    use: LicensedUse,
  ): Promise<{ version: string; contractId: string } | null>;
}

/** A call's model and version: the version number or alias it names, if any, and the contract it names, if any. */
export interface VersionRequest {
  model: string;
  version?: string | null;
  contractId?: string | null;
}

/** What a caller is served: the model, the version, and the contract to bill (the pinning one, else the named one). */
export interface CallerTarget {
  model: Model;
  served: ServedVersion;
  contractId: string | null;
}

/** Slugs are at most 64 characters (models-service.ts); versions at most 256 (semver's own limit), aliases 32. */
const MAX_SLUG_LENGTH = 64;
const MAX_REF_LENGTH = 256;

export class ServingCatalog {
  // Catalog changes are rare and a change of one model can change what a slug resolves to (a new model takes a
  // slug that resolved to nothing): any change drops every entry.
  readonly #targets: FeedCache<{ target: ServingTarget | null }>;
  readonly #signatures = new LRUCache<string, Signature>({ max: 1000 });

  constructor(
    private readonly models: ModelsService,
    private readonly variants: VariantStore,
    changes: ChangeFeed,
    private readonly pins: VersionPins,
  ) {
    this.#targets = new FeedCache(changes, { max: 10_000, kinds: ['m'] });
  }

  async resolve(slug: string, ref: string): Promise<ServingTarget | null> {
    // Longer than any slug or version reference can be: nothing to find, and nothing a stranger may make us keep.
    if (slug.length > MAX_SLUG_LENGTH || ref.length > MAX_REF_LENGTH) return null;
    const entry = await this.#targets.getOrLoad(JSON.stringify([slug, ref]), async () => ({
      target: await this.#load(slug, ref),
    }));
    return entry!.target;
  }

  /**
   * The version a caller is served for a request, the one rule of every path that runs a model (predict, explain,
   * Open Inference, the image route, async and batch predictions): a licensee naming no version, or the alias its
   * contract is pinned to, gets its contract's pinned version; anyone else what the reference resolves to (`latest`
   * when absent). NOT_FOUND for a model the caller may not see or a reference that resolves to nothing;
   * `onModel` learns the model first (a call's usage record names it even when the version is not found).
   */
  async servedFor(
    actor: Actor,
    request: VersionRequest,
    use: LicensedUse,
    onModel?: (model: Model) => void,
  ): Promise<CallerTarget> {
    const ref = request.version ?? 'latest';
    const requested = await this.resolve(request.model, ref);
    if (!requested || !canView(actor.principal, requested.model)) throw new NotFoundError('Model');
    onModel?.(requested.model);
    const pin = await this.pins.pinnedVersion(
      actor,
      requested.model,
      request.version,
      requested.served?.version ?? null,
      request.contractId,
      use,
    );
    const target = (pin === null ? null : await this.resolve(request.model, pin.version)) ?? requested;
    if (!target.served) throw new NotFoundError(`Version "${ref}" of ${request.model}`);
    return { model: target.model, served: target.served, contractId: pin?.contractId ?? request.contractId ?? null };
  }

  /** A version by id (immutable, so a stored answer can name it later). */
  versionById(id: string): Promise<ModelVersion> {
    return this.models.versionById(id);
  }

  /** A version by id as predict serves it (a queued call runs the version it resolved when it was made). */
  async servedById(id: string): Promise<ServedVersion> {
    return this.#served(await this.models.versionById(id));
  }

  async #load(slug: string, ref: string): Promise<ServingTarget | null> {
    const model = await this.models.findBySlug(slug);
    if (!model) return null;
    const version = await this.models.resolveVersion(model.id, ref);
    if (!version) return { model, served: null };
    return { model, served: await this.#served(version) };
  }

  async #served(version: ModelVersion): Promise<ServedVersion> {
    let signature = this.#signatures.get(version.id);
    if (!signature) {
      signature = storedSignature(version.signature);
      this.#signatures.set(version.id, signature);
    }
    // Predict serves the version's served variant (the owner-marked weights), else the upload itself.
    const sha256 = await this.variants.servedSha256(version);
    return { version, sha256, signature };
  }
}
