// What a GraphQL request selects under a field, read at the field's resolver: so that a root field can refuse a
// selection it cannot serve before anything runs (refusals belong at the root, not inside an answer).
import { Kind, type GraphQLResolveInfo, type SelectionNode } from 'graphql';

/** Whether the selection of `info`'s field reaches `path` (field names, one per level; fragments followed). */
export function selects(info: GraphQLResolveInfo, path: readonly string[]): boolean {
  const reaches = (selections: readonly SelectionNode[], rest: readonly string[]): boolean =>
    selections.some((selection) => {
      if (selection.kind === Kind.FIELD) {
        if (selection.name.value !== rest[0]) return false;
        return (
          rest.length === 1 || (!!selection.selectionSet && reaches(selection.selectionSet.selections, rest.slice(1)))
        );
      }
      if (selection.kind === Kind.INLINE_FRAGMENT) return reaches(selection.selectionSet.selections, rest);
      const fragment = info.fragments[selection.name.value];
      return !!fragment && reaches(fragment.selectionSet.selections, rest);
    });
  return info.fieldNodes.some((node) => !!node.selectionSet && reaches(node.selectionSet.selections, path));
}
