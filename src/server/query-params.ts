// Query parameters of the plain HTTP routes.
import { BadUserInputError } from './errors.js';

/** A query parameter given at most once; a repeated one is refused rather than one of its values picked. */
export function queryParam(query: URLSearchParams, name: string): string | undefined {
  const values = query.getAll(name);
  if (values.length > 1) throw new BadUserInputError(`${name} may be given once`, name);
  return values[0];
}
