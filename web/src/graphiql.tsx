// GraphiQL, bundled (no CDN): served at /graphql to browsers when enabled, with the console's session token.
import 'graphiql/setup-workers/vite';
import 'graphiql/style.css';
import { createGraphiQLFetcher } from '@graphiql/toolkit';
import { GraphiQL } from 'graphiql';
import { createRoot } from 'react-dom/client';
import { refreshSession, session } from './api/client';

async function start() {
  await refreshSession();
  const token = session.get().accessToken;
  const fetcher = createGraphiQLFetcher({ url: '/graphql' });
  const headers = token ? JSON.stringify({ authorization: `Bearer ${token}` }, null, 2) : undefined;
  createRoot(document.getElementById('graphiql')!).render(<GraphiQL fetcher={fetcher} initialHeaders={headers} />);
}
void start();
