// A bounded LRU cache of what the database says, kept current by the change feed (change-feed.ts). It answers
// only while the feed is trusted, and it never stores a load that may have missed an invalidation: the load
// captures the cache's generation before its query, and anything that invalidates (a change heard or made here,
// the feed lost or reconnected) moves the generation on, so a load that overlapped it is answered but not kept.
import { LRUCache } from 'lru-cache';
import type { ChangeFeed, ChangeKind, FeedSubscriber } from './change-feed.js';

export interface FeedCacheOptions<V> {
  /** Entries kept, least recently used dropped first. */
  max: number;
  /** The kinds of change that make entries stale. */
  kinds: readonly ChangeKind[];
  /**
   * The changes (`<kind>:<id>`) that make this entry stale. Without it, any change of `kinds` drops every entry
   * (for what changes rarely and cannot be named by a key, like the serving catalog).
   */
  dependsOn?: (value: V, key: string) => string[];
}

export class FeedCache<V extends object> implements FeedSubscriber {
  readonly kinds: readonly ChangeKind[];
  readonly #entries: LRUCache<string, V>;
  readonly #dependsOn: ((value: V, key: string) => string[]) | undefined;
  /** Keys by the changes that make them stale. */
  readonly #keysByChange = new Map<string, Set<string>>();
  #generation = 0;

  constructor(
    private readonly feed: ChangeFeed,
    options: FeedCacheOptions<V>,
  ) {
    this.kinds = options.kinds;
    this.#dependsOn = options.dependsOn;
    this.#entries = new LRUCache<string, V>({
      max: options.max,
      dispose: this.#dependsOn ? (value, key) => this.#unindex(key, value) : undefined,
    });
    feed.subscribe(this);
  }

  /** The cached value; nothing while the feed is not trusted. */
  get(key: string): V | undefined {
    return this.feed.trusted ? this.#entries.get(key) : undefined;
  }

  /** The cached value, or `load`'s (undefined: nothing to keep, e.g. no such row), kept when no change overlapped it. */
  getOrLoad(key: string, load: () => Promise<V | undefined>): Promise<V | undefined> {
    const cached = this.get(key);
    return cached === undefined ? this.load(key, load) : Promise.resolve(cached);
  }

  /** `load`'s value, read now and kept when no change overlapped it. */
  async load(key: string, load: () => Promise<V | undefined>): Promise<V | undefined> {
    const generation = this.#generation;
    const loaded = await load();
    if (loaded !== undefined) this.#keep(key, loaded, generation);
    return loaded;
  }

  invalidate(change: string): void {
    this.#generation += 1;
    if (!this.#dependsOn) {
      this.#entries.clear();
      return;
    }
    const keys = this.#keysByChange.get(change);
    if (!keys) return;
    for (const key of [...keys]) this.#entries.delete(key);
  }

  clear(): void {
    this.#generation += 1;
    this.#keysByChange.clear();
    this.#entries.clear();
  }

  /** How many entries are kept (for tests and metrics). */
  get size(): number {
    return this.#entries.size;
  }

  #keep(key: string, value: V, loadedAt: number): void {
    if (loadedAt !== this.#generation || !this.feed.trusted) return;
    this.#entries.set(key, value);
    for (const change of this.#dependsOn?.(value, key) ?? []) {
      let keys = this.#keysByChange.get(change);
      if (!keys) this.#keysByChange.set(change, (keys = new Set()));
      keys.add(key);
    }
  }

  #unindex(key: string, value: V): void {
    for (const change of this.#dependsOn!(value, key)) {
      const keys = this.#keysByChange.get(change);
      if (!keys) continue;
      keys.delete(key);
      if (keys.size === 0) this.#keysByChange.delete(change);
    }
  }
}
