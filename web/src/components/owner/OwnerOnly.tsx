// The owner pages' gate: what they show needs an owner's (or admin's) session; anyone else is told why and where
// to log in. The API refuses them anyway: this only saves a page of errors.
import type { ReactNode } from 'react';
import { Link } from 'react-router-dom';
import { useSession } from '../../api/hooks';

export function OwnerOnly({ title, children }: { title: string; children: (userId: string) => ReactNode }) {
  const { user } = useSession();
  if (user && (user.role === 'OWNER' || user.role === 'ADMIN')) return <>{children(user.id)}</>;
  return (
    <>
      <h1>{title}</h1>
      <p role="alert" className="error">
        {user ? (
          'This page is for model owners: your account is a consumer account.'
        ) : (
          <>
            Please <Link to="/login">log in</Link> with a model owner's account.
          </>
        )}
      </p>
    </>
  );
}
