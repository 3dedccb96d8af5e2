// Logging in: the refresh token goes to the HttpOnly cookie (api/auth), then back to where the person came from.
import { Link, useNavigate, useSearchParams } from 'react-router-dom';
import { logIn } from '../api/auth';
import { CredentialsForm } from '../components/CredentialsForm';

/** Only a path inside the console: `?next=https://elsewhere` must not send the person off-site. */
function safeNextPath(next: string | null): string {
  return next && next.startsWith('/') && !next.startsWith('//') ? next : '/';
}

export function LogInPage() {
  const navigate = useNavigate();
  const [params] = useSearchParams();

  return (
    <section className="auth-form">
      <h1>Log in</h1>
      <CredentialsForm
        passwordLabel="Password"
        passwordAutoComplete="current-password"
        submitLabel="Log in"
        pendingLabel="Logging in…"
        onSubmit={async (credentials) => {
          await logIn(credentials);
          void navigate(safeNextPath(params.get('next')));
        }}
      />
      <p>
        No account yet? <Link to="/signup">Sign up</Link>
      </p>
    </section>
  );
}
