// Markdown someone else wrote (model descriptions and cards), rendered safely. Raw HTML in it is shown as text,
// never parsed: a description is markdown, and an `<img onerror=…>` handed to any HTML parser (DOMPurify's
// included) already trips the page's CSP. DOMPurify then removes what markdown itself can carry, such as
// javascript: links.
import DOMPurify from 'dompurify';
import { Marked } from 'marked';
import { useMemo } from 'react';

const ESCAPES: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };

const markdown = new Marked({
  gfm: true,
  async: false,
  renderer: { html: ({ text }) => text.replace(/[&<>"']/g, (c) => ESCAPES[c]!) },
});

export function Markdown({ source }: { source: string }) {
  const html = useMemo(
    () => DOMPurify.sanitize(markdown.parse(source, { async: false }), { USE_PROFILES: { html: true } }),
    [source],
  );
  return <div className="markdown" dangerouslySetInnerHTML={{ __html: html }} />;
}
