// Cursor pagination for a connection: the page's cursor stack lives in the component that owns the query.
import { useState } from 'react';
import { graphql } from '../gql';
import type { PagerPageInfoFragment } from '../gql/graphql';

/** What the pager needs of a connection's pageInfo; every paged query selects it. */
export const PagerPageInfo = graphql(`
  fragment PagerPageInfo on PageInfo {
    hasNextPage
    endCursor
  }
`);

/** The `after` cursor of the current page and the controls' state; `reset` goes back to the first page. */
export function useCursor() {
  const [stack, setStack] = useState<string[]>([]);
  return {
    after: stack.at(-1) ?? null,
    page: stack.length + 1,
    next: (cursor: string) => setStack((s) => [...s, cursor]),
    previous: () => setStack((s) => s.slice(0, -1)),
    reset: () => setStack([]),
  };
}

export function Pager({
  pageInfo,
  cursor,
  label,
}: {
  pageInfo?: PagerPageInfoFragment;
  cursor: ReturnType<typeof useCursor>;
  label: string;
}) {
  if (!pageInfo || (cursor.page === 1 && !pageInfo.hasNextPage)) return null;
  return (
    <nav className="pager" aria-label={`${label} pages`}>
      <button type="button" className="secondary" disabled={cursor.page === 1} onClick={cursor.previous}>
        Previous
      </button>
      <span aria-live="polite">Page {cursor.page}</span>
      <button
        type="button"
        className="secondary"
        disabled={!pageInfo.hasNextPage || !pageInfo.endCursor}
        onClick={() => pageInfo.endCursor && cursor.next(pageInfo.endCursor)}
      >
        Next
      </button>
    </nav>
  );
}
