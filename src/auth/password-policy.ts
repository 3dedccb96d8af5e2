import { BadUserInputError } from '../server/errors.js';

export const MIN_PASSWORD_LENGTH = 10;
export const MAX_PASSWORD_LENGTH = 256;

// The most common passwords of at least 10 characters in public breach corpora (SecLists top lists);
// shorter ones are already refused by the length rule.
const COMMON_PASSWORDS = new Set([
  '1234567890',
  '0123456789',
  '0987654321',
  '1111111111',
  '0000000000',
  '1234512345',
  '1q2w3e4r5t',
  '1qaz2wsx3edc',
  'qwertyuiop',
  'qwertyuiop1',
  'qwerty1234',
  'qwerty12345',
  'qwerty123456',
  'asdfghjkl1',
  'zxcvbnm123',
  'password12',
  'password123',
  'password1234',
  'password!',
  'password01',
  'passw0rd123',
  'iloveyou12',
  'iloveyou123',
  'princess12',
  'football12',
  'baseball12',
  'basketball',
  'superman123',
  'starwars12',
  'trustno1234',
  'letmein1234',
  'welcome123',
  'welcome1234',
  'administrator',
  'admin12345',
  'adminadmin',
  'changeme123',
  'changeme12',
  'sunshine12',
  'michael123',
  'jennifer12',
  'computer12',
  'monkey12345',
  'dragon12345',
  'abc1234567',
  'abcdefghij',
  'abcd123456',
  'a1b2c3d4e5',
  '11111111111',
  '123123123123',
  '123456789a',
  'a123456789',
  '123456789q',
  'q123456789',
  '1234567890q',
  'qazwsxedc123',
  'qazwsxedcrfv',
  '!qaz2wsx',
  'zaq12wsxcde',
  'passwordpassword',
  'mypassword1',
  'secret1234',
  'whatever123',
  'charlie123',
  'liverpool1',
  'chocolate1',
  'butterfly1',
  'basketball1',
  'footballer',
  'cheese1234',
  'pokemon123',
  'samsung123',
  'internet12',
  'nicole1234',
  'hello12345',
  'helloworld',
  'helloworld1',
  'loveyou123',
  'testtest12',
  'test123456',
  '1234qwerasdf',
  'pa55w0rd123',
  'p@ssw0rd123',
  'p@ssword123',
  'modelmarket',
  'modelmarket1',
]);

/** Throws BAD_USER_INPUT naming `field` when the password fails the policy. */
export function assertAcceptablePassword(password: string, email: string, field: string): void {
  if (password.length < MIN_PASSWORD_LENGTH) {
    throw new BadUserInputError(`Password must be at least ${MIN_PASSWORD_LENGTH} characters`, field);
  }
  if (password.length > MAX_PASSWORD_LENGTH) {
    throw new BadUserInputError(`Password must be at most ${MAX_PASSWORD_LENGTH} characters`, field);
  }
  const lowered = password.toLowerCase();
  if (lowered === email || lowered === email.split('@')[0]) {
    throw new BadUserInputError('Password must not be the e-mail address', field);
  }
  if (COMMON_PASSWORDS.has(lowered)) {
    throw new BadUserInputError('Password is too common; choose another', field);
  }
}
