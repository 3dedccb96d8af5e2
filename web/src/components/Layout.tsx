// The frame of every page: a skip link, the navigation (what the signed-in role can use), and the page itself.
import { useRef } from 'react';
import { NavLink, Outlet, useNavigate } from 'react-router-dom';
import { logOut } from '../api/auth';
import { useSession } from '../api/hooks';
import { usePageHeading } from './usePageHeading';

export function Layout() {
  const { user } = useSession();
  const navigate = useNavigate();
  const main = useRef<HTMLElement>(null);
  usePageHeading(main);
  const owner = user?.role === 'OWNER' || user?.role === 'ADMIN';
  return (
    <>
      <a className="skip-link" href="#main">
        Skip to content
      </a>
      <header className="top">
        <nav aria-label="Main">
          <NavLink to="/" end className="brand">
            Modelmarket
          </NavLink>
          {user && <NavLink to="/contracts">Contracts</NavLink>}
          {user && <NavLink to="/keys">API keys</NavLink>}
          {user && <NavLink to="/usage">Usage</NavLink>}
          {owner && <NavLink to="/owner/models">My models</NavLink>}
          {owner && <NavLink to="/owner/approvals">Approvals</NavLink>}
          {owner && <NavLink to="/owner/watermark">Watermarks</NavLink>}
          {user?.role === 'ADMIN' && <NavLink to="/admin/users">Users</NavLink>}
          {user?.role === 'ADMIN' && <NavLink to="/admin/audit">Audit log</NavLink>}
          {user?.role === 'ADMIN' && <NavLink to="/admin/usage">All usage</NavLink>}
        </nav>
        <div className="account">
          {user ? (
            <>
              <span>
                {user.displayName} ({user.role.toLowerCase()})
              </span>
              <button
                type="button"
                onClick={() => {
                  void logOut().then(() => navigate('/'));
                }}
              >
                Log out
              </button>
            </>
          ) : (
            <>
              <NavLink to="/login">Log in</NavLink>
              <NavLink to="/signup">Sign up</NavLink>
            </>
          )}
        </div>
      </header>
      <main id="main" tabIndex={-1} ref={main}>
        <Outlet />
      </main>
    </>
  );
}
