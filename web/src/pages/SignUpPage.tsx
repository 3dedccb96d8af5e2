// Creating an account as a consumer (calls models) or an owner (publishes them); ADMIN is granted by an admin.
import { useState, type FormEvent } from 'react';
import { Link, useNavigate } from 'react-router-dom';
import { signUp } from '../api/auth';
import { ErrorMessage } from '../components/ErrorMessage';
import type { SignUpRole } from '../gql/graphql';

export function SignUpPage() {
  const navigate = useNavigate();
  const [email, setEmail] = useState('');
  const [password, setPassword] = useState('');
  const [displayName, setDisplayName] = useState('');
  const [role, setRole] = useState<SignUpRole>('CONSUMER');
  const [pending, setPending] = useState(false);
  const [error, setError] = useState<unknown>(null);

  async function submit(event: FormEvent) {
    event.preventDefault();
    setPending(true);
    setError(null);
    try {
      await signUp({ email, password, displayName, role });
      void navigate(role === 'OWNER' ? '/owner/models' : '/');
    } catch (failure) {
      setError(failure);
      setPending(false);
    }
  }

  return (
    <section className="auth-form">
      <h1>Sign up</h1>
      <form onSubmit={(event) => void submit(event)}>
        <label>
          Display name
          <input
            autoComplete="name"
            required
            maxLength={100}
            value={displayName}
            onChange={(event) => setDisplayName(event.target.value)}
          />
        </label>
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
          Password (at least 10 characters)
          <input
            type="password"
            autoComplete="new-password"
            required
            minLength={10}
            maxLength={256}
            value={password}
            onChange={(event) => setPassword(event.target.value)}
          />
        </label>
        <fieldset>
          <legend>I want to</legend>
          <label>
            <input
              type="radio"
              name="role"
              value="CONSUMER"
              checked={role === 'CONSUMER'}
              onChange={() => setRole('CONSUMER')}
            />{' '}
            use models (consumer)
          </label>
          <label>
            <input
              type="radio"
              name="role"
              value="OWNER"
              checked={role === 'OWNER'}
              onChange={() => setRole('OWNER')}
            />{' '}
            publish and license models (owner)
          </label>
        </fieldset>
        <ErrorMessage error={error} />
        <button type="submit" disabled={pending}>
          {pending ? 'Creating your account…' : 'Sign up'}
        </button>
      </form>
      <p>
        Already have an account? <Link to="/login">Log in</Link>
      </p>
    </section>
  );
}
