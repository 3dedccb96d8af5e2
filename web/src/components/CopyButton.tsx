import { useEffect, useRef, useState } from 'react';

type CopyState = 'idle' | 'copied' | 'manual';

/**
 * Copies `text` to the clipboard and says so (for secrets shown once, certificates). Where the clipboard API is
 * missing (plain http from another host) or refuses, the text is shown selected with the keys that copy it.
 */
export function CopyButton({ text, label = 'Copy' }: { text: string; label?: string }) {
  const [state, setState] = useState<CopyState>('idle');
  const manualField = useRef<HTMLInputElement>(null);
  useEffect(() => {
    if (state !== 'manual') return;
    manualField.current?.focus();
    manualField.current?.select();
  }, [state]);
  const copy = () => {
    // navigator.clipboard is undefined outside secure contexts, whatever its type says.
    const clipboard = navigator.clipboard as Clipboard | undefined;
    if (!clipboard) return setState('manual');
    clipboard.writeText(text).then(
      () => setState('copied'),
      () => setState('manual'),
    );
  };
  return (
    <>
      <button type="button" className="secondary" onClick={copy}>
        {state === 'copied' ? 'Copied' : label}
        <span className="visually-hidden" aria-live="polite">
          {state === 'copied' ? ' to the clipboard' : ''}
        </span>
      </button>
      {state === 'manual' && (
        <span className="copy-manual">
          <input
            ref={manualField}
            readOnly
            value={text}
            aria-label={`${label}: the text to copy`}
            onFocus={(event) => event.target.select()}
          />{' '}
          <span role="status">Press Ctrl+C (⌘C) to copy.</span>
        </span>
      )}
    </>
  );
}
