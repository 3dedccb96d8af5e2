// Logging in: the refresh token goes to the HttpOnly cookie (api/auth), then back to where the person came from.
import { useState, type FormEvent } from 'react';
import { Link, useNavigate, useSearchParams } from 'react-router-dom';
import { logIn } from '../api/auth';
import { ErrorMessage } from '../components/ErrorMessage';

/** Only a path inside the console: `?next=https://elsewhere` must not send the person off-site. */
function safeNextPath(next: string | null): string {
  return next && next.startsWith('/') && !next.startsWith('//') ? next : '/';
}

export function LogInPage() {
  const navigate = useNavigate();
  const [params] = useSearchParams();
  const [email, setEmail] = useState('');
  const [password, setPassword] = useState('');
  const [pending, setPending] = useState(false);
  const [error, setError] = useState<unknown>(null);

  async function submit(event: FormEvent) {
    event.preventDefault();
    setPending(true);
    setError(null);
    try {
      await logIn({ email, password });
      void navigate(safeNextPath(params.get('next')));
    } catch (failure) {
      setError(failure);
      setPending(false);
    }
  }

  return (
    <section className="auth-form">
      <h1>Log in</h1>
      <form onSubmit={(event) => void submit(event)}>
        <label>
          E-mail address
          <input
            type="email"
            autoComplete="email"
            required
            maxLength={254}
            value={email}
            onChange={(event) => setEmail(event.target.value)}
          />
        </label>
        <label>
          Password
          <input
            type="password"
            autoComplete="current-password"
            required
            maxLength={256}
            value={password}
            onChange={(event) => setPassword(event.target.value)}
          />
        </label>
        <ErrorMessage error={error} />
        <button type="submit" disabled={pending}>
          {pending ? 'Logging in…' : 'Log in'}
        </button>
      </form>
      <p>
        No account yet? <Link to="/signup">Sign up</Link>
      </p>
    </section>
  );
}
