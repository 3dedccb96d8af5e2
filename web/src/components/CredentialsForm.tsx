// The log-in and sign-up forms' common part: e-mail and password, the pending state and the error in words.
import { useState, type FormEvent, type ReactNode } from 'react';
import { ErrorMessage } from './ErrorMessage';

export interface Credentials {
  email: string;
  password: string;
}

export function CredentialsForm(props: {
  passwordLabel: string;
  passwordAutoComplete: 'current-password' | 'new-password';
  passwordMinLength?: number;
  submitLabel: string;
  pendingLabel: string;
  /** Fields shown before the e-mail address (sign-up's display name) and after the password (its role). */
  leadingFields?: ReactNode;
  trailingFields?: ReactNode;
  /** Sends the credentials and moves on; a failure is shown and the form can be sent again. */
  onSubmit: (credentials: Credentials) => Promise<void>;
}) {
  const [email, setEmail] = useState('');
  const [password, setPassword] = useState('');
  const [pending, setPending] = useState(false);
  const [error, setError] = useState<unknown>(null);

  async function submit(event: FormEvent) {
    event.preventDefault();
    setPending(true);
    setError(null);
    try {
      await props.onSubmit({ email, password });
    } catch (failure) {
      setError(failure);
      setPending(false);
    }
  }

  return (
    <form onSubmit={(event) => void submit(event)}>
      {props.leadingFields}
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
        {props.passwordLabel}
        <input
          type="password"
          autoComplete={props.passwordAutoComplete}
          required
          minLength={props.passwordMinLength}
          maxLength={256}
          value={password}
          onChange={(event) => setPassword(event.target.value)}
        />
      </label>
      {props.trailingFields}
      <ErrorMessage error={error} />
      <button type="submit" disabled={pending}>
        {pending ? props.pendingLabel : props.submitLabel}
      </button>
    </form>
  );
}
