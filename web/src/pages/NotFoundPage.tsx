// Any address the console has no page for.
import { Link, useLocation } from 'react-router-dom';

export function NotFoundPage() {
  const { pathname } = useLocation();
  return (
    <>
      <h1>Page not found</h1>
      <p>
        The console has no page at <code>{pathname}</code>. <Link to="/">Go to the marketplace</Link>
      </p>
    </>
  );
}
