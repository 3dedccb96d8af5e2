// The framework ceiling the hot-path benchmarks compare against: a bare Apollo Server 5 `startStandaloneServer`
// answering `{ me { id } }` from memory (no database, no authentication, no logging). Run as a child process by
// bench/support.ts `startBareApollo`; prints `READY <url>`.
import { ApolloServer } from '@apollo/server';
import { startStandaloneServer } from '@apollo/server/standalone';

const server = new ApolloServer<{ user: string | null }>({
  typeDefs: 'type User { id: ID! } type Query { me: User }',
  resolvers: { Query: { me: (_parent, _args, context) => (context.user ? { id: context.user } : null) } },
});
const { url } = await startStandaloneServer(server, {
  listen: { port: 0, host: '127.0.0.1' },
  context: async ({ req }) => ({ user: req.headers.authorization || req.headers['x-api-key'] ? 'u1' : null }),
});
console.log(`READY ${url}`);
