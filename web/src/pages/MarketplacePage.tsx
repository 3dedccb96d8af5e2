// The marketplace: search and filters live in the URL's query string (a search can be shared, and the back
// button undoes a filter); one GraphQL request per page of cards, each card's fields selected in it.
import { useEffect, useState, type FormEvent } from 'react';
import { Link, useSearchParams } from 'react-router-dom';
import { useGql } from '../api/hooks';
import { ErrorMessage } from '../components/ErrorMessage';
import { Pager, useCursor } from '../components/Pager';
import { TagLinks } from '../components/TagLinks';
import { graphql } from '../gql';
import type { ModelFilter } from '../gql/graphql';
import { isModelTask, TASK_NAMES } from '../models/tasks';

const PAGE_SIZE = 12;
// The API's own limits: at most 10 search words are used; tags are at most 32 characters.
const MAX_SEARCH_LENGTH = 200;
const MAX_TAG_LENGTH = 32;

const Marketplace = graphql(`
  query Marketplace($filter: ModelFilter, $first: Int, $after: String) {
    models(filter: $filter, first: $first, after: $after) {
      edges {
        node {
          id
          slug
          name
          description
          task
          tags
          owner {
            id
            displayName
          }
          latest: version(version: "latest") {
            version
          }
        }
      }
      pageInfo {
        ...PagerPageInfo
      }
    }
  }
`);

/** The filter the URL's query string names (?q=…&task=…&tag=…&owner=…). */
function filterOf(params: URLSearchParams): ModelFilter {
  const task = params.get('task');
  return {
    search: params.get('q') || null,
    task: isModelTask(task) ? task : null,
    tag: params.get('tag') || null,
    owner: params.get('owner') || null,
  };
}

export function MarketplacePage() {
  const [params, setParams] = useSearchParams();
  const filter = filterOf(params);
  const [search, setSearch] = useState(filter.search ?? '');
  const [tag, setTag] = useState(filter.tag ?? '');
  // Back and forward change the URL under the form: the fields follow it.
  useEffect(() => {
    setSearch(params.get('q') ?? '');
    setTag(params.get('tag') ?? '');
  }, [params]);

  function apply(changes: Record<string, string>) {
    const next = new URLSearchParams(params);
    for (const [name, value] of Object.entries(changes)) {
      if (value.trim()) next.set(name, value.trim());
      else next.delete(name);
    }
    setParams(next);
  }

  function submit(event: FormEvent) {
    event.preventDefault();
    apply({ q: search, tag });
  }

  return (
    <>
      <h1>Marketplace</h1>
      <form className="filters" role="search" aria-label="Models" onSubmit={submit}>
        <label>
          Search
          <input
            type="search"
            maxLength={MAX_SEARCH_LENGTH}
            value={search}
            onChange={(event) => setSearch(event.target.value)}
          />
        </label>
        <label>
          Task
          <select value={filter.task ?? ''} onChange={(event) => apply({ task: event.target.value })}>
            <option value="">Any task</option>
            {Object.entries(TASK_NAMES).map(([task, name]) => (
              <option key={task} value={task}>
                {name}
              </option>
            ))}
          </select>
        </label>
        <label>
          Tag
          <input maxLength={MAX_TAG_LENGTH} value={tag} onChange={(event) => setTag(event.target.value)} />
        </label>
        <button type="submit">Search</button>
      </form>
      {/* A new filter starts again at the first page: the key drops the old cursor stack. */}
      <ModelCards key={params.toString()} filter={filter} onClearOwner={() => apply({ owner: '' })} />
    </>
  );
}

function ModelCards({ filter, onClearOwner }: { filter: ModelFilter; onClearOwner: () => void }) {
  const cursor = useCursor();
  const { data, error, isPending } = useGql(Marketplace, { filter, first: PAGE_SIZE, after: cursor.after });
  const models = data?.models.edges.map((edge) => edge.node) ?? [];
  return (
    <section aria-label="Models found" aria-busy={isPending}>
      <ErrorMessage error={error} />
      {isPending && <p>Loading models…</p>}
      {filter.owner && (
        <p className="owner-filter">
          {/* No query looks an account up by id: the owner's name comes with its models' cards. */}
          <strong>Models by {models[0]?.owner.displayName ?? 'this owner'}</strong>
          <button type="button" className="secondary" onClick={onClearOwner}>
            Show every owner&apos;s models
          </button>
        </p>
      )}
      {data && models.length === 0 && <p>No model matches this search.</p>}
      <ul className="cards">
        {models.map((model) => (
          <li key={model.id} className="card model-card">
            <h2>
              <Link to={`/models/${model.slug}`}>{model.name}</Link>
            </h2>
            <p className="model-card-task">
              {TASK_NAMES[model.task]}
              {model.latest ? ` · v${model.latest.version}` : ' · no version yet'}
            </p>
            <p className="model-card-description">{model.description}</p>
            <TagLinks tags={model.tags} />
            <p>
              by{' '}
              <Link
                to={`/?owner=${encodeURIComponent(model.owner.id)}`}
                aria-label={`Models by ${model.owner.displayName}`}
              >
                {model.owner.displayName}
              </Link>
            </p>
          </li>
        ))}
      </ul>
      <Pager pageInfo={data?.models.pageInfo} cursor={cursor} label="Models" />
    </section>
  );
}
