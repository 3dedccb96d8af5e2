// The console and the offline GraphiQL, built into web/dist and served by the API server itself (no CDN).
import { fileURLToPath } from 'node:url';
import react from '@vitejs/plugin-react';
import { defineConfig } from 'vite';

const root = fileURLToPath(new URL('.', import.meta.url));

export default defineConfig({
  root,
  plugins: [react()],
  build: {
    outDir: 'dist',
    emptyOutDir: true,
    // The console's budget is checked by test/web/budgets.test.ts; GraphiQL (Monaco) is its own, larger page.
    chunkSizeWarningLimit: 4000,
    // The bundle's manifest lets the budget test sum exactly what the console's page loads.
    manifest: true,
    rollupOptions: {
      input: { console: `${root}/index.html`, graphiql: `${root}/graphiql.html` },
      onwarn(warning, warn) {
        // GraphiQL's packages carry React Compiler's "use no memo" directives, which a bundle cannot keep.
        if (warning.code === 'MODULE_LEVEL_DIRECTIVE') return;
        warn(warning);
      },
    },
  },
  server: { proxy: { '/graphql': 'http://localhost:4000', '/v1': 'http://localhost:4000' } },
});
