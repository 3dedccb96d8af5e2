// Creating an account as a consumer (calls models) or an owner (publishes them); ADMIN is granted by an admin.
import { useState } from 'react';
import { Link, useNavigate } from 'react-router-dom';
import { signUp } from '../api/auth';
import { CredentialsForm } from '../components/CredentialsForm';
import type { SignUpRole } from '../gql/graphql';

export function SignUpPage() {
  const navigate = useNavigate();
  const [displayName, setDisplayName] = useState('');
  const [role, setRole] = useState<SignUpRole>('CONSUMER');

  return (
    <section className="auth-form">
      <h1>Sign up</h1>
      <CredentialsForm
        passwordLabel="Password (at least 10 characters)"
        passwordAutoComplete="new-password"
        passwordMinLength={10}
        submitLabel="Sign up"
        pendingLabel="Creating your account…"
        onSubmit={async (credentials) => {
          await signUp({ ...credentials, displayName, role });
          void navigate(role === 'OWNER' ? '/owner/models' : '/');
        }}
        leadingFields={
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
        }
        trailingFields={
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
        }
      />
      <p>
        Already have an account? <Link to="/login">Log in</Link>
      </p>
    </section>
  );
}
