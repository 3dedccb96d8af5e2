// A destructive action asked twice in the page itself (no window.confirm: it is not styled, and a browser may
// suppress it): the first button reveals the question and its two answers, focused on the safe one.
import { useEffect, useRef, useState, type ReactNode } from 'react';

export function InlineConfirm({
  label,
  question,
  confirmLabel,
  onConfirm,
  pending = false,
  disabled = false,
}: {
  /** The first button's text, e.g. "Revoke". */
  label: ReactNode;
  /** What is asked, e.g. "Revoke the key ci-runner? Apps using it stop working at once." */
  question: ReactNode;
  /** The confirming button's text, e.g. "Yes, revoke". */
  confirmLabel: string;
  onConfirm: () => void;
  pending?: boolean;
  disabled?: boolean;
}) {
  const [asking, setAsking] = useState(false);
  const keep = useRef<HTMLButtonElement>(null);
  useEffect(() => {
    if (asking) keep.current?.focus();
  }, [asking]);
  if (!asking) {
    return (
      <button type="button" className="danger" disabled={disabled || pending} onClick={() => setAsking(true)}>
        {label}
      </button>
    );
  }
  return (
    <span role="group" aria-label="Confirm" className="inline-confirm">
      <span>{question}</span>{' '}
      <button
        type="button"
        className="danger"
        disabled={pending}
        onClick={() => {
          setAsking(false);
          onConfirm();
        }}
      >
        {confirmLabel}
      </button>{' '}
      <button type="button" className="secondary" ref={keep} onClick={() => setAsking(false)}>
        No, keep it
      </button>
    </span>
  );
}
