// The one gate of the console's pages: what a page shows needs a session (and for some pages an owner's or an
// admin's); anyone else is told why, and where to log in, and the page's queries never run. The API refuses them
// anyway: this only saves a page of errors (or, worse, figures under a title that does not describe them).
import type { ReactNode } from 'react';
import { Link, useLocation } from 'react-router-dom';
import type { SessionUser } from '../api/client';
import { useSession } from '../api/hooks';

export type RequiredRole = 'SIGNED_IN' | 'OWNER' | 'ADMIN';

function allows(required: RequiredRole, user: SessionUser): boolean {
  if (required === 'ADMIN') return user.role === 'ADMIN';
  if (required === 'OWNER') return user.role === 'OWNER' || user.role === 'ADMIN';
  return true;
}

// Who the page is for, and the sentence for a signed-in account that is not one of them.
const AUDIENCES: Record<Exclude<RequiredRole, 'SIGNED_IN'>, { who: string; account: string; refusal: string }> = {
  OWNER: { who: 'model owners', account: "a model owner's account", refusal: 'your account is a consumer account' },
  ADMIN: { who: 'admins', account: "an admin's account", refusal: 'your account is not an admin account' },
};
export function RequireRole({
  role,
  title,
  children,
}: {
  role: RequiredRole;
  title: string;
  children: (user: SessionUser) => ReactNode;
}) {
  const { user } = useSession();
  const location = useLocation();
  if (user && allows(role, user)) return <>{children(user)}</>;
  const next = encodeURIComponent(location.pathname + location.search);
  return (
    <>
      <h1>{title}</h1>
      <p role="alert" className="error">
        {role === 'SIGNED_IN' ? (
          <>
            Please <Link to={`/login?next=${next}`}>log in</Link> to see this page.
          </>
        ) : user ? (
          `This page is for ${AUDIENCES[role].who}: ${AUDIENCES[role].refusal}.`
        ) : (
          <>
            This page is for {AUDIENCES[role].who}: please <Link to={`/login?next=${next}`}>log in</Link> with{' '}
            {AUDIENCES[role].account}.
          </>
        )}
      </p>
    </>
  );
}
