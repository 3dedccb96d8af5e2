// Signing up, in and out. The refresh token goes to the HttpOnly cookie (session: COOKIE); the access token and
// the account stay in memory.
import { graphql } from '../gql';
import type { LogInInput, SignUpInput } from '../gql/graphql';
import { request, session } from './client';

const LogIn = graphql(`
  mutation LogIn($input: LogInInput!) {
    logIn(input: $input) {
      accessToken
      user {
        ...SessionUserFields
      }
    }
  }
`);

const SignUp = graphql(`
  mutation SignUp($input: SignUpInput!) {
    signUp(input: $input) {
      accessToken
      user {
        ...SessionUserFields
      }
    }
  }
`);

const LogOut = graphql(`
  mutation LogOut {
    logOut(input: {})
  }
`);

export async function logIn(input: Omit<LogInInput, 'session'>): Promise<void> {
  const { logIn } = await request(LogIn, { input: { ...input, session: 'COOKIE' } });
  session.set({ accessToken: logIn.accessToken, user: logIn.user });
}

export async function signUp(input: Omit<SignUpInput, 'session'>): Promise<void> {
  const { signUp } = await request(SignUp, { input: { ...input, session: 'COOKIE' } });
  session.set({ accessToken: signUp.accessToken, user: signUp.user });
}

export async function logOut(): Promise<void> {
  try {
    await request(LogOut);
  } finally {
    session.set({ accessToken: null, user: null });
  }
}
