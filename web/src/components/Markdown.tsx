// Markdown someone else wrote (model descriptions and cards), rendered safely: marked turns it into HTML and
// DOMPurify removes scripts, event handlers and javascript: links before it reaches the page.
import DOMPurify from 'dompurify';
import { marked } from 'marked';
import { useMemo } from 'react';

export function Markdown({ source }: { source: string }) {
  const html = useMemo(
    () => DOMPurify.sanitize(marked.parse(source, { async: false, gfm: true }), { USE_PROFILES: { html: true } }),
    [source],
  );
  return <div className="markdown" dangerouslySetInnerHTML={{ __html: html }} />;
}
