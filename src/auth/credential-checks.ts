// How many credential checks one HTTP request asks for, counted before any resolver runs (issue 9 row 12:
// a batch of aliased log-ins made one request cost 150 scrypt runs). Counted across every operation of a
// batch, aliases, inline fragments and fragment spreads included.
import { Kind, parse, type DocumentNode, type FragmentDefinitionNode, type SelectionSetNode } from 'graphql';

/**
 * The mutation fields that check a credential: `signUp` and `logIn` run scrypt, `refreshSession` looks up
 * and rotates a refresh token. These names exist on the Mutation type only.
 */
const CREDENTIAL_FIELDS = ['logIn', 'signUp', 'refreshSession'] as const;

/**
 * The checks a GraphQL POST body (one operation or a batch) asks for. A document whose text names none of
 * the fields is not parsed: a few substring searches, so ordinary requests cost nothing measurable. Bodies
 * Apollo will refuse anyway (no query text, a parse error) count as 0.
 */
export function countCredentialChecks(body: unknown, maxTokens: number): number {
  let checks = 0;
  for (const operation of Array.isArray(body) ? body : [body]) {
    const { query, operationName } = (operation ?? {}) as { query?: unknown; operationName?: unknown };
    if (typeof query !== 'string' || !CREDENTIAL_FIELDS.some((name) => query.includes(name))) continue;
    let document: DocumentNode;
    try {
      document = parse(query, { maxTokens });
    } catch {
      continue;
    }
    checks += countInDocument(document, typeof operationName === 'string' ? operationName : undefined);
  }
  return checks;
}

function countInDocument(document: DocumentNode, operationName: string | undefined): number {
  const fragments = new Map<string, FragmentDefinitionNode>();
  for (const definition of document.definitions) {
    if (definition.kind === Kind.FRAGMENT_DEFINITION) fragments.set(definition.name.value, definition);
  }
  let checks = 0;
  for (const definition of document.definitions) {
    if (definition.kind !== Kind.OPERATION_DEFINITION || definition.operation !== 'mutation') continue;
    if (operationName !== undefined && definition.name?.value !== operationName) continue;
    // Root fields with one response key run once (GraphQL merges them); each alias runs again.
    const responseKeys = new Set<string>();
    const expanded = new Set<string>();
    const pending: SelectionSetNode[] = [definition.selectionSet];
    for (let set = pending.pop(); set; set = pending.pop()) {
      for (const selection of set.selections) {
        if (selection.kind === Kind.FIELD) {
          if ((CREDENTIAL_FIELDS as readonly string[]).includes(selection.name.value)) {
            responseKeys.add(selection.alias?.value ?? selection.name.value);
          }
        } else if (selection.kind === Kind.INLINE_FRAGMENT) {
          pending.push(selection.selectionSet);
        } else {
          // Not yet validated: a spread may name a missing fragment or form a cycle.
          const fragment = fragments.get(selection.name.value);
          if (fragment && !expanded.has(fragment.name.value)) {
            expanded.add(fragment.name.value);
            pending.push(fragment.selectionSet);
          }
        }
      }
    }
    checks += responseKeys.size;
  }
  return checks;
}
