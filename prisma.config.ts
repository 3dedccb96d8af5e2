// Prisma CLI configuration. The CLI runs offline with its bundled WebAssembly schema engine, which talks to
// PostgreSQL through @prisma/adapter-pg (see README, "Migrations").
import { defineConfig } from 'prisma/config';
import { PrismaPg } from '@prisma/adapter-pg';
import { migrationPool } from './src/db/migration-pool.js';

export default defineConfig({
  experimental: { adapter: true },
  engine: 'js',
  schema: 'prisma/schema.prisma',
  migrations: { path: 'prisma/migrations' },
  adapter: async () => new PrismaPg(migrationPool(process.env.DATABASE_URL ?? 'postgresql://localhost/modelmarket')),
});
